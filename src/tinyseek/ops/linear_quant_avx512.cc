// AVX-512 kernel of ops::quantize_tiles (see linear_quant.h): per 128-row block, one sweep
// over the rows takes each row's 1x128 tile amaxes and the block's 128x1 column amaxes from
// the same loads and writes the row's 1x128 codes from L1; a second sweep writes the 128x1
// codes from the block while it is still in L2. Codes are encode(x / scale) with the IEEE
// division (measured on Zen 5: cheaper than x · (1/scale) plus the check that would keep
// it exact near FP8 rounding ties; the encoder's integer ops, not the divider, bound the
// loops).
#include <immintrin.h>

#include <algorithm>
#include <bit>

#include "tinyseek/base/aligned.h"
#include "tinyseek/numerics/encode_avx512_inl.h"
#include "tinyseek/numerics/fp8.h"
#include "tinyseek/ops/linear_quant.h"

namespace tinyseek::ops::detail {

namespace {

using numerics::Fp8Format;
using numerics::Fp8Traits;
using numerics::Overflow;
using numerics::avx512::encode16;
using numerics::avx512::encode16_saturate_finite;
using numerics::avx512::tail_mask;

inline __m512i abs_bits(__m512 v) { return _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7FFFFFFF)); }

// The code of one quotient y = x / s: the lean encoder for Saturate, the codec's otherwise.
template <Fp8Format F, bool kSaturate>
inline __m128i encode_quotient(__m512 y) {
  if constexpr (kSaturate) return encode16_saturate_finite<F>(y);
  else return encode16<F>(y, Overflow::NonSaturate);
}

// Full vectors use plain loads and stores (no per-iteration masks); the ragged end of a
// tile or row uses masked ones.
template <bool kCol>
inline __m512i amax_step(__m512i acc, __m512 v, int32_t* cb) {
  const __m512i a = abs_bits(v);
  if constexpr (kCol) _mm512_store_si512(cb, _mm512_max_epi32(_mm512_load_si512(cb), a));
  return _mm512_max_epi32(acc, a);
}

// The block's rows [r0, r1): kRow: 1x128 amaxes, scales and codes into qr; kCol: column
// amaxes into cb (the caller turns them into 128x1 scales and codes).
template <Fp8Format F, bool kSaturate, bool kRow, bool kCol>
void sweep_rows(numerics::QTensor* qr, int32_t* cb, int32_t* tile_bits, const float* x, int64_t r0, int64_t r1,
                int64_t cols, const numerics::QuantSpec& spec) {
  const int64_t row_tiles = (cols + 127) / 128;
  for (int64_t i = r0; i < r1; ++i) {
    const float* xr = x + i * cols;
    // The row's tile amaxes (and column amaxes) from one read of the row...
    for (int64_t t = 0, j0 = 0; t < row_tiles; ++t, j0 += 128) {
      const int64_t j1 = std::min(cols, j0 + 128);
      __m512i acc0 = _mm512_setzero_si512(), acc1 = _mm512_setzero_si512();
      int64_t j = j0;
      for (; j + 32 <= j1; j += 32) {
        acc0 = amax_step<kCol>(acc0, _mm512_loadu_ps(xr + j), cb + j);
        acc1 = amax_step<kCol>(acc1, _mm512_loadu_ps(xr + j + 16), cb + j + 16);
      }
      for (; j < j1; j += 16) acc0 = amax_step<kCol>(acc0, _mm512_maskz_loadu_ps(tail_mask(j1 - j), xr + j), cb + j);
      if constexpr (kRow) tile_bits[t] = _mm512_reduce_max_epi32(_mm512_max_epi32(acc0, acc1));
    }
    if constexpr (!kRow) continue;
    // ...then its codes from L1, all tile scales first so their divisions overlap.
    float* scales = qr->scales.data() + i * row_tiles;
    for (int64_t t = 0; t < row_tiles; ++t) scales[t] = tile_scale(std::bit_cast<float>(tile_bits[t]), spec);
    uint8_t* cr = qr->codes.data() + i * cols;
    for (int64_t t = 0, j0 = 0; t < row_tiles; ++t, j0 += 128) {
      const __m512 s = _mm512_set1_ps(scales[t]);
      const int64_t j1 = std::min(cols, j0 + 128);
      int64_t j = j0;
      for (; j + 16 <= j1; j += 16)
        _mm_storeu_si128(reinterpret_cast<__m128i*>(cr + j),
                         encode_quotient<F, kSaturate>(_mm512_div_ps(_mm512_loadu_ps(xr + j), s)));
      if (j < j1) {
        const __mmask16 m = tail_mask(j1 - j);
        const __m512 y = _mm512_maskz_div_ps(m, _mm512_maskz_loadu_ps(m, xr + j), s);
        _mm_mask_storeu_epi8(cr + j, m, encode_quotient<F, kSaturate>(y));
      }
    }
  }
}

// 128x1 codes of rows [r0, r1) with one scale per column.
template <Fp8Format F, bool kSaturate>
void encode_cols(uint8_t* codes, const float* col_scales, const float* x, int64_t r0, int64_t r1, int64_t cols) {
  for (int64_t i = r0; i < r1; ++i) {
    const float* xr = x + i * cols;
    uint8_t* cc = codes + i * cols;
    int64_t j = 0;
    for (; j + 16 <= cols; j += 16) {
      const __m512 y = _mm512_div_ps(_mm512_loadu_ps(xr + j), _mm512_loadu_ps(col_scales + j));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(cc + j), encode_quotient<F, kSaturate>(y));
    }
    if (j < cols) {
      const __mmask16 m = tail_mask(cols - j);
      const __m512 y =
          _mm512_maskz_div_ps(m, _mm512_maskz_loadu_ps(m, xr + j), _mm512_maskz_loadu_ps(m, col_scales + j));
      _mm_mask_storeu_epi8(cc + j, m, encode_quotient<F, kSaturate>(y));
    }
  }
}

template <Fp8Format F, bool kSaturate, bool kRow, bool kCol>
void blocks(numerics::QTensor* qr, numerics::QTensor* qc, const float* x, int64_t rows, int64_t cols,
            const numerics::QuantSpec& spec, int64_t b0, int64_t b1) {
  // Per-thread scratch, grown and never shrunk: the block's column amax bit patterns (cols
  // rounded up to whole vectors) and one row's 1x128 tile amaxes.
  thread_local AlignedBuffer<int32_t> col_bits, row_bits;
  const int64_t padded = (cols + 15) / 16 * 16, row_tiles = (cols + 127) / 128;
  if (kCol && col_bits.size() < static_cast<size_t>(padded)) col_bits.resize(static_cast<size_t>(padded));
  if (row_bits.size() < static_cast<size_t>(row_tiles)) row_bits.resize(static_cast<size_t>(row_tiles));
  for (int64_t b = b0; b < b1; ++b) {
    const int64_t r0 = b * 128, r1 = std::min(rows, r0 + 128);
    // Sweep 1, row by row (integer max of |x| bit patterns: exact and order-free): the
    // 1x128 grid entirely, and the block's column amaxes from the same loads.
    if (kCol) std::fill(col_bits.begin(), col_bits.begin() + padded, 0);
    sweep_rows<F, kSaturate, kRow, kCol>(qr, col_bits.data(), row_bits.data(), x, r0, r1, cols, spec);
    if constexpr (kCol) {
      // Sweep 2: the 128x1 grid, from the block still in L2.
      float* col_scales = qc->scales.data() + b * cols;
      for (int64_t j = 0; j < cols; ++j) col_scales[j] = tile_scale(std::bit_cast<float>(col_bits[j]), spec);
      encode_cols<F, kSaturate>(qc->codes.data(), col_scales, x, r0, r1, cols);
    }
  }
}

template <Fp8Format F, bool kSaturate>
void dispatch_grids(numerics::QTensor* qr, numerics::QTensor* qc, const float* x, int64_t rows, int64_t cols,
                    const numerics::QuantSpec& spec, int64_t b0, int64_t b1) {
  if (qr && qc) blocks<F, kSaturate, true, true>(qr, qc, x, rows, cols, spec, b0, b1);
  else if (qr) blocks<F, kSaturate, true, false>(qr, qc, x, rows, cols, spec, b0, b1);
  else blocks<F, kSaturate, false, true>(qr, qc, x, rows, cols, spec, b0, b1);
}

// GCC 12 reports the self-initialised _mm512_undefined_* inside the max/extract intrinsics
// as uninitialised once this function's accumulator array is inlined (a false positive).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
// One 128x128 block (rows [r0, r1), columns [c0, c1)) of a Block128x128 tensor: the
// block's amax from one sweep (an integer max per column lane, reduced once), its scale,
// then its codes from the block still in L1/L2 (64 KiB of floats at most).
template <Fp8Format F, bool kSaturate>
void weight_block(numerics::QTensor& q, const float* x, int64_t cols, int64_t r0, int64_t r1, int64_t c0, int64_t c1,
                  int64_t slot, const numerics::QuantSpec& spec) {
  const int64_t w = c1 - c0, full = w / 16 * 16;
  const __mmask16 tail = tail_mask(w - full);
  __m512i acc[8];
  for (int v = 0; v < 8; ++v) acc[v] = _mm512_setzero_si512();
  for (int64_t i = r0; i < r1; ++i) {
    const float* xr = x + i * cols + c0;
    if (full == 128) {
#pragma GCC unroll 8
      for (int v = 0; v < 8; ++v) acc[v] = _mm512_max_epi32(acc[v], abs_bits(_mm512_loadu_ps(xr + 16 * v)));
      continue;
    }
    int64_t j = 0;
    for (; j < full; j += 16) acc[(j >> 4) & 7] = _mm512_max_epi32(acc[(j >> 4) & 7], abs_bits(_mm512_loadu_ps(xr + j)));
    if (j < w) acc[7] = _mm512_max_epi32(acc[7], abs_bits(_mm512_maskz_loadu_ps(tail, xr + j)));
  }
  const __m512i m = _mm512_max_epi32(_mm512_max_epi32(_mm512_max_epi32(acc[0], acc[1]), _mm512_max_epi32(acc[2], acc[3])),
                                     _mm512_max_epi32(_mm512_max_epi32(acc[4], acc[5]), _mm512_max_epi32(acc[6], acc[7])));
  const float scale = tile_scale(std::bit_cast<float>(_mm512_reduce_max_epi32(m)), spec);
  q.scales[static_cast<size_t>(slot)] = scale;
  const __m512 s = _mm512_set1_ps(scale);
  for (int64_t i = r0; i < r1; ++i) {
    const float* xr = x + i * cols + c0;
    uint8_t* cr = q.codes.data() + i * cols + c0;
    int64_t j = 0;
    for (; j < full; j += 16)
      _mm_storeu_si128(reinterpret_cast<__m128i*>(cr + j),
                       encode_quotient<F, kSaturate>(_mm512_div_ps(_mm512_loadu_ps(xr + j), s)));
    if (j < w)
      _mm_mask_storeu_epi8(cr + j, tail,
                           encode_quotient<F, kSaturate>(_mm512_maskz_div_ps(tail, _mm512_maskz_loadu_ps(tail, xr + j), s)));
  }
}

#pragma GCC diagnostic pop

template <Fp8Format F, bool kSaturate>
void weight_blocks(numerics::QTensor& q, const float* x, const numerics::QuantSpec& spec, int64_t k0, int64_t k1) {
  const numerics::ScaleGrid& g = q.grid;
  for (int64_t k = k0; k < k1; ++k) {
    // Column-major block order (see quantize_blocks128): k = tc * grid_rows + tr.
    const int64_t tc = k / g.grid_rows, tr = k % g.grid_rows;
    const int64_t r0 = tr * 128, c0 = tc * 128;
    weight_block<F, kSaturate>(q, x, q.cols, r0, std::min(q.rows, r0 + 128), c0, std::min(q.cols, c0 + 128),
                               tr * g.grid_cols + tc, spec);
  }
}

}  // namespace

void quantize_tiles_blocks_avx512(numerics::QTensor* q1x128, numerics::QTensor* q128x1, const float* x, int64_t rows,
                                  int64_t cols, const numerics::QuantSpec& spec, int64_t b0, int64_t b1) {
  const bool sat = spec.overflow == Overflow::Saturate;
  if (spec.format == Fp8Format::E4M3) {
    if (sat) dispatch_grids<Fp8Format::E4M3, true>(q1x128, q128x1, x, rows, cols, spec, b0, b1);
    else dispatch_grids<Fp8Format::E4M3, false>(q1x128, q128x1, x, rows, cols, spec, b0, b1);
  } else {
    if (sat) dispatch_grids<Fp8Format::E5M2, true>(q1x128, q128x1, x, rows, cols, spec, b0, b1);
    else dispatch_grids<Fp8Format::E5M2, false>(q1x128, q128x1, x, rows, cols, spec, b0, b1);
  }
}

void quantize_blocks128_avx512(numerics::QTensor& q, const float* x, const numerics::QuantSpec& spec, int64_t k0,
                               int64_t k1) {
  const bool sat = spec.overflow == Overflow::Saturate;
  if (spec.format == Fp8Format::E4M3) {
    if (sat) weight_blocks<Fp8Format::E4M3, true>(q, x, spec, k0, k1);
    else weight_blocks<Fp8Format::E4M3, false>(q, x, spec, k0, k1);
  } else {
    if (sat) weight_blocks<Fp8Format::E5M2, true>(q, x, spec, k0, k1);
    else weight_blocks<Fp8Format::E5M2, false>(q, x, spec, k0, k1);
  }
}

}  // namespace tinyseek::ops::detail
