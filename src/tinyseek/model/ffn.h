// SwiGLU feed-forward networks: y = down(silu(x W_gateᵀ) ⊙ x W_upᵀ).
//
// Swiglu is one FFN (a dense layer's MLP, the shared experts, or one routed expert) with the
// saved state passed in by the owner, so MoE can keep all experts' state in one
// expert-grouped buffer. DenseFfn is the dense-layer module owning its state.
#pragma once
#include <cstdint>

#include "tinyseek/base/aligned.h"
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
};

class DenseFfn {
 public:
  DenseFfn(const Registry& r, const FfnIds& ids) : ffn_(r, ids) {}
  // y [N, D] += FFN(x)
  void forward(const Registry& r, float* y, const float* x, int64_t N);
  // dx [N, D] += ∂L/∂x given dy [N, D]
  void backward(Registry& r, Workspace& ws, float* dx, const float* dy, const float* x);
  int64_t saved_floats() const { return static_cast<int64_t>(g_.size() + u_.size() + a_.size()); }

 private:
  Swiglu ffn_;
  int64_t N_ = 0;
  AlignedBuffer<float> g_, u_, a_;  // [N, F] each
};

}  // namespace tinyseek::model
