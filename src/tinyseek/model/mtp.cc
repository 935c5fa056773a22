#include "tinyseek/model/mtp.h"

#include "tinyseek/ops/embedding.h"
#include "tinyseek/ops/rmsnorm.h"

namespace tinyseek::model {

MtpModule::MtpModule(const Registry& r, const MtpIds& ids, int64_t depth)
    : ids_(ids),
      k_(depth),
      D_(r.config().hidden_size),
      V_(r.config().vocab_size),
      eps_(r.config().rms_norm_eps),
      embed_id_(r.ids().embed_tokens),
      eh_proj_(r, ids.eh_proj),
      block_(r, ids.block) {}

void MtpModule::gather_inputs(const Registry& r, float* emb, float* prev) const {
  const int64_t Nk = B_ * Tk_;
  // Position i of sequence b reads the previous depth's h_i (whose sequences are one longer).
  for (int64_t b = 0; b < B_; ++b)
    for (int64_t i = 0; i < Tk_; ++i)
      copy_floats(prev + (b * Tk_ + i) * D_, h_prev_ + (b * (Tk_ + 1) + i) * D_, static_cast<size_t>(D_));
  ops::embedding_forward(emb, tokens_.data(), r.param(embed_id_), Nk, D_, V_);
}

double MtpModule::forward(const Registry& r, const ActContext& ctx, const float* h_prev, const ops::Index* tokens,
                          int64_t B, int64_t T, const ops::RopeTable<float>& rope) {
  B_ = B;
  Tk_ = T - k_;
  h_prev_ = h_prev;
  const int64_t Nk = B * Tk_;
  const size_t nd = static_cast<size_t>(Nk * D_);
  tokens_.resize(static_cast<size_t>(Nk));
  targets_.resize(static_cast<size_t>(Nk));
  rstd_e_.resize(static_cast<size_t>(Nk));
  rstd_h_.resize(static_cast<size_t>(Nk));
  x_in_.resize(nd);
  out_.resize(nd);
  // Position i of sequence b: embedding of t_{i+k}, target t_{i+k+1}.
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < Tk_; ++i) {
      const int64_t n = b * Tk_ + i;
      tokens_[static_cast<size_t>(n)] = tokens[b * (T + 1) + i + k_];
      targets_[static_cast<size_t>(n)] = tokens[b * (T + 1) + i + k_ + 1];
    }
  float* emb = ctx.arena.get(ActKey::kMtpEmb, nd);
  float* prev = ctx.arena.get(ActKey::kMtpPrev, nd);
  float* normed = ctx.arena.get(ActKey::kMtpNormed, nd);
  gather_inputs(r, emb, prev);
  concat_dropped_ = eh_proj_.can_drop_input();
  float* concat = concat_.place(2 * nd, !concat_dropped_, ctx.arena, ActKey::kMtpConcat);
  ops::rmsnorm_forward(normed, rstd_e_.data(), emb, r.param(ids_.enorm), Nk, D_, eps_);
  for (int64_t n = 0; n < Nk; ++n) copy_floats(concat + n * 2 * D_, normed + n * D_, size_t(D_));
  ops::rmsnorm_forward(normed, rstd_h_.data(), prev, r.param(ids_.hnorm), Nk, D_, eps_);
  for (int64_t n = 0; n < Nk; ++n) copy_floats(concat + n * 2 * D_ + D_, normed + n * D_, size_t(D_));
  eh_proj_.forward(r, x_in_.data(), concat, Nk, {.x_dropped = concat_dropped_});
  return block_.forward(r, ctx, out_.data(), x_in_.data(), B, Tk_, rope);
}

void MtpModule::backward(Registry& r, Workspace& ws, const ActContext& ctx, float* d_hidden, float* d_prev,
                         const ops::RopeTable<float>& rope, double balance_coef) {
  const int64_t Nk = B_ * Tk_;
  const size_t nd = static_cast<size_t>(Nk * D_);
  block_.backward(r, ws, ctx, d_hidden, x_in_.data(), rope, balance_coef);  // d_hidden is now ∂L/∂h'^k
  float* d_concat = ws.zeroed(Slot::kDMtpConcat, 2 * nd);
  eh_proj_.backward(r, d_concat, d_hidden, concat_dropped_ ? nullptr : concat_.data(), Nk);

  float* emb = ctx.arena.get(ActKey::kMtpEmb, nd);
  float* prev = ctx.arena.get(ActKey::kMtpPrev, nd);
  gather_inputs(r, emb, prev);
  // The two halves of the concatenation, each through its norm.
  float* d_half = ws.raw(Slot::kDMtpPart, nd);
  for (int64_t n = 0; n < Nk; ++n) copy_floats(d_half + n * D_, d_concat + n * 2 * D_, size_t(D_));
  float* d_in = ws.zeroed(Slot::kDMtpNormIn, nd);
  ops::rmsnorm_backward(d_in, r.grad(ids_.enorm), d_half, emb, r.param(ids_.enorm), rstd_e_.data(), Nk, D_);
  ops::embedding_backward(r.grad(embed_id_), d_in, tokens_.data(), Nk, D_, V_);

  for (int64_t n = 0; n < Nk; ++n) copy_floats(d_half + n * D_, d_concat + n * 2 * D_ + D_, size_t(D_));
  d_in = ws.zeroed(Slot::kDMtpNormIn, nd);
  ops::rmsnorm_backward(d_in, r.grad(ids_.hnorm), d_half, prev, r.param(ids_.hnorm), rstd_h_.data(), Nk, D_);
  for (int64_t b = 0; b < B_; ++b)
    for (int64_t i = 0; i < Tk_; ++i) {
      float* dst = d_prev + (b * (Tk_ + 1) + i) * D_;
      const float* src = d_in + (b * Tk_ + i) * D_;
      for (int64_t j = 0; j < D_; ++j) dst[j] += src[j];
    }
}

}  // namespace tinyseek::model
