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
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "tinyseek/base/aligned.h"
#include "tinyseek/model/registry.h"
#include "tinyseek/ops/linear.h"

namespace tinyseek::model {

struct LinearSite {
  int weight = -1;            // registry id of W [out, in]
  int64_t in = 0, out = 0;
  ops::LinearPrecision precision;
  std::shared_ptr<ops::LinearState> state;  // the registry's state of `weight`

  LinearSite() = default;
  // Dims from the registered shape; precision from r.config().precision by the weight's
  // role (block/MTP Linear, head, router) and layer.
  LinearSite(const Registry& r, int weight_id);

  //   y [n, out] (= or +=)   x [n, in]
  void forward(const Registry& r, float* y, const float* x, int64_t n, bool accumulate = false) const;
  // dx [n, in] += dy W (skipped if dx is null);  dW += dyᵀ x (into r.grad(weight)).
  // x may be null when caches_input() (the Linear kept its own BF16/FP8 copy).
  void backward(Registry& r, float* dx, const float* dy, const float* x, int64_t n) const;
  // Whether forward keeps its own copy of x for Wgrad (activation cache BF16/FP8).
  bool caches_input() const { return precision.saved_x != gemm::DType::F32; }
};

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
    AlignedBuffer<float>& b = buffers_[static_cast<size_t>(s)];
    if (b.size() < n) b.resize(n);
    return b.data();
  }

 private:
  std::array<AlignedBuffer<float>, static_cast<size_t>(Slot::kCount)> buffers_;
};

// y[i] = x[i] (n floats)
inline void copy_floats(float* y, const float* x, size_t n) {
  if (n) std::memcpy(y, x, n * sizeof(float));
}

}  // namespace tinyseek::model
