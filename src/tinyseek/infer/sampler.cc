#include "tinyseek/infer/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "tinyseek/base/check.h"

namespace tinyseek::infer {

void validate(const SamplingOptions& o) {
  TS_CHECK(std::isfinite(o.temperature), "--temperature must be a finite number, got " << o.temperature,
           "use 0 for greedy decoding or e.g. 0.8");
  TS_CHECK(o.top_k >= 0, "--top-k must be >= 0, got " << o.top_k, "use 0 to keep every token");
  TS_CHECK(o.top_p > 0 && o.top_p <= 1, "--top-p must be in (0, 1], got " << o.top_p, "use 1 to keep every token");
}

int32_t argmax(const float* logits, int64_t V) {
  int32_t best = 0;
  for (int64_t v = 1; v < V; ++v)
    if (logits[v] > logits[best] || std::isnan(logits[best])) best = static_cast<int32_t>(v);
  return best;
}

void distribution(std::vector<double>& probs, const float* logits, int64_t V, const SamplingOptions& o) {
  TS_ASSERT(!o.greedy());
  probs.assign(static_cast<size_t>(V), 0.0);
  // Candidates by descending logit (stable: ties keep the lower index first).
  std::vector<int32_t> order(static_cast<size_t>(V));
  std::iota(order.begin(), order.end(), 0);
  const int64_t k = o.top_k > 0 ? std::min(o.top_k, V) : V;
  const auto by_logit = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
  if (k < V) std::partial_sort(order.begin(), order.begin() + k, order.end(), by_logit);
  else std::sort(order.begin(), order.end(), by_logit);
  order.resize(static_cast<size_t>(k));
  const double mx = logits[order[0]];
  double z = 0;
  for (int32_t v : order) z += probs[size_t(v)] = std::exp((static_cast<double>(logits[v]) - mx) / o.temperature);
  size_t keep = order.size();
  if (o.top_p < 1) {
    double mass = 0;
    for (keep = 0; keep < order.size();) {
      mass += probs[size_t(order[keep++])] / z;
      if (mass >= o.top_p) break;
    }
    for (size_t i = keep; i < order.size(); ++i) probs[size_t(order[i])] = 0;
  }
  double kept = 0;
  for (size_t i = 0; i < keep; ++i) kept += probs[size_t(order[i])];
  for (size_t i = 0; i < keep; ++i) probs[size_t(order[i])] /= kept;
}

int32_t sample(const std::vector<double>& probs, double u) {
  double total = 0;
  for (double p : probs) total += p;
  TS_ASSERT(total > 0);
  double x = u * total;
  int32_t last = -1;
  for (size_t v = 0; v < probs.size(); ++v) {
    if (probs[v] <= 0) continue;
    last = static_cast<int32_t>(v);
    if (x < probs[v]) return last;
    x -= probs[v];
  }
  return last;  // u * total rounded up past the last bin
}

double residual(std::vector<double>& r, const std::vector<double>& p, const std::vector<double>& q) {
  r.resize(p.size());
  double mass = 0;
  for (size_t v = 0; v < p.size(); ++v) mass += r[v] = std::max(0.0, p[v] - q[v]);
  return mass;
}

}  // namespace tinyseek::infer
