#include "tinyseek/train/clip.h"

#include <cmath>

#include "tinyseek/base/parallel.h"
#include "tinyseek/train/adamw.h"

namespace tinyseek::train {
namespace {

// Σ x² in double with 8 independent lanes (vectorisable without reassociation: the lane
// of each element is fixed by its index, so the result depends only on the data).
double sum_squares(const float* x, size_t n) {
  constexpr size_t kLanes = 8;
  double lane[kLanes] = {};
  size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (size_t j = 0; j < kLanes; ++j) {
      const double v = x[i + j];
      lane[j] += v * v;
    }
  }
  for (; i < n; ++i) {
    const double v = x[i];
    lane[0] += v * v;
  }
  double s = 0;
  for (size_t j = 0; j < kLanes; ++j) s += lane[j];
  return s;
}

}  // namespace

double global_grad_norm(const model::Registry& reg) {
  const std::vector<OptimizerChunk> chunks = optimizer_chunks(reg);
  const float* g = reg.grads().data();
  const double sq = deterministic_sum<double>(static_cast<int64_t>(chunks.size()), 1, [&](int64_t b, int64_t e) {
    double s = 0;
    for (int64_t c = b; c < e; ++c) s += sum_squares(g + chunks[c].offset, chunks[c].size);
    return s;
  });
  return std::sqrt(sq);
}

float clip_factor(double norm, double max_norm) {
  if (!(max_norm > 0)) return 1.0f;
  return static_cast<float>(std::min(1.0, max_norm / (norm + 1e-6)));
}

ClipResult clip_gradients(const model::Registry& reg, double max_norm) {
  ClipResult r;
  r.norm = global_grad_norm(reg);
  r.finite = std::isfinite(r.norm);
  r.scale = r.finite ? clip_factor(r.norm, max_norm) : 1.0f;
  return r;
}

}  // namespace tinyseek::train
