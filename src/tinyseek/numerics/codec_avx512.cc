// AVX-512 bulk codecs. Each mirrors the scalar codec bit for bit (tests compare them on
// every code, every BF16 value and millions of random and boundary floats):
//  - encode, normal range: round-to-nearest-even on the FP32 bit pattern (add half-ulp-1
//    plus the kept LSB, shift), then rebias the exponent;
//  - encode, subnormal range: |y| + 2^(emin - M + 23) — the FP32 adder rounds to the
//    subnormal quantum with RNE; the difference of bit patterns is the code;
//  - decode: place the 7-bit magnitude in an FP32 bit pattern and multiply by the exact
//    power of two that rebiases it (FP32 subnormal intermediates are exact without DAZ).
// Tails use masked loads and stores, so any n works.
#include <immintrin.h>

#include <algorithm>

#include "tinyseek/numerics/codec_avx512.h"
#include "tinyseek/numerics/encode_avx512_inl.h"
#include "tinyseek/numerics/fp8.h"

namespace tinyseek::numerics::avx512 {

namespace {

template <Fp8Format F>
inline __m512i decode16_bits(__m128i codes8) {
  constexpr Fp8Traits t = fp8_traits(F);
  constexpr int M = t.man_bits;
  const __m512i c = _mm512_cvtepu8_epi32(codes8);
  const __m512i mag = _mm512_and_si512(c, _mm512_set1_epi32(0x7F));
  const __m512i sign = _mm512_slli_epi32(_mm512_and_si512(c, _mm512_set1_epi32(0x80)), 24);
  const __m512 placed = _mm512_castsi512_ps(_mm512_slli_epi32(mag, 23 - M));
  const __m512 rebias = _mm512_castsi512_ps(_mm512_set1_epi32((127 + 127 - t.bias) << 23));
  __m512i v = _mm512_castps_si512(_mm512_mul_ps(placed, rebias));
  if constexpr (t.has_inf) {
    const __mmask16 special = _mm512_cmpge_epu32_mask(mag, _mm512_set1_epi32(0x7C));
    const __mmask16 inf = _mm512_cmpeq_epu32_mask(mag, _mm512_set1_epi32(0x7C));
    v = _mm512_mask_mov_epi32(v, special, _mm512_set1_epi32(0x7FC00000));
    v = _mm512_mask_mov_epi32(v, inf, _mm512_set1_epi32(0x7F800000));
  } else {
    const __mmask16 nan = _mm512_cmpeq_epu32_mask(mag, _mm512_set1_epi32(0x7F));
    v = _mm512_mask_mov_epi32(v, nan, _mm512_set1_epi32(0x7FC00000));
  }
  return _mm512_or_si512(v, sign);
}

template <Fp8Format F>
void encode_impl(uint8_t* out, const float* in, size_t n, float s, bool divide, Overflow ov) {
  const __m512 vs = _mm512_set1_ps(s);
  for (size_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    __m512 x = _mm512_maskz_loadu_ps(m, in + i);
    if (divide) x = _mm512_div_ps(x, vs);
    _mm_mask_storeu_epi8(out + i, m, encode16<F>(x, ov));
  }
}

template <Fp8Format F>
void decode_impl(float* out, const uint8_t* in, size_t n) {
  for (size_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    const __m512i v = decode16_bits<F>(_mm_maskz_loadu_epi8(m, in + i));
    _mm512_mask_storeu_ps(out + i, m, _mm512_castsi512_ps(v));
  }
}

template <Fp8Format F>
void to_bf16_impl(uint16_t* out, const uint8_t* in, size_t n) {
  for (size_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    const __m512i v = decode16_bits<F>(_mm_maskz_loadu_epi8(m, in + i));
    _mm256_mask_storeu_epi16(out + i, m, _mm512_cvtepi32_epi16(_mm512_srli_epi32(v, 16)));
  }
}

// Tiles of one row: the FP8 format as a template parameter and the loop over tiles here,
// so a 1x128-tiled row costs one call instead of one dispatch per 128 elements.
template <Fp8Format F>
void encode_tiles_impl(uint8_t* out, const float* in, int64_t n, const float* scales, int64_t tile_cols, Overflow ov) {
  for (int64_t j0 = 0, t = 0; j0 < n; j0 += tile_cols, ++t) {
    const __m512 vs = _mm512_set1_ps(scales[t]);
    const int64_t j1 = std::min(n, j0 + tile_cols);
    int64_t j = j0;
    for (; j + 16 <= j1; j += 16)
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + j), encode16<F>(_mm512_div_ps(_mm512_loadu_ps(in + j), vs), ov));
    if (j < j1) {
      const __mmask16 m = tail_mask(static_cast<size_t>(j1 - j));
      _mm_mask_storeu_epi8(out + j, m, encode16<F>(_mm512_div_ps(_mm512_maskz_loadu_ps(m, in + j), vs), ov));
    }
  }
}

}  // namespace

void amax_bits_rows(int32_t* slot_bits, const float* x, int64_t r0, int64_t r1, int64_t cols, int64_t ld,
                    int64_t tile_cols) {
  const __m512i abs_mask = _mm512_set1_epi32(0x7FFFFFFF);
  if (tile_cols == 1) {  // one slot per column: elementwise max down the rows
    for (int64_t j = 0; j < cols; j += 16) {
      const __mmask16 m = tail_mask(static_cast<size_t>(cols - j));
      __m512i acc = _mm512_maskz_loadu_epi32(m, slot_bits + j);
      for (int64_t i = r0; i < r1; ++i)
        acc = _mm512_max_epi32(acc, _mm512_and_si512(_mm512_maskz_loadu_epi32(m, x + i * ld + j), abs_mask));
      _mm512_mask_storeu_epi32(slot_bits + j, m, acc);
    }
    return;
  }
  // A tile's rows [r0, r1) reduced into 4 accumulators (independent max chains), then one
  // horizontal max per tile.
  for (int64_t j0 = 0, t = 0; j0 < cols; j0 += tile_cols, ++t) {
    const int64_t j1 = std::min(cols, j0 + tile_cols);
    __m512i acc[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512()};
    for (int64_t i = r0; i < r1; ++i) {
      const float* xr = x + i * ld;
      int64_t j = j0;
      for (; j + 64 <= j1; j += 64)
        for (int u = 0; u < 4; ++u)
          acc[u] = _mm512_max_epi32(acc[u], _mm512_and_si512(_mm512_loadu_si512(xr + j + 16 * u), abs_mask));
      for (; j < j1; j += 16) {
        const __mmask16 m = tail_mask(static_cast<size_t>(j1 - j));
        acc[0] = _mm512_max_epi32(acc[0], _mm512_and_si512(_mm512_maskz_loadu_epi32(m, xr + j), abs_mask));
      }
    }
    const __m512i all = _mm512_max_epi32(_mm512_max_epi32(acc[0], acc[1]), _mm512_max_epi32(acc[2], acc[3]));
    slot_bits[t] = std::max(slot_bits[t], _mm512_reduce_max_epi32(all));
  }
}

void fp8_encode_div_tiles(uint8_t* out, const float* in, int64_t n, const float* scales, int64_t tile_cols,
                          Fp8Format f, Overflow ov) {
  if (f == Fp8Format::E4M3) encode_tiles_impl<Fp8Format::E4M3>(out, in, n, scales, tile_cols, ov);
  else encode_tiles_impl<Fp8Format::E5M2>(out, in, n, scales, tile_cols, ov);
}

void fp8_encode_div(uint8_t* out, const float* in, size_t n, float s, bool divide, Fp8Format f, Overflow ov) {
  if (f == Fp8Format::E4M3) encode_impl<Fp8Format::E4M3>(out, in, n, s, divide, ov);
  else encode_impl<Fp8Format::E5M2>(out, in, n, s, divide, ov);
}

void fp8_decode(float* out, const uint8_t* in, size_t n, Fp8Format f) {
  if (f == Fp8Format::E4M3) decode_impl<Fp8Format::E4M3>(out, in, n);
  else decode_impl<Fp8Format::E5M2>(out, in, n);
}

void fp8_to_bf16(uint16_t* out, const uint8_t* in, size_t n, Fp8Format f) {
  if (f == Fp8Format::E4M3) to_bf16_impl<Fp8Format::E4M3>(out, in, n);
  else to_bf16_impl<Fp8Format::E5M2>(out, in, n);
}

void bf16_encode(uint16_t* out, const float* in, size_t n, Overflow ov) {
  const bool sat = ov == Overflow::Saturate;
  for (size_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    const __m512i b = _mm512_castps_si512(_mm512_maskz_loadu_ps(m, in + i));
    const __m512i mag = _mm512_and_si512(b, _mm512_set1_epi32(0x7FFFFFFF));
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(mag, _mm512_set1_epi32(0x7F800000));
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(b, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(b, _mm512_set1_epi32(0x7FFF)), lsb), 16);
    if (sat) {
      const __mmask16 inf = _mm512_cmpeq_epi32_mask(_mm512_and_si512(r, _mm512_set1_epi32(0x7FFF)),
                                                    _mm512_set1_epi32(0x7F80));
      r = _mm512_mask_mov_epi32(r, inf, _mm512_or_si512(_mm512_and_si512(r, _mm512_set1_epi32(0x8000)),
                                                        _mm512_set1_epi32(0x7F7F)));
    }
    r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(_mm512_srli_epi32(b, 16), _mm512_set1_epi32(0x40)));
    _mm256_mask_storeu_epi16(out + i, m, _mm512_cvtepi32_epi16(r));
  }
}

void bf16_decode(float* out, const uint16_t* in, size_t n) {
  for (size_t i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    const __m512i v = _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, in + i)), 16);
    _mm512_mask_storeu_ps(out + i, m, _mm512_castsi512_ps(v));
  }
}

}  // namespace tinyseek::numerics::avx512
