// kernels/softmax.cuh: row softmax and log-softmax, forward and backward, for softmax,
// log_softmax, cross-entropy and attention. Conventions are in common.cuh; these differ in one
// way: they are row reductions, so they are __global__ templates launched as a RawModule, one
// thread block per row of a C-contiguous (rows, n) array, instantiated by name for float16,
// float and double storage. T is the storage type and R = tg_real<T> the compute type: each
// element is converted to R on load and rounded to T once on store, so half is computed in
// float (the loader includes CuPy's float16 class before this file).
//
// Each block strides over its row, so any row length works; the block size is a multiple of
// 32, at most 1024. The block reductions use warp shuffles and 32 shared slots.

template <typename R> __device__ __forceinline__ R tg_neg_inf();
template <> __device__ __forceinline__ float tg_neg_inf<float>() {
    return __int_as_float(0xff800000);
}
template <> __device__ __forceinline__ double tg_neg_inf<double>() {
    return __longlong_as_double(0xfff0000000000000LL);
}

__device__ __forceinline__ float tg_exp(float x) { return expf(x); }
__device__ __forceinline__ double tg_exp(double x) { return exp(x); }
__device__ __forceinline__ float tg_log(float x) { return logf(x); }
__device__ __forceinline__ double tg_log(double x) { return log(x); }

// The maximum (MAX) or the sum of v over the block, returned to every thread. A NaN may be
// lost by the maximum, but never by the sum that always follows it, so the row still comes
// out NaN as in PyTorch.
template <typename R, bool MAX>
__device__ __forceinline__ R tg_block_reduce(R v, R* shared) {
    for (int offset = 16; offset > 0; offset >>= 1) {
        R w = __shfl_xor_sync(0xffffffffu, v, offset);
        v = MAX ? (w > v ? w : v) : v + w;
    }
    __syncthreads();  // the slots may still be read by the previous reduction
    if ((threadIdx.x & 31) == 0) shared[threadIdx.x >> 5] = v;
    __syncthreads();
    R r = shared[0];
    for (int w = 1; w < (int)(blockDim.x >> 5); ++w) r = MAX ? (shared[w] > r ? shared[w] : r)
                                                             : r + shared[w];
    return r;
}

// y = exp(x - max) / sum. causal_rows = L > 0: row r is query r % L of an (L, n) matrix and
// columns j > r % L are left out (weight 0), so no mask is ever materialised. masked_zero: a
// row with nothing left (max -inf) gives zeros instead of NaN, as PyTorch's attention.
template <typename T>
__global__ void tg_softmax_fwd(const T* x, T* y, long long n, long long causal_rows,
                               int masked_zero) {
    typedef tg_real<T> R;
    __shared__ R shared[32];
    const T* xr = x + (long long)blockIdx.x * n;
    T* yr = y + (long long)blockIdx.x * n;
    long long end = n;
    if (causal_rows > 0) {
        long long last = (long long)blockIdx.x % causal_rows;
        end = last + 1 < n ? last + 1 : n;
    }
    R m = tg_neg_inf<R>();
    for (long long j = threadIdx.x; j < end; j += blockDim.x) {
        R v = R(xr[j]);
        m = v > m ? v : m;
    }
    m = tg_block_reduce<R, true>(m, shared);
    if (masked_zero && m == tg_neg_inf<R>()) m = R(0);  // exp(-inf - 0) = 0: the sum is 0
    R s = R(0);
    for (long long j = threadIdx.x; j < end; j += blockDim.x) s += tg_exp(R(xr[j]) - m);
    s = tg_block_reduce<R, false>(s, shared);
    if (masked_zero && s == R(0)) s = -tg_neg_inf<R>();  // 0 / inf = 0 for every column
    for (long long j = threadIdx.x; j < n; j += blockDim.x) {
        yr[j] = j < end ? T(tg_exp(R(xr[j]) - m) / s) : T(0);
    }
}

// gx = y (gy - sum(gy y)), from the softmax output y.
template <typename T>
__global__ void tg_softmax_bwd(const T* y, const T* gy, T* gx, long long n) {
    typedef tg_real<T> R;
    __shared__ R shared[32];
    long long base = (long long)blockIdx.x * n;
    R s = R(0);
    for (long long j = threadIdx.x; j < n; j += blockDim.x) s += R(gy[base + j]) * R(y[base + j]);
    s = tg_block_reduce<R, false>(s, shared);
    for (long long j = threadIdx.x; j < n; j += blockDim.x) {
        gx[base + j] = T((R(gy[base + j]) - s) * R(y[base + j]));
    }
}

// y = (x - max) - log(sum(exp(x - max))).
template <typename T>
__global__ void tg_log_softmax_fwd(const T* x, T* y, long long n) {
    typedef tg_real<T> R;
    __shared__ R shared[32];
    long long base = (long long)blockIdx.x * n;
    R m = tg_neg_inf<R>();
    for (long long j = threadIdx.x; j < n; j += blockDim.x) {
        R v = R(x[base + j]);
        m = v > m ? v : m;
    }
    m = tg_block_reduce<R, true>(m, shared);
    R s = R(0);
    for (long long j = threadIdx.x; j < n; j += blockDim.x) s += tg_exp(R(x[base + j]) - m);
    R lse = tg_log(tg_block_reduce<R, false>(s, shared));
    for (long long j = threadIdx.x; j < n; j += blockDim.x) {
        y[base + j] = T((R(x[base + j]) - m) - lse);
    }
}

// gx = gy - exp(y) sum(gy), from the log-softmax output y.
template <typename T>
__global__ void tg_log_softmax_bwd(const T* y, const T* gy, T* gx, long long n) {
    typedef tg_real<T> R;
    __shared__ R shared[32];
    long long base = (long long)blockIdx.x * n;
    R s = R(0);
    for (long long j = threadIdx.x; j < n; j += blockDim.x) s += R(gy[base + j]);
    s = tg_block_reduce<R, false>(s, shared);
    for (long long j = threadIdx.x; j < n; j += blockDim.x) {
        gx[base + j] = T(R(gy[base + j]) - tg_exp(R(y[base + j])) * s);
    }
}
