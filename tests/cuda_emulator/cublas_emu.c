/* The emulator's libcublas: the cuBLAS entry points tensorgrad's _cublas.py binds, on the host.
 *
 * Column-major, as cuBLAS: C = alpha * op(A) op(B) + beta * C for each of `batch` matrices,
 * op(X) = X or X^T, element (r, c) of a stored matrix at r + c * ld. Sgemm accumulates in
 * float, Dgemm in double, GemmEx with half storage in float (CUBLAS_COMPUTE_32F). beta == 0
 * never reads C (it may hold NaN), as cuBLAS.
 *
 * Arguments are checked as cuBLAS checks them (CUBLAS_STATUS_INVALID_VALUE for a negative size
 * or a leading dimension shorter than a column). Every call is then handed to the emulator's
 * Python side through a hook: it checks that each operand, with its leading dimension, batch
 * stride and count, lies inside one live device allocation (else the call fails with
 * CUBLAS_STATUS_EXECUTION_FAILED and a message on stderr: a real GPU would read or write out
 * of bounds), and runs the call now or, on a capturing stream, records it for the graph.
 * The hook calls emu_gemm_run to do the arithmetic.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef enum {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_NOT_INITIALIZED = 1,
    CUBLAS_STATUS_INVALID_VALUE = 7,
    CUBLAS_STATUS_EXECUTION_FAILED = 13,
    CUBLAS_STATUS_NOT_SUPPORTED = 15
} cublasStatus_t;

enum { CUDA_R_32F = 0, CUDA_R_64F = 1, CUDA_R_16F = 2 };
enum { CUBLAS_COMPUTE_32F = 68, CUBLAS_COMPUTE_32F_PEDANTIC = 69 };
enum { EMU_F32 = 0, EMU_F64 = 1, EMU_F16 = 2 };

typedef struct {
    void *stream;
    void *workspace;
    size_t workspace_size;
} emu_handle;

/* One GEMM call, as the hook sees it (mirrored by a ctypes Structure in cupy/_cublas.py). */
typedef struct {
    int64_t dtype, transa, transb;
    int64_t m, n, k;
    double alpha, beta;
    const void *A;
    int64_t lda, stride_a;
    const void *B;
    int64_t ldb, stride_b;
    void *C;
    int64_t ldc, stride_c;
    int64_t batch;
    void *stream;
} emu_gemm;

typedef int (*emu_hook_t)(const emu_gemm *);
static emu_hook_t hook;

void emu_set_hook(emu_hook_t h) { hook = h; }

static inline float half_to_float(uint16_t h) {
    _Float16 v;
    memcpy(&v, &h, 2);
    return (float)v;
}

static inline uint16_t float_to_half(float f) {
    _Float16 v = (_Float16)f;
    uint16_t h;
    memcpy(&h, &v, 2);
    return h;
}

/* One matrix product per batch entry in accumulator type ACC over storage type T, in axpy
 * order: the inner loop runs down a column of op(A), contiguous (a transposed A is copied
 * into column-major order first), into a column of accumulators. */
#define GEMM_BODY(T, ACC, LOAD, STORE)                                                     \
    {                                                                                      \
        ACC *acc = malloc(sizeof(ACC) * (size_t)g->m);                                     \
        T *at = g->transa ? malloc(sizeof(T) * (size_t)(g->m * g->k)) : NULL;              \
        if (acc == NULL || (g->transa && at == NULL)) {                                    \
            free(acc);                                                                     \
            return CUBLAS_STATUS_EXECUTION_FAILED;                                         \
        }                                                                                  \
        for (int64_t b = 0; b < g->batch; ++b) {                                           \
            const T *A = (const T *)g->A + b * g->stride_a;                                \
            const T *B = (const T *)g->B + b * g->stride_b;                                \
            T *C = (T *)g->C + b * g->stride_c;                                            \
            int64_t lda = g->lda;                                                          \
            if (g->transa) {                                                               \
                for (int64_t i = 0; i < g->m; ++i)                                         \
                    for (int64_t l = 0; l < g->k; ++l) at[i + l * g->m] = A[l + i * lda];  \
                A = at;                                                                    \
                lda = g->m;                                                                \
            }                                                                              \
            for (int64_t j = 0; j < g->n; ++j) {                                           \
                for (int64_t i = 0; i < g->m; ++i) acc[i] = 0;                             \
                for (int64_t l = 0; l < g->k; ++l) {                                       \
                    ACC bl = (ACC)LOAD(g->transb ? B[j + l * g->ldb] : B[l + j * g->ldb]); \
                    const T *a = A + l * lda;                                              \
                    for (int64_t i = 0; i < g->m; ++i) acc[i] += (ACC)LOAD(a[i]) * bl;      \
                }                                                                          \
                ACC alpha = (ACC)g->alpha, beta = (ACC)g->beta;                            \
                for (int64_t i = 0; i < g->m; ++i) {                                       \
                    T *c = &C[i + j * g->ldc];                                             \
                    ACC value = alpha * acc[i];                                            \
                    if (beta != 0) value += beta * (ACC)LOAD(*c);                          \
                    *c = STORE(value);                                                     \
                }                                                                          \
            }                                                                              \
        }                                                                                  \
        free(at);                                                                          \
        free(acc);                                                                         \
    }

#define SAME(x) (x)

int emu_gemm_run(const emu_gemm *g) {
    if (g->dtype == EMU_F32) GEMM_BODY(float, float, SAME, SAME)
    else if (g->dtype == EMU_F64) GEMM_BODY(double, double, SAME, SAME)
    else GEMM_BODY(uint16_t, float, half_to_float, float_to_half)
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasCreate_v2(emu_handle **handle) {
    if (handle == NULL) return CUBLAS_STATUS_INVALID_VALUE;
    *handle = calloc(1, sizeof(emu_handle));
    return *handle ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_INITIALIZED;
}

cublasStatus_t cublasDestroy_v2(emu_handle *handle) {
    free(handle);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream_v2(emu_handle *handle, void *stream) {
    if (handle == NULL) return CUBLAS_STATUS_NOT_INITIALIZED;
    handle->stream = stream;
    handle->workspace = NULL;  /* cuBLAS drops a user workspace when the stream changes */
    handle->workspace_size = 0;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetStream_v2(emu_handle *handle, void **stream) {
    if (handle == NULL) return CUBLAS_STATUS_NOT_INITIALIZED;
    *stream = handle->stream;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetWorkspace_v2(emu_handle *handle, void *workspace, size_t size) {
    if (handle == NULL) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (size > 0 && workspace == NULL) return CUBLAS_STATUS_INVALID_VALUE;
    handle->workspace = workspace;
    handle->workspace_size = size;
    return CUBLAS_STATUS_SUCCESS;
}

static cublasStatus_t gemm(emu_handle *handle, int64_t dtype, int transa, int transb,
                           int64_t m, int64_t n, int64_t k, double alpha, const void *A,
                           int64_t lda, int64_t stride_a, const void *B, int64_t ldb,
                           int64_t stride_b, double beta, void *C, int64_t ldc,
                           int64_t stride_c, int64_t batch) {
    if (handle == NULL) return CUBLAS_STATUS_NOT_INITIALIZED;
    if ((transa != 0 && transa != 1 && transa != 2) || (transb != 0 && transb != 1 && transb != 2))
        return CUBLAS_STATUS_INVALID_VALUE;
    transa = transa != 0;
    transb = transb != 0;
    int64_t rows_a = transa ? k : m, rows_b = transb ? n : k;
    if (m < 0 || n < 0 || k < 0 || batch < 0 || lda < (rows_a > 1 ? rows_a : 1) ||
        ldb < (rows_b > 1 ? rows_b : 1) || ldc < (m > 1 ? m : 1))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (m == 0 || n == 0 || batch == 0) return CUBLAS_STATUS_SUCCESS;
    emu_gemm g = {dtype, transa, transb, m, n, k, alpha, beta, A, lda, stride_a, B, ldb,
                  stride_b, C, ldc, stride_c, batch, handle->stream};
    return hook ? hook(&g) : emu_gemm_run(&g);
}

cublasStatus_t cublasSgemmStridedBatched(emu_handle *h, int ta, int tb, int m, int n, int k,
                                         const float *alpha, const float *A, int lda,
                                         long long sa, const float *B, int ldb, long long sb,
                                         const float *beta, float *C, int ldc, long long sc,
                                         int batch) {
    return gemm(h, EMU_F32, ta, tb, m, n, k, *alpha, A, lda, sa, B, ldb, sb, *beta, C, ldc, sc,
                batch);
}

cublasStatus_t cublasDgemmStridedBatched(emu_handle *h, int ta, int tb, int m, int n, int k,
                                         const double *alpha, const double *A, int lda,
                                         long long sa, const double *B, int ldb, long long sb,
                                         const double *beta, double *C, int ldc, long long sc,
                                         int batch) {
    return gemm(h, EMU_F64, ta, tb, m, n, k, *alpha, A, lda, sa, B, ldb, sb, *beta, C, ldc, sc,
                batch);
}

cublasStatus_t cublasSgemmStridedBatched_64(emu_handle *h, int ta, int tb, int64_t m,
                                            int64_t n, int64_t k, const float *alpha,
                                            const float *A, int64_t lda, long long sa,
                                            const float *B, int64_t ldb, long long sb,
                                            const float *beta, float *C, int64_t ldc,
                                            long long sc, int64_t batch) {
    return gemm(h, EMU_F32, ta, tb, m, n, k, *alpha, A, lda, sa, B, ldb, sb, *beta, C, ldc, sc,
                batch);
}

cublasStatus_t cublasDgemmStridedBatched_64(emu_handle *h, int ta, int tb, int64_t m,
                                            int64_t n, int64_t k, const double *alpha,
                                            const double *A, int64_t lda, long long sa,
                                            const double *B, int64_t ldb, long long sb,
                                            const double *beta, double *C, int64_t ldc,
                                            long long sc, int64_t batch) {
    return gemm(h, EMU_F64, ta, tb, m, n, k, *alpha, A, lda, sa, B, ldb, sb, *beta, C, ldc, sc,
                batch);
}

/* GemmEx: half storage with float compute, or float storage with float compute. */
static cublasStatus_t gemm_ex(emu_handle *h, int ta, int tb, int64_t m, int64_t n, int64_t k,
                              const void *alpha, const void *A, int atype, int64_t lda,
                              long long sa, const void *B, int btype, int64_t ldb,
                              long long sb, const void *beta, void *C, int ctype,
                              int64_t ldc, long long sc, int64_t batch, int compute) {
    if (compute != CUBLAS_COMPUTE_32F && compute != CUBLAS_COMPUTE_32F_PEDANTIC)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    if (atype != btype || atype != ctype || (atype != CUDA_R_16F && atype != CUDA_R_32F))
        return CUBLAS_STATUS_NOT_SUPPORTED;
    int64_t dtype = atype == CUDA_R_16F ? EMU_F16 : EMU_F32;
    return gemm(h, dtype, ta, tb, m, n, k, *(const float *)alpha, A, lda, sa, B, ldb, sb,
                *(const float *)beta, C, ldc, sc, batch);
}

cublasStatus_t cublasGemmStridedBatchedEx(emu_handle *h, int ta, int tb, int m, int n, int k,
                                          const void *alpha, const void *A, int atype, int lda,
                                          long long sa, const void *B, int btype, int ldb,
                                          long long sb, const void *beta, void *C, int ctype,
                                          int ldc, long long sc, int batch, int compute,
                                          int algo) {
    return gemm_ex(h, ta, tb, m, n, k, alpha, A, atype, lda, sa, B, btype, ldb, sb, beta, C,
                   ctype, ldc, sc, batch, compute);
}

cublasStatus_t cublasGemmStridedBatchedEx_64(emu_handle *h, int ta, int tb, int64_t m,
                                             int64_t n, int64_t k, const void *alpha,
                                             const void *A, int atype, int64_t lda,
                                             long long sa, const void *B, int btype,
                                             int64_t ldb, long long sb, const void *beta,
                                             void *C, int ctype, int64_t ldc, long long sc,
                                             int64_t batch, int compute, int algo) {
    return gemm_ex(h, ta, tb, m, n, k, alpha, A, atype, lda, sa, B, btype, ldb, sb, beta, C,
                   ctype, ldc, sc, batch, compute);
}
