// Helpers shared by the model modules (mla, ffn, moe, block, mtp, deepseek).
//
// LinearSite: one Linear layer of the model (its weight's registry id and dims). Every GEMM
// of a module goes through LinearSite::forward/backward, so the precision recipe (FP8 per
// GEMM role, a later issue) is applied in exactly one place per module.
//
// Workspace: gradient temporaries shared by all layers. Backward runs one layer at a time,
// so the gradients of intermediate activations never need more than one layer's worth of
// memory; each temporary has a named slot, grown on demand and never shrunk (steady-state
// training allocates nothing).
#pragma once
#include <array>
#include <cstdint>
#include <cstring>

#include "tinyseek/base/aligned.h"
#include "tinyseek/model/registry.h"
#include "tinyseek/ops/linear.h"

namespace tinyseek::model {

struct LinearSite {
  int weight = -1;            // registry id of W [out, in]
  int64_t in = 0, out = 0;
  ops::LinearPrecision precision;

  LinearSite() = default;
  LinearSite(const Registry& r, int weight_id);  // dims from the registered shape

  //   y [n, out] (= or +=)   x [n, in]
  void forward(const Registry& r, float* y, const float* x, int64_t n, bool accumulate = false) const;
  // dx [n, in] += dy W (skipped if dx is null);  dW += dyᵀ x (into r.grad(weight))
  void backward(Registry& r, float* dx, const float* dy, const float* x, int64_t n) const;
};

enum class Slot : int {
  kDNormOut,     // [N, D]  gradient at a block's norm output (h1, h2), = d input of MLA/FFN
  kDAttnO,       // [N, H·dv]
  kDQ,           // [N, H(dn+dr)]
  kDKv,          // [N, H(dn+dv)]
  kDKpe,         // [N, dr]
  kDKvA,         // [N, dc+dr]
  kDCkv,         // [N, dc]
  kDCq,          // [N, dq]
  kDCqRaw,       // [N, dq]
  kDAct,         // [rows, W]  SwiGLU output gradient
  kDGate,        // [rows, W]
  kDUp,          // [rows, W]
  kDExpertOut,   // [N·K, D]
  kDExpertIn,    // [N·K, D]
  kDGates,       // [N, K]
  kDScores,      // [N, E]
  kDRouterLogits,// [N, E]
  kDMtpConcat,   // [N, 2D]
  kDMtpPart,     // [N, D]
  kDMtpNormIn,   // [N, D]
  kCount
};

class Workspace {
 public:
  // n zeroed floats of slot s (valid until the next request of the same slot).
  float* zeroed(Slot s, size_t n) {
    float* p = raw(s, n);
    if (n) std::memset(p, 0, n * sizeof(float));
    return p;
  }
  // n floats of slot s, contents unspecified.
  float* raw(Slot s, size_t n) {
    AlignedBuffer<float>& b = buffers_[static_cast<size_t>(s)];
    if (b.size() < n) b.resize(n);
    return b.data();
  }

 private:
  std::array<AlignedBuffer<float>, static_cast<size_t>(Slot::kCount)> buffers_;
};

// y[i] = x[i] (n floats)
inline void copy_floats(float* y, const float* x, size_t n) {
  if (n) std::memcpy(y, x, n * sizeof(float));
}

}  // namespace tinyseek::model
