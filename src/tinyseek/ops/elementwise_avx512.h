// Internal: AVX-512 kernels of swiglu.cc and cross_entropy.cc (elementwise_avx512.cc).
// Call only when simd_path() == SimdPath::Avx512Bf16.
#pragma once
#include <cstdint>

namespace tinyseek::ops::detail {
// h = silu(g)·u over n elements
void swiglu_forward_avx512(float* h, const float* g, const float* u, int64_t n);
// dg += dh·u·silu'(g),  du += dh·silu(g)  (overwrite: added to +0 instead of dg, du)
void swiglu_backward_avx512(float* dg, float* du, const float* dh, const float* g, const float* u, int64_t n,
                            bool overwrite);
// log Σ_j exp(x[j]) over one row of V logits (max-subtracted, 16 fixed-order lane sums)
float row_logsumexp_avx512(const float* x, int64_t V);
// d[j] = scale · exp(x[j] − lse), j < V (may run in place: d == x)
void scaled_softmax_row_avx512(float* d, const float* x, int64_t V, float lse, float scale);
}  // namespace tinyseek::ops::detail
