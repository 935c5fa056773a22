#include "tinyseek/model/moe.h"

#include "tinyseek/base/check.h"
#include "tinyseek/ops/balance_loss.h"
#include "tinyseek/ops/moe_dispatch.h"
#include "tinyseek/ops/swiglu.h"

namespace tinyseek::model {

Moe::Moe(const Registry& r, const MoeIds& ids, const ActStore& cache)
    : ids_(ids), router_(r, ids.gate), cache_(cache), combine_(moe_combine(r.config().precision)) {
  const ModelConfig& c = r.config();
  D_ = c.hidden_size;
  E_ = c.n_routed_experts;
  K_ = c.num_experts_per_tok;
  Fe_ = c.moe_intermediate_size;
  rc_.E = E_;
  rc_.K = K_;
  rc_.n_group = c.n_group;
  rc_.topk_group = c.topk_group;
  rc_.norm_topk_prob = c.norm_topk_prob;
  rc_.routed_scaling_factor = c.routed_scaling_factor;
  ops::validate(rc_);
  for (const FfnIds& e : ids.experts) experts_.emplace_back(r, e);
  has_shared_ = ids.shared.present();
  if (has_shared_) shared_ = Swiglu(r, ids.shared);
  load_.resize(static_cast<size_t>(E_));
  load_.zero();
  offsets_.resize(static_cast<size_t>(E_ + 1));
}

double Moe::forward(const Registry& r, const ActContext& ctx, float* y, const float* x, int64_t B, int64_t T) {
  B_ = B;
  T_ = T;
  const int64_t N = B * T, NK = N * K_;
  const auto sz = [](int64_t n) { return static_cast<size_t>(n); };
  logits_.resize(sz(N * E_));
  scores_.resize(sz(N * E_));
  gates_.resize(sz(NK));
  indices_.resize(sz(NK));
  f_.resize(sz(B * E_));
  row_token_.resize(sz(NK));
  row_of_.resize(sz(NK));
  const KeepPolicy& k = ctx.keep;
  float* xe = xe_.place(sz(NK * D_), false, ctx.arena, ActKey::kXe);
  const bool ye_exact = combine_.format == StoreFormat::kFp32;
  float* ye = ye_.place(sz(NK * D_), ye_exact && k.other, ctx.arena, ActKey::kYe);
  bool downs_can_drop = true;
  for (const Swiglu& e : experts_) downs_can_drop = downs_can_drop && e.can_drop_act();
  experts_acts_.place(ctx, cache_, downs_can_drop, NK, Fe_);
  float* ge = experts_acts_.g();
  float* ue = experts_acts_.u();
  float* ae = experts_acts_.a();
  const SwigluCall expert_call{.a_dropped = experts_acts_.a_dropped(), .repeat = ctx.repeat};

  router_.forward(r, logits_.data(), x, N, {.repeat = ctx.repeat});
  ops::router_forward(indices_.data(), gates_.data(), scores_.data(), load_.data(), logits_.data(),
                      r.param(ids_.bias), N, rc_);
  const double balance = ops::balance_loss_forward(f_.data(), scores_.data(), indices_.data(), B, T, E_, K_);

  if (has_shared_) {
    shared_acts_.place(ctx, cache_, shared_.can_drop_act(), N, shared_.width());
    shared_.forward(r, y, /*accumulate=*/true, x, shared_acts_.g(), shared_acts_.u(), shared_acts_.a(), N,
                    {.a_dropped = shared_acts_.a_dropped(), .repeat = ctx.repeat});
    shared_acts_.after_forward(ctx);
  }
  ops::moe_plan(offsets_.data(), row_token_.data(), row_of_.data(), indices_.data(), N, K_, E_);
  ops::moe_gather_forward(xe, x, row_token_.data(), N, K_, D_);
  // Experts run concurrently, one per thread, each on its own rows and weights (the GEMMs
  // inside run single-threaded: nested parallelism is off). Expert-sized GEMMs are too
  // small to split well over threads, and a GEMM's bits do not depend on its thread count,
  // so the result is the same as running them one after another. Dynamic scheduling only
  // balances the unequal row counts; it decides nothing about the arithmetic.
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t e = 0; e < E_; ++e) {
    const int64_t r0 = offsets_[sz(e)], rows = offsets_[sz(e + 1)] - r0;
    if (rows == 0) continue;
    experts_[sz(e)].forward(r, ye + r0 * D_, /*accumulate=*/false, xe + r0 * D_, ge + r0 * Fe_, ue + r0 * Fe_,
                            ae + r0 * Fe_, rows, expert_call);
  }
  // 1x128 tiles lie within a row, so rounding all experts' rows at once is rounding each.
  experts_acts_.after_forward(ctx);
  if (!ye_exact) {
    // BF16 combine: the sum and the gates' gradient both use the rounded outputs.
    ye_low_.store(ye, NK, D_, combine_, k.other, ctx.arena, ActKey::kYe);
    ye_low_.load(ye);
  }
  ops::moe_combine_forward(y, ye, gates_.data(), row_of_.data(), N, K_, D_);
  return balance;
}

void Moe::backward(Registry& r, Workspace& ws, const ActContext& ctx, float* dx, const float* dy, const float* x,
                   double balance_coef) {
  const int64_t N = B_ * T_, NK = N * K_;
  const auto sz = [](int64_t n) { return static_cast<size_t>(n); };
  TS_ASSERT(x != nullptr);  // the router's FP32 Wgrad reads x: the block keeps it
  if (!ctx.fresh) ops::moe_gather_forward(xe_.place(sz(NK * D_), false, ctx.arena, ActKey::kXe), x, row_token_.data(),
                                          N, K_, D_);
  // SwiGLU is elementwise, so one call over all experts' rows gives the per-expert bits.
  experts_acts_.before_backward(ctx);
  if (has_shared_) shared_acts_.before_backward(ctx);
  if (combine_.format != StoreFormat::kFp32) ye_low_.load(ye_.place(sz(NK * D_), false, ctx.arena, ActKey::kYe));
  const float* ae = experts_acts_.a_for_backward();
  // The expert-grouped gradients are written, not accumulated, row by row (every one of the
  // N·K rows belongs to one expert): no zero fill (same bits, see moe_combine_backward and
  // Swiglu::backward).
  float* dye = ws.raw(Slot::kDExpertOut, sz(NK * D_));
  float* dgates = ws.zeroed(Slot::kDGates, sz(NK));
  ops::moe_combine_backward(dye, dgates, dy, ye_.data(), gates_.data(), row_of_.data(), N, K_, D_,
                            /*overwrite_dye=*/true);
  float* dxe = ws.raw(Slot::kDExpertIn, sz(NK * D_));
  float* dae = ws.raw(Slot::kDAct, sz(NK * Fe_));
  float* dge = ws.raw(Slot::kDGate, sz(NK * Fe_));
  float* due = ws.raw(Slot::kDUp, sz(NK * Fe_));
  // Concurrent experts as in forward: disjoint rows of every buffer, disjoint weight grads.
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t e = 0; e < E_; ++e) {
    const int64_t r0 = offsets_[sz(e)], rows = offsets_[sz(e + 1)] - r0;
    if (rows == 0) continue;
    experts_[sz(e)].backward(r, dae + r0 * Fe_, dge + r0 * Fe_, due + r0 * Fe_, dxe + r0 * D_, dye + r0 * D_,
                             xe_.data() + r0 * D_, experts_acts_.g() + r0 * Fe_, experts_acts_.u() + r0 * Fe_,
                             ae ? ae + r0 * Fe_ : nullptr, rows, /*overwrite_dx=*/true);
  }
  ops::moe_gather_backward(dx, dxe, row_of_.data(), N, K_, D_);
  if (has_shared_)
    shared_.backward(r, ws, dx, dy, x, shared_acts_.g(), shared_acts_.u(), shared_acts_.a_for_backward(), N);

  float* dscores = nullptr;
  if (balance_coef != 0.0) {
    dscores = ws.zeroed(Slot::kDScores, sz(N * E_));
    ops::balance_loss_backward(dscores, balance_coef, f_.data(), scores_.data(), B_, T_, E_);
  }
  float* dlogits = ws.zeroed(Slot::kDRouterLogits, sz(N * E_));
  ops::router_backward(dlogits, dgates, dscores, indices_.data(), scores_.data(), N, rc_);
  // The bias gets no gradient: it only chose the experts.
  router_.backward(r, dx, dlogits, x, N);
}

int64_t Moe::saved_bytes() const {
  const int64_t routing = static_cast<int64_t>((scores_.size() + gates_.size() + f_.size()) * sizeof(float) +
                                               indices_.size() * sizeof(ops::Index) +
                                               row_token_.size() * sizeof(ops::Index) + row_of_.size() * sizeof(int64_t));
  return routing + static_cast<int64_t>(sizeof(float)) * (xe_.saved_floats() + ye_.saved_floats()) +
         experts_acts_.saved_bytes() + shared_acts_.saved_bytes() + ye_low_.saved_bytes();
}

}  // namespace tinyseek::model
