// Helpers shared by the model modules (mla, ffn, moe, block, mtp, deepseek).
//
// LinearSite: one Linear layer of the model (its weight's registry id and dims, and the
// precision the config's precision map resolves for it: model/precision.h). Every GEMM of
// a module goes through LinearSite::forward/backward, so the recipe is applied in exactly
// one place. Its mutable state (BF16/FP8 weight copies keyed by Registry::params_version(),
// the activation cache, delayed-scaling histories, telemetry) is an ops::LinearState held
// by the Registry under the weight's id; the free functions below reach every Linear's
// state for the trainer.
//
// Workspace: gradient temporaries shared by all layers. Backward runs one layer at a time,
// so the gradients of intermediate activations never need more than one layer's worth of
// memory; each temporary has a named slot, grown on demand and never shrunk (steady-state
// training allocates nothing).
#pragma once
#include <array>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "tinyseek/base/aligned.h"
#include "tinyseek/model/registry.h"
#include "tinyseek/ops/linear.h"

namespace tinyseek::model {

// How one forward call of a Linear treats its input (LinearSite::forward).
struct LinearCall {
  bool accumulate = false;  // y += x Wᵀ instead of y = x Wᵀ
  // The module drops x after this call and passes null to backward: the Linear keeps its
  // own BF16/FP8 copy for Wgrad (allowed only when LinearSite::can_drop_input()).
  bool x_dropped = false;
  // Recomputation in backward of a forward already done for this batch: the same bits,
  // but no amax recorded and no telemetry counted (they were, by the first forward).
  bool repeat = false;
  // Sharing x's quantization with the next Linear reading the same x (ops::InputShare).
  ops::InputShare share = ops::InputShare::kNone;
};

// The Linear's activation cache (ops/linear.h, precision.h activation_cache) under the
// module's choice:
//   x dropped  the Linear keeps its BF16/FP8 copy of x; the module keeps nothing.
//   x kept     the module keeps x in FP32 anyway (or recomputes it to the same bits) and
//              passes it to backward. The Linear then keeps no copy when the copy's format
//              is the Wgrad operand's (Wgrad rounds the same FP32 x the same way in backward:
//              no bit changes), and keeps one when it is not (bf16 cache with an FP8 or FP32
//              Wgrad: the copy decides the numerics, which must not depend on the policy).
struct LinearSite {
  int weight = -1;            // registry id of W [out, in]
  int64_t in = 0, out = 0;
  ops::LinearPrecision precision;  // as the precision map resolves it
  std::shared_ptr<ops::LinearState> state;  // the registry's state of `weight`

  LinearSite() = default;
  // Dims from the registered shape; precision from r.config().precision by the weight's
  // role (block/MTP Linear, head, router) and layer.
  LinearSite(const Registry& r, int weight_id);

  //   y [n, out] (= or +=)   x [n, in]
  void forward(const Registry& r, float* y, const float* x, int64_t n, const LinearCall& call = {}) const;
  // dx [n, in] += dy W (skipped if dx is null);  dW += dyᵀ x (into r.grad(weight)).
  // x null: forward ran with x_dropped (the Linear's own copy serves Wgrad); else the x
  // forward saw.
  // share: as LinearCall::share, for the Wgrad operand made from x. overwrite_dx: dx = dy W
  // (dx need not be zero-filled first; the same bits, ops::linear_backward).
  void backward(Registry& r, float* dx, const float* dy, const float* x, int64_t n,
                ops::InputShare share = ops::InputShare::kNone, bool overwrite_dx = false) const;
  // Whether the module may drop x: the Linear can keep its own BF16/FP8 copy, and telemetry
  // is off (telemetry compares Wgrad against the FP32 x, so it needs x).
  bool can_drop_input() const { return precision.saved_x != gemm::DType::F32 && !state->telemetry_enabled; }
  // The precision one call runs with (the rule above).
  ops::LinearPrecision call_precision(bool x_dropped) const;
};

// Whether every Linear reading one input can keep its own copy (so the module may drop it).
inline bool all_can_drop_input(std::initializer_list<const LinearSite*> sites) {
  for (const LinearSite* s : sites)
    if (!s->can_drop_input()) return false;
  return true;
}

// Bytes of every Linear's activation cache (BF16 / FP8 copies of inputs kept for Wgrad).
int64_t linear_cache_bytes(const Registry& r);

// Bytes every Linear's state holds, by kind (for the memory breakdown of `bench step`).
struct LinearMemory {
  int64_t weight_copies = 0;     // BF16 / FP8 copies of W (w_bf16, w_q, w_q_dgrad)
  int64_t packed_weights = 0;    // packed GEMM panels of Wᵀ (Fprop) and W (Dgrad)
  int64_t activation_cache = 0;  // = linear_cache_bytes()
};
LinearMemory linear_memory(const Registry& r);

// ---- Trainer API over every Linear of a model (all take the model's registry).

// Telemetry on/off for every Linear with an FP8/BF16 GEMM (FP32 Linears have nothing to
// measure). Costs two extra GEMMs per quantized GEMM while on: enable it every N steps.
void set_linear_telemetry(const Registry& r, bool enabled);
struct LinearTelemetryRecord {
  int weight = -1;
  std::string name;    // the weight's Hugging Face name
  int64_t layer = -1;
  ops::LinearTelemetry telemetry;
};
// The statistics gathered since the last reset, one record per Linear that recorded any
// GEMM, in registry order; reset = true clears them.
std::vector<LinearTelemetryRecord> collect_linear_telemetry(const Registry& r, bool reset = true);
// {"linears": [{"name", "layer", "fprop": {...}, "dgrad": {...}, "wgrad": {...}}], "summary":
// {per role: the sums over all Linears}} — for metrics.jsonl.
nlohmann::json linear_telemetry_json(const std::vector<LinearTelemetryRecord>& records);

// Delayed scaling: whether quantization records amaxes into the step's history row. Turn
// it off around evaluation forwards so validation does not change training numerics.
void set_linear_amax_recording(const Registry& r, bool enabled);
// Delayed-scaling state for checkpoints: commits the current step's amaxes, then returns
// {"<weight name>": {"<operand>": {"length", "slots", "head", "filled", "ring": [...]}}}
// (floats written exactly). Empty object for online scaling.
nlohmann::json linear_scaling_state(const Registry& r);
// Restores it (after building the model from the same config); resumes bit-identically.
void restore_linear_scaling_state(const Registry& r, const nlohmann::json& state);

enum class Slot : int {
  kDNormOut,     // [N, D]  gradient at a block's norm output (h1, h2), = d input of MLA/FFN
  kDAttnO,       // [N, H·dv]
  kDQ,           // [N, H(dn+dr)]
  kDKv,          // [N, H(dn+dv)]
  kDKpe,         // [N, dr]
  kDKvA,         // [N, dc+dr]
  kDCkv,         // [N, dc]
  kDCq,          // [N, dq]
  kDCqRaw,       // [N, dq]
  kDAct,         // [rows, W]  SwiGLU output gradient
  kDGate,        // [rows, W]
  kDUp,          // [rows, W]
  kDExpertOut,   // [N·K, D]
  kDExpertIn,    // [N·K, D]
  kDGates,       // [N, K]
  kDScores,      // [N, E]
  kDRouterLogits,// [N, E]
  kDMtpConcat,   // [N, 2D]
  kDMtpPart,     // [N, D]
  kDMtpNormIn,   // [N, D]
  kDHeadW,       // [V, D]  the streamed output head's Wgrad of one head call (Model::head_chunked)
  kCount
};

class Workspace {
 public:
  // n zeroed floats of slot s (valid until the next request of the same slot).
  float* zeroed(Slot s, size_t n) {
    float* p = raw(s, n);
    if (n) std::memset(p, 0, n * sizeof(float));
    return p;
  }
  // n floats of slot s, contents unspecified.
  float* raw(Slot s, size_t n) {
    AlignedBuffer<float>& b = buffers_[storage(s)];
    if (b.size() < n) b.resize(n);
    return b.data();
  }
  // Slots never live at the same time share one buffer: MLA backward runs after the FFN's
  // (Block::backward) and the MTP module's own gradients after its block's, so their slots
  // reuse the FFN/MoE slots, each on a different one. The output heads run before any
  // layer's backward (the loss ends the forward), so the head's Wgrad takes the largest.
  static size_t storage(Slot s) {
    switch (s) {
      case Slot::kDAttnO: case Slot::kDMtpConcat: case Slot::kDHeadW: return static_cast<size_t>(Slot::kDExpertOut);
      case Slot::kDQ: case Slot::kDMtpPart: return static_cast<size_t>(Slot::kDExpertIn);
      case Slot::kDKv: case Slot::kDMtpNormIn: return static_cast<size_t>(Slot::kDAct);
      case Slot::kDKvA: return static_cast<size_t>(Slot::kDGate);
      case Slot::kDCkv: return static_cast<size_t>(Slot::kDUp);
      case Slot::kDKpe: return static_cast<size_t>(Slot::kDGates);
      case Slot::kDCq: return static_cast<size_t>(Slot::kDScores);
      case Slot::kDCqRaw: return static_cast<size_t>(Slot::kDRouterLogits);
      default: return static_cast<size_t>(s);
    }
  }
  int64_t bytes() const {
    int64_t n = 0;
    for (const auto& b : buffers_) n += static_cast<int64_t>(b.size() * sizeof(float));
    return n;
  }

 private:
  std::array<AlignedBuffer<float>, static_cast<size_t>(Slot::kCount)> buffers_;
};

// y[i] = x[i] (n floats)
inline void copy_floats(float* y, const float* x, size_t n) {
  if (n) std::memcpy(y, x, n * sizeof(float));
}

}  // namespace tinyseek::model
