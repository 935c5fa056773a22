// FP8 quantizers (see quant.h for the scale rules). Two implementations of one rule:
//   quantize_reference: the plain scalar loop, the oracle.
//   quantize:           amax on FP32 bit patterns + the bulk codec (AVX-512 where present),
//                       parallel over row blocks; bit-identical to the oracle for any thread
//                       count and SIMD path (tests/numerics/quant_test.cc checks this).
#include "tinyseek/numerics/quant.h"

#include <algorithm>
#include <bit>
#include <cctype>
#include <cfloat>
#include <cmath>
#include <limits>

#include "tinyseek/base/check.h"
#include "tinyseek/base/parallel.h"
#include "tinyseek/numerics/codec_avx512.h"
#include "tinyseek/numerics/fp8.h"
#include "tinyseek/numerics/simd.h"

namespace tinyseek::numerics {

namespace {

constexpr const char* kGranularityNames[] = {"tensor",    "row",          "col",    "tile1x128",
                                             "tile128x1", "block128x128", "mx1x32", "mx32x1"};
constexpr Granularity kGranularities[] = {Granularity::Tensor,    Granularity::Row,          Granularity::Col,
                                          Granularity::Tile1x128, Granularity::Tile128x1,    Granularity::Block128x128,
                                          Granularity::Mx1x32,    Granularity::Mx32x1};
constexpr const char* kValidGranularities =
    "valid granularities: tensor, row, col, tile1x128, tile128x1, block128x128, mx1x32, mx32x1";

// ~32K elements per parallel chunk: big enough to amortise the OpenMP dispatch, small
// enough that a chunk's input (128 KiB) stays in L2 between the amax and encode passes.
constexpr int64_t kChunkElements = 32768;

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

bool is_mx(Granularity g) { return g == Granularity::Mx1x32 || g == Granularity::Mx32x1; }

// |x| as an int32 bit pattern. For non-negative floats the integer order is the float
// order, and NaN patterns sort above +Inf, so an integer max propagates NaN; integer max
// is exact and order-free, so any split over threads gives the same amax.
inline int32_t abs_bits(float x) { return static_cast<int32_t>(std::bit_cast<uint32_t>(x) & 0x7FFFFFFFu); }

// slot_bits[t] = max(slot_bits[t], |x(i, j)|) over rows [r0, r1), t = j / tile_cols.
void accumulate_amax_rows(int32_t* slot_bits, const float* x, int64_t r0, int64_t r1, int64_t cols, int64_t ld,
                          int64_t tile_cols) {
  // The same integer maxima 16 lanes at a time (this file is built for baseline x86-64,
  // where this loop was 58% of quantizing a 512x256 tensor in 1x128 tiles).
  if (simd_path() == SimdPath::Avx512Bf16) return avx512::amax_bits_rows(slot_bits, x, r0, r1, cols, ld, tile_cols);
  for (int64_t i = r0; i < r1; ++i) {
    const float* xr = x + i * ld;
    if (tile_cols == 1) {  // one slot per column: an elementwise max, vectorises across columns
      for (int64_t j = 0; j < cols; ++j) slot_bits[j] = std::max(slot_bits[j], abs_bits(xr[j]));
      continue;
    }
    for (int64_t j0 = 0, t = 0; j0 < cols; j0 += tile_cols, ++t) {
      const int64_t j1 = std::min(cols, j0 + tile_cols);
      int32_t m = slot_bits[t];
      for (int64_t j = j0; j < j1; ++j) m = std::max(m, abs_bits(xr[j]));
      slot_bits[t] = m;
    }
  }
}

void check_amax_floor(const QuantSpec& spec) {
  const float fmax = fp8_traits(spec.format).max_finite;
  TS_CHECK(std::isfinite(spec.amax_floor) && spec.amax_floor / fmax >= FLT_MIN,
           "amax_floor = " << spec.amax_floor << " would give a subnormal FP32 scale (floor / " << fmax << " < "
                           << FLT_MIN << ")",
           "use amax_floor >= 1e-30 (the default) so every scale is a normal FP32 number");
}

// Smallest power of two s with a <= fmax * s, i.e. 2^ceil(log2(a / fmax)), decided
// exactly: fmax * 2^e is exact in double, so the comparisons have no rounding (log2 in
// float would round a/fmax = 2^k (1 + 2^-23) down to k and let the value saturate).
float pow2_scale_at_least(float a, float fmax) {
  int e = 0;
  std::frexp(static_cast<double>(a) / fmax, &e);  // estimate, off by at most one
  while (std::ldexp(static_cast<double>(fmax), e) < a) ++e;
  while (std::ldexp(static_cast<double>(fmax), e - 1) >= a) --e;
  // The floor check keeps a / fmax >= 2^-126; a <= FLT_MAX keeps e <= 120: E8M0-encodable.
  TS_ASSERT(e >= -126 && e <= 127);
  return std::ldexp(1.0f, e);
}

// The scale rule for a validated spec; NaN marks an invalid amax (negative, Inf or NaN)
// so parallel callers can report it after their parallel region (no throwing inside).
float scale_rule(float amax, const QuantSpec& spec) {
  if (!(amax >= 0.0f) || !std::isfinite(amax)) return std::numeric_limits<float>::quiet_NaN();
  if (amax == 0.0f) return 1.0f;
  const float fmax = fp8_traits(spec.format).max_finite;
  const float a = std::max(amax, spec.amax_floor);
  if (spec.scale_type == ScaleType::Pow2 || is_mx(spec.granularity)) return pow2_scale_at_least(a, fmax);
  return a / fmax;
}

[[noreturn]] void throw_bad_amax(int64_t slot, const ScaleGrid& grid, const float* amax_override) {
  const int64_t tr = slot / grid.grid_cols, tc = slot % grid.grid_cols;
  if (amax_override)
    TS_FAIL("amax_override[" << slot << "] (tile row " << tr << ", tile col " << tc << ") is " << amax_override[slot]
                             << "; a scale needs a finite amax >= 0",
            "check the amax history for Inf/NaN or negative entries");
  TS_FAIL("the tile at tile row " << tr << ", tile col " << tc << " (scale slot " << slot
                                  << ") contains Inf or NaN, so it has no finite amax",
          "the input diverged; check the producer of this tensor (learning rate, overflow upstream)");
}

// Scales are NaN exactly where scale_rule rejected the amax.
void check_scales(const QTensor& q, const float* amax_override) {
  for (int64_t s = 0; s < q.grid.count(); ++s)
    if (std::isnan(q.scales[s])) throw_bad_amax(s, q.grid, amax_override);
}

void check_quantize_args(const float* x, int64_t rows, int64_t cols, int64_t ld, const QuantSpec& spec) {
  TS_CHECK(rows > 0 && cols > 0, "cannot quantize a [" << rows << ", " << cols << "] matrix",
           "rows and cols must both be positive");
  TS_CHECK(ld >= cols, "leading dimension " << ld << " is smaller than cols " << cols,
           "pass ld >= cols (ld = cols for a packed row-major matrix)");
  TS_CHECK(x != nullptr, "quantize got a null input pointer", "pass the address of the [rows, cols] matrix");
  check_amax_floor(spec);
}

void prepare(QTensor& out, int64_t rows, int64_t cols, const QuantSpec& spec) {
  out.format = spec.format;
  out.granularity = spec.granularity;
  out.rows = rows;
  out.cols = cols;
  out.grid = make_scale_grid(spec.granularity, rows, cols);
  out.codes.resize(static_cast<size_t>(rows * cols));
  out.scales.resize(static_cast<size_t>(out.grid.count()));
}

// Codes of rows [r0, r1): code = encode(x / scale), the division correctly rounded in FP32.
// tmp holds one row when every column has its own scale (tile_cols == 1).
void encode_rows(QTensor& q, const float* x, int64_t ld, int64_t r0, int64_t r1, Overflow ov, float* tmp) {
  const ScaleGrid& g = q.grid;
  const bool avx512 = simd_path() == SimdPath::Avx512Bf16;
  for (int64_t i = r0; i < r1; ++i) {
    const float* xr = x + i * ld;
    uint8_t* cr = q.codes.data() + i * q.cols;
    const float* srow = q.scales.data() + (i / g.tile_rows) * g.grid_cols;
    if (g.tile_cols == 1) {
      // Per-column scales: divide elementwise (IEEE division, the same bits as x / s in the
      // oracle), then encode the quotients in bulk.
      for (int64_t j = 0; j < q.cols; ++j) tmp[j] = xr[j] / srow[j];
      fp8_encode_bulk(cr, tmp, static_cast<size_t>(q.cols), q.format, ov);
      continue;
    }
    if (avx512) {
      avx512::fp8_encode_div_tiles(cr, xr, q.cols, srow, g.tile_cols, q.format, ov);
      continue;
    }
    for (int64_t j0 = 0, t = 0; j0 < q.cols; j0 += g.tile_cols, ++t) {
      const int64_t n = std::min(g.tile_cols, q.cols - j0);
      fp8_encode_div_bulk(cr + j0, xr + j0, static_cast<size_t>(n), srow[t], q.format, ov);
    }
  }
}

// Tiles shorter than the matrix (grid_rows > 1): each chunk of whole tile rows computes its
// amax, scales and codes while its input is still in cache.
void quantize_fused(QTensor& q, const float* x, int64_t ld, const QuantSpec& spec, const float* amax_override,
                    float* amax_out) {
  const ScaleGrid& g = q.grid;
  const bool need_amax = amax_override == nullptr || amax_out != nullptr;
  const int64_t grain = std::max<int64_t>(1, kChunkElements / (g.tile_rows * q.cols));
  parallel_ranges(g.grid_rows, grain, [&](int64_t g0, int64_t g1) {
    std::vector<int32_t> bits(static_cast<size_t>(g.grid_cols));
    std::vector<float> tmp(g.tile_cols == 1 ? static_cast<size_t>(q.cols) : 0);
    for (int64_t gr = g0; gr < g1; ++gr) {
      const int64_t r0 = gr * g.tile_rows, r1 = std::min(q.rows, r0 + g.tile_rows);
      const int64_t base = gr * g.grid_cols;
      if (need_amax) {
        std::fill(bits.begin(), bits.end(), 0);
        accumulate_amax_rows(bits.data(), x, r0, r1, q.cols, ld, g.tile_cols);
      }
      for (int64_t t = 0; t < g.grid_cols; ++t) {
        const float current = std::bit_cast<float>(bits[t]);
        if (amax_out) amax_out[base + t] = current;
        q.scales[base + t] = scale_rule(amax_override ? amax_override[base + t] : current, spec);
      }
      encode_rows(q, x, ld, r0, r1, spec.overflow, tmp.data());
    }
  });
}

// One tile row spanning the matrix (tensor, col, or short matrices): amax over the whole
// matrix first (parallel partial maxima), then scales, then codes.
void quantize_two_pass(QTensor& q, const float* x, int64_t ld, const QuantSpec& spec, const float* amax_override,
                       float* amax_out) {
  const ScaleGrid& g = q.grid;
  std::vector<float> current;
  if (amax_override == nullptr || amax_out != nullptr) {
    current.resize(static_cast<size_t>(g.count()));
    tile_amax(current.data(), x, q.rows, q.cols, ld, g);
    if (amax_out) std::copy(current.begin(), current.end(), amax_out);
  }
  for (int64_t s = 0; s < g.count(); ++s)
    q.scales[s] = scale_rule(amax_override ? amax_override[s] : current[s], spec);
  check_scales(q, amax_override);
  const int64_t grain = std::max<int64_t>(1, kChunkElements / q.cols);
  parallel_ranges(q.rows, grain, [&](int64_t r0, int64_t r1) {
    std::vector<float> tmp(g.tile_cols == 1 ? static_cast<size_t>(q.cols) : 0);
    encode_rows(q, x, ld, r0, r1, spec.overflow, tmp.data());
  });
}

}  // namespace

const char* to_string(Granularity g) { return kGranularityNames[static_cast<int>(g)]; }
const char* to_string(ScaleType s) { return s == ScaleType::Fp32 ? "fp32" : "pow2"; }

Granularity parse_granularity(const std::string& s) {
  const std::string l = lower(s);
  for (Granularity g : kGranularities)
    if (l == to_string(g)) return g;
  TS_FAIL("unknown quantization granularity '" << s << "'", kValidGranularities);
}

ScaleType parse_scale_type(const std::string& s) {
  const std::string l = lower(s);
  if (l == "fp32") return ScaleType::Fp32;
  if (l == "pow2") return ScaleType::Pow2;
  TS_FAIL("unknown scale type '" << s << "'", "valid scale types: fp32, pow2");
}

ScaleGrid make_scale_grid(Granularity g, int64_t rows, int64_t cols) {
  TS_CHECK(rows > 0 && cols > 0,
           "cannot make a " << to_string(g) << " scale grid for a [" << rows << ", " << cols << "] matrix",
           "rows and cols must both be positive");
  ScaleGrid grid;
  switch (g) {
    case Granularity::Tensor: grid.tile_rows = rows, grid.tile_cols = cols; break;
    case Granularity::Row: grid.tile_rows = 1, grid.tile_cols = cols; break;
    case Granularity::Col: grid.tile_rows = rows, grid.tile_cols = 1; break;
    case Granularity::Tile1x128: grid.tile_rows = 1, grid.tile_cols = 128; break;
    case Granularity::Tile128x1: grid.tile_rows = 128, grid.tile_cols = 1; break;
    case Granularity::Block128x128: grid.tile_rows = 128, grid.tile_cols = 128; break;
    case Granularity::Mx1x32: grid.tile_rows = 1, grid.tile_cols = 32; break;
    case Granularity::Mx32x1: grid.tile_rows = 32, grid.tile_cols = 1; break;
  }
  grid.grid_rows = (rows + grid.tile_rows - 1) / grid.tile_rows;
  grid.grid_cols = (cols + grid.tile_cols - 1) / grid.tile_cols;
  return grid;
}

void tile_amax(float* out, const float* x, int64_t rows, int64_t cols, int64_t ld, const ScaleGrid& grid) {
  TS_CHECK(rows > 0 && cols > 0 && ld >= cols, "tile_amax: bad matrix [" << rows << ", " << cols << "] ld " << ld,
           "rows, cols must be positive and ld >= cols");
  TS_CHECK(grid.grid_rows == (rows + grid.tile_rows - 1) / grid.tile_rows &&
               grid.grid_cols == (cols + grid.tile_cols - 1) / grid.tile_cols,
           "tile_amax: scale grid does not match the [" << rows << ", " << cols << "] matrix",
           "build the grid with make_scale_grid(g, rows, cols)");
  // Row blocks: one per tile row when tiles are shorter than the matrix, else 64-row blocks
  // whose partial maxima are combined afterwards (max is exact, so the split is invisible).
  const int64_t block = grid.grid_rows > 1 ? grid.tile_rows : 64;
  const int64_t blocks = (rows + block - 1) / block;
  const int64_t gc = grid.grid_cols;
  std::vector<int32_t> part(static_cast<size_t>(blocks * gc), 0);
  const int64_t grain = std::max<int64_t>(1, kChunkElements / (block * cols));
  parallel_ranges(blocks, grain, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b)
      accumulate_amax_rows(part.data() + b * gc, x, b * block, std::min(rows, (b + 1) * block), cols, ld,
                           grid.tile_cols);
  });
  std::vector<int32_t> slot(static_cast<size_t>(grid.count()), 0);
  for (int64_t b = 0; b < blocks; ++b) {
    int32_t* dst = slot.data() + (b * block / grid.tile_rows) * gc;
    for (int64_t t = 0; t < gc; ++t) dst[t] = std::max(dst[t], part[b * gc + t]);
  }
  for (int64_t s = 0; s < grid.count(); ++s) out[s] = std::bit_cast<float>(slot[s]);
}

float scale_from_amax(float amax, const QuantSpec& spec) {
  check_amax_floor(spec);
  TS_CHECK(amax >= 0.0f && std::isfinite(amax), "cannot derive a scale from amax = " << amax,
           "amax must be finite and >= 0; the tensor probably contains Inf or NaN");
  return scale_rule(amax, spec);
}

void quantize(QTensor& out, const float* x, int64_t rows, int64_t cols, int64_t ld, const QuantSpec& spec,
              const float* amax_override, float* amax_out) {
  check_quantize_args(x, rows, cols, ld, spec);
  prepare(out, rows, cols, spec);
  if (out.grid.grid_rows > 1) {
    quantize_fused(out, x, ld, spec, amax_override, amax_out);
    check_scales(out, amax_override);
  } else {
    quantize_two_pass(out, x, ld, spec, amax_override, amax_out);
  }
}

void quantize_reference(QTensor& out, const float* x, int64_t rows, int64_t cols, int64_t ld, const QuantSpec& spec,
                        const float* amax_override) {
  check_quantize_args(x, rows, cols, ld, spec);
  prepare(out, rows, cols, spec);
  const ScaleGrid& g = out.grid;
  std::vector<float> amax(static_cast<size_t>(g.count()), 0.0f);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      const float a = std::fabs(x[i * ld + j]);
      float& m = amax[g.index(i, j)];
      if (a > m || std::isnan(a)) m = a;
    }
  for (int64_t s = 0; s < g.count(); ++s) {
    const float used = amax_override ? amax_override[s] : amax[s];
    if (!(used >= 0.0f) || !std::isfinite(used)) throw_bad_amax(s, g, amax_override);
    out.scales[s] = scale_from_amax(used, spec);
  }
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j)
      out.codes[i * cols + j] = fp8_encode(x[i * ld + j] / out.scale_at(i, j), spec.format, spec.overflow);
}

void dequantize(float* out, int64_t ld, const QTensor& q) {
  TS_CHECK(ld >= q.cols, "dequantize: leading dimension " << ld << " < cols " << q.cols, "pass ld >= cols");
  const ScaleGrid& g = q.grid;
  const int64_t grain = std::max<int64_t>(1, kChunkElements / std::max<int64_t>(q.cols, 1));
  parallel_ranges(q.rows, grain, [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i) {
      float* o = out + i * ld;
      const float* srow = q.scales.data() + (i / g.tile_rows) * g.grid_cols;
      fp8_decode_bulk(o, q.codes.data() + i * q.cols, static_cast<size_t>(q.cols), q.format);
      // Tile by tile: a plain loop per scale vectorises (no division per element).
      for (int64_t j0 = 0, t = 0; j0 < q.cols; j0 += g.tile_cols, ++t) {
        const float s = srow[t];
        const int64_t j1 = std::min(q.cols, j0 + g.tile_cols);
        for (int64_t j = j0; j < j1; ++j) o[j] *= s;
      }
    }
  });
}

namespace {
struct ErrorPartial {
  int64_t count = 0, saturated = 0, flushed = 0;
  double signal = 0, noise = 0, max_abs = 0, max_rel = 0;
  ErrorPartial& operator+=(const ErrorPartial& o) {
    count += o.count, saturated += o.saturated, flushed += o.flushed;
    signal += o.signal, noise += o.noise;
    max_abs = std::max(max_abs, o.max_abs), max_rel = std::max(max_rel, o.max_rel);
    return *this;
  }
};

// Whether y, rounded to the format with an unbounded exponent, lands beyond max finite:
// the non-saturating encoder returns its overflow code (E4M3: NaN, E5M2: Inf) exactly then.
bool rounds_beyond_max(float y, Fp8Format f) {
  if (std::isnan(y)) return false;
  const uint8_t mag = fp8_encode(y, f, Overflow::NonSaturate) & 0x7F;
  return f == Fp8Format::E4M3 ? mag == 0x7F : mag >= 0x7C;
}
}  // namespace

QuantError quant_error(const float* x, int64_t ld, const QTensor& q) {
  TS_CHECK(ld >= q.cols, "quant_error: leading dimension " << ld << " < cols " << q.cols, "pass ld >= cols");
  const float* table = fp8_decode_table(q.format);
  // Fixed 64-row chunks summed in chunk order: the same result for any thread count.
  const ErrorPartial total = deterministic_sum<ErrorPartial>(q.rows, 64, [&](int64_t r0, int64_t r1) {
    ErrorPartial p;
    for (int64_t i = r0; i < r1; ++i)
      for (int64_t j = 0; j < q.cols; ++j) {
        const float xv = x[i * ld + j], s = q.scale_at(i, j);
        const uint8_t c = q.codes[i * q.cols + j];
        const double xd = xv, err = std::fabs(xd - static_cast<double>(table[c] * s));
        ++p.count;
        p.signal += xd * xd;
        p.noise += err * err;
        p.max_abs = std::max(p.max_abs, err);
        if (xv != 0.0f) p.max_rel = std::max(p.max_rel, err / std::fabs(xd));
        if (rounds_beyond_max(xv / s, q.format)) ++p.saturated;
        if (xv != 0.0f && !std::isnan(xv) && (c & 0x7F) == 0) ++p.flushed;
      }
    return p;
  });
  QuantError e;
  e.count = total.count;
  e.sqnr_db = total.noise == 0 ? std::numeric_limits<double>::infinity() : 10.0 * std::log10(total.signal / total.noise);
  e.max_abs_err = total.max_abs;
  e.max_rel_err = total.max_rel;
  e.saturated = total.saturated;
  e.flushed_to_zero = total.flushed;
  return e;
}

AmaxHistory::AmaxHistory(int length, int64_t slots) : length_(length), slots_(slots) {
  TS_CHECK(length >= 1, "amax history length must be >= 1, got " << length,
           "use e.g. 16 steps of history, or online scaling for none");
  TS_CHECK(slots >= 1, "amax history needs >= 1 scale slot, got " << slots, "pass the scale grid's count()");
  ring_.assign(static_cast<size_t>(length) * static_cast<size_t>(slots), 0.0f);
}

void AmaxHistory::amax_for_scaling(float* out) const {
  TS_CHECK(!empty(), "the amax history is empty", "on the first step quantize with the current amax (no override)");
  for (int64_t s = 0; s < slots_; ++s) out[s] = 0.0f;
  // The `filled_` most recent entries end just before head_.
  for (int k = 1; k <= filled_; ++k) {
    const float* row = ring_.data() + static_cast<int64_t>((head_ - k + length_) % length_) * slots_;
    for (int64_t s = 0; s < slots_; ++s) out[s] = std::max(out[s], row[s]);
  }
}

void AmaxHistory::push(const float* current_amax) {
  TS_CHECK(length_ > 0, "push on a default-constructed amax history", "construct it with AmaxHistory(length, slots)");
  std::copy(current_amax, current_amax + slots_, ring_.begin() + static_cast<int64_t>(head_) * slots_);
  head_ = (head_ + 1) % length_;
  filled_ = std::min(filled_ + 1, length_);
}

void AmaxHistory::restore(std::vector<float> ring, int head, int filled) {
  TS_CHECK(ring.size() == static_cast<size_t>(length_) * static_cast<size_t>(slots_),
           "amax history ring has " << ring.size() << " values, expected length " << length_ << " x slots " << slots_
                                    << " = " << static_cast<int64_t>(length_) * slots_,
           "the checkpoint was written with a different history length or tensor shape");
  TS_CHECK(head >= 0 && head < length_, "amax history head " << head << " is outside [0, " << length_ << ")",
           "the checkpoint is corrupt or from a different history length");
  TS_CHECK(filled >= 0 && filled <= length_, "amax history fill " << filled << " is outside [0, " << length_ << "]",
           "the checkpoint is corrupt or from a different history length");
  for (size_t k = 0; k < ring.size(); ++k)
    TS_CHECK(ring[k] >= 0.0f && std::isfinite(ring[k]), "amax history entry " << k << " is " << ring[k],
             "amax values must be finite and >= 0; the checkpoint is corrupt");
  ring_ = std::move(ring);
  head_ = head;
  filled_ = filled;
}

}  // namespace tinyseek::numerics
