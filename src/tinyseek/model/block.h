// One decoder layer (pre-norm residual):
//   mid = x + MLA(RMSNorm_in(x));   out = mid + FFN_or_MoE(RMSNorm_post(mid))
// The caller owns the residual buffers x and out (they are the previous/next layer's
// activations); the block keeps its own intermediates (norm outputs, mid, module state) as
// the recompute policy says (activations.h): with `full` it keeps none and backward re-runs
// the block's forward from x first.
#pragma once
#include <cstdint>
#include <optional>

#include "tinyseek/base/aligned.h"
#include "tinyseek/model/activations.h"
#include "tinyseek/model/ffn.h"
#include "tinyseek/model/linear_site.h"
#include "tinyseek/model/mla.h"
#include "tinyseek/model/moe.h"
#include "tinyseek/model/registry.h"
#include "tinyseek/ops/rope.h"

namespace tinyseek::model {

class Block {
 public:
  Block(const Registry& r, const BlockIds& ids);

  // out [N, D] = block(x [N, D]), N = B·T. Returns the MoE balance loss of this layer (0 if
  // dense). x must stay unchanged until backward.
  double forward(const Registry& r, const ActContext& ctx, float* out, const float* x, int64_t B, int64_t T,
                 const ops::RopeTable<float>& rope);
  // In place: d [N, D] holds ∂L/∂out on entry and ∂L/∂x on exit. balance_coef = α. ctx must
  // carry the policy forward ran with.
  void backward(Registry& r, Workspace& ws, const ActContext& ctx, float* d, const float* x,
                const ops::RopeTable<float>& rope, double balance_coef);

  int64_t layer() const { return ids_.layer; }
  // Model::set_norm_up_recompute for this block: MLA's latent norms and up-projections
  // (Mla::keep_policy) and the block's norm outputs that no Linear copy replaces (forward).
  void set_norm_up_recompute(bool on) {
    norm_up_recompute_ = on;
    attn_.set_up_recompute(on);
  }
  // Model::set_expert_dispatch for this block's MoE layer (nothing for a dense FFN).
  void set_expert_dispatch(dist::ExpertDispatch* d) {
    if (moe_) moe_->set_expert_dispatch(d);
  }
  bool is_moe() const { return moe_.has_value(); }
  const Moe* moe() const { return moe_ ? &*moe_ : nullptr; }
  int64_t saved_bytes() const;
  // The parts of saved_bytes(): attention (MLA) and the FFN (dense or MoE, with routing);
  // the rest is the block's norm outputs, rstd and mid.
  int64_t attention_saved_bytes() const { return attn_.saved_bytes(); }
  int64_t ffn_saved_bytes() const;

 private:
  BlockIds ids_;
  int64_t D_;
  double eps_;
  Mla attn_;
  std::optional<DenseFfn> dense_;
  std::optional<Moe> moe_;
  int64_t B_ = 0, T_ = 0;
  // RMSNorm(x; w) into act / rstd_act (placed per ctx): the norm outputs that selective
  // recomputation drops.
  float* norm(const Registry& r, const ActContext& ctx, Act& act, Act& rstd_act, ActKey key, ActKey rstd_key,
              const float* x, int weight, bool dropped = false);
  // The norm outputs are read in backward only as Linear inputs (RMSNorm backward reads its
  // input and rstd): h1 by q_a/q_proj and kv_a, h2 by the dense FFN's gate and up, or by
  // MoE's router (FP32), shared experts and expert gather. Under `none` they are recomputed
  // in backward (h*_renorm_, norm/up recompute) or, without it, each goes when all its
  // Linears keep their own BF16/FP8 copies (h2 of a MoE layer never: the router).
  bool h1_dropped_ = false, h2_dropped_ = false;
  bool norm_up_recompute_ = true;
  // h1 / h2 transient under `none`, recomputed in backward (Block::forward).
  bool h1_renorm_ = false, h2_renorm_ = false;
  Act h1_, rstd1_;   // input_layernorm output [N, D], rstd [N]             normed
  Act mid_;          // x + attention [N, D]                                 other
  Act h2_, rstd2_;   // post_attention_layernorm output [N, D], rstd [N]    normed
};

}  // namespace tinyseek::model
