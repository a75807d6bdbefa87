// kernels/losses.cuh: the backward of softmax + cross-entropy (class-index targets, no
// ignore_index), fused into one pass: gx = (p - onehot(target)) * scale, where p holds the
// softmax probabilities and scale is gy / N. Conventions are in common.cuh.

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
