#include "tinyseek/ops/linear_quant.h"

#include <algorithm>
#include <cmath>

#include "tinyseek/base/check.h"
#include "tinyseek/base/parallel.h"
#include "tinyseek/numerics/bf16.h"
#include "tinyseek/numerics/simd.h"

namespace tinyseek::ops {

using numerics::Granularity;
using numerics::QTensor;
using numerics::QuantSpec;

namespace {

// ~64K floats per parallel chunk: one 128-row block of a 512-wide operand, small enough to
// stay in L2 between the amax and encode sweeps.
constexpr int64_t kChunkElements = 65536;

[[noreturn]] void throw_bad_tile(const QTensor& q, int64_t slot) {
  TS_FAIL("the " << numerics::to_string(q.granularity) << " tile at tile row " << slot / q.grid.grid_cols
          << ", tile col " << slot % q.grid.grid_cols << " (scale slot " << slot
          << ") contains Inf or NaN, so it has no finite amax",
          "the input diverged; check the producer of this tensor (learning rate, overflow upstream)");
}

void check_scales(const QTensor* q) {
  if (q == nullptr) return;
  for (int64_t s = 0; s < q->grid.count(); ++s)
    if (std::isnan(q->scales[s])) throw_bad_tile(*q, s);
}

}  // namespace

void shape_qtensor(QTensor& q, int64_t rows, int64_t cols, const QuantSpec& spec) {
  q.format = spec.format;
  q.granularity = spec.granularity;
  q.rows = rows;
  q.cols = cols;
  q.grid = numerics::make_scale_grid(spec.granularity, rows, cols);
  const size_t codes = static_cast<size_t>(rows * cols), scales = static_cast<size_t>(q.grid.count());
  if (q.codes.size() < codes) q.codes.resize(codes);
  if (q.scales.size() < scales) q.scales.resize(scales);
}

void quantize_tiles(QTensor* q1x128, QTensor* q128x1, const float* x, int64_t rows, int64_t cols,
                    const QuantSpec& spec) {
  if (q1x128 == nullptr && q128x1 == nullptr) return;
  QuantSpec row_spec = spec, col_spec = spec;
  row_spec.granularity = Granularity::Tile1x128;
  col_spec.granularity = Granularity::Tile128x1;
  if (simd_path() != SimdPath::Avx512Bf16) {
    if (q1x128) numerics::quantize(*q1x128, x, rows, cols, cols, row_spec);
    if (q128x1) numerics::quantize(*q128x1, x, rows, cols, cols, col_spec);
    return;
  }
  TS_CHECK(rows > 0 && cols > 0 && x != nullptr,
           "cannot quantize a [" << rows << ", " << cols << "] matrix" << (x ? "" : " (null input)"),
           "rows and cols must both be positive");
  (void)numerics::scale_from_amax(0.0f, spec);  // validates amax_floor before the parallel region
  if (q1x128) shape_qtensor(*q1x128, rows, cols, row_spec);
  if (q128x1) shape_qtensor(*q128x1, rows, cols, col_spec);
  const int64_t blocks = (rows + 127) / 128;
  const int64_t grain = std::max<int64_t>(1, kChunkElements / (128 * cols));
  parallel_ranges(blocks, grain, [&](int64_t b0, int64_t b1) {
    detail::quantize_tiles_blocks_avx512(q1x128, q128x1, x, rows, cols, spec, b0, b1);
  });
  check_scales(q1x128);
  check_scales(q128x1);
}

void quantize_blocks128(QTensor& q, const float* x, int64_t rows, int64_t cols, const QuantSpec& spec) {
  QuantSpec block_spec = spec;
  block_spec.granularity = Granularity::Block128x128;
  if (simd_path() != SimdPath::Avx512Bf16) return numerics::quantize(q, x, rows, cols, cols, block_spec);
  TS_CHECK(rows > 0 && cols > 0 && x != nullptr,
           "cannot quantize a [" << rows << ", " << cols << "] matrix" << (x ? "" : " (null input)"),
           "rows and cols must both be positive");
  (void)numerics::scale_from_amax(0.0f, spec);  // validates amax_floor before the parallel region
  shape_qtensor(q, rows, cols, block_spec);
  // One block (16K elements) per chunk: weights are few blocks (a 512x512 W is 16), and
  // column-major order gives each thread whole block columns, so the rows of a short last
  // tile row are spread evenly.
  parallel_ranges(q.grid.count(), 1, [&](int64_t k0, int64_t k1) {
    detail::quantize_blocks128_avx512(q, x, block_spec, k0, k1);
  });
  check_scales(&q);
}

void bf16_encode_parallel(uint16_t* out, const float* in, size_t n) {
  constexpr int64_t kGrain = 65536;
  if (static_cast<int64_t>(n) <= kGrain) return numerics::bf16_encode_bulk(out, in, n);
  parallel_ranges(static_cast<int64_t>(n), kGrain, [&](int64_t b, int64_t e) {
    numerics::bf16_encode_bulk(out + b, in + b, static_cast<size_t>(e - b));
  });
}

}  // namespace tinyseek::ops
