// kernels/activations.cuh: forward and backward math of the elementwise activations (relu,
// leaky_relu, elu, gelu, gelu with the tanh approximation, silu, sigmoid, tanh, softplus) and
// the fused bias + activation forwards of a linear layer. Conventions are in common.cuh.
//
// Backward functions take what is cheapest to read: the saved output for relu, elu, sigmoid and
// tanh (one read of y and gy, one write of gx), the input where the output does not determine
// the gradient. Kinks follow PyTorch: relu'(0) = 0, leaky_relu'(0) = slope, elu'(0) = alpha.

template <typename R>
__device__ __forceinline__ R tg_relu_(R x) { return x < R(0) ? R(0) : x; }  // NaN stays NaN
__device__ __forceinline__ float tg_relu(float x) { return tg_relu_(x); }
__device__ __forceinline__ double tg_relu(double x) { return tg_relu_(x); }

// `!(y <= 0)` rather than `y > 0`: a NaN input passes its gradient through, as PyTorch.
template <typename R>
__device__ __forceinline__ R tg_relu_grad_(R y, R gy) { return y <= R(0) ? R(0) : gy; }
__device__ __forceinline__ float tg_relu_grad(float y, float gy) { return tg_relu_grad_(y, gy); }
__device__ __forceinline__ double tg_relu_grad(double y, double gy) {
    return tg_relu_grad_(y, gy);
}

template <typename R>
__device__ __forceinline__ R tg_leaky_relu_(R x, R slope) { return x > R(0) ? x : x * slope; }
__device__ __forceinline__ float tg_leaky_relu(float x, float slope) {
    return tg_leaky_relu_(x, slope);
}
__device__ __forceinline__ double tg_leaky_relu(double x, double slope) {
    return tg_leaky_relu_(x, slope);
}

template <typename R>
__device__ __forceinline__ R tg_leaky_relu_grad_(R x, R gy, R slope) {
    return x > R(0) ? gy : gy * slope;
}
__device__ __forceinline__ float tg_leaky_relu_grad(float x, float gy, float slope) {
    return tg_leaky_relu_grad_(x, gy, slope);
}
__device__ __forceinline__ double tg_leaky_relu_grad(double x, double gy, double slope) {
    return tg_leaky_relu_grad_(x, gy, slope);
}

// expm1 only sees min(x, 0), so a large positive x never overflows the unused branch.
__device__ __forceinline__ float tg_elu(float x, float alpha) {
    return x > 0.0f ? x : alpha * expm1f(fminf(x, 0.0f));
}
__device__ __forceinline__ double tg_elu(double x, double alpha) {
    return x > 0.0 ? x : alpha * expm1(fmin(x, 0.0));
}

// From the output: for x <= 0, d/dx alpha*(e^x - 1) = alpha*e^x = y + alpha.
template <typename R>
__device__ __forceinline__ R tg_elu_grad_(R y, R gy, R alpha) {
    return y > R(0) ? gy : gy * (y + alpha);
}
__device__ __forceinline__ float tg_elu_grad(float y, float gy, float alpha) {
    return tg_elu_grad_(y, gy, alpha);
}
__device__ __forceinline__ double tg_elu_grad(double y, double gy, double alpha) {
    return tg_elu_grad_(y, gy, alpha);
}

// gelu(x) = x * Phi(x). normcdf keeps relative accuracy in the lower tail, where PyTorch's
// 0.5 * (1 + erf(x / sqrt 2)) cancels to 0.
__device__ __forceinline__ float tg_gelu(float x) { return x * normcdff(x); }
__device__ __forceinline__ double tg_gelu(double x) { return x * normcdf(x); }

// Phi(x) + x * phi(x). For huge |x|, x*x overflows to inf and exp(-inf) = 0, so the product is
// x * 0 = 0 (x finite): no inf * 0.
__device__ __forceinline__ float tg_gelu_grad(float x, float gy) {
    const float inv_sqrt_2pi = 0.3989422804014327f;
    return gy * (normcdff(x) + x * inv_sqrt_2pi * expf(-0.5f * x * x));
}
__device__ __forceinline__ double tg_gelu_grad(double x, double gy) {
    const double inv_sqrt_2pi = 0.3989422804014327;
    return gy * (normcdf(x) + x * inv_sqrt_2pi * exp(-0.5 * x * x));
}

// PyTorch's approximate='tanh': 0.5 x (1 + tanh(k (x + c x^3))). x is clamped to +-10 inside
// tanh: there tanh is already exactly +-1 in float and double, and x^3 can no longer overflow.
// In the backward the same clamp makes (1 - t^2) * (1 + 3 c x^2) a finite 0, never 0 * inf.
template <typename R>
__device__ __forceinline__ R tg_gelu_tanh_inner_(R xc) {
    const R k = R(0.7978845608028654);  // sqrt(2 / pi)
    const R c = R(0.044715);
    return k * (xc + c * xc * xc * xc);
}
__device__ __forceinline__ float tg_gelu_tanh(float x) {
    float t = tanhf(tg_gelu_tanh_inner_(tg_clamp(x, -10.0f, 10.0f)));
    return 0.5f * x * (1.0f + t);
}
__device__ __forceinline__ double tg_gelu_tanh(double x) {
    double t = tanh(tg_gelu_tanh_inner_(tg_clamp(x, -10.0, 10.0)));
    return 0.5 * x * (1.0 + t);
}

template <typename R>
__device__ __forceinline__ R tg_gelu_tanh_grad_(R xc, R t, R gy) {
    const R k = R(0.7978845608028654);
    const R c3 = R(3 * 0.044715);
    R dinner = k * (R(1) + c3 * xc * xc);
    return gy * (R(0.5) * (R(1) + t) + R(0.5) * xc * (R(1) - t * t) * dinner);
}
__device__ __forceinline__ float tg_gelu_tanh_grad(float x, float gy) {
    float xc = tg_clamp(x, -10.0f, 10.0f);
    return tg_gelu_tanh_grad_(xc, tanhf(tg_gelu_tanh_inner_(xc)), gy);
}
__device__ __forceinline__ double tg_gelu_tanh_grad(double x, double gy) {
    double xc = tg_clamp(x, -10.0, 10.0);
    return tg_gelu_tanh_grad_(xc, tanh(tg_gelu_tanh_inner_(xc)), gy);
}

__device__ __forceinline__ float tg_silu(float x) { return x * tg_logistic(x); }
__device__ __forceinline__ double tg_silu(double x) { return x * tg_logistic(x); }

// s (1 + x (1 - s)): at x = -1000, s = 0 and the bracket is finite, so the product is 0.
template <typename R>
__device__ __forceinline__ R tg_silu_grad_(R x, R s, R gy) {
    return gy * (s * (R(1) + x * (R(1) - s)));
}
__device__ __forceinline__ float tg_silu_grad(float x, float gy) {
    return tg_silu_grad_(x, tg_logistic(x), gy);
}
__device__ __forceinline__ double tg_silu_grad(double x, double gy) {
    return tg_silu_grad_(x, tg_logistic(x), gy);
}

__device__ __forceinline__ float tg_sigmoid(float x) { return tg_logistic(x); }
__device__ __forceinline__ double tg_sigmoid(double x) { return tg_logistic(x); }

template <typename R>
__device__ __forceinline__ R tg_sigmoid_grad_(R y, R gy) { return gy * (y * (R(1) - y)); }
__device__ __forceinline__ float tg_sigmoid_grad(float y, float gy) {
    return tg_sigmoid_grad_(y, gy);
}
__device__ __forceinline__ double tg_sigmoid_grad(double y, double gy) {
    return tg_sigmoid_grad_(y, gy);
}

__device__ __forceinline__ float tg_tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double tg_tanh(double x) { return tanh(x); }

template <typename R>
__device__ __forceinline__ R tg_tanh_grad_(R y, R gy) { return gy * (R(1) - y * y); }
__device__ __forceinline__ float tg_tanh_grad(float y, float gy) { return tg_tanh_grad_(y, gy); }
__device__ __forceinline__ double tg_tanh_grad(double y, double gy) {
    return tg_tanh_grad_(y, gy);
}

// PyTorch's softplus: x where beta*x > threshold, else log(1 + exp(beta*x)) / beta, here in
// the overflow-free form, so a large threshold cannot produce inf.
template <typename R>
__device__ __forceinline__ R tg_softplus_(R x, R beta, R threshold) {
    R bx = beta * x;
    return bx > threshold ? x : tg_log1pexp(bx) / beta;
}
__device__ __forceinline__ float tg_softplus(float x, float beta, float threshold) {
    return tg_softplus_(x, beta, threshold);
}
__device__ __forceinline__ double tg_softplus(double x, double beta, double threshold) {
    return tg_softplus_(x, beta, threshold);
}

template <typename R>
__device__ __forceinline__ R tg_softplus_grad_(R x, R gy, R beta, R threshold) {
    R bx = beta * x;
    return bx > threshold ? gy : gy * tg_logistic(bx);
}
__device__ __forceinline__ float tg_softplus_grad(float x, float gy, float beta, float threshold) {
    return tg_softplus_grad_(x, gy, beta, threshold);
}
__device__ __forceinline__ double tg_softplus_grad(double x, double gy, double beta,
                                                   double threshold) {
    return tg_softplus_grad_(x, gy, beta, threshold);
}

// Fused z + b and activation for a linear layer: the sum is never stored, and each backward
// reads only the output (tg_relu_grad, tg_sigmoid_grad, tg_tanh_grad).
__device__ __forceinline__ float tg_bias_relu(float z, float b) { return tg_relu(z + b); }
__device__ __forceinline__ double tg_bias_relu(double z, double b) { return tg_relu(z + b); }
__device__ __forceinline__ float tg_bias_sigmoid(float z, float b) { return tg_logistic(z + b); }
__device__ __forceinline__ double tg_bias_sigmoid(double z, double b) {
    return tg_logistic(z + b);
}
__device__ __forceinline__ float tg_bias_tanh(float z, float b) { return tanhf(z + b); }
__device__ __forceinline__ double tg_bias_tanh(double z, double b) { return tanh(z + b); }
