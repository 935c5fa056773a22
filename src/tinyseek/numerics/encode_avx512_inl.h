// AVX-512 FP8 encoders shared by the bulk codecs (numerics/codec_avx512.cc) and the
// Linear quantizer (ops/linear_quant_avx512.cc). Include only from *_avx512.cc files (they
// are compiled with the AVX-512 flags). Each mirrors the scalar fp8_encode_t bit for bit:
//  - normal range: round-to-nearest-even on the FP32 bit pattern (add half-ulp-1 plus the
//    kept LSB, shift), then rebias the exponent;
//  - subnormal range: |y| + 2^(emin - M + 23), the FP32 adder rounds to the subnormal
//    quantum with RNE; the difference of bit patterns is the code.
#pragma once
#include <immintrin.h>

#include <cstdint>

#include "tinyseek/numerics/fp8.h"

namespace tinyseek::numerics::avx512 {

// Mask of the first min(left, 16) lanes.
template <class Int>
inline __mmask16 tail_mask(Int left) {
  return left >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << left) - 1u);
}

// 16 floats -> 16 FP8 codes of format F (NaN -> 0x7F, overflow per `ov`).
template <Fp8Format F>
inline __m128i encode16(__m512 y, Overflow ov) {
  constexpr Fp8Traits t = fp8_traits(F);
  constexpr int M = t.man_bits;
  constexpr int S = 23 - M;
  const __m512i bits = _mm512_castps_si512(y);
  const __m512i sign = _mm512_and_si512(_mm512_srli_epi32(bits, 24), _mm512_set1_epi32(0x80));
  const __m512i mag = _mm512_and_si512(bits, _mm512_set1_epi32(0x7FFFFFFF));
  const __mmask16 is_nan = _mm512_cmpgt_epu32_mask(mag, _mm512_set1_epi32(0x7F800000));
  // Normal range: round to nearest even on the bit pattern, then rebias the exponent.
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(mag, S), _mm512_set1_epi32(1));
  const __m512i rounded = _mm512_add_epi32(_mm512_add_epi32(mag, _mm512_set1_epi32((1 << (S - 1)) - 1)), lsb);
  const __m512i code_n = _mm512_sub_epi32(_mm512_srli_epi32(rounded, S), _mm512_set1_epi32((127 - t.bias) << M));
  // Subnormal range |y| < 2^emin: the FP32 adder rounds to the subnormal quantum (RNE).
  const uint32_t min_normal_bits = static_cast<uint32_t>(127 + t.emin) << 23;
  const __mmask16 is_sub = _mm512_cmplt_epu32_mask(mag, _mm512_set1_epi32(static_cast<int>(min_normal_bits)));
  const __m512i magic = _mm512_set1_epi32((127 + t.emin - M + 23) << 23);
  const __m512 sum = _mm512_add_ps(_mm512_castsi512_ps(mag), _mm512_castsi512_ps(magic));
  const __m512i code_s = _mm512_sub_epi32(_mm512_castps_si512(sum), magic);
  __m512i code = _mm512_mask_blend_epi32(is_sub, code_n, code_s);
  // Overflow: finite values rounding past max finite, and +-Inf.
  const __mmask16 ovf = _mm512_cmpgt_epi32_mask(code, _mm512_set1_epi32(t.max_code));
  const int ovf_code = ov == Overflow::Saturate ? t.max_code : (t.has_inf ? 0x7C : 0x7F);
  code = _mm512_mask_mov_epi32(code, ovf, _mm512_set1_epi32(ovf_code));
  code = _mm512_mask_mov_epi32(code, is_nan, _mm512_set1_epi32(0x7F));
  return _mm512_cvtepi32_epi8(_mm512_or_si512(code, sign));
}


// encode16 for quotients y = x / s of a tile with a finite amax under online scaling:
// |y| <= fmax (1 + 2^-23), never NaN or Inf, so the NaN and Inf branches are dropped and
// saturation is one unsigned min (a magnitude past max_code can only come from rounding
// up to the next binade). Same bits as encode16 (Saturate) for every such y; a tile with
// Inf/NaN gets a NaN scale and the caller throws, so its codes are never used.
template <Fp8Format F>
inline __m128i encode16_saturate_finite(__m512 y) {
  constexpr Fp8Traits t = fp8_traits(F);
  constexpr int M = t.man_bits;
  constexpr int S = 23 - M;
  const __m512i bits = _mm512_castps_si512(y);
  const __m512i mag = _mm512_and_si512(bits, _mm512_set1_epi32(0x7FFFFFFF));
  // Normal range, 2 ops fewer than encode16: the rebias (127 - bias) << 23 is a multiple of
  // 2^S, so subtracting it before the shift is subtracting (127 - bias) << M after it, and
  // for normal lanes (mag >= (128 - bias) << 23) nothing borrows; the kept LSB is added by
  // a masked add on a bit test instead of shift + and + add.
  constexpr int kRoundRebias = ((1 << (S - 1)) - 1) - ((127 - t.bias) << 23);
  const __m512i half = _mm512_add_epi32(mag, _mm512_set1_epi32(kRoundRebias));
  const __mmask16 odd = _mm512_test_epi32_mask(mag, _mm512_set1_epi32(1 << S));
  const __m512i code_n = _mm512_srli_epi32(_mm512_mask_add_epi32(half, odd, half, _mm512_set1_epi32(1)), S);
  const uint32_t min_normal_bits = static_cast<uint32_t>(127 + t.emin) << 23;
  const __mmask16 is_sub = _mm512_cmplt_epu32_mask(mag, _mm512_set1_epi32(static_cast<int>(min_normal_bits)));
  const __m512i magic = _mm512_set1_epi32((127 + t.emin - M + 23) << 23);
  const __m512 sum = _mm512_add_ps(_mm512_castsi512_ps(mag), _mm512_castsi512_ps(magic));
  const __m512i code_s = _mm512_sub_epi32(_mm512_castps_si512(sum), magic);
  const __m512i code = _mm512_min_epu32(_mm512_mask_blend_epi32(is_sub, code_n, code_s), _mm512_set1_epi32(t.max_code));
  // sign bit (bits >> 24 & 0x80) | code in one ternary-logic op: (A & C) | B = 0xEC.
  const __m512i signed_code =
      _mm512_ternarylogic_epi32(_mm512_srli_epi32(bits, 24), code, _mm512_set1_epi32(0x80), 0xEC);
  return _mm512_cvtepi32_epi8(signed_code);
}

}  // namespace tinyseek::numerics::avx512
