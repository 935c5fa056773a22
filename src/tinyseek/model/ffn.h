// SwiGLU feed-forward networks: y = down(silu(x W_gateᵀ) ⊙ x W_upᵀ).
//
// Swiglu is one FFN (a dense layer's MLP, the shared experts, or one routed expert) with the
// intermediates passed in by the owner, so MoE can keep all experts' intermediates in one
// expert-grouped buffer. SwigluActs places those intermediates (g, u, a) per recompute
// policy and swiglu_cache; DenseFfn is the dense-layer module owning them.
#pragma once
#include <cstdint>

#include "tinyseek/base/aligned.h"
#include "tinyseek/model/activations.h"
#include "tinyseek/model/linear_site.h"
#include "tinyseek/model/registry.h"

namespace tinyseek::model {

// What the owner does with a SwiGLU's Linear inputs (LinearCall).
struct SwigluCall {
  bool x_dropped = false;  // x is dropped after forward: gate and up keep their own copies
  bool a_dropped = false;  // a = silu(g)·u is dropped: down keeps its own copy
  bool repeat = false;     // recomputation (no amax recording, no telemetry)
};

struct Swiglu {
  LinearSite gate, up, down;

  Swiglu() = default;
  Swiglu(const Registry& r, const FfnIds& ids);
  int64_t width() const { return gate.out; }  // W (F, Fe or Fe·Es)
  bool can_drop_input() const { return all_can_drop_input({&gate, &up}); }
  bool can_drop_act() const { return down.can_drop_input(); }

  // y [n, D] (= or += by `accumulate`) from x [n, D]; writes g, u, a [n, W] (caller-owned).
  void forward(const Registry& r, float* y, bool accumulate, const float* x, float* g, float* u, float* a,
               int64_t n, const SwigluCall& call = {}) const;
  // dx [n, D] += ∂L/∂x given dy [n, D]; weight gradients accumulate. x null when forward
  // dropped it, a null when forward dropped it; g, u as SwiGLU backward should see them.
  // Uses workspace slots kDAct, kDGate, kDUp.
  void backward(Registry& r, Workspace& ws, float* dx, const float* dy, const float* x, const float* g,
                const float* u, const float* a, int64_t n) const;
  // The same with caller-provided scratch da, dg, du [n, W] of any contents (MoE runs experts
  // concurrently, each on its own rows of one expert-grouped scratch; they are overwritten,
  // so nobody zero-fills them). overwrite_dx: dx = ∂L/∂x instead of +=.
  void backward(Registry& r, float* da, float* dg, float* du, float* dx, const float* dy, const float* x,
                const float* g, const float* u, const float* a, int64_t n, bool overwrite_dx = false) const;
};

// The intermediates of one SwiGLU, or of all routed experts of a layer (expert-grouped rows):
//   g, u  swiglu_cache fp32: saved as kind `other` (recompute.h).
//         bf16 / fp8: transient in forward, then kept rounded (LowAct; transient too under
//         `full`, whose re-run forward stores them again); backward decodes them.
//   a     swiglu_cache fp32: kind `swiglu` (selective/full recompute it from g, u), or, under
//         `none`, dropped when every down projection keeps its own BF16/FP8 copy of it.
//         bf16 / fp8: transient; backward recomputes it from the decoded g, u, under every
//         policy, so every policy gives the same bits (DeepSeek-V3 §3.3.3).
class SwigluActs {
 public:
  SwigluActs(ActKey g, ActKey u, ActKey a) : kg_(g), ku_(u), ka_(a) {}
  // Before forward: places g, u, a [rows, width]. down_can_drop: every down projection
  // reading a can keep its own copy.
  void place(const ActContext& ctx, const ActStore& cache, bool down_can_drop, int64_t rows, int64_t width);
  float* g() const { return g_.data(); }
  float* u() const { return u_.data(); }
  float* a() const { return a_.data(); }
  bool a_dropped() const { return a_dropped_; }
  // After forward: keeps g, u rounded (swiglu_cache bf16 / fp8).
  void after_forward(const ActContext& ctx);
  // Before backward: makes g and u what SwiGLU backward reads, and a what down's Wgrad reads
  // (null when dropped: a_for_backward()).
  void before_backward(const ActContext& ctx);
  const float* a_for_backward() const { return a_dropped_ ? nullptr : a_.data(); }
  int64_t saved_bytes() const;

 private:
  ActKey kg_, ku_, ka_;
  ActStore cache_;
  int64_t rows_ = 0, width_ = 0;
  bool a_dropped_ = false;
  Act g_, u_, a_;
  LowAct gq_, uq_;
};

class DenseFfn {
 public:
  DenseFfn(const Registry& r, const FfnIds& ids, const ActStore& cache)
      : ffn_(r, ids), cache_(cache), acts_(ActKey::kFfnG, ActKey::kFfnU, ActKey::kFfnA) {}
  // Whether the FFN's input may be dropped after forward (gate and up keep their own copies).
  bool can_drop_input() const { return ffn_.can_drop_input(); }
  // y [N, D] += FFN(x); x_dropped: the caller drops x after forward (needs can_drop_input()).
  void forward(const Registry& r, const ActContext& ctx, float* y, const float* x, int64_t N, bool x_dropped);
  // dx [N, D] += ∂L/∂x given dy [N, D]; x as forward saw it, null when dropped.
  void backward(Registry& r, Workspace& ws, const ActContext& ctx, float* dx, const float* dy, const float* x);
  int64_t saved_bytes() const { return acts_.saved_bytes(); }

 private:
  Swiglu ffn_;
  ActStore cache_;
  int64_t N_ = 0;
  SwigluActs acts_;  // [N, F]
};

}  // namespace tinyseek::model
