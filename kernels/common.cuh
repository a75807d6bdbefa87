// kernels/common.cuh: helpers shared by every kernel family; the loader prepends this file to
// each family's source, so the families may use these names without including anything.
//
// Conventions for every .cuh file under kernels/:
// - device functions are prefixed tg_ so they never collide with CUDA's or CuPy's own names;
// - each function comes as a float and a double overload (a plain compile type-checks both);
//   CuPy's float16 converts to float on the way in, so half is computed in float and rounded
//   once when the kernel stores its result; no intermediate is ever held in the storage type;
// - template parameters are named R: CuPy typedefs T and S at file scope for each kernel;
// - nothing is included beyond CUDA built-ins, so the same text compiles under CuPy and in the
//   standalone NVRTC test.

// Compute type of a storage type: float for float16 and float32, double for double. Kernel
// bodies cast their float64 scalar parameters with tg_real<T>(s), so a float16 or float32
// kernel computes with float scalars and a double kernel with double ones.
template <typename R> struct tg_compute { typedef float type; };
template <> struct tg_compute<double> { typedef double type; };
template <typename R> using tg_real = typename tg_compute<R>::type;

// A product rounded on its own: __fmul_rn and __dmul_rn are never contracted with a following
// addition into an FMA (NVRTC contracts a + b * c by default), for code whose order of
// rounding is chosen, as in optimizers.cuh.
__device__ __forceinline__ float tg_mul(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double tg_mul(double a, double b) { return __dmul_rn(a, b); }

// sqrtf for float: a bare sqrt(float) may resolve to the double routine on some toolchains.
__device__ __forceinline__ float tg_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double tg_sqrt(double x) { return sqrt(x); }

// Clamp that lets NaN through (fminf/fmaxf would replace a NaN by the bound and hide it).
__device__ __forceinline__ float tg_clamp(float x, float lo, float hi) {
    return x < lo ? lo : (x > hi ? hi : x);
}
__device__ __forceinline__ double tg_clamp(double x, double lo, double hi) {
    return x < lo ? lo : (x > hi ? hi : x);
}

// 1 / (1 + exp(-x)) without overflow: exp only ever sees -|x|, so e is in (0, 1] and
// x = +-1000 gives exactly 1 and 0 instead of inf / inf.
__device__ __forceinline__ float tg_logistic(float x) {
    float e = expf(-fabsf(x));
    float s = 1.0f / (1.0f + e);
    return x >= 0.0f ? s : e * s;
}
__device__ __forceinline__ double tg_logistic(double x) {
    double e = exp(-fabs(x));
    double s = 1.0 / (1.0 + e);
    return x >= 0.0 ? s : e * s;
}

// log(1 + exp(x)) without overflow: max(x, 0) + log1p(exp(-|x|)).
__device__ __forceinline__ float tg_log1pexp(float x) {
    return fmaxf(x, 0.0f) + log1pf(expf(-fabsf(x)));
}
__device__ __forceinline__ double tg_log1pexp(double x) {
    return fmax(x, 0.0) + log1p(exp(-fabs(x)));
}
