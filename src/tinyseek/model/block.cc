#include "tinyseek/model/block.h"

#include "tinyseek/ops/rmsnorm.h"

namespace tinyseek::model {

Block::Block(const Registry& r, const BlockIds& ids)
    : ids_(ids), D_(r.config().hidden_size), eps_(r.config().rms_norm_eps), attn_(r, ids.attn) {
  const ActStore cache = swiglu_cache(r.config().precision, ids.layer, r.config().num_hidden_layers);
  if (ids.is_moe)
    moe_.emplace(r, ids.moe, cache);
  else
    dense_.emplace(r, ids.dense, cache);
}

float* Block::norm(const Registry& r, const ActContext& ctx, Act& act, Act& rstd_act, ActKey key, ActKey rstd_key,
                   const float* x, int weight, bool dropped) {
  const int64_t N = B_ * T_;
  float* y = act.place(static_cast<size_t>(N * D_), ctx.keep.normed && !dropped, ctx.arena, key);
  float* rstd = rstd_act.place(static_cast<size_t>(N), ctx.keep.normed, ctx.arena, rstd_key);
  ops::rmsnorm_forward(y, rstd, x, r.param(weight), N, D_, eps_);
  return y;
}

double Block::forward(const Registry& r, const ActContext& ctx, float* out, const float* x, int64_t B, int64_t T,
                      const ops::RopeTable<float>& rope) {
  B_ = B;
  T_ = T;
  const size_t nd = static_cast<size_t>(B * T * D_);
  // Under `none` (ctx.keep.normed) with norm/up recompute (set_norm_up_recompute, the
  // default) no norm output is kept, in FP32 or as a Linear's copy: h1 and h2 are recomputed
  // in backward from x / mid (one RMSNorm each, the same bits; DeepSeek-V3 §3.2.3), and
  // their Linears, given the recomputed FP32 input, keep no copies either where the copy's
  // format is the Wgrad operand's (LinearSite::call_precision: no bit changes). [N, D] FP32
  // (h2 of a MoE layer: its FP32 router reads it), or BF16/FP8 copies per reading Linear.
  // Without it a norm output goes to its Linears' own copies where they all can keep one
  // (h1: q_a/q_proj and kv_a; a dense FFN's h2: gate and up), else it is kept in FP32.
  // `selective` recomputes both anyway (and so keeps no copies).
  const bool renorm_none = norm_up_recompute_ && ctx.keep.normed;
  h1_dropped_ = ctx.keep.normed && !renorm_none && attn_.can_drop_input(ctx.keep);
  h2_dropped_ = ctx.keep.normed && !renorm_none && dense_ && dense_->can_drop_input();
  h1_renorm_ = renorm_none;
  h2_renorm_ = renorm_none;
  const float* h1 =
      norm(r, ctx, h1_, rstd1_, ActKey::kH1, ActKey::kRstd1, x, ids_.input_layernorm, h1_dropped_ || h1_renorm_);
  float* mid = mid_.place(nd, ctx.keep.other, ctx.arena, ActKey::kMid);
  copy_floats(mid, x, nd);
  attn_.forward(r, ctx, mid, h1, B, T, rope, h1_dropped_);  // mid = x + attention

  const float* h2 = norm(r, ctx, h2_, rstd2_, ActKey::kH2, ActKey::kRstd2, mid, ids_.post_attention_layernorm,
                         h2_dropped_ || h2_renorm_);
  copy_floats(out, mid, nd);
  if (moe_) return moe_->forward(r, ctx, out, h2, B, T);  // out = mid + MoE
  dense_->forward(r, ctx, out, h2, B * T, h2_dropped_);    // out = mid + FFN
  return 0.0;
}

void Block::backward(Registry& r, Workspace& ws, const ActContext& ctx, float* d, const float* x,
                     const ops::RopeTable<float>& rope, double balance_coef) {
  const int64_t N = B_ * T_;
  const size_t nd = static_cast<size_t>(N * D_);
  ActContext c = ctx;
  if (!ctx.keep.other) {
    // full: nothing of this block survived the later layers; re-run its forward from x
    // (a repeat: the Linears record no amaxes and no telemetry again).
    ActContext again = ctx;
    again.repeat = true;
    forward(r, again, ctx.arena.get(ActKey::kBlockOut, nd), x, B_, T_, rope);
    c.fresh = true;
  }
  const bool renorm = !c.fresh && !ctx.keep.normed;  // selective: norm outputs were dropped
  // FFN branch: d (= ∂L/∂out) reaches mid directly and through norm_post ∘ FFN.
  if (renorm || (h2_renorm_ && !c.fresh))
    norm(r, c, h2_, rstd2_, ActKey::kH2, ActKey::kRstd2, mid_.data(), ids_.post_attention_layernorm, h2_renorm_);
  float* d_h2 = ws.zeroed(Slot::kDNormOut, nd);
  const float* h2 = h2_dropped_ ? nullptr : h2_.data();
  if (moe_)
    moe_->backward(r, ws, c, d_h2, d, h2, balance_coef);
  else
    dense_->backward(r, ws, c, d_h2, d, h2);
  ops::rmsnorm_backward(d, r.grad(ids_.post_attention_layernorm), d_h2, mid_.data(),
                        r.param(ids_.post_attention_layernorm), rstd2_.data(), N, D_);
  // d is now ∂L/∂mid; attention branch likewise.
  if (renorm || (h1_renorm_ && !c.fresh))
    norm(r, c, h1_, rstd1_, ActKey::kH1, ActKey::kRstd1, x, ids_.input_layernorm, h1_renorm_);
  float* d_h1 = ws.zeroed(Slot::kDNormOut, nd);
  attn_.backward(r, ws, c, d_h1, d, h1_dropped_ ? nullptr : h1_.data(), rope);
  ops::rmsnorm_backward(d, r.grad(ids_.input_layernorm), d_h1, x, r.param(ids_.input_layernorm), rstd1_.data(), N,
                        D_);
}

int64_t Block::ffn_saved_bytes() const { return moe_ ? moe_->saved_bytes() : dense_->saved_bytes(); }

int64_t Block::saved_bytes() const {
  return static_cast<int64_t>(sizeof(float)) * (h1_.saved_floats() + rstd1_.saved_floats() + mid_.saved_floats() +
                                                h2_.saved_floats() + rstd2_.saved_floats()) +
         attn_.saved_bytes() + (moe_ ? moe_->saved_bytes() : dense_->saved_bytes());
}

}  // namespace tinyseek::model
