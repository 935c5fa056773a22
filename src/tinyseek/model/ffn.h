// SwiGLU feed-forward networks: y = down(silu(x W_gateᵀ) ⊙ x W_upᵀ).
//
// Swiglu is one FFN (a dense layer's MLP, the shared experts, or one routed expert) with the
// saved state passed in by the owner, so MoE can keep all experts' state in one
// expert-grouped buffer. DenseFfn is the dense-layer module owning its state.
#pragma once
#include <cstdint>

#include "tinyseek/base/aligned.h"
#include "tinyseek/model/activations.h"
#include "tinyseek/model/linear_site.h"
#include "tinyseek/model/registry.h"

namespace tinyseek::model {

struct Swiglu {
  LinearSite gate, up, down;

  Swiglu() = default;
  Swiglu(const Registry& r, const FfnIds& ids);
  int64_t width() const { return gate.out; }  // W (F, Fe or Fe·Es)

  // y [n, D] (= or += by `accumulate`) from x [n, D]; saves g, u, a [n, W] (caller-owned).
  void forward(const Registry& r, float* y, bool accumulate, const float* x, float* g, float* u, float* a,
               int64_t n) const;
  // dx [n, D] += ∂L/∂x given dy [n, D]; weight gradients accumulate. Uses workspace slots
  // kDAct, kDGate, kDUp.
  void backward(Registry& r, Workspace& ws, float* dx, const float* dy, const float* x, const float* g,
                const float* u, const float* a, int64_t n) const;
  // The same with caller-provided zeroed scratch da, dg, du [n, W] (MoE runs experts
  // concurrently, each on its own rows of one expert-grouped scratch).
  void backward(Registry& r, float* da, float* dg, float* du, float* dx, const float* dy, const float* x,
                const float* g, const float* u, const float* a, int64_t n) const;
};

class DenseFfn {
 public:
  DenseFfn(const Registry& r, const FfnIds& ids) : ffn_(r, ids) {}
  // y [N, D] += FFN(x)
  void forward(const Registry& r, const ActContext& ctx, float* y, const float* x, int64_t N);
  // dx [N, D] += ∂L/∂x given dy [N, D] (recomputes a = silu(g)·u first if it was dropped)
  void backward(Registry& r, Workspace& ws, const ActContext& ctx, float* dx, const float* dy, const float* x);
  int64_t saved_floats() const { return g_.saved_floats() + u_.saved_floats() + a_.saved_floats(); }

 private:
  Swiglu ffn_;
  int64_t N_ = 0;
  Act g_, u_, a_;  // [N, F] each: other, other, swiglu
};

}  // namespace tinyseek::model
