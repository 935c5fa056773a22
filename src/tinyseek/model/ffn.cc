#include "tinyseek/model/ffn.h"

#include "tinyseek/ops/swiglu.h"

namespace tinyseek::model {

Swiglu::Swiglu(const Registry& r, const FfnIds& ids)
    : gate(r, ids.gate_proj), up(r, ids.up_proj), down(r, ids.down_proj) {}

void Swiglu::forward(const Registry& r, float* y, bool accumulate, const float* x, float* g, float* u, float* a,
                     int64_t n, const SwigluCall& call) const {
  // gate quantizes x once for itself and up (ops::InputShare: the same bits).
  gate.forward(r, g, x, n, {.x_dropped = call.x_dropped, .repeat = call.repeat, .share = ops::InputShare::kPublish});
  up.forward(r, u, x, n, {.x_dropped = call.x_dropped, .repeat = call.repeat, .share = ops::InputShare::kReuse});
  ops::swiglu_forward(a, g, u, n * width());
  down.forward(r, y, a, n, {.accumulate = accumulate, .x_dropped = call.a_dropped, .repeat = call.repeat});
}

void Swiglu::backward(Registry& r, Workspace& ws, float* dx, const float* dy, const float* x, const float* g,
                      const float* u, const float* a, int64_t n) const {
  const size_t nw = static_cast<size_t>(n * width());
  backward(r, ws.raw(Slot::kDAct, nw), ws.raw(Slot::kDGate, nw), ws.raw(Slot::kDUp, nw), dx, dy, x, g, u, a, n);
}

void Swiglu::backward(Registry& r, float* da, float* dg, float* du, float* dx, const float* dy, const float* x,
                      const float* g, const float* u, const float* a, int64_t n, bool overwrite_dx) const {
  // da, dg, du are written, not accumulated: the bits of accumulating into zeros without the
  // zero fill (ops::linear_backward, ops::swiglu_backward).
  down.backward(r, da, dy, a, n, ops::InputShare::kNone, /*overwrite_dx=*/true);
  ops::swiglu_backward(dg, du, da, g, u, n * width(), /*overwrite=*/true);
  gate.backward(r, dx, dg, x, n, ops::InputShare::kPublish, overwrite_dx);
  up.backward(r, dx, du, x, n, ops::InputShare::kReuse);
}

// ---- SwigluActs

void SwigluActs::place(const ActContext& ctx, const ActStore& cache, bool down_can_drop, int64_t rows,
                       int64_t width) {
  cache_ = cache;
  rows_ = rows;
  width_ = width;
  const size_t n = static_cast<size_t>(rows * width);
  const bool exact = cache.format == StoreFormat::kFp32;
  // Rounded g, u live in the LowActs; their FP32 values are needed only within forward.
  g_.place(n, exact && ctx.keep.other, ctx.arena, kg_);
  u_.place(n, exact && ctx.keep.other, ctx.arena, ku_);
  // a is needed by down's Wgrad only (SwiGLU backward reads g and u): under `none` it goes
  // when every down keeps its own copy. Rounded g, u: backward recomputes it (never kept).
  a_dropped_ = exact && ctx.keep.swiglu && down_can_drop;
  a_.place(n, exact && ctx.keep.swiglu && !a_dropped_, ctx.arena, ka_);
}

void SwigluActs::after_forward(const ActContext& ctx) {
  if (cache_.format == StoreFormat::kFp32) return;
  gq_.store(g_.data(), rows_, width_, cache_, ctx.keep.other, ctx.arena, kg_);
  uq_.store(u_.data(), rows_, width_, cache_, ctx.keep.other, ctx.arena, ku_);
}

void SwigluActs::before_backward(const ActContext& ctx) {
  const size_t n = static_cast<size_t>(rows_ * width_);
  if (cache_.format != StoreFormat::kFp32) {
    // Always from the rounded values, also right after a `full` re-run (whose FP32 g, u are
    // still in the arena): the same bits under every policy.
    gq_.load(g_.place(n, false, ctx.arena, kg_));
    uq_.load(u_.place(n, false, ctx.arena, ku_));
    ops::swiglu_forward(a_.place(n, false, ctx.arena, ka_), g_.data(), u_.data(), rows_ * width_);
    return;
  }
  // Exact g, u: the same kernel on the same inputs gives the bits forward had.
  if (!ctx.fresh && !ctx.keep.swiglu)
    ops::swiglu_forward(a_.place(n, false, ctx.arena, ka_), g_.data(), u_.data(), rows_ * width_);
}

int64_t SwigluActs::saved_bytes() const {
  return static_cast<int64_t>(sizeof(float)) * (g_.saved_floats() + u_.saved_floats() + a_.saved_floats()) +
         gq_.saved_bytes() + uq_.saved_bytes();
}

// ---- DenseFfn

void DenseFfn::forward(const Registry& r, const ActContext& ctx, float* y, const float* x, int64_t N,
                       bool x_dropped) {
  N_ = N;
  acts_.place(ctx, cache_, ffn_.can_drop_act(), N, ffn_.width());
  ffn_.forward(r, y, /*accumulate=*/true, x, acts_.g(), acts_.u(), acts_.a(), N,
               {.x_dropped = x_dropped, .a_dropped = acts_.a_dropped(), .repeat = ctx.repeat});
  acts_.after_forward(ctx);
}

void DenseFfn::backward(Registry& r, Workspace& ws, const ActContext& ctx, float* dx, const float* dy,
                        const float* x) {
  acts_.before_backward(ctx);
  ffn_.backward(r, ws, dx, dy, x, acts_.g(), acts_.u(), acts_.a_for_backward(), N_);
}

}  // namespace tinyseek::model
