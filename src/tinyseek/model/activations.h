// Where the modules keep the intermediate activations that backward reads, under the
// recompute policy (recompute.h).
//
// Each intermediate is an Act: either saved in its module's own buffer (kept from forward
// to backward), or transient in the shared ActivationArena, one buffer per ActKey shared by
// all layers (valid only until the next layer's forward or recompute overwrites it; backward
// recomputes it right before use). The arena holds one layer's worth, so dropping an
// activation from "saved" to "transient" is what lowers the memory of the whole model.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>

#include "tinyseek/base/aligned.h"
#include "tinyseek/model/recompute.h"

namespace tinyseek::model {

enum class ActKey : int {
  // Block
  kH1, kRstd1, kMid, kH2, kRstd2, kBlockOut,
  // MLA
  kCqRaw, kCq, kRstdQ, kQ, kKvA, kCkv, kRstdKv, kKpe, kKv, kO, kLse,
  // Dense SwiGLU
  kFfnG, kFfnU, kFfnA,
  // MoE
  kXe, kYe, kGe, kUe, kAe, kSharedG, kSharedU, kSharedA,
  kCount
};

class ActivationArena {
 public:
  // n floats of key k, contents unspecified; grown on demand, never shrunk (steady-state
  // training allocates nothing).
  float* get(ActKey k, size_t n) {
    AlignedBuffer<float>& b = buffers_[static_cast<size_t>(k)];
    if (b.size() < n) b.resize(n);
    return b.data();
  }
  int64_t floats() const {
    int64_t n = 0;
    for (const auto& b : buffers_) n += static_cast<int64_t>(b.size());
    return n;
  }

 private:
  std::array<AlignedBuffer<float>, static_cast<size_t>(ActKey::kCount)> buffers_;
};

// One intermediate activation of one module.
class Act {
 public:
  // Points at n floats: the module's own buffer if `keep` (saved for backward), else the
  // arena's buffer for `key` (and the own buffer is released).
  float* place(size_t n, bool keep, ActivationArena& arena, ActKey key) {
    if (keep) {
      own_.resize(n);
      ptr_ = own_.data();
    } else {
      own_.resize(0);
      ptr_ = arena.get(key, n);
    }
    return ptr_;
  }
  float* data() const { return ptr_; }
  int64_t saved_floats() const { return static_cast<int64_t>(own_.size()); }

 private:
  AlignedBuffer<float> own_;
  float* ptr_ = nullptr;
};

// What a module keeps, by kind of intermediate (recompute.h).
//   normed:   RMSNorm outputs (and their rstd)          dropped by selective and full
//   upproj:   MLA up-projections q, kv                   dropped by selective and full
//   swiglu:   SwiGLU outputs silu(g)·u, MoE expert input gathers   dropped by selective and full
//   other:    everything else (projections, o, lse, g, u, mid, expert outputs)  dropped by full
struct KeepPolicy {
  bool normed = true, upproj = true, swiglu = true, other = true;
  static KeepPolicy of(Recompute r) {
    switch (r) {
      case Recompute::kNone: return {};
      case Recompute::kSelective: return {false, false, false, true};
      case Recompute::kFull: return {false, false, false, false};
    }
    return {};
  }
};

// The context the modules' forward/backward need to place and recompute activations.
struct ActContext {
  KeepPolicy keep;
  ActivationArena& arena;
  // The module's transient activations are still valid (full: its block was re-run just
  // now), so backward must not recompute them again.
  bool fresh = false;
};

}  // namespace tinyseek::model
