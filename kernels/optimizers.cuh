// kernels/optimizers.cuh: one optimizer step on one element of a parameter, with PyTorch's
// formulas (torch.optim SGD, Adam/AdamW, RMSprop with centered=False) in PyTorch's order of
// operations. Parameter and state are passed by reference in the compute type: the kernel body
// loads them from storage, calls the step, and stores them back, so float16 state is rounded
// once per step. Conventions are in common.cuh.
//
// Rounding is decided, not left to the compiler: every operation rounds once, in the order the
// NumPy twins (_cpu_kernels.py) compute, so a step agrees with its twin bit for bit (up to
// CuPy's flush of float32 subnormals). Coefficients 1 - beta (1 - alpha, 1 - dampening) arrive
// already computed in double and rounded once to the compute type, as PyTorch passes the
// Python float 1 - beta to its kernels. Products followed by a sum are written with tg_mul,
// which NVRTC never contracts into an FMA: a fused g + wd * p, for one, rounds once where the
// twin rounds twice, and near g = -wd * p the two disagree in every digit.

// SGD without momentum: p -= lr * (g + wd * p).
template <typename R>
__device__ __forceinline__ void tg_sgd_step_(R& p, R g, R lr, R wd) {
    if (wd != R(0)) g += tg_mul(wd, p);  // skipped at wd = 0 as in PyTorch: 0 * inf is NaN
    p -= tg_mul(lr, g);
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
                                                      R one_minus_dampening, R wd,
                                                      bool nesterov, bool first) {
    if (wd != R(0)) g += tg_mul(wd, p);
    buf = first ? g : tg_mul(buf, momentum) + tg_mul(one_minus_dampening, g);
    p -= tg_mul(lr, nesterov ? g + tg_mul(momentum, buf) : buf);
}
__device__ __forceinline__ void tg_sgd_momentum_step(float& p, float g, float& buf, float lr,
                                                     float momentum, float one_minus_dampening,
                                                     float wd, bool nesterov, bool first) {
    tg_sgd_momentum_step_(p, g, buf, lr, momentum, one_minus_dampening, wd, nesterov, first);
}
__device__ __forceinline__ void tg_sgd_momentum_step(double& p, double g, double& buf,
                                                     double lr, double momentum,
                                                     double one_minus_dampening, double wd,
                                                     bool nesterov, bool first) {
    tg_sgd_momentum_step_(p, g, buf, lr, momentum, one_minus_dampening, wd, nesterov, first);
}

// Adam and AdamW: the per-step scalars, computed once per step and parameter by a one-thread
// kernel (tg_adam_scalars) that first increments the step count t on the device, then reads it
// and the learning rate there, so a replayed CUDA graph counts its steps and follows a
// scheduler, and the element kernel does no pow and reads three numbers: step_size =
// lr / (1 - beta1^t), bc2_sqrt = sqrt(1 - beta2^t) and AdamW's decoupled decay 1 - lr * wd (1
// for Adam). All in double, as PyTorch does.
__device__ __forceinline__ double tg_adam_step_size(double lr, double beta1, double t) {
    return lr / (1.0 - pow(beta1, t));
}
__device__ __forceinline__ double tg_adam_bc2_sqrt(double beta2, double t) {
    return sqrt(1.0 - pow(beta2, t));
}
__device__ __forceinline__ double tg_adam_decay(double lr, double wd) {
    return 1.0 - tg_mul(lr, wd);
}

// l2 is Adam's weight decay added to the gradient (0 for AdamW).
template <typename R>
__device__ __forceinline__ void tg_adam_step_(R& p, R g, R& m, R& v, R l2, R decay,
                                              R one_minus_beta1, R beta2, R one_minus_beta2,
                                              R step_size, R bc2_sqrt, R eps) {
    if (l2 != R(0)) g += tg_mul(l2, p);
    p = tg_mul(p, decay);  // rounded before the step below: no FMA across the two
    m += tg_mul(one_minus_beta1, g - m);  // PyTorch's lerp(m, g, 1 - beta1) below weight 0.5
    v = tg_mul(v, beta2) + tg_mul(tg_mul(one_minus_beta2, g), g);
    p -= tg_mul(step_size, m / (tg_sqrt(v) / bc2_sqrt + eps));
}
__device__ __forceinline__ void tg_adam_step(float& p, float g, float& m, float& v, float l2,
                                             float decay, float one_minus_beta1, float beta2,
                                             float one_minus_beta2, float step_size,
                                             float bc2_sqrt, float eps) {
    tg_adam_step_(p, g, m, v, l2, decay, one_minus_beta1, beta2, one_minus_beta2, step_size,
                  bc2_sqrt, eps);
}
__device__ __forceinline__ void tg_adam_step(double& p, double g, double& m, double& v,
                                             double l2, double decay, double one_minus_beta1,
                                             double beta2, double one_minus_beta2,
                                             double step_size, double bc2_sqrt, double eps) {
    tg_adam_step_(p, g, m, v, l2, decay, one_minus_beta1, beta2, one_minus_beta2, step_size,
                  bc2_sqrt, eps);
}

// RMSprop (centered=False) without momentum: p -= lr * g / (sqrt(sq) + eps).
template <typename R>
__device__ __forceinline__ R tg_rmsprop_direction_(R& p, R g, R& sq, R alpha,
                                                   R one_minus_alpha, R eps, R wd) {
    if (wd != R(0)) g += tg_mul(wd, p);
    sq = tg_mul(sq, alpha) + tg_mul(tg_mul(one_minus_alpha, g), g);
    return g / (tg_sqrt(sq) + eps);
}
__device__ __forceinline__ void tg_rmsprop_step(float& p, float g, float& sq, float lr,
                                                float alpha, float one_minus_alpha, float eps,
                                                float wd) {
    p -= tg_mul(lr, tg_rmsprop_direction_(p, g, sq, alpha, one_minus_alpha, eps, wd));
}
__device__ __forceinline__ void tg_rmsprop_step(double& p, double g, double& sq, double lr,
                                                double alpha, double one_minus_alpha,
                                                double eps, double wd) {
    p -= tg_mul(lr, tg_rmsprop_direction_(p, g, sq, alpha, one_minus_alpha, eps, wd));
}

// RMSprop with momentum: buf = momentum * buf + g / (sqrt(sq) + eps); p -= lr * buf.
template <typename R>
__device__ __forceinline__ void tg_rmsprop_momentum_step_(R& p, R g, R& sq, R& buf, R lr,
                                                          R alpha, R one_minus_alpha, R eps,
                                                          R wd, R momentum) {
    buf = tg_mul(buf, momentum) + tg_rmsprop_direction_(p, g, sq, alpha, one_minus_alpha, eps,
                                                        wd);
    p -= tg_mul(lr, buf);
}
__device__ __forceinline__ void tg_rmsprop_momentum_step(float& p, float g, float& sq,
                                                         float& buf, float lr, float alpha,
                                                         float one_minus_alpha, float eps,
                                                         float wd, float momentum) {
    tg_rmsprop_momentum_step_(p, g, sq, buf, lr, alpha, one_minus_alpha, eps, wd, momentum);
}
__device__ __forceinline__ void tg_rmsprop_momentum_step(double& p, double g, double& sq,
                                                         double& buf, double lr, double alpha,
                                                         double one_minus_alpha, double eps,
                                                         double wd, double momentum) {
    tg_rmsprop_momentum_step_(p, g, sq, buf, lr, alpha, one_minus_alpha, eps, wd, momentum);
}
