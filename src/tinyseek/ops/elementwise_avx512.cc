// AVX-512 twins of the elementwise ops whose scalar loops are dominated by std::exp:
// SwiGLU forward/backward and the cross-entropy row kernels. Same formulas and the same
// fixed-order reductions as the scalar code (swiglu.cc, cross_entropy.cc); they differ only
// by the exp approximation (vexp_avx512.h, ≈1 ulp) and FMA rounding. Called only when
// simd_path() says the CPU has AVX-512.
#include <immintrin.h>

#include <cmath>
#include <limits>

#include "tinyseek/ops/elementwise_avx512.h"
#include "tinyseek/ops/kernels.h"
#include "tinyseek/ops/vexp_avx512.h"

namespace tinyseek::ops::detail {

namespace {
inline __mmask16 tail_mask(int64_t left) { return left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1); }
}  // namespace

void swiglu_forward_avx512(float* h, const float* g, const float* u, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = tail_mask(n - i);
    const __m512 gv = _mm512_maskz_loadu_ps(k, g + i), uv = _mm512_maskz_loadu_ps(k, u + i);
    _mm512_mask_storeu_ps(h + i, k, _mm512_mul_ps(_mm512_mul_ps(gv, sigmoid_ps(gv)), uv));
  }
}

void swiglu_backward_avx512(float* dg, float* du, const float* dh, const float* g, const float* u, int64_t n,
                            bool overwrite) {
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = tail_mask(n - i);
    const __m512 gv = _mm512_maskz_loadu_ps(k, g + i), uv = _mm512_maskz_loadu_ps(k, u + i),
                 dhv = _mm512_maskz_loadu_ps(k, dh + i);
    const __m512 s = sigmoid_ps(gv);
    const __m512 silu = _mm512_mul_ps(gv, s);
    // silu'(g) = σ (1 + g (1 − σ))
    const __m512 dsilu = _mm512_mul_ps(s, _mm512_add_ps(one, _mm512_mul_ps(gv, _mm512_sub_ps(one, s))));
    // Overwriting adds to +0 (not a plain store): the bits of += into a zero-filled buffer.
    const __m512 dg0 = overwrite ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(k, dg + i);
    const __m512 du0 = overwrite ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(k, du + i);
    const __m512 dgv = _mm512_add_ps(dg0, _mm512_mul_ps(_mm512_mul_ps(dhv, uv), dsilu));
    const __m512 duv = _mm512_add_ps(du0, _mm512_mul_ps(dhv, silu));
    _mm512_mask_storeu_ps(dg + i, k, dgv);
    _mm512_mask_storeu_ps(du + i, k, duv);
  }
}

float row_logsumexp_avx512(const float* x, int64_t V) {
  __m512 m = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (int64_t j = 0; j < V; j += 16) m = _mm512_mask_max_ps(m, tail_mask(V - j), m, _mm512_maskz_loadu_ps(tail_mask(V - j), x + j));
  const float mx = _mm512_reduce_max_ps(m);
  // Lane l sums elements j ≡ l (mod 16), as the scalar kLanes partials do.
  const __m512 vm = _mm512_set1_ps(mx);
  __m512 acc = _mm512_setzero_ps();
  for (int64_t j = 0; j < V; j += 16) {
    const __mmask16 k = tail_mask(V - j);
    acc = _mm512_add_ps(acc, _mm512_maskz_mov_ps(k, exp_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + j), vm))));
  }
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, acc);
  return mx + std::log(combine_lanes(lanes));
}

void scaled_softmax_row_avx512(float* d, const float* x, int64_t V, float lse, float scale) {
  const __m512 vl = _mm512_set1_ps(lse), vs = _mm512_set1_ps(scale);
  for (int64_t j = 0; j < V; j += 16) {
    const __mmask16 k = tail_mask(V - j);
    _mm512_mask_storeu_ps(d + j, k, _mm512_mul_ps(vs, exp_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + j), vl))));
  }
}

}  // namespace tinyseek::ops::detail
