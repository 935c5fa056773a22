// FP8 quantizers: x ≈ decode(code) * scale, one FP32 scale per tile of the stored
// (row-major) matrix. Granularities, in the stored layout of a [rows, cols] matrix:
//
//   tensor        one scale                        (per-tensor scaling, TE/torchao style)
//   row           1 x cols     per row             (torchao "rowwise"; per output channel for W)
//   col           rows x 1     per column
//   tile1x128     1 x 128      per row, per 128 columns   (DeepSeek-V3: activations along K)
//   tile128x1     128 x 1      per 128 rows, per column   (DeepSeek-V3: Wgrad operands along tokens)
//   block128x128  128 x 128                               (DeepSeek-V3: weights)
//   mx1x32        1 x 32       E8M0 (power-of-two) scales (OCP MX)
//   mx32x1        32 x 1       E8M0, along rows (MX operand used transposed)
//
// Edge tiles are partial (no padding is stored). Scale rule (online scaling):
//   amax = max |x| over the tile; scale = amax / fmax (fmax = 448 for E4M3, 57344 for E5M2);
//   code = RNE(x / scale) computed in FP32, saturated.
//   all-zero tile (amax == 0): scale = 1, codes are exact zeros.
//   amax < amax_floor (default 1e-30, keeps the scale a normal FP32 number so x/scale is
//   finite): amax is raised to the floor. DeepSeek's inference kernels use 1e-4; that is a
//   knob here because training gradients can be much smaller than 1e-4.
//   ScaleType::Pow2 rounds the scale UP to a power of two, s = 2^ceil(log2(amax/fmax)), so
//   |x/s| <= fmax and no value saturates (DeepGEMM's ceil_to_ue8m0 rule). mx* granularities
//   always use Pow2 (E8M0-representable) scales.
// Delayed scaling: pass amax_override (one amax per scale slot, e.g. the max of an amax
// history from previous steps) instead of the current amax; values beyond it saturate.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tinyseek/base/aligned.h"
#include "tinyseek/numerics/formats.h"

namespace tinyseek::numerics {

enum class Granularity : uint8_t { Tensor, Row, Col, Tile1x128, Tile128x1, Block128x128, Mx1x32, Mx32x1 };
enum class ScaleType : uint8_t { Fp32, Pow2 };

const char* to_string(Granularity g);  // "tensor", "row", "col", "tile1x128", ...
const char* to_string(ScaleType s);    // "fp32", "pow2"
Granularity parse_granularity(const std::string& s);  // throws with the list of valid names
ScaleType parse_scale_type(const std::string& s);

// A granularity resolved for a concrete [rows, cols] matrix. Scale of element (i, j) is
// scales[(i / tile_rows) * grid_cols + j / tile_cols].
struct ScaleGrid {
  int64_t tile_rows = 1, tile_cols = 1, grid_rows = 1, grid_cols = 1;
  int64_t count() const { return grid_rows * grid_cols; }
  int64_t index(int64_t i, int64_t j) const { return (i / tile_rows) * grid_cols + j / tile_cols; }
};
ScaleGrid make_scale_grid(Granularity g, int64_t rows, int64_t cols);

struct QuantSpec {
  Fp8Format format = Fp8Format::E4M3;
  Granularity granularity = Granularity::Tile1x128;
  ScaleType scale_type = ScaleType::Fp32;
  Overflow overflow = Overflow::Saturate;
  float amax_floor = 1e-30f;
};

// An owning FP8 matrix: codes row-major with ld = cols, scales row-major over the grid.
struct QTensor {
  Fp8Format format = Fp8Format::E4M3;
  Granularity granularity = Granularity::Tensor;
  int64_t rows = 0, cols = 0;
  ScaleGrid grid;
  AlignedBuffer<uint8_t> codes;
  AlignedBuffer<float> scales;
  float scale_at(int64_t i, int64_t j) const { return scales[grid.index(i, j)]; }
};

// Per-slot amax of x under a granularity (out has grid.count() entries).
void tile_amax(float* out, const float* x, int64_t rows, int64_t cols, int64_t ld, const ScaleGrid& grid);

// Scale for one tile from its amax, per the rules above.
float scale_from_amax(float amax, const QuantSpec& spec);

// Quantize x [rows, cols] (leading dimension ld). If amax_override is given (grid.count()
// values) it is used instead of the current amax (delayed scaling). If amax_out is given the
// current per-slot amax is written there (for the history).
void quantize(QTensor& out, const float* x, int64_t rows, int64_t cols, int64_t ld, const QuantSpec& spec,
              const float* amax_override = nullptr, float* amax_out = nullptr);
// Same, but only the scale rule's arithmetic of the oracle: a plain scalar loop with no
// vector code, kept forever as the reference the fast path is tested against.
void quantize_reference(QTensor& out, const float* x, int64_t rows, int64_t cols, int64_t ld,
                        const QuantSpec& spec, const float* amax_override = nullptr);

void dequantize(float* out, int64_t ld, const QTensor& q);

struct QuantError {
  int64_t count = 0;
  double sqnr_db = 0;          // 10 log10(sum x^2 / sum (x - x̂)^2); +inf when exact
  double max_abs_err = 0;
  double max_rel_err = 0;      // over nonzero x
  int64_t saturated = 0;       // |x / scale| rounded beyond max finite (clipped)
  int64_t flushed_to_zero = 0; // x != 0 but code is zero
};
QuantError quant_error(const float* x, int64_t ld, const QTensor& q);

// Delayed scaling state: a ring buffer of the last `length` per-slot amaxes. The amax used
// for step t is the max over the history (steps t-length .. t-1); the first step, with an
// empty history, uses the current amax.
class AmaxHistory {
 public:
  AmaxHistory() = default;
  AmaxHistory(int length, int64_t slots);
  bool empty() const { return filled_ == 0; }
  int length() const { return length_; }
  int64_t slots() const { return slots_; }
  // The amax per slot to quantize with now (max over the history).
  void amax_for_scaling(float* out) const;
  void push(const float* current_amax);
  // Raw state for checkpoints (exact resume).
  const std::vector<float>& ring() const { return ring_; }
  int head() const { return head_; }
  int filled() const { return filled_; }
  void restore(std::vector<float> ring, int head, int filled);

 private:
  int length_ = 0, head_ = 0, filled_ = 0;
  int64_t slots_ = 0;
  std::vector<float> ring_;  // length_ x slots_
};

}  // namespace tinyseek::numerics
