// Fast quantizers for the operands of ops/linear (the fp8 recipe's activation and gradient
// grids) and a thread-parallel BF16 conversion. Each gives exactly the bits of the numerics
// library's general quantizer (numerics::quantize, itself tested against the scalar oracle
// numerics::quantize_reference), for any thread count and SIMD path.
//
// quantize_tiles: online-scaled FP8 quantization of one FP32 matrix x [rows, cols] on the
// 1x128 grid (per row, per 128 columns: Fprop X, Dgrad dY) and/or the 128x1 grid (per 128
// rows, per column: Wgrad dY and X) in ONE pass over x per 128-row block: the block's row-tile
// and column amaxes are taken in one sweep while the block (<= 128 x cols floats) stays in L2,
// then both code arrays are written from that same cached block. Dgrad and Wgrad need both
// grids of dY, and an FP8 activation cache both of X, so each matrix is read from memory once
// instead of four times (two amax and two encode passes of the general quantizer).
// AVX-512 kernel: integer max on |x| bit patterns (exact and order-free, NaN sorts above
// Inf like the general quantizer), x / scale by vdivps (IEEE division: the same quotient
// as the scalar x / s), and the codec's bit-pattern RNE encoder. Portable path (no AVX-512
// or TINYSEEK_SIMD=portable): numerics::quantize once per grid.
//
// Scale rule, per quant.h: amax == 0 -> scale 1; else a = max(amax, amax_floor), scale =
// a / fmax (ScaleType::Fp32) or the smallest power of two >= a / fmax (Pow2). Inf/NaN in a
// tile: tinyseek::Error naming the tile, as numerics::quantize.
#pragma once
#include <cstddef>
#include <cstdint>
#include <algorithm>
#include <limits>

#include "tinyseek/numerics/formats.h"
#include "tinyseek/numerics/quant.h"

namespace tinyseek::ops {

// Sets q's shape and grid for x [rows, cols] under spec (format, granularity) and makes its
// buffers hold at least rows * cols codes and grid.count() scales. Buffers only grow, so
// a scratch tensor reused for operands of varying row counts (MoE experts) allocates
// nothing in steady state; codes and scales are read through rows/cols/grid, never size().
void shape_qtensor(numerics::QTensor& q, int64_t rows, int64_t cols, const numerics::QuantSpec& spec);

// Quantizes x [rows, cols] (ld = cols) into q1x128 (Granularity::Tile1x128) and/or q128x1
// (Granularity::Tile128x1); either may be null. spec.granularity is ignored; online
// scaling only (delayed scaling goes through numerics::quantize with its amax override).
void quantize_tiles(numerics::QTensor* q1x128, numerics::QTensor* q128x1, const float* x, int64_t rows, int64_t cols,
                    const numerics::QuantSpec& spec);

// Quantizes W [rows, cols] (ld = cols) on the 128x128 block grid (Granularity::Block128x128,
// the fp8 recipe's weights, once per optimizer step) with online scaling: per block one
// amax sweep and one encode sweep while the block (<= 64 KiB) is in cache, blocks split over
// threads in column-major order (so a short last tile row does not land on one thread).
// The bits of numerics::quantize; spec.granularity is ignored. Portable path (no AVX-512 or
// TINYSEEK_SIMD=portable): numerics::quantize.
void quantize_blocks128(numerics::QTensor& q, const float* x, int64_t rows, int64_t cols,
                        const numerics::QuantSpec& spec);

// out[i] = bf16(in[i]) (RNE, NonSaturate), split over threads in fixed 64K-element chunks:
// elementwise, so the bits never depend on the split.
void bf16_encode_parallel(uint16_t* out, const float* in, size_t n);

namespace detail {
// AVX-512 kernel of quantize_tiles (linear_quant_avx512.cc) for the 128-row blocks
// [b0, b1) of x; q1x128 / q128x1 already shaped, scale_floor validated. Writes NaN scales
// for tiles without a finite amax (the caller reports them). Call only when simd_path()
// is Avx512Bf16.
void quantize_tiles_blocks_avx512(numerics::QTensor* q1x128, numerics::QTensor* q128x1, const float* x, int64_t rows,
                                  int64_t cols, const numerics::QuantSpec& spec, int64_t b0, int64_t b1);
// AVX-512 kernel of quantize_blocks128 for blocks [k0, k1) in column-major order
// (k = tile col * grid_rows + tile row); q already shaped.
void quantize_blocks128_avx512(numerics::QTensor& q, const float* x, const numerics::QuantSpec& spec, int64_t k0,
                               int64_t k1);
// The scale of one tile from its amax (the rule above), NaN for an amax that is not finite.
inline float tile_scale(float amax, const numerics::QuantSpec& spec) {
  if (!(amax >= 0.0f) || !(amax <= std::numeric_limits<float>::max())) return std::numeric_limits<float>::quiet_NaN();
  if (spec.scale_type == numerics::ScaleType::Pow2) return numerics::scale_from_amax(amax, spec);
  if (amax == 0.0f) return 1.0f;
  return std::max(amax, spec.amax_floor) / numerics::fp8_traits(spec.format).max_finite;
}
}  // namespace detail

}  // namespace tinyseek::ops
