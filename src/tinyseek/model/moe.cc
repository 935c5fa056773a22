#include "tinyseek/model/moe.h"

#include <cstring>
#include <utility>

#include "tinyseek/base/check.h"
#include "tinyseek/dist/expert_parallel.h"
#include "tinyseek/numerics/bf16.h"
#include "tinyseek/ops/balance_loss.h"
#include "tinyseek/ops/moe_dispatch.h"
#include "tinyseek/ops/swiglu.h"

namespace tinyseek::model {
namespace {

// Blocks of rows: block b (counts[b] rows of D floats) moves from row from[b] of src to row
// to[b] of dst. Between the received (source-rank-major) order and the expert-major order.
void move_blocks(float* dst, const float* src, const std::vector<int64_t>& to, const std::vector<int64_t>& from,
                 const std::vector<int64_t>& counts, int64_t D) {
  for (size_t b = 0; b < counts.size(); ++b)
    if (counts[b] > 0)
      std::memcpy(dst + to[b] * D, src + from[b] * D, static_cast<size_t>(counts[b] * D) * sizeof(float));
}

}  // namespace

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
  dist::ExpertDispatch* ep = dispatch_;
  ep_ = ep != nullptr;
  float* xe = xe_.place(sz(NK * D_), false, ctx.arena, ActKey::kXe);
  const bool ye_exact = combine_.format == StoreFormat::kFp32;
  float* ye = ye_.place(sz(NK * D_), ye_exact && k.other, ctx.arena, ActKey::kYe);

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
  if (ep) {
    ep_forward(r, ctx, *ep, ye, xe);
  } else {
  bool downs_can_drop = true;
  for (const Swiglu& e : experts_) downs_can_drop = downs_can_drop && e.can_drop_act();
  experts_acts_.place(ctx, cache_, downs_can_drop, NK, Fe_);
  float* ge = experts_acts_.g();
  float* ue = experts_acts_.u();
  float* ae = experts_acts_.a();
  const SwigluCall expert_call{.a_dropped = experts_acts_.a_dropped(), .repeat = ctx.repeat};
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
  }
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
  dist::ExpertDispatch* ep = ep_ ? dispatch_ : nullptr;
  TS_ASSERT(ep_ == (ep != nullptr));  // the dispatch may not change between forward and backward
  // Under expert parallelism the owner keeps the rows it received (ep_xe_); xe is not read.
  if (!ctx.fresh && !ep) ops::moe_gather_forward(xe_.place(sz(NK * D_), false, ctx.arena, ActKey::kXe), x, row_token_.data(),
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
  if (ep) {
    ep_backward(r, ws, ctx, *ep, dxe, dye);
  } else {
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
  return routing + static_cast<int64_t>(sizeof(float)) * (xe_.saved_floats() + ye_.saved_floats() +
                                                          static_cast<int64_t>(ep_xe_.size())) +
         experts_acts_.saved_bytes() + shared_acts_.saved_bytes() + ye_low_.saved_bytes();
}

// ---- expert parallelism (dist/expert_parallel.h)

void Moe::ep_forward(const Registry& r, const ActContext& ctx, dist::ExpertDispatch& d, float* ye, const float* xe) {
  const auto sz = [](int64_t n) { return static_cast<size_t>(n); };
  const int64_t P = d.ranks(), El = d.experts_per_rank(), e0 = d.first_expert(), NK = B_ * T_ * K_;
  // This rank's rows per expert; the owner q of experts [q·El, (q+1)·El) gets one contiguous
  // block of the expert-grouped rows.
  std::vector<int64_t> per_expert(sz(E_));
  for (int64_t e = 0; e < E_; ++e) per_expert[sz(e)] = offsets_[sz(e + 1)] - offsets_[sz(e)];
  ep_counts_ = d.exchange_counts(per_expert);
  ep_send_rows_.assign(sz(P), 0);
  ep_recv_rows_.assign(sz(P), 0);
  ep_recv_at_.assign(sz(P * El), 0);
  ep_local_at_.assign(sz(P * El), 0);
  ep_offsets_.assign(sz(El + 1), 0);
  int64_t at = 0;
  for (int64_t s = 0; s < P; ++s)
    for (int64_t j = 0; j < El; ++j) {
      ep_send_rows_[sz(s)] += per_expert[sz(s * El + j)];
      ep_recv_rows_[sz(s)] += ep_counts_[sz(s * El + j)];
      ep_recv_at_[sz(s * El + j)] = at;
      at += ep_counts_[sz(s * El + j)];
    }
  const int64_t R = ep_rows_ = at;
  for (int64_t j = 0; j < El; ++j) {
    int64_t a = ep_offsets_[sz(j)];
    for (int64_t s = 0; s < P; ++s) {
      ep_local_at_[sz(s * El + j)] = a;
      a += ep_counts_[sz(s * El + j)];
    }
    ep_offsets_[sz(j + 1)] = a;
  }
  ep_xe_.resize(sz(R * D_));
  if (d.fp8()) {
    // E4M3 codes + one scale per 1x128 tile of each row; the owner dequantizes (its expert
    // Linears quantize again: the same tiles, so an FP8 fprop sees the same codes).
    const numerics::QuantSpec spec = d.fp8_spec();
    const numerics::ScaleGrid g1 = numerics::make_scale_grid(spec.granularity, 1, D_);
    const int64_t G = g1.count();
    if (NK > 0) {
      numerics::quantize(ep_q_, xe, NK, D_, D_, spec);
    } else {
      ep_q_.codes.resize(0);
      ep_q_.scales.resize(0);
    }
    numerics::QTensor& q = ep_rq_;
    q.format = spec.format;
    q.granularity = spec.granularity;
    q.rows = R;
    q.cols = D_;
    q.grid = numerics::make_scale_grid(spec.granularity, R, D_);
    TS_ASSERT(q.grid.count() == R * G);
    q.codes.resize(sz(R * D_));
    q.scales.resize(sz(R * G));
    d.exchange(ep_q_.codes.data(), ep_send_rows_, q.codes.data(), ep_recv_rows_, sz(D_));
    d.exchange(ep_q_.scales.data(), ep_send_rows_, q.scales.data(), ep_recv_rows_, sz(G) * sizeof(float));
    ep_tmp_.resize(sz(R * D_));
    if (R > 0) numerics::dequantize(ep_tmp_.data(), D_, q);
    move_blocks(ep_xe_.data(), ep_tmp_.data(), ep_local_at_, ep_recv_at_, ep_counts_, D_);
  } else {
    ep_to_owners(d, ep_xe_.data(), xe, StoreFormat::kFp32);
  }

  bool downs_can_drop = true;
  for (const Swiglu& e : experts_) downs_can_drop = downs_can_drop && e.can_drop_act();
  experts_acts_.place(ctx, cache_, downs_can_drop, R, Fe_);
  float* ge = experts_acts_.g();
  float* ue = experts_acts_.u();
  float* ae = experts_acts_.a();
  const SwigluCall expert_call{.a_dropped = experts_acts_.a_dropped(), .repeat = ctx.repeat};
  ep_out_.resize(sz(R * D_));
  float* out = ep_out_.data();
  const float* in = ep_xe_.data();
  // The local experts, concurrently as in the single-process layer.
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t j = 0; j < El; ++j) {
    const int64_t r0 = ep_offsets_[sz(j)], rows = ep_offsets_[sz(j + 1)] - r0;
    if (rows == 0) continue;
    experts_[sz(e0 + j)].forward(r, out + r0 * D_, /*accumulate=*/false, in + r0 * D_, ge + r0 * Fe_, ue + r0 * Fe_,
                                 ae + r0 * Fe_, rows, expert_call);
  }
  experts_acts_.after_forward(ctx);
  ep_to_tokens(d, ye, out, combine_.format);
}

void Moe::ep_backward(Registry& r, Workspace& ws, const ActContext& ctx, dist::ExpertDispatch& d, float* dxe,
                      const float* dye) {
  (void)ctx;
  const auto sz = [](int64_t n) { return static_cast<size_t>(n); };
  const int64_t El = d.experts_per_rank(), e0 = d.first_expert(), R = ep_rows_;
  ep_out_.resize(sz(R * D_));
  ep_dx_.resize(sz(R * D_));
  float* rdye = ep_out_.data();
  float* rdxe = ep_dx_.data();
  ep_to_owners(d, rdye, dye, combine_.format);
  float* dae = ws.raw(Slot::kDAct, sz(R * Fe_));
  float* dge = ws.raw(Slot::kDGate, sz(R * Fe_));
  float* due = ws.raw(Slot::kDUp, sz(R * Fe_));
  const float* ae = experts_acts_.a_for_backward();
  const float* xe = ep_xe_.data();
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t j = 0; j < El; ++j) {
    const int64_t r0 = ep_offsets_[sz(j)], rows = ep_offsets_[sz(j + 1)] - r0;
    if (rows == 0) continue;
    experts_[sz(e0 + j)].backward(r, dae + r0 * Fe_, dge + r0 * Fe_, due + r0 * Fe_, rdxe + r0 * D_, rdye + r0 * D_,
                                  xe + r0 * D_, experts_acts_.g() + r0 * Fe_, experts_acts_.u() + r0 * Fe_,
                                  ae ? ae + r0 * Fe_ : nullptr, rows, /*overwrite_dx=*/true);
  }
  ep_to_tokens(d, dxe, rdxe, combine_.format);
}

void Moe::ep_to_owners(dist::ExpertDispatch& d, float* out, const float* in, StoreFormat wire) {
  const auto sz = [](int64_t n) { return static_cast<size_t>(n); };
  const int64_t NK = B_ * T_ * K_, R = ep_rows_;
  ep_tmp_.resize(sz(R * D_));
  if (wire == StoreFormat::kBf16) {
    ep_send_.resize(sz(NK * D_) * 2);
    ep_recv_.resize(sz(R * D_) * 2);
    numerics::bf16_encode_bulk(reinterpret_cast<uint16_t*>(ep_send_.data()), in, sz(NK * D_));
    d.exchange(ep_send_.data(), ep_send_rows_, ep_recv_.data(), ep_recv_rows_, sz(D_) * 2);
    numerics::bf16_decode_bulk(ep_tmp_.data(), reinterpret_cast<const uint16_t*>(ep_recv_.data()), sz(R * D_));
  } else {
    TS_ASSERT(wire == StoreFormat::kFp32);
    d.exchange(in, ep_send_rows_, ep_tmp_.data(), ep_recv_rows_, sz(D_) * sizeof(float));
  }
  move_blocks(out, ep_tmp_.data(), ep_local_at_, ep_recv_at_, ep_counts_, D_);
}

void Moe::ep_to_tokens(dist::ExpertDispatch& d, float* out, const float* in, StoreFormat wire) {
  const auto sz = [](int64_t n) { return static_cast<size_t>(n); };
  const int64_t NK = B_ * T_ * K_, R = ep_rows_;
  ep_tmp_.resize(sz(R * D_));
  move_blocks(ep_tmp_.data(), in, ep_recv_at_, ep_local_at_, ep_counts_, D_);
  // Back: to each rank the rows it sent, in the order it sent them.
  if (wire == StoreFormat::kBf16) {
    ep_send_.resize(sz(R * D_) * 2);
    ep_recv_.resize(sz(NK * D_) * 2);
    numerics::bf16_encode_bulk(reinterpret_cast<uint16_t*>(ep_send_.data()), ep_tmp_.data(), sz(R * D_));
    d.exchange(ep_send_.data(), ep_recv_rows_, ep_recv_.data(), ep_send_rows_, sz(D_) * 2);
    numerics::bf16_decode_bulk(out, reinterpret_cast<const uint16_t*>(ep_recv_.data()), sz(NK * D_));
  } else {
    TS_ASSERT(wire == StoreFormat::kFp32);
    d.exchange(ep_tmp_.data(), ep_recv_rows_, out, ep_send_rows_, sz(D_) * sizeof(float));
  }
}

}  // namespace tinyseek::model
