#include "tinyseek/model/mla.h"

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

void Mla::forward(const Registry& r, float* y, const float* x, int64_t B, int64_t T,
                  const ops::RopeTable<float>& rope) {
  B_ = B;
  T_ = T;
  const int64_t N = B * T, dqk = dn_ + dr_, dkva = dc_ + dr_;
  q_.resize(static_cast<size_t>(N * H_ * dqk));
  if (dq_ > 0) {
    cq_raw_.resize(static_cast<size_t>(N * dq_));
    cq_.resize(static_cast<size_t>(N * dq_));
    rstd_q_.resize(static_cast<size_t>(N));
    q_a_proj_.forward(r, cq_raw_.data(), x, N);
    ops::rmsnorm_forward(cq_.data(), rstd_q_.data(), cq_raw_.data(), r.param(ids_.q_a_layernorm), N, dq_, eps_);
    q_b_proj_.forward(r, q_.data(), cq_.data(), N);
  } else {
    q_proj_.forward(r, q_.data(), x, N);
  }
  // RoPE in place on the rope part of every head: attention consumes the rotated q, and
  // backward only needs the inverse rotation (the table), not the unrotated values.
  ops::rope_forward(q_.data() + dn_, q_.data() + dn_, rope, N, H_, T, 0, dqk, dqk);

  kv_a_out_.resize(static_cast<size_t>(N * dkva));
  ckv_.resize(static_cast<size_t>(N * dc_));
  rstd_kv_.resize(static_cast<size_t>(N));
  k_pe_.resize(static_cast<size_t>(N * dr_));
  kv_.resize(static_cast<size_t>(N * H_ * (dn_ + dv_)));
  kv_a_proj_.forward(r, kv_a_out_.data(), x, N);
  ops::rmsnorm_forward(ckv_.data(), rstd_kv_.data(), kv_a_out_.data(), r.param(ids_.kv_a_layernorm), N, dc_, eps_,
                       dkva);
  ops::rope_forward(k_pe_.data(), kv_a_out_.data() + dc_, rope, N, 1, T, 0, dr_, dkva);
  kv_b_proj_.forward(r, kv_.data(), ckv_.data(), N);

  o_out_.resize(static_cast<size_t>(N * H_ * dv_));
  lse_.resize(static_cast<size_t>(N * H_));
  ops::attention_forward(o_out_.data(), lse_.data(), q_.data(), kv_.data(), k_pe_.data(), B, T, H_, dn_, dr_, dv_);
  o_proj_.forward(r, y, o_out_.data(), N, /*accumulate=*/true);
}

void Mla::backward(Registry& r, Workspace& ws, float* dx, const float* dy, const float* x,
                   const ops::RopeTable<float>& rope) {
  const int64_t N = B_ * T_, dqk = dn_ + dr_, dkva = dc_ + dr_;
  const auto n = [&](int64_t w) { return static_cast<size_t>(N * w); };

  float* d_o = ws.zeroed(Slot::kDAttnO, n(H_ * dv_));
  o_proj_.backward(r, d_o, dy, o_out_.data(), N);

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

  float* d_ckv = ws.zeroed(Slot::kDCkv, n(dc_));
  kv_b_proj_.backward(r, d_ckv, dkv, ckv_.data(), N);
  ops::rmsnorm_backward(d_kva, r.grad(ids_.kv_a_layernorm), d_ckv, kv_a_out_.data(), r.param(ids_.kv_a_layernorm),
                        rstd_kv_.data(), N, dc_, dkva);
  kv_a_proj_.backward(r, dx, d_kva, x, N);

  if (dq_ > 0) {
    float* d_cq = ws.zeroed(Slot::kDCq, n(dq_));
    q_b_proj_.backward(r, d_cq, dq, cq_.data(), N);
    float* d_cq_raw = ws.zeroed(Slot::kDCqRaw, n(dq_));
    ops::rmsnorm_backward(d_cq_raw, r.grad(ids_.q_a_layernorm), d_cq, cq_raw_.data(), r.param(ids_.q_a_layernorm),
                          rstd_q_.data(), N, dq_);
    q_a_proj_.backward(r, dx, d_cq_raw, x, N);
  } else {
    q_proj_.backward(r, dx, dq, x, N);
  }
}

int64_t Mla::saved_floats() const {
  return static_cast<int64_t>(cq_raw_.size() + cq_.size() + rstd_q_.size() + q_.size() + kv_a_out_.size() +
                              ckv_.size() + rstd_kv_.size() + k_pe_.size() + kv_.size() + o_out_.size() +
                              lse_.size());
}

}  // namespace tinyseek::model
