// DeepSeekMoE layer (docs/model.md "FFN and DeepSeekMoE"):
//   s = sigmoid(x W_gateᵀ) [N, E]; top-K of s + bias (optionally group-limited); gates g;
//   y += shared(x) + Σ_k g_k expert_{i_k}(x)
// plus this layer's sequence-wise balance loss (no gradient through the selection, the
// one-hot counts f, or the bias).
#pragma once
#include <cstdint>
#include <vector>

#include "tinyseek/base/aligned.h"
#include "tinyseek/model/activations.h"
#include "tinyseek/model/ffn.h"
#include "tinyseek/model/linear_site.h"
#include "tinyseek/model/registry.h"
#include "tinyseek/ops/dims.h"
#include "tinyseek/ops/router.h"

namespace tinyseek::model {

class Moe {
 public:
  Moe(const Registry& r, const MoeIds& ids, const ActStore& cache);

  // y [N, D] += MoE(x), N = B·T (B sequences of length T for the balance loss). Returns the
  // layer's balance loss mean_b Σ_i f_{b,i} P_{b,i} (without α).
  double forward(const Registry& r, const ActContext& ctx, float* y, const float* x, int64_t B, int64_t T);
  // dx [N, D] += ∂L/∂x given dy [N, D]; balance_coef = ∂L/∂(this layer's balance loss), i.e. α.
  // Recomputes the dropped expert-input gather and SwiGLU outputs first (unless ctx.fresh).
  void backward(Registry& r, Workspace& ws, const ActContext& ctx, float* dx, const float* dy, const float* x,
                double balance_coef);

  // Tokens that selected each expert in the last forward [E] (input of the bias update).
  const int32_t* load() const { return load_.data(); }
  int64_t num_experts() const { return E_; }
  int64_t saved_bytes() const;

 private:
  MoeIds ids_;
  ops::RouterConfig rc_;
  int64_t D_, E_, K_, Fe_;
  LinearSite router_;
  std::vector<Swiglu> experts_;
  Swiglu shared_;
  bool has_shared_ = false;
  ActStore cache_;    // swiglu_cache of this layer
  ActStore combine_;  // moe_combine
  int64_t B_ = 0, T_ = 0;

  // Routing state: small (E + 3K numbers per token), kept under every policy.
  AlignedBuffer<float> logits_, scores_;    // [N, E]
  AlignedBuffer<float> gates_;              // [N, K]
  AlignedBuffer<ops::Index> indices_;       // [N, K]
  AlignedBuffer<float> f_;                  // [B, E] balance-loss counts
  AlignedBuffer<int32_t> load_;             // [E]
  AlignedBuffer<int64_t> offsets_;          // [E+1]
  AlignedBuffer<ops::Index> row_token_;     // [N·K]
  AlignedBuffer<int64_t> row_of_;           // [N, K]
  // Expert intermediates (activations.h). The layer input x is kept by the block (the FP32
  // router's Wgrad reads it), so the shared experts read it and the expert-grouped inputs
  // xe, a gather of it, are gathered again in backward under every policy (a copy: the same
  // bits): neither needs a Linear copy of its own.
  Act xe_, ye_;        // [N·K, D] expert-grouped inputs (transient) and outputs (other: combine backward)
  LowAct ye_low_;      // [N·K, D] the outputs in BF16 (moe_combine bf16; then ye_ is transient)
  SwigluActs experts_acts_{ActKey::kGe, ActKey::kUe, ActKey::kAe};          // [N·K, Fe]
  SwigluActs shared_acts_{ActKey::kSharedG, ActKey::kSharedU, ActKey::kSharedA};  // [N, Fe·Es]
};

}  // namespace tinyseek::model
