#include "tinyseek/model/ffn.h"

#include "tinyseek/ops/swiglu.h"

namespace tinyseek::model {

Swiglu::Swiglu(const Registry& r, const FfnIds& ids)
    : gate(r, ids.gate_proj), up(r, ids.up_proj), down(r, ids.down_proj) {}

void Swiglu::forward(const Registry& r, float* y, bool accumulate, const float* x, float* g, float* u, float* a,
                     int64_t n) const {
  gate.forward(r, g, x, n);
  up.forward(r, u, x, n);
  ops::swiglu_forward(a, g, u, n * width());
  down.forward(r, y, a, n, accumulate);
}

void Swiglu::backward(Registry& r, Workspace& ws, float* dx, const float* dy, const float* x, const float* g,
                      const float* u, const float* a, int64_t n) const {
  const size_t nw = static_cast<size_t>(n * width());
  backward(r, ws.zeroed(Slot::kDAct, nw), ws.zeroed(Slot::kDGate, nw), ws.zeroed(Slot::kDUp, nw), dx, dy, x, g, u, a,
           n);
}

void Swiglu::backward(Registry& r, float* da, float* dg, float* du, float* dx, const float* dy, const float* x,
                      const float* g, const float* u, const float* a, int64_t n) const {
  down.backward(r, da, dy, a, n);
  ops::swiglu_backward(dg, du, da, g, u, n * width());
  gate.backward(r, dx, dg, x, n);
  up.backward(r, dx, du, x, n);
}

void DenseFfn::forward(const Registry& r, const ActContext& ctx, float* y, const float* x, int64_t N) {
  N_ = N;
  const size_t nw = static_cast<size_t>(N * ffn_.width());
  float* g = g_.place(nw, ctx.keep.other, ctx.arena, ActKey::kFfnG);
  float* u = u_.place(nw, ctx.keep.other, ctx.arena, ActKey::kFfnU);
  float* a = a_.place(nw, ctx.keep.swiglu, ctx.arena, ActKey::kFfnA);
  ffn_.forward(r, y, /*accumulate=*/true, x, g, u, a, N);
}

void DenseFfn::backward(Registry& r, Workspace& ws, const ActContext& ctx, float* dx, const float* dy,
                        const float* x) {
  const size_t nw = static_cast<size_t>(N_ * ffn_.width());
  if (!ctx.fresh && !ctx.keep.swiglu)
    ops::swiglu_forward(a_.place(nw, false, ctx.arena, ActKey::kFfnA), g_.data(), u_.data(), N_ * ffn_.width());
  ffn_.backward(r, ws, dx, dy, x, g_.data(), u_.data(), a_.data(), N_);
}

}  // namespace tinyseek::model
