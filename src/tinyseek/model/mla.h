// Multi-head latent attention (docs/model.md "MLA"), forward with explicit saved state and
// backward into the registry's gradients.
//
//   c_q  = RMSNorm_q(x W_qaᵀ)              [N, dq]       (dq = 0: q = x W_qᵀ)
//   q    = c_q W_qbᵀ, RoPE on q[..., dn:]  [N, H, dn+dr]
//   kv_a = x W_kvaᵀ = [c_kv_raw | k_pe_raw] [N, dc+dr]
//   c_kv = RMSNorm_kv(c_kv_raw), kv = c_kv W_kvbᵀ [N, H, dn+dv], k_pe = RoPE(k_pe_raw) [N, dr]
//   o    = attention(q, kv, k_pe) [N, H·dv];   y += o W_oᵀ
#pragma once
#include <cstdint>

#include "tinyseek/base/aligned.h"
#include "tinyseek/model/activations.h"
#include "tinyseek/model/linear_site.h"
#include "tinyseek/model/registry.h"
#include "tinyseek/ops/rope.h"

namespace tinyseek::model {

class Mla {
 public:
  Mla(const Registry& r, const MlaIds& ids);

  // Whether the caller may drop x after a forward under policy k: every Linear reading x
  // (q_a_proj or q_proj, kv_a_proj) can keep its own BF16/FP8 copy, and backward will not
  // recompute the query from x (k keeps q and the latent norms, or the query starts from
  // c_q_raw: dq > 0).
  bool can_drop_input(const KeepPolicy& k) const;
  // What this module keeps under the model's policy k. Under `none` (with
  // set_up_recompute(true), the default) the module keeps neither the
  // up-projection outputs q, kv (FP32 [N, H(dn+dr)] + [N, H(dn+dv)]: 14 of its 21 MiB per
  // layer on `base`) nor the latent norms c_q, c_kv and their rstd, and recomputes them in
  // backward from the kept c_q_raw and kv_a (dq = 0: q from x, which the block then
  // recomputes too and passes to backward), as `selective` does (DeepSeek-V3 §3.2.3
  // recomputes RMSNorm and the MLA up-projections): the same bits, about 2% more GEMM work.
  // Every recipe alike: bf16 / fp8 Linears then keep no copies of c_q, c_kv either, FP32
  // Linears read the recomputed FP32 c_q, c_kv in their Wgrad. set_up_recompute(false)
  // keeps everything (the layout before 2026-12-08; training.recompute_norm_up = false).
  // The block sets it together with its own norm recompute (Block::set_norm_up_recompute).
  KeepPolicy keep_policy(const KeepPolicy& k) const;
  void set_up_recompute(bool on) { up_recompute_ = on; }
  // y [N, D] += MLA(x); x [N, D] is the normalised block input, N = B·T (T = this block's
  // sequence length: positions 0..T-1 for RoPE). Keeps what backward needs per ctx.keep.
  // x_dropped: the caller drops x after forward (needs can_drop_input(); only where
  // backward would not recompute the query from it, i.e. when the policy keeps q).
  void forward(const Registry& r, const ActContext& ctx, float* y, const float* x, int64_t B, int64_t T,
               const ops::RopeTable<float>& rope, bool x_dropped);
  // dx [N, D] += ∂L/∂x given dy = ∂L/∂y [N, D]; x as in forward, null when dropped. Weight
  // gradients accumulate. Recomputes the dropped latent norms and up-projections first
  // (unless ctx.fresh).
  void backward(Registry& r, Workspace& ws, const ActContext& ctx, float* dx, const float* dy, const float* x,
                const ops::RopeTable<float>& rope);

  int64_t saved_bytes() const;  // memory held for backward (for logs)

 private:
  // c_q = RMSNorm(c_q_raw), q = q_b_proj(c_q) (or q_proj(x)) with RoPE: the query side.
  void query(const Registry& r, const ActContext& ctx, const float* x, const ops::RopeTable<float>& rope);
  // c_kv = RMSNorm(kv_a[:, :dc]), kv = kv_b_proj(c_kv): the key/value up-projection.
  void key_value(const Registry& r, const ActContext& ctx);

  MlaIds ids_;
  int64_t D_, H_, dq_, dc_, dn_, dr_, dv_;
  double eps_;
  LinearSite q_a_proj_, q_b_proj_, q_proj_, kv_a_proj_, kv_b_proj_, o_proj_;
  int64_t B_ = 0, T_ = 0;
  bool up_recompute_ = true;
  KeepPolicy keep_;  // keep_policy() of the last forward's policy
  // What the last forward dropped because its Linear keeps a BF16/FP8 copy instead
  // (LinearSite::can_drop_input): the block input x (q_a/q_proj, kv_a), c_q (q_b), c_kv (kv_b).
  bool x_dropped_ = false, cq_dropped_ = false, ckv_dropped_ = false;
  // Intermediates for backward, N = B·T rows each (activations.h: saved or transient).
  // Linear inputs: cq and ckv are read in backward only by q_b / kv_b Wgrad (RMSNorm backward
  // reads cq_raw / kv_a and rstd) and by the up-projection recompute, so they go when the
  // Linear keeps a copy and the policy keeps q / kv. o is also read by attention backward
  // (D = rowsum(dO ⊙ O)): always kept in FP32, so o_proj keeps no copy of its own
  // (DeepSeek-V3 stores it in E5M6 for that reason; we keep FP32).
  Act cq_raw_, cq_, rstd_q_;  // [N, dq], [N, dq], [N]      (dq > 0)     other, normed, normed
  Act q_;                     // [N, H(dn+dr)] after RoPE                 upproj
  Act kv_a_out_;              // [N, dc+dr] raw projection output         other
  Act ckv_, rstd_kv_;         // [N, dc], [N]                             normed
  Act k_pe_;                  // [N, dr] after RoPE                       other
  Act kv_;                    // [N, H(dn+dv)]                            upproj
  Act o_out_, lse_;           // [N, H·dv], [N, H]                        other
};

}  // namespace tinyseek::model
