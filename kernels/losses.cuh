// kernels/losses.cuh: softmax + cross-entropy with class-index targets, each direction one pass.
// Forward, per row: the loss -logp[target] from the log-probabilities, with PyTorch's
// ignore_index (the row counts 0) and a target outside [0, C) giving NaN. Backward: gx =
// (p - onehot(target)) * scale, where p holds the softmax probabilities and scale is the row's
// gy times its weight (1 / count, or 0 on ignored rows). Conventions are in common.cuh.

// The loss of one row from its picked log-probability: -picked where the target is kept and in
// range, NaN where it is kept but outside [0, C), 0 where it is ignore_index.
template <typename R>
__device__ __forceinline__ R tg_xent_nll_(R picked, bool in_range, bool kept) {
    return kept ? (in_range ? -picked : R(nan(""))) : R(0);
}
__device__ __forceinline__ float tg_xent_nll(float picked, bool in_range, bool kept) {
    return tg_xent_nll_(picked, in_range, kept);
}
__device__ __forceinline__ double tg_xent_nll(double picked, bool in_range, bool kept) {
    return tg_xent_nll_(picked, in_range, kept);
}

template <typename R>
__device__ __forceinline__ R tg_softmax_xent_grad_(R p, bool hit, R scale) {
    return (hit ? p - R(1) : p) * scale;
}
__device__ __forceinline__ float tg_softmax_xent_grad(float p, bool hit, float scale) {
    return tg_softmax_xent_grad_(p, hit, scale);
}
__device__ __forceinline__ double tg_softmax_xent_grad(double p, bool hit, double scale) {
    return tg_softmax_xent_grad_(p, hit, scale);
}
