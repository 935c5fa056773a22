// DeepSeekMoE layer (docs/model.md "FFN and DeepSeekMoE"):
//   s = sigmoid(x W_gateᵀ) [N, E]; top-K of s + bias (optionally group-limited); gates g;
//   y += shared(x) + Σ_k g_k expert_{i_k}(x)
// plus this layer's sequence-wise balance loss (no gradient through the selection, the
// one-hot counts f, or the bias).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "tinyseek/base/aligned.h"
#include "tinyseek/model/activations.h"
#include "tinyseek/model/ffn.h"
#include "tinyseek/model/linear_site.h"
#include "tinyseek/model/registry.h"
#include "tinyseek/ops/dims.h"
#include "tinyseek/ops/router.h"

namespace tinyseek::dist {
class ExpertDispatch;  // dist/expert_parallel.h
}

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

  // Expert parallelism (dist/expert_parallel.h; set through Model::set_expert_dispatch): the
  // layer then runs only the experts `d` assigns to this rank and exchanges token rows with
  // the other ranks. nullptr (the default): every expert runs here. Not owned; set it
  // between steps, not between a forward and its backward.
  void set_expert_dispatch(dist::ExpertDispatch* d) { dispatch_ = d; }

  // Tokens that selected each expert in the last forward [E] (input of the bias update).
  const int32_t* load() const { return load_.data(); }
  int64_t num_experts() const { return E_; }
  int64_t saved_bytes() const;

 private:
  // Expert-parallel halves of forward and backward: from the expert-grouped rows of this
  // rank's tokens (xe, or ∂L/∂ye) to the expert outputs (ye, or ∂L/∂xe) of the same rows,
  // running only the local experts on the rows every rank sent them.
  void ep_forward(const Registry& r, const ActContext& ctx, dist::ExpertDispatch& d, float* ye, const float* xe);
  void ep_backward(Registry& r, Workspace& ws, const ActContext& ctx, dist::ExpertDispatch& d, float* dxe,
                   const float* dye);
  // Rows of D floats over the wire in `wire` (kFp32 or kBf16): to_owners sends this rank's
  // expert-grouped rows in [N·K, D] to their experts' owners, out [R, D] expert-major;
  // to_tokens sends the expert-major rows in [R, D] back, out [N·K, D] in the local order.
  void ep_to_owners(dist::ExpertDispatch& d, float* out, const float* in, StoreFormat wire);
  void ep_to_tokens(dist::ExpertDispatch& d, float* out, const float* in, StoreFormat wire);

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

  // Expert parallelism (set by the last forward): rows this rank sends to / receives from
  // each rank, the received rows per (source rank s, local expert j) at s·El + j, where
  // block (s, j) lies in the received (rank-major) order and in the expert-major order the
  // local experts run on, and the local experts' row offsets [El+1] in the latter.
  dist::ExpertDispatch* dispatch_ = nullptr;  // set_expert_dispatch
  bool ep_ = false;                            // the last forward ran expert parallel
  int64_t ep_rows_ = 0;  // R, rows received
  std::vector<int64_t> ep_send_rows_, ep_recv_rows_, ep_counts_, ep_recv_at_, ep_local_at_, ep_offsets_;
  AlignedBuffer<float> ep_xe_;        // [R, D] received inputs, expert-major (kept for backward)
  AlignedBuffer<float> ep_tmp_, ep_out_, ep_dx_;  // [R, D] scratch
  std::vector<std::byte> ep_send_, ep_recv_;
  numerics::QTensor ep_q_, ep_rq_;
};

}  // namespace tinyseek::model
