// kernels/optimizers.cuh: one optimizer step on one element of a parameter, with PyTorch's
// formulas (torch.optim SGD, Adam/AdamW, RMSprop with centered=False) in PyTorch's order of
// operations. Parameter and state are passed by reference in the compute type: the kernel body
// loads them from storage, calls the step, and stores them back, so float16 state is rounded
// once per step. Conventions are in common.cuh.

// SGD without momentum: p -= lr * (g + wd * p).
template <typename R>
__device__ __forceinline__ void tg_sgd_step_(R& p, R g, R lr, R wd) {
    if (wd != R(0)) g += wd * p;  // skipped at wd = 0 as in PyTorch: 0 * inf would be NaN
    p -= lr * g;
}
__device__ __forceinline__ void tg_sgd_step(float& p, float g, float lr, float wd) {
    tg_sgd_step_(p, g, lr, wd);
}
__device__ __forceinline__ void tg_sgd_step(double& p, double g, double lr, double wd) {
    tg_sgd_step_(p, g, lr, wd);
}

// SGD with momentum: the first step sets buf = g (PyTorch clones the gradient), later steps
// buf = momentum * buf + (1 - dampening) * g; Nesterov steps along g + momentum * buf.
template <typename R>
__device__ __forceinline__ void tg_sgd_momentum_step_(R& p, R g, R& buf, R lr, R momentum,
                                                      R dampening, R wd, bool nesterov,
                                                      bool first) {
    if (wd != R(0)) g += wd * p;
    buf = first ? g : buf * momentum + (R(1) - dampening) * g;
    p -= lr * (nesterov ? g + momentum * buf : buf);
}
__device__ __forceinline__ void tg_sgd_momentum_step(float& p, float g, float& buf, float lr,
                                                     float momentum, float dampening, float wd,
                                                     bool nesterov, bool first) {
    tg_sgd_momentum_step_(p, g, buf, lr, momentum, dampening, wd, nesterov, first);
}
__device__ __forceinline__ void tg_sgd_momentum_step(double& p, double g, double& buf, double lr,
                                                     double momentum, double dampening,
                                                     double wd, bool nesterov, bool first) {
    tg_sgd_momentum_step_(p, g, buf, lr, momentum, dampening, wd, nesterov, first);
}

// Adam and AdamW. l2 is Adam's weight decay added to the gradient (0 for AdamW); decay is
// AdamW's decoupled factor 1 - lr * wd (1 for Adam). step_size = lr / (1 - beta1^t) and
// bc2_sqrt = sqrt(1 - beta2^t) are computed in double from the step count t, which lives on
// the device (so a replayed CUDA graph counts its steps); PyTorch computes them in double too.
__device__ __forceinline__ double tg_adam_step_size(double lr, double beta1, double t) {
    return lr / (1.0 - pow(beta1, t));
}
__device__ __forceinline__ double tg_adam_bc2_sqrt(double beta2, double t) {
    return sqrt(1.0 - pow(beta2, t));
}

template <typename R>
__device__ __forceinline__ void tg_adam_step_(R& p, R g, R& m, R& v, R l2, R decay, R beta1,
                                              R beta2, R step_size, R bc2_sqrt, R eps) {
    if (l2 != R(0)) g += l2 * p;
    p *= decay;
    m += (R(1) - beta1) * (g - m);  // PyTorch's lerp(m, g, 1 - beta1) for weights below 0.5
    v = v * beta2 + (R(1) - beta2) * g * g;
    p -= step_size * (m / (tg_sqrt(v) / bc2_sqrt + eps));
}
__device__ __forceinline__ void tg_adam_step(float& p, float g, float& m, float& v, float l2,
                                             float decay, float beta1, float beta2,
                                             float step_size, float bc2_sqrt, float eps) {
    tg_adam_step_(p, g, m, v, l2, decay, beta1, beta2, step_size, bc2_sqrt, eps);
}
__device__ __forceinline__ void tg_adam_step(double& p, double g, double& m, double& v,
                                             double l2, double decay, double beta1, double beta2,
                                             double step_size, double bc2_sqrt, double eps) {
    tg_adam_step_(p, g, m, v, l2, decay, beta1, beta2, step_size, bc2_sqrt, eps);
}

// RMSprop (centered=False) without momentum: p -= lr * g / (sqrt(sq) + eps).
template <typename R>
__device__ __forceinline__ R tg_rmsprop_direction_(R& p, R g, R& sq, R alpha, R eps, R wd) {
    if (wd != R(0)) g += wd * p;
    sq = sq * alpha + (R(1) - alpha) * g * g;
    return g / (tg_sqrt(sq) + eps);
}
__device__ __forceinline__ void tg_rmsprop_step(float& p, float g, float& sq, float lr,
                                                float alpha, float eps, float wd) {
    p -= lr * tg_rmsprop_direction_(p, g, sq, alpha, eps, wd);
}
__device__ __forceinline__ void tg_rmsprop_step(double& p, double g, double& sq, double lr,
                                                double alpha, double eps, double wd) {
    p -= lr * tg_rmsprop_direction_(p, g, sq, alpha, eps, wd);
}

// RMSprop with momentum: buf = momentum * buf + g / (sqrt(sq) + eps); p -= lr * buf.
__device__ __forceinline__ void tg_rmsprop_momentum_step(float& p, float g, float& sq,
                                                         float& buf, float lr, float alpha,
                                                         float eps, float wd, float momentum) {
    buf = buf * momentum + tg_rmsprop_direction_(p, g, sq, alpha, eps, wd);
    p -= lr * buf;
}
__device__ __forceinline__ void tg_rmsprop_momentum_step(double& p, double g, double& sq,
                                                         double& buf, double lr, double alpha,
                                                         double eps, double wd,
                                                         double momentum) {
    buf = buf * momentum + tg_rmsprop_direction_(p, g, sq, alpha, eps, wd);
    p -= lr * buf;
}
