// Linear layer y = x Wᵀ with W stored [out, in] (Hugging Face convention), through the one
// GEMM entry point tinyseek::gemm::gemm:
//   Fprop  y  = x Wᵀ        [N, out]     A = X  [N, in]             B = W [out, in] transposed
//   Dgrad  dx += dy W        [N, in]      A = dY [N, out]            B = W [out, in]
//   Wgrad  dW += dyᵀ x       [out, in]    A = dY [N, out] transposed B = X [N, in]
//
// Two entry points:
//  * the plain FP32 pair (linear_forward / linear_backward without a state): FP32 operands,
//    FP32 accumulation, default GemmOptions. Kept forever as the oracle of the fp32 recipe.
//  * the precision-aware pair, taking a LinearPrecision (one Linear's resolved row of the
//    precision map, DESIGN.md §5) and the Linear's LinearState. Each operand is F32, BF16 or
//    FP8 (E4M3/E5M2) with FP32 scales on the granularity the map names, resolved per GEMM
//    by where K lies in the stored operand:
//
//      granularity  Fprop X | W          Dgrad dY | W            Wgrad dY | X (K = tokens)
//      tensor       tensor  | tensor     tensor  | tensor        tensor  | tensor
//      row          row     | row        row     | col           col     | col
//      tile128      1x128   | 128x128    1x128   | 128x128 (ᵀ)   128x1   | 128x1
//      mx32         1x32    | 1x32       1x32    | 32x1          32x1    | 32x1
//
//    (DeepSeek-V3 §3.3: tile128, the same W blocks serve Fprop and Dgrad.) "row" and "mx32"
//    need a second FP8 copy of W scaled along `out` for Dgrad, because a scale must be
//    constant along K inside a promotion group.
//
// Weight copies: the BF16/FP8 copy of W (and its packed GEMM panels) is made when the
// weight version passed in differs from the one the copy was made from, so all
// micro-batches of one optimizer step share one copy. The caller bumps the version after
// every write to W (model::Registry::params_changed()).
//
// Activation cache: forward keeps X for Wgrad as LinearPrecision::saved_x says: F32 (the
// caller keeps x and passes it again to backward), BF16 (a BF16 copy is kept here) or FP8
// (X quantized right away on the Wgrad grid, 128x1 along tokens for tile128; backward
// then uses it as the Wgrad operand as is). Quantizing X for Fprop (1x128) and for Wgrad
// (128x1) is done from the FP32 source, never by re-quantizing an FP8 copy.
//
// Fused operands (ops/linear_quant.h; the same bits as quantizing each operand alone):
// with tile128 FP8 and online scaling, forward quantizes X on the Fprop (1x128) and, for an
// FP8 activation cache, the Wgrad (128x1) grid in one pass over x, and backward does the
// same for dY (Dgrad 1x128, Wgrad 128x1); a BF16 dY is converted once for both GEMMs.
// Quantization and BF16 conversion are split over threads (fixed chunks, elementwise or per
// tile: the bits never depend on the thread count).
//
// Scaling: online (the current max |x| per tile) or delayed (amax_history = n > 0). Delayed
// scaling works per optimizer step, a step being one weight version: every quantization
// during a step uses the max over the amaxes of the last n steps (the current amax while
// the history is empty), and the max of the step's own amaxes is pushed into the history
// when the next version arrives (or linear_commit_scaling is called). So all micro-batches
// of a step, and any recomputed forward, use the same scales. For operands indexed by
// tokens (X, dY) the history is kept per column tile, the max over all rows (the token rows
// of one call are not those of the next); for W per scale tile. The histories are the
// only state a resume needs (commit, then save LinearState::history).
//
// Shared inputs (InputShare): Linears that read the same x one after another (MLA's
// q_a_proj and kv_a_proj_with_mqa, a SwiGLU's gate_proj and up_proj) quantize it once. The
// first call (kPublish) leaves its FP8 operands of x in the calling thread's scratch; the
// next ones (kReuse) take them when x, its shape and the quantization spec match, and
// quantize as usual otherwise. The same bits as quantizing per Linear: the codes depend only
// on x and the spec. Shared: the Fprop operand (1x128), the Wgrad copy of X (128x1: the FP8
// activation cache in forward, copied into each Linear's cache; the Wgrad operand made from
// the FP32 x in backward). Online scaling only (delayed scaling keeps amax histories per
// Linear, so its scales differ between Linears).
//
// Telemetry (LinearState::telemetry_enabled): every quantized GEMM is also computed from
// the FP32 operands (the high-precision shadow, same inputs) and compared; operand
// quantization error, saturation/underflow counts and scale statistics are recorded.
// The shadow computations are separate GEMMs: enabling telemetry changes no result bit.
#pragma once
#include <array>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "tinyseek/base/aligned.h"
#include "tinyseek/gemm/gemm.h"
#include "tinyseek/numerics/quant.h"

namespace tinyseek::ops {

// The granularity knob of the precision map; resolved per operand by the table above.
enum class LinearGranularity : uint8_t { kTensor, kRow, kTile128, kMx32 };
const char* to_string(LinearGranularity g);  // "tensor", "row", "tile128", "mx32"

// One Linear's resolved precision (model::PrecisionMap resolves it per module).
struct LinearPrecision {
  gemm::DType fprop_x = gemm::DType::F32;   // X in Fprop
  gemm::DType weight = gemm::DType::F32;    // W in Fprop and Dgrad
  gemm::DType dgrad_dy = gemm::DType::F32;  // dY in Dgrad
  gemm::DType wgrad_dy = gemm::DType::F32;  // dY in Wgrad
  gemm::DType wgrad_x = gemm::DType::F32;   // X in Wgrad (must equal saved_x when saved_x is FP8)
  gemm::DType saved_x = gemm::DType::F32;   // how forward keeps X for Wgrad
  LinearGranularity granularity = LinearGranularity::kTile128;
  numerics::ScaleType scale_type = numerics::ScaleType::Fp32;
  int amax_history = 0;        // 0: online scaling; n > 0: delayed, max over the last n amaxes
  float amax_floor = 1e-30f;   // numerics::QuantSpec::amax_floor
  gemm::Accumulation accumulation = gemm::Accumulation::kFp32;
  int accum_mantissa_bits = 13;  // tensor-core model (accumulation == kTensorCore)
  int promote_every = 128;       // N_C: FP32 promotion interval (GemmOptions::promote_every)
  gemm::Backend backend = gemm::Backend::kAuto;

  // True when this is exactly the plain FP32 path (all operands F32, FP32 accumulation,
  // default promotion): then the stateful functions call the plain FP32 pair.
  bool plain_fp32() const;
  // Checks the combination (FP8 saved_x equals wgrad_x, promotion fits the scale tiles, ...).
  void validate() const;
};

// Quantized operands of a Linear, in the order of LinearState::history.
enum class LinearOperand : uint8_t { kFpropX, kWeight, kDgradWeight, kDgradDy, kWgradDy, kWgradX, kCount };
constexpr int kLinearOperands = static_cast<int>(LinearOperand::kCount);
const char* to_string(LinearOperand o);  // "fprop.x", "fprop.w", "dgrad.w", "dgrad.dy", "wgrad.dy", "wgrad.x"

// Quantization statistics of one operand, summed over calls.
struct OperandStats {
  int64_t calls = 0;
  int64_t count = 0;          // elements quantized
  double signal = 0;          // Σ x²
  double noise = 0;           // Σ (x − x̂)²
  int64_t saturated = 0;      // |x / scale| rounded beyond max finite (clipped)
  int64_t underflow = 0;      // x != 0 but x̂ == 0
  int64_t scales = 0;         // scale slots seen
  float scale_min = std::numeric_limits<float>::infinity();
  float scale_max = 0;
  double log2_scale_sum = 0;  // for the mean log2 scale
  double sqnr_db() const;     // 10 log10(signal / noise); +inf when exact
  double mean_log2_scale() const { return scales ? log2_scale_sum / static_cast<double>(scales) : 0.0; }
  void add(const OperandStats& o);
};

// One GEMM role's output against its FP32 shadow, summed over calls.
struct GemmStats {
  int64_t calls = 0;
  int64_t count = 0;          // output elements compared
  double signal = 0;          // Σ ref²
  double noise = 0;           // Σ (c − ref)²
  double max_abs_err = 0;
  double max_abs_ref = 0;
  OperandStats a, b;          // the two quantized operands (empty when F32)
  double sqnr_db() const;     // 10 log10(signal / noise); +inf when exact
  double rel_err() const;     // sqrt(noise / signal)
  void add(const GemmStats& o);
};

struct LinearTelemetry {
  GemmStats fprop, dgrad, wgrad;
  void reset() { *this = {}; }
};

// Everything one Linear keeps between calls. Owned by the model (one per weight).
struct LinearState {
  static constexpr uint64_t kNoVersion = std::numeric_limits<uint64_t>::max();

  // --- Low-precision weight copies (rebuilt when the weight version changes).
  uint64_t fprop_version = kNoVersion, dgrad_version = kNoVersion;
  numerics::QTensor w_q;          // FP8 W on the Fprop grid (also Dgrad's for tensor/tile128)
  numerics::QTensor w_q_dgrad;    // FP8 W on the Dgrad grid (row, mx32)
  AlignedBuffer<uint16_t> w_bf16; // BF16 W [out, in]
  gemm::PackedB fprop_b, dgrad_b; // packed Wᵀ and W (empty: use the unpacked views)
  // Every forward is followed by a backward (set by model::Model::forward_backward): the
  // BF16/FP8 copy of W may then live in a per-thread scratch while Fprop's and Dgrad's
  // panels are packed from it at once (when both GEMMs read only the packed panels and
  // telemetry is off), instead of being kept per Linear. Same bits; a forward-only user
  // (inference) leaves it false and never packs the Dgrad form.
  bool pack_dgrad_with_fprop = false;

  // --- Activation cache (saved_x BF16 / FP8), valid for saved_rows rows.
  int64_t saved_rows = -1;
  AlignedBuffer<uint16_t> x_bf16;  // [N, in]
  numerics::QTensor x_q;           // [N, in] on the Wgrad grid

  // --- Delayed scaling: one amax history per quantized operand (checkpoint these), and
  // the running max of the current step's amaxes (empty: none yet).
  std::array<numerics::AmaxHistory, kLinearOperands> history;
  std::array<std::vector<float>, kLinearOperands> step_amax;
  uint64_t scaling_version = kNoVersion;  // the weight version step_amax belongs to
  bool record_amax = true;                // false: quantize without recording (evaluation)

  // --- Telemetry.
  bool telemetry_enabled = false;
  LinearTelemetry telemetry;
};

// How one call takes part in sharing its input's quantization (see "Shared inputs" above).
enum class InputShare : uint8_t {
  kNone,     // quantize for this call only
  kPublish,  // quantize and leave the operands for the next kReuse calls of this thread
  kReuse,    // take the operands the last kPublish call left, when made from the same x
};

// One operand a kPublish call left: the tensor (`own`, or a Linear's activation cache) and
// what it was made from. Valid until the next kPublish call of the thread or, for an
// activation cache, that Linear's next forward.
struct SharedOperand {
  const float* x = nullptr;  // null: nothing published
  int64_t rows = 0, cols = 0;
  numerics::QuantSpec spec;
  const numerics::QTensor* q = nullptr;
  numerics::QTensor own;
};

// Temporaries of the quantized operands (qa: the GEMM's A, qb: Wgrad's X) and of telemetry,
// shared by every Linear of the calling thread (Linears run one at a time): grown to the
// largest Linear and never shrunk, so steady-state training allocates nothing and memory
// does not grow with the number of Linears. Valid until the next Linear call.
struct LinearScratch {
  numerics::QTensor qa, qb;
  numerics::QTensor qc;  // dY on the Wgrad grid, quantized together with Dgrad's dY in qa
  AlignedBuffer<uint16_t> bf_a, bf_b;
  AlignedBuffer<float> f_tmp, f_ref, f_out, amax_cur, amax_use;
  SharedOperand share_fprop;  // x on the Fprop grid (1x128)
  SharedOperand share_wgrad;  // x on the Wgrad grid (128x1)
};
LinearScratch& linear_scratch();
// Bytes held by the scratch of every thread that has one (for the memory breakdown of
// `bench step`; call it outside parallel regions).
size_t linear_scratch_bytes();

// Plain FP32 path: y = x Wᵀ (accumulate = false) or y += x Wᵀ (accumulate = true, e.g.
// adding o_proj straight into the residual stream).
//   y [N, out]   x [N, in]   w [out, in]
void linear_forward(float* y, const float* x, const float* w, int64_t N, int64_t in, int64_t out,
                    bool accumulate = false);
// dx += dy W (skipped when dx is null), dw += dyᵀ x (skipped when dw is null).
// overwrite_dx: dx = dy W instead, for callers that would otherwise zero-fill dx first. The
// same bits: a GEMM's sums start from +0 and never give -0, so adding a zero changes nothing.
//   dx [N, in]   dw [out, in]   dy [N, out]   x [N, in]   w [out, in]
void linear_backward(float* dx, float* dw, const float* dy, const float* x, const float* w, int64_t N, int64_t in,
                     int64_t out, bool overwrite_dx = false);

// Precision-aware path. w_version identifies the current values of w (see above).
// Forward keeps what backward needs in `state` (the activation cache when saved_x is not F32).
//   y [N, out]   x [N, in]   w [out, in]
void linear_forward(float* y, const float* x, const float* w, uint64_t w_version, int64_t N, int64_t in,
                    int64_t out, bool accumulate, const LinearPrecision& p, LinearState& state,
                    InputShare share = InputShare::kNone);
// x may be null when saved_x is not F32 and telemetry is off (the cached copy is used);
// N must equal the last forward's N then.
//   dx [N, in]   dw [out, in]   dy [N, out]   x [N, in]   w [out, in]
// share: sharing of the Wgrad operand made from x (when x is given and no cache serves).
// overwrite_dx: dx = dy W (as in the plain path).
void linear_backward(float* dx, float* dw, const float* dy, const float* x, const float* w, uint64_t w_version,
                     int64_t N, int64_t in, int64_t out, const LinearPrecision& p, LinearState& state,
                     InputShare share = InputShare::kNone, bool overwrite_dx = false);

// The same backward with dY already rounded to BF16 (RNE, as bf16_encode_parallel rounds
// it): the same bits as linear_backward on the FP32 dY it came from. Lets a caller make dY
// in row chunks without keeping it in FP32 (the output head: [N, V] logits gradients).
// Requires accepts_bf16_dy(p, st): both dY operands BF16 and telemetry off (telemetry
// compares against the FP32 dY).
//   dx [N, in]   dw [out, in]   dy [N, out] BF16 bits   x [N, in]   w [out, in]
bool accepts_bf16_dy(const LinearPrecision& p, const LinearState& st);
void linear_backward_bf16_dy(float* dx, float* dw, const uint16_t* dy, const float* x, const float* w,
                             uint64_t w_version, int64_t N, int64_t in, int64_t out, const LinearPrecision& p,
                             LinearState& st);

// Delayed scaling: pushes the amaxes recorded since the last commit into the histories (a
// no-op for online scaling). Runs by itself when a new weight version arrives; call it
// before saving the histories so a resumed run and a continuing one see the same state.
void linear_commit_scaling(LinearState& state);

// The scale granularity of an operand: `weight` for W, `k_along_cols` when K runs along the
// stored columns (Fprop X and W, Dgrad dY), else along the stored rows.
numerics::Granularity operand_granularity(LinearGranularity g, bool weight, bool k_along_cols);

// Bytes held by the state's weight copies and activation cache (for logs).
size_t linear_state_bytes(const LinearState& s);

}  // namespace tinyseek::ops
