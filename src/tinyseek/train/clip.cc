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
  return norm_from_chunk_sums(chunk_sum_squares(reg, chunks, 0, chunks.size()));
}

std::vector<double> chunk_sum_squares(const model::Registry& reg, const std::vector<OptimizerChunk>& chunks,
                                      size_t first, size_t last) {
  const float* g = reg.grads().data();
  std::vector<double> sums(last - first);
  parallel_for(static_cast<int64_t>(sums.size()), [&](int64_t i) {
    const OptimizerChunk& c = chunks[first + size_t(i)];
    sums[size_t(i)] = sum_squares(g + c.offset, c.size);
  });
  return sums;
}

double norm_from_chunk_sums(const std::vector<double>& sums) {
  // deterministic_sum's order: 0 + s_0 + s_1 + ... (the bits global_grad_norm always had).
  double total = 0;
  for (double s : sums) total += s;
  return std::sqrt(total);
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
