// The emulator's replacement for CUDA and for CuPy's device headers (carray.cuh, float16.cuh):
// just enough that the source CuPy generates for an ElementwiseKernel compiles with the host
// g++ and means the same thing. Included (-include) before the generated source.
//
// - CUDA qualifiers are defined away; CUPY_FOR is a plain loop over all elements.
// - CArray and CIndexer have CuPy's interfaces (flat and multi-index element access, byte
//   strides); the emulator fills their fields from the arrays' shapes and strides.
// - float16 stores an IEEE half (_Float16) and converts as CuPy's does: implicitly to and from
//   float, explicitly from double and integers through float (__float2half_rn(float(v))), so
//   arithmetic happens in float and every store rounds once.
// - CUDA math functions the C library lacks (normcdff, __expf, rsqrtf ...) are written here.
//   The C library's results can differ from CUDA's by an ulp or so.
#pragma once

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include <type_traits>

#define __device__
#define __host__
#define __global__
#define __forceinline__ inline
#define __noinline__
#define __restrict__ __restrict

#define CUPY_FOR(i, n) for (ptrdiff_t i = 0; i < (n); ++i)

// ---- CUDA math that the C library lacks --------------------------------------------------
inline float normcdff(float x) { return 0.5f * erfcf(-x * 0.7071067811865475f); }
inline double normcdf(double x) { return 0.5 * erfc(-x * 0.7071067811865475244); }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __tanf(float x) { return tanf(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline float __fdividef(float x, float y) { return x / y; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline float __fmaf_rn(float x, float y, float z) { return fmaf(x, y, z); }
// The _rn arithmetic intrinsics round once and are never contracted into an FMA with their
// neighbours: the empty asm keeps the compiler from seeing through the result.
#define TG_EMU_RN(type, name, expr)                   \
  inline type name(type x, type y) {                  \
    type r = (expr);                                  \
    __asm__("" : "+x"(r));                            \
    return r;                                         \
  }
TG_EMU_RN(float, __fadd_rn, x + y)
TG_EMU_RN(float, __fsub_rn, x - y)
TG_EMU_RN(float, __fmul_rn, x * y)
TG_EMU_RN(float, __fdiv_rn, x / y)
TG_EMU_RN(double, __dadd_rn, x + y)
TG_EMU_RN(double, __dsub_rn, x - y)
TG_EMU_RN(double, __dmul_rn, x * y)
TG_EMU_RN(double, __ddiv_rn, x / y)
#undef TG_EMU_RN
inline double __dsqrt_rn(double x) { return sqrt(x); }
inline double __fma_rn(double x, double y, double z) { return fma(x, y, z); }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float exp10f(float x) { return powf(10.0f, x); }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline unsigned int min(unsigned int a, unsigned int b) { return a < b ? a : b; }
inline unsigned int max(unsigned int a, unsigned int b) { return a > b ? a : b; }
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }

// ---- float16 ----------------------------------------------------------------------------
struct __half_raw { unsigned short x; };

class float16 {
 private:
  _Float16 data_;

 public:
  float16() {}
  float16(float v) : data_(static_cast<_Float16>(v)) {}
  explicit float16(bool v) : data_(static_cast<_Float16>(float(v))) {}
  explicit float16(double v) : data_(static_cast<_Float16>(float(v))) {}
  explicit float16(int v) : data_(static_cast<_Float16>(float(v))) {}
  explicit float16(unsigned int v) : data_(static_cast<_Float16>(float(v))) {}
  explicit float16(long long v) : data_(static_cast<_Float16>(float(v))) {}
  explicit float16(unsigned long long v) : data_(static_cast<_Float16>(float(v))) {}
  explicit float16(long v) : data_(static_cast<_Float16>(float(v))) {}
  explicit float16(const __half_raw &v) { __builtin_memcpy(&data_, &v.x, 2); }

  operator float() const { return static_cast<float>(data_); }

  float16 &operator=(const float16 &) = default;
  template <typename T>
  float16 &operator=(const T &rhs) {
    *this = static_cast<float16>(rhs);
    return *this;
  }

  unsigned short to_bits() const {
    unsigned short b;
    __builtin_memcpy(&b, &data_, 2);
    return b;
  }
  static float16 from_bits(unsigned short v) {
    __half_raw r = {v};
    return float16(r);
  }
  int iszero() const { return (to_bits() & 0x7fffu) == 0; }
  int isnan() const { return (to_bits() & 0x7c00u) == 0x7c00u && (to_bits() & 0x03ffu) != 0; }
  int isinf() const { return (to_bits() & 0x7fffu) == 0x7c00u; }
  int isfinite() const { return (to_bits() & 0x7c00u) != 0x7c00u; }
  int signbit() const { return (to_bits() & 0x8000u) != 0; }

  template <typename T> float16 &operator+=(const T &rhs) { return *this = *this + rhs; }
  template <typename T> float16 &operator-=(const T &rhs) { return *this = *this - rhs; }
  template <typename T> float16 &operator*=(const T &rhs) { return *this = *this * rhs; }
  template <typename T> float16 &operator/=(const T &rhs) { return *this = *this / rhs; }
};

inline float16 min(float16 x, float16 y) { return float16(fminf(float(x), float(y))); }
inline float16 max(float16 x, float16 y) { return float16(fmaxf(float(x), float(y))); }
inline float16 fmin(float16 x, float16 y) { return float16(fminf(float(x), float(y))); }
inline float16 fmax(float16 x, float16 y) { return float16(fmaxf(float(x), float(y))); }
inline int iszero(float16 x) { return x.iszero(); }
inline int isnan(float16 x) { return x.isnan(); }
inline int isinf(float16 x) { return x.isinf(); }
inline int isfinite(float16 x) { return x.isfinite(); }
inline int signbit(float16 x) { return x.signbit(); }

// ---- CArray and CIndexer ----------------------------------------------------------------
// Field order is the emulator's calling convention: data, size, shape[], strides[] (bytes).
template <typename T, int ndim, bool c_contiguous = false, bool use_32bit_indexing = false>
class CArray {
 public:
  static const int ndim_ = ndim;
  T *data_;
  ptrdiff_t size_;
  ptrdiff_t shape_[ndim > 0 ? ndim : 1];
  ptrdiff_t strides_[ndim > 0 ? ndim : 1];

  T *data() const { return data_; }
  ptrdiff_t size() const { return size_; }
  const ptrdiff_t *shape() const { return shape_; }
  const ptrdiff_t *strides() const { return strides_; }

  // Element at a multi-index (what the per-element references use).
  T &operator[](const ptrdiff_t *idx) const {
    char *p = reinterpret_cast<char *>(data_);
    for (int d = 0; d < ndim; ++d) p += idx[d] * strides_[d];
    return *reinterpret_cast<T *>(p);
  }
  // Element at a C-order flat index (what a raw parameter's x[i] uses); any integer type,
  // including a literal 0, which would otherwise also match the pointer overload.
  template <typename I, typename = typename std::enable_if<std::is_integral<I>::value>::type>
  T &operator[](I flat) const {
    ptrdiff_t i = static_cast<ptrdiff_t>(flat);
    if (c_contiguous) return data_[i];
    char *p = reinterpret_cast<char *>(data_);
    for (int d = ndim - 1; d >= 0; --d) {
      p += (i % shape_[d]) * strides_[d];
      i /= shape_[d];
    }
    return *reinterpret_cast<T *>(p);
  }
};

template <int ndim, bool use_32bit_indexing = false>
class CIndexer {
 public:
  ptrdiff_t size_;
  ptrdiff_t shape_[ndim > 0 ? ndim : 1];
  ptrdiff_t index_[ndim > 0 ? ndim : 1];

  ptrdiff_t size() const { return size_; }
  const ptrdiff_t *shape() const { return shape_; }
  void set(ptrdiff_t i) {
    for (int d = ndim - 1; d >= 0; --d) {
      index_[d] = i % shape_[d];
      i /= shape_[d];
    }
  }
  const ptrdiff_t *get() const { return index_; }
};
