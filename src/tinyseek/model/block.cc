#include "tinyseek/model/block.h"

#include "tinyseek/ops/rmsnorm.h"

namespace tinyseek::model {

Block::Block(const Registry& r, const BlockIds& ids)
    : ids_(ids), D_(r.config().hidden_size), eps_(r.config().rms_norm_eps), attn_(r, ids.attn) {
  if (ids.is_moe)
    moe_.emplace(r, ids.moe);
  else
    dense_.emplace(r, ids.dense);
}

double Block::forward(const Registry& r, float* out, const float* x, int64_t B, int64_t T,
                      const ops::RopeTable<float>& rope) {
  B_ = B;
  T_ = T;
  const int64_t N = B * T;
  const size_t nd = static_cast<size_t>(N * D_);
  h1_.resize(nd);
  rstd1_.resize(static_cast<size_t>(N));
  mid_.resize(nd);
  h2_.resize(nd);
  rstd2_.resize(static_cast<size_t>(N));

  ops::rmsnorm_forward(h1_.data(), rstd1_.data(), x, r.param(ids_.input_layernorm), N, D_, eps_);
  copy_floats(mid_.data(), x, nd);
  attn_.forward(r, mid_.data(), h1_.data(), B, T, rope);  // mid = x + attention

  ops::rmsnorm_forward(h2_.data(), rstd2_.data(), mid_.data(), r.param(ids_.post_attention_layernorm), N, D_, eps_);
  copy_floats(out, mid_.data(), nd);
  if (moe_) return moe_->forward(r, out, h2_.data(), B, T);  // out = mid + MoE
  dense_->forward(r, out, h2_.data(), N);                    // out = mid + FFN
  return 0.0;
}

void Block::backward(Registry& r, Workspace& ws, float* d, const float* x, const ops::RopeTable<float>& rope,
                     double balance_coef) {
  const int64_t N = B_ * T_;
  const size_t nd = static_cast<size_t>(N * D_);
  // FFN branch: d (= ∂L/∂out) reaches mid directly and through norm_post ∘ FFN.
  float* d_h2 = ws.zeroed(Slot::kDNormOut, nd);
  if (moe_)
    moe_->backward(r, ws, d_h2, d, h2_.data(), balance_coef);
  else
    dense_->backward(r, ws, d_h2, d, h2_.data());
  ops::rmsnorm_backward(d, r.grad(ids_.post_attention_layernorm), d_h2, mid_.data(),
                        r.param(ids_.post_attention_layernorm), rstd2_.data(), N, D_);
  // d is now ∂L/∂mid; attention branch likewise.
  float* d_h1 = ws.zeroed(Slot::kDNormOut, nd);
  attn_.backward(r, ws, d_h1, d, h1_.data(), rope);
  ops::rmsnorm_backward(d, r.grad(ids_.input_layernorm), d_h1, x, r.param(ids_.input_layernorm), rstd1_.data(), N,
                        D_);
}

int64_t Block::saved_floats() const {
  return static_cast<int64_t>(h1_.size() + rstd1_.size() + mid_.size() + h2_.size() + rstd2_.size()) +
         attn_.saved_floats() + (moe_ ? moe_->saved_floats() : dense_->saved_floats());
}

}  // namespace tinyseek::model
