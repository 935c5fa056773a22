// AVX-512 AdamW chunk kernels: one fused pass (load g, m, v, p; store m, v, p), 16
// elements per iteration, tail by mask. Same operation order as the portable loops in
// adamw.cc (no FMA: -ffp-contract=off), so the bits agree (tests/train/adamw_test.cc).
#include <immintrin.h>

#include "tinyseek/train/adamw_kernel.h"

namespace tinyseek::train::detail {
namespace {

inline __mmask16 tail_mask(size_t left) {
  return left >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << left) - 1);
}

// FP32 → BF16 round-to-nearest-even, NaN kept quiet with its sign (numerics/bf16.h rules),
// as 32-bit lanes holding the 16-bit pattern.
inline __m512i bf16_rne(__m512 x) {
  const __m512i b = _mm512_castps_si512(x);
  const __m512i mag = _mm512_and_si512(b, _mm512_set1_epi32(0x7FFFFFFF));
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(mag, _mm512_set1_epi32(0x7F800000));
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(b, 16), _mm512_set1_epi32(1));
  const __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(b, _mm512_set1_epi32(0x7FFF)), lsb), 16);
  return _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(_mm512_srli_epi32(b, 16), _mm512_set1_epi32(0x40)));
}
inline __m512 bf16_lanes_to_f32(__m512i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(h, 16)); }

struct Vc {
  __m512 beta1, omb1, beta2, omb2, eps, decay_mul, neg_step, bc2s, scale;
  explicit Vc(const AdamWCoeffs& c)
      : beta1(_mm512_set1_ps(c.beta1)), omb1(_mm512_set1_ps(c.one_minus_beta1)), beta2(_mm512_set1_ps(c.beta2)),
        omb2(_mm512_set1_ps(c.one_minus_beta2)), eps(_mm512_set1_ps(c.eps)), decay_mul(_mm512_set1_ps(c.decay_mul)),
        neg_step(_mm512_set1_ps(c.neg_step_size)), bc2s(_mm512_set1_ps(c.bc2_sqrt)), scale(_mm512_set1_ps(c.grad_scale)) {}
};

inline void moments(const Vc& k, __m512 g_raw, __m512* m, __m512* v) {
  const __m512 g = _mm512_mul_ps(g_raw, k.scale);
  *m = _mm512_add_ps(_mm512_mul_ps(*m, k.beta1), _mm512_mul_ps(k.omb1, g));
  *v = _mm512_add_ps(_mm512_mul_ps(*v, k.beta2), _mm512_mul_ps(_mm512_mul_ps(k.omb2, g), g));
}

template <bool kDecay>
inline __m512 param(const Vc& k, __m512 p, __m512 m, __m512 v) {
  if constexpr (kDecay) p = _mm512_mul_ps(p, k.decay_mul);
  const __m512 denom = _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(v), k.bc2s), k.eps);
  return _mm512_add_ps(p, _mm512_div_ps(_mm512_mul_ps(k.neg_step, m), denom));
}

template <bool kDecay>
void fp32(float* p, const float* g, float* m, float* v, size_t n, const AdamWCoeffs& c) {
  const Vc k(c);
  for (size_t i = 0; i < n; i += 16) {
    const __mmask16 t = tail_mask(n - i);
    __m512 mi = _mm512_maskz_loadu_ps(t, m + i), vi = _mm512_maskz_loadu_ps(t, v + i);
    moments(k, _mm512_maskz_loadu_ps(t, g + i), &mi, &vi);
    _mm512_mask_storeu_ps(m + i, t, mi);
    _mm512_mask_storeu_ps(v + i, t, vi);
    _mm512_mask_storeu_ps(p + i, t, param<kDecay>(k, _mm512_maskz_loadu_ps(t, p + i), mi, vi));
  }
}

template <bool kDecay>
void bf16(float* p, const float* g, uint16_t* m, uint16_t* v, size_t n, const AdamWCoeffs& c) {
  const Vc k(c);
  for (size_t i = 0; i < n; i += 16) {
    const __mmask16 t = tail_mask(n - i);
    __m512 mi = bf16_lanes_to_f32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(t, m + i)));
    __m512 vi = bf16_lanes_to_f32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(t, v + i)));
    moments(k, _mm512_maskz_loadu_ps(t, g + i), &mi, &vi);
    const __m512i mh = bf16_rne(mi), vh = bf16_rne(vi);
    _mm256_mask_storeu_epi16(m + i, t, _mm512_cvtepi32_epi16(mh));
    _mm256_mask_storeu_epi16(v + i, t, _mm512_cvtepi32_epi16(vh));
    // The parameter update sees the stored (rounded) moments.
    const __m512 pi = param<kDecay>(k, _mm512_maskz_loadu_ps(t, p + i), bf16_lanes_to_f32(mh), bf16_lanes_to_f32(vh));
    _mm512_mask_storeu_ps(p + i, t, pi);
  }
}

}  // namespace

void adamw_chunk_fp32_avx512(float* p, const float* g, float* m, float* v, size_t n, bool decay,
                             const AdamWCoeffs& c) {
  decay ? fp32<true>(p, g, m, v, n, c) : fp32<false>(p, g, m, v, n, c);
}

void adamw_chunk_bf16_avx512(float* p, const float* g, uint16_t* m, uint16_t* v, size_t n, bool decay,
                             const AdamWCoeffs& c) {
  decay ? bf16<true>(p, g, m, v, n, c) : bf16<false>(p, g, m, v, n, c);
}

}  // namespace tinyseek::train::detail
