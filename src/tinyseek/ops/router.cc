#include "tinyseek/ops/router.h"

#include <cmath>
#include <limits>

#include "tinyseek/base/check.h"
#include "tinyseek/base/parallel.h"
#include "tinyseek/ops/kernels.h"

namespace tinyseek::ops {

void validate(const RouterConfig& c) {
  TS_CHECK(c.E > 0, "n_routed_experts must be positive, got " << c.E, "set n_routed_experts >= 1");
  TS_CHECK(c.K >= 1 && c.K <= c.E,
           "num_experts_per_tok must be in [1, n_routed_experts = " << c.E << "], got " << c.K,
           "lower num_experts_per_tok or add experts");
  TS_CHECK(c.n_group >= 1 && c.E % c.n_group == 0,
           "n_group must be >= 1 and divide n_routed_experts = " << c.E << ", got " << c.n_group,
           "pick n_group among the divisors of n_routed_experts");
  if (c.n_group > 1) {
    TS_CHECK(c.E / c.n_group >= 2,
             "group-limited routing sums the top-2 scores of each group, so every group needs >= 2 "
             "experts; got " << c.E / c.n_group << " (n_routed_experts " << c.E << ", n_group " << c.n_group << ")",
             "lower n_group");
    TS_CHECK(c.topk_group >= 1 && c.topk_group <= c.n_group,
             "topk_group must be in [1, n_group = " << c.n_group << "], got " << c.topk_group,
             "set topk_group <= n_group");
    TS_CHECK(c.topk_group * (c.E / c.n_group) >= c.K,
             "the kept groups hold " << c.topk_group * (c.E / c.n_group)
                 << " experts, fewer than num_experts_per_tok = " << c.K,
             "raise topk_group or lower num_experts_per_tok");
  }
  TS_CHECK(std::isfinite(c.routed_scaling_factor) && c.routed_scaling_factor > 0,
           "routed_scaling_factor must be positive and finite, got " << c.routed_scaling_factor,
           "DeepSeek-V3 uses 2.5");
}

namespace {

template <class T>
inline T sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}

// Index of the largest v[i] among i in [0, n) with !taken[i]; ties go to the lower index.
template <class T>
inline int64_t argmax_untaken(const T* v, const unsigned char* taken, int64_t n) {
  int64_t best = -1;
  for (int64_t i = 0; i < n; ++i)
    if (!taken[i] && (best < 0 || v[i] > v[best])) best = i;
  return best;
}

// Drops (sets to −inf) the experts of every group outside the topk_group best groups, where a
// group's score is the sum of its two largest choice values.
template <class T>
void mask_groups(T* choice, T* group_score, unsigned char* taken, const RouterConfig& c) {
  const int64_t gsize = c.E / c.n_group;
  for (int64_t g = 0; g < c.n_group; ++g) {
    T m1 = -std::numeric_limits<T>::infinity(), m2 = m1;
    for (int64_t i = g * gsize; i < (g + 1) * gsize; ++i) {
      const T v = choice[i];
      if (v > m1) {
        m2 = m1;
        m1 = v;
      } else if (v > m2) {
        m2 = v;
      }
    }
    group_score[g] = m1 + m2;
    taken[g] = 0;
  }
  for (int64_t k = 0; k < c.topk_group; ++k) taken[argmax_untaken(group_score, taken, c.n_group)] = 1;
  for (int64_t g = 0; g < c.n_group; ++g)
    if (!taken[g])
      for (int64_t i = g * gsize; i < (g + 1) * gsize; ++i) choice[i] = -std::numeric_limits<T>::infinity();
}

}  // namespace

template <class T>
void router_forward(Index* indices, T* gates, T* scores, int32_t* load, const T* logits,
                    const T* bias, int64_t N, const RouterConfig& cfg) {
  validate(cfg);
  const int64_t E = cfg.E, K = cfg.K;
  const T scaling = static_cast<T>(cfg.routed_scaling_factor);
  detail::ThreadSlices<T> values(0, static_cast<size_t>(E + cfg.n_group));  // choice, group scores
  detail::ThreadSlices<unsigned char> flags(0, static_cast<size_t>(std::max(E, cfg.n_group)));
  parallel_ranges(N, 8, [&](int64_t n0, int64_t n1) {
    T* choice = values.slice();
    T* group_score = choice + E;
    unsigned char* taken = flags.slice();
    for (int64_t n = n0; n < n1; ++n) {
      const T* x = logits + n * E;
      T* s = scores + n * E;
      for (int64_t i = 0; i < E; ++i) {
        s[i] = sigmoid(x[i]);
        choice[i] = bias ? s[i] + bias[i] : s[i];
      }
      if (cfg.n_group > 1) mask_groups(choice, group_score, taken, cfg);
      for (int64_t i = 0; i < E; ++i) taken[i] = 0;
      Index* idx = indices + n * K;
      T denom = T(0);
      for (int64_t k = 0; k < K; ++k) {
        const int64_t best = argmax_untaken(choice, taken, E);
        taken[best] = 1;
        idx[k] = static_cast<Index>(best);
        denom += s[best];
      }
      denom += T(1e-20);
      T* g = gates + n * K;
      for (int64_t k = 0; k < K; ++k)
        g[k] = cfg.norm_topk_prob ? s[idx[k]] / denom * scaling : s[idx[k]] * scaling;
    }
  });
  for (int64_t e = 0; e < E; ++e) load[e] = 0;
  for (int64_t i = 0; i < N * K; ++i) ++load[indices[i]];
}

template <class T>
void router_backward(T* dlogits, const T* dgates, const T* dscores, const Index* indices,
                     const T* scores, int64_t N, const RouterConfig& cfg) {
  const int64_t E = cfg.E, K = cfg.K;
  const T scaling = static_cast<T>(cfg.routed_scaling_factor);
  detail::ThreadSlices<T> slices(0, static_cast<size_t>(E));
  parallel_ranges(N, 8, [&](int64_t n0, int64_t n1) {
    T* ds = slices.slice();  // total gradient into s for one token
    for (int64_t n = n0; n < n1; ++n) {
      const T* s = scores + n * E;
      const Index* idx = indices + n * K;
      const T* dg = dgates + n * K;
      for (int64_t i = 0; i < E; ++i) ds[i] = dscores ? dscores[n * E + i] : T(0);
      if (cfg.norm_topk_prob) {
        // g_k = c s_k / S:  ∂L/∂s_j = c/S (dg_j − Σ_k dg_k s_k / S) for selected j.
        T denom = T(0);
        for (int64_t k = 0; k < K; ++k) denom += s[idx[k]];
        denom += T(1e-20);
        T weighted = T(0);
        for (int64_t k = 0; k < K; ++k) weighted += dg[k] * s[idx[k]];
        const T mean = weighted / denom;
        for (int64_t k = 0; k < K; ++k) ds[idx[k]] += scaling / denom * (dg[k] - mean);
      } else {
        for (int64_t k = 0; k < K; ++k) ds[idx[k]] += scaling * dg[k];
      }
      T* dl = dlogits + n * E;
      for (int64_t i = 0; i < E; ++i) dl[i] += s[i] * (T(1) - s[i]) * ds[i];
    }
  });
}

template void router_forward<float>(Index*, float*, float*, int32_t*, const float*, const float*, int64_t, const RouterConfig&);
template void router_forward<double>(Index*, double*, double*, int32_t*, const double*, const double*, int64_t, const RouterConfig&);
template void router_backward<float>(float*, const float*, const float*, const Index*, const float*, int64_t, const RouterConfig&);
template void router_backward<double>(double*, const double*, const double*, const Index*, const double*, int64_t, const RouterConfig&);

}  // namespace tinyseek::ops
