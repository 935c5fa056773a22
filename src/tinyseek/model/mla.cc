#include "tinyseek/model/mla.h"

#include "tinyseek/base/check.h"
#include "tinyseek/ops/attention.h"
#include "tinyseek/ops/rmsnorm.h"

namespace tinyseek::model {

Mla::Mla(const Registry& r, const MlaIds& ids) : ids_(ids) {
  const ModelConfig& c = r.config();
  D_ = c.hidden_size;
  H_ = c.num_attention_heads;
  dq_ = c.q_lora_rank;
  dc_ = c.kv_lora_rank;
  dn_ = c.qk_nope_head_dim;
  dr_ = c.qk_rope_head_dim;
  dv_ = c.v_head_dim;
  eps_ = c.rms_norm_eps;
  if (dq_ > 0) {
    q_a_proj_ = LinearSite(r, ids.q_a_proj);
    q_b_proj_ = LinearSite(r, ids.q_b_proj);
  } else {
    q_proj_ = LinearSite(r, ids.q_proj);
  }
  kv_a_proj_ = LinearSite(r, ids.kv_a_proj_with_mqa);
  kv_b_proj_ = LinearSite(r, ids.kv_b_proj);
  o_proj_ = LinearSite(r, ids.o_proj);
}

KeepPolicy Mla::keep_policy(const KeepPolicy& k) const {
  KeepPolicy m = k;
  // Whatever the Linears' precision: the recompute re-runs the same RMSNorm and
  // up-projection kernels on the kept FP32 c_q_raw / kv_a (without query LoRA: on x, which
  // the block recomputes under the same setting, Block::forward) with the step's weights,
  // as `selective` does, so the bits do not depend on whether q_b / kv_b keep low-precision
  // copies or read the recomputed FP32 c_q / c_kv in their Wgrad. Backward runs with what
  // forward decided (keep_).
  if (up_recompute_ && k.normed && k.upproj) {
    m.normed = false;
    m.upproj = false;
  }
  return m;
}

bool Mla::can_drop_input(const KeepPolicy& k) const {
  // selective / full: backward recomputes q (from x when dq = 0), so the block keeps or
  // recomputes x. keep_policy's recomputation under `none` starts from c_q_raw (dq > 0).
  if (!k.normed || !k.upproj) return false;
  return dq_ > 0 ? all_can_drop_input({&q_a_proj_, &kv_a_proj_}) : all_can_drop_input({&q_proj_, &kv_a_proj_});
}

void Mla::query(const Registry& r, const ActContext& ctx, const float* x, const ops::RopeTable<float>& rope) {
  const int64_t N = B_ * T_, dqk = dn_ + dr_;
  const KeepPolicy& k = ctx.keep;
  float* q = q_.place(static_cast<size_t>(N * H_ * dqk), k.upproj, ctx.arena, ActKey::kQ);
  if (dq_ > 0) {
    float* cq = cq_.place(static_cast<size_t>(N * dq_), k.normed && !cq_dropped_, ctx.arena, ActKey::kCq);
    float* rstd = rstd_q_.place(static_cast<size_t>(N), k.normed, ctx.arena, ActKey::kRstdQ);
    ops::rmsnorm_forward(cq, rstd, cq_raw_.data(), r.param(ids_.q_a_layernorm), N, dq_, eps_);
    q_b_proj_.forward(r, q, cq, N, {.x_dropped = cq_dropped_, .repeat = ctx.repeat});
  } else {
    q_proj_.forward(r, q, x, N, {.x_dropped = x_dropped_, .repeat = ctx.repeat});
  }
  // RoPE in place on the rope part of every head: attention consumes the rotated q, and
  // backward only needs the inverse rotation (the table), not the unrotated values.
  ops::rope_forward(q + dn_, q + dn_, rope, N, H_, T_, 0, dqk, dqk);
}

void Mla::key_value(const Registry& r, const ActContext& ctx) {
  const int64_t N = B_ * T_, dkva = dc_ + dr_;
  const KeepPolicy& k = ctx.keep;
  float* ckv = ckv_.place(static_cast<size_t>(N * dc_), k.normed && !ckv_dropped_, ctx.arena, ActKey::kCkv);
  float* rstd = rstd_kv_.place(static_cast<size_t>(N), k.normed, ctx.arena, ActKey::kRstdKv);
  ops::rmsnorm_forward(ckv, rstd, kv_a_out_.data(), r.param(ids_.kv_a_layernorm), N, dc_, eps_, dkva);
  float* kv = kv_.place(static_cast<size_t>(N * H_ * (dn_ + dv_)), k.upproj, ctx.arena, ActKey::kKv);
  kv_b_proj_.forward(r, kv, ckv, N, {.x_dropped = ckv_dropped_, .repeat = ctx.repeat});
}

void Mla::forward(const Registry& r, const ActContext& ctx, float* y, const float* x, int64_t B, int64_t T,
                  const ops::RopeTable<float>& rope, bool x_dropped) {
  B_ = B;
  T_ = T;
  const int64_t N = B * T, dkva = dc_ + dr_;
  const auto n = [&](int64_t w) { return static_cast<size_t>(N * w); };
  TS_ASSERT(!x_dropped || can_drop_input(ctx.keep));
  keep_ = keep_policy(ctx.keep);
  ActContext mctx = ctx;
  mctx.keep = keep_;
  const KeepPolicy& k = keep_;
  x_dropped_ = x_dropped;
  // c_q / c_kv are needed in backward only by q_b / kv_b Wgrad and, when the policy drops
  // q / kv, by their recompute.
  const bool keeps_up = k.normed && k.upproj;
  cq_dropped_ = dq_ > 0 && keeps_up && q_b_proj_.can_drop_input();
  ckv_dropped_ = keeps_up && kv_b_proj_.can_drop_input();
  // q_a_proj quantizes x once for itself and kv_a_proj (ops::InputShare; q_b_proj in
  // between shares nothing). Without q_a_proj (dq = 0) each quantizes its own copy.
  if (dq_ > 0)
    q_a_proj_.forward(r, cq_raw_.place(n(dq_), k.other, mctx.arena, ActKey::kCqRaw), x, N,
                      {.x_dropped = x_dropped, .repeat = mctx.repeat, .share = ops::InputShare::kPublish});
  query(r, mctx, x, rope);

  float* kv_a = kv_a_out_.place(n(dkva), k.other, mctx.arena, ActKey::kKvA);
  kv_a_proj_.forward(r, kv_a, x, N,
                     {.x_dropped = x_dropped, .repeat = mctx.repeat,
                      .share = dq_ > 0 ? ops::InputShare::kReuse : ops::InputShare::kNone});
  float* k_pe = k_pe_.place(n(dr_), k.other, mctx.arena, ActKey::kKpe);
  ops::rope_forward(k_pe, kv_a + dc_, rope, N, 1, T, 0, dr_, dkva);
  key_value(r, mctx);

  float* o = o_out_.place(n(H_ * dv_), k.other, mctx.arena, ActKey::kO);
  float* lse = lse_.place(n(H_), k.other, mctx.arena, ActKey::kLse);
  ops::attention_forward(o, lse, q_.data(), kv_.data(), k_pe, B, T, H_, dn_, dr_, dv_);
  // o is kept for attention backward, so o_proj never needs a copy of its own.
  o_proj_.forward(r, y, o, N, {.accumulate = true, .repeat = mctx.repeat});
}

void Mla::backward(Registry& r, Workspace& ws, const ActContext& ctx, float* dx, const float* dy, const float* x,
                   const ops::RopeTable<float>& rope) {
  const int64_t N = B_ * T_, dqk = dn_ + dr_, dkva = dc_ + dr_;
  const auto n = [&](int64_t w) { return static_cast<size_t>(N * w); };
  // Selective recomputation: the same kernels on the same saved inputs give the same bits.
  if (!ctx.fresh && !(keep_.normed && keep_.upproj)) {
    ActContext again = ctx;
    again.keep = keep_;
    again.repeat = true;
    query(r, again, x, rope);
    key_value(r, again);
  }
  const float* cq = cq_dropped_ ? nullptr : cq_.data();
  const float* ckv = ckv_dropped_ ? nullptr : ckv_.data();
  const float* xin = x_dropped_ ? nullptr : x;

  // Gradients a Dgrad GEMM is the first to produce are written (overwrite_dx), not zero-filled
  // and accumulated: the same bits (ops::linear_backward).
  float* d_o = ws.raw(Slot::kDAttnO, n(H_ * dv_));
  o_proj_.backward(r, d_o, dy, o_out_.data(), N, ops::InputShare::kNone, /*overwrite_dx=*/true);

  float* dq = ws.zeroed(Slot::kDQ, n(H_ * dqk));
  float* dkv = ws.zeroed(Slot::kDKv, n(H_ * (dn_ + dv_)));
  float* dk_pe = ws.zeroed(Slot::kDKpe, n(dr_));
  ops::attention_backward(dq, dkv, dk_pe, d_o, q_.data(), kv_.data(), k_pe_.data(), o_out_.data(), lse_.data(), B_,
                          T_, H_, dn_, dr_, dv_);
  // Undo the rotations: in place on dq's rope part; into the k_pe_raw columns of d kv_a
  // (rope_backward overwrites, rmsnorm_backward below accumulates into the other columns).
  ops::rope_backward(dq + dn_, dq + dn_, rope, N, H_, T_, 0, dqk, dqk);
  float* d_kva = ws.zeroed(Slot::kDKvA, n(dkva));
  ops::rope_backward(d_kva + dc_, dk_pe, rope, N, 1, T_, 0, dkva, dr_);

  float* d_ckv = ws.raw(Slot::kDCkv, n(dc_));
  kv_b_proj_.backward(r, d_ckv, dkv, ckv, N, ops::InputShare::kNone, /*overwrite_dx=*/true);
  ops::rmsnorm_backward(d_kva, r.grad(ids_.kv_a_layernorm), d_ckv, kv_a_out_.data(), r.param(ids_.kv_a_layernorm),
                        rstd_kv_.data(), N, dc_, dkva);
  // kv_a_proj's Wgrad operand of x serves q_a_proj's too (when x is kept, not cached).
  kv_a_proj_.backward(r, dx, d_kva, xin, N, dq_ > 0 ? ops::InputShare::kPublish : ops::InputShare::kNone);

  if (dq_ > 0) {
    float* d_cq = ws.raw(Slot::kDCq, n(dq_));
    q_b_proj_.backward(r, d_cq, dq, cq, N, ops::InputShare::kNone, /*overwrite_dx=*/true);
    float* d_cq_raw = ws.zeroed(Slot::kDCqRaw, n(dq_));
    ops::rmsnorm_backward(d_cq_raw, r.grad(ids_.q_a_layernorm), d_cq, cq_raw_.data(), r.param(ids_.q_a_layernorm),
                          rstd_q_.data(), N, dq_);
    q_a_proj_.backward(r, dx, d_cq_raw, xin, N, ops::InputShare::kReuse);
  } else {
    q_proj_.backward(r, dx, dq, xin, N);
  }
}

int64_t Mla::saved_bytes() const {
  return static_cast<int64_t>(sizeof(float)) * (cq_raw_.saved_floats() + cq_.saved_floats() + rstd_q_.saved_floats() + q_.saved_floats() +
         kv_a_out_.saved_floats() + ckv_.saved_floats() + rstd_kv_.saved_floats() + k_pe_.saved_floats() +
         kv_.saved_floats() + o_out_.saved_floats() + lse_.saved_floats());
}

}  // namespace tinyseek::model
