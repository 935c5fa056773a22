// AVX-512 building blocks shared by the blocked GEMM kernels (gemm_avx512.cc), the small-M
// kernels (gemm_small_m_avx512.cc) and the decode attention (infer/attention_avx512.cc).
// Include only from *_avx512.cc files (compiled with the AVX-512 flags).
#pragma once
#include <immintrin.h>

#include <cstdint>

namespace tinyseek::gemm::avx512 {

// One K step of a 16-lane accumulator: with kPairs (BF16), acc += a.lo·b.lo + a.hi·b.hi per
// lane (vdpbf16ps, a = one BF16 pair of A broadcast); otherwise (FP32) acc += a·b with one
// rounding (FMA). The same instruction in every kernel keeps their bits equal.
template <bool kPairs>
[[gnu::always_inline]] inline __m512 step_fma(__m512 acc, uint32_t a, __m512i b) {
  if constexpr (kPairs) {
    return _mm512_dpbf16_ps(acc, (__m512bh)_mm512_set1_epi32(static_cast<int>(a)), (__m512bh)b);
  } else {
    return _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_set1_epi32(static_cast<int>(a))), _mm512_castsi512_ps(b), acc);
  }
}

// In-register transpose of a 16 x 16 block of 32-bit units (always inlined: as a call, its
// 16 rows went through the stack).
[[gnu::always_inline]] inline void transpose16(__m512i r[16]) {
  __m512i t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  __m512i u[16];  // u[4q + e]: rows 4q..4q+3, element e of each 128-bit lane
  for (int q = 0; q < 4; ++q) {
    u[4 * q + 0] = _mm512_unpacklo_epi64(t[4 * q], t[4 * q + 2]);
    u[4 * q + 1] = _mm512_unpackhi_epi64(t[4 * q], t[4 * q + 2]);
    u[4 * q + 2] = _mm512_unpacklo_epi64(t[4 * q + 1], t[4 * q + 3]);
    u[4 * q + 3] = _mm512_unpackhi_epi64(t[4 * q + 1], t[4 * q + 3]);
  }
  for (int e = 0; e < 4; ++e) {
    const __m512i v_lo = _mm512_shuffle_i32x4(u[e], u[4 + e], 0x88), v_hi = _mm512_shuffle_i32x4(u[e], u[4 + e], 0xDD);
    const __m512i w_lo = _mm512_shuffle_i32x4(u[8 + e], u[12 + e], 0x88);
    const __m512i w_hi = _mm512_shuffle_i32x4(u[8 + e], u[12 + e], 0xDD);
    r[e] = _mm512_shuffle_i32x4(v_lo, w_lo, 0x88);
    r[8 + e] = _mm512_shuffle_i32x4(v_lo, w_lo, 0xDD);
    r[4 + e] = _mm512_shuffle_i32x4(v_hi, w_hi, 0x88);
    r[12 + e] = _mm512_shuffle_i32x4(v_hi, w_hi, 0xDD);
  }
}

}  // namespace tinyseek::gemm::avx512
