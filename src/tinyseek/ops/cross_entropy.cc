#include "tinyseek/ops/cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "tinyseek/base/check.h"
#include "tinyseek/base/parallel.h"
#include "tinyseek/numerics/simd.h"
#include "tinyseek/ops/elementwise_avx512.h"
#include "tinyseek/ops/kernels.h"

namespace tinyseek::ops {

namespace {

// logsumexp of one row: max-subtracted, the exp-sum kept in kLanes fixed-order partials.
template <class T>
T row_logsumexp(const T* x, int64_t V) {
  T m = -std::numeric_limits<T>::infinity();
  for (int64_t j = 0; j < V; ++j) m = std::max(m, x[j]);
  T acc[detail::kLanes] = {};
  int64_t j = 0;
  for (; j + detail::kLanes <= V; j += detail::kLanes)
    for (int l = 0; l < detail::kLanes; ++l) acc[l] += std::exp(x[j + l] - m);
  for (int l = 0; j + l < V; ++l) acc[l] += std::exp(x[j + l] - m);
  return m + std::log(detail::combine_lanes(acc));
}

int64_t count_valid(const Index* targets, int64_t N) {
  int64_t n_valid = 0;
  for (int64_t n = 0; n < N; ++n) n_valid += targets[n] >= 0;
  return n_valid;
}

}  // namespace

int64_t count_valid_targets(const Index* targets, int64_t N) { return count_valid(targets, N); }

template <class T>
double cross_entropy_forward(T* lse, const T* logits, const Index* targets, int64_t N, int64_t V) {
  double total = 0.0;
  int64_t n_valid = 0;
  cross_entropy_forward_rows(lse, logits, targets, N, V, total, n_valid);
  return n_valid ? total / static_cast<double>(n_valid) : 0.0;
}

template <class T>
void cross_entropy_forward_rows(T* lse, const T* logits, const Index* targets, int64_t N, int64_t V, double& total,
                                int64_t& n_valid) {
  TS_CHECK(V > 0, "cross-entropy needs a positive vocabulary size, got " << V, "check vocab_size");
  for (int64_t n = 0; n < N; ++n)
    TS_CHECK(targets[n] < V, "target id " << targets[n] << " at row " << n << " is outside the vocabulary [0, " << V << ")",
             "the token data does not match this model's vocab_size");
  // float on AVX-512 CPUs: vectorised exp (elementwise_avx512.cc), same lane structure.
  const bool fast = simd_path() == SimdPath::Avx512Bf16;
  parallel_ranges(N, 4, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      if constexpr (std::is_same_v<T, float>) {
        if (fast) {
          lse[n] = detail::row_logsumexp_avx512(logits + n * V, V);
          continue;
        }
      }
      lse[n] = row_logsumexp(logits + n * V, V);
    }
  });
  for (int64_t n = 0; n < N; ++n) {
    if (targets[n] < 0) continue;
    total += static_cast<double>(lse[n]) - static_cast<double>(logits[n * V + targets[n]]);
    ++n_valid;
  }
}

template <class T>
void cross_entropy_backward(T* dlogits, double dloss, const T* logits, const T* lse,
                            const Index* targets, int64_t N, int64_t V) {
  cross_entropy_backward_rows(dlogits, dloss, count_valid(targets, N), logits, lse, targets, N, V);
}

template <class T>
void cross_entropy_backward_rows(T* dlogits, double dloss, int64_t n_valid, const T* logits, const T* lse,
                                 const Index* targets, int64_t N, int64_t V) {
  const T scale = n_valid ? static_cast<T>(dloss / static_cast<double>(n_valid)) : T(0);
  // float on AVX-512 CPUs: vectorised exp (elementwise_avx512.cc), same lane structure.
  const bool fast = simd_path() == SimdPath::Avx512Bf16;
  parallel_ranges(N, 4, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const T* x = logits + n * V;
      T* d = dlogits + n * V;
      const Index tgt = targets[n];
      if (tgt < 0) {
        for (int64_t j = 0; j < V; ++j) d[j] = T(0);
        continue;
      }
      const T l = lse[n];
      // Element-wise (read x[j], write d[j]), so d may alias x.
      bool done = false;
      if constexpr (std::is_same_v<T, float>) {
        if (fast) {
          detail::scaled_softmax_row_avx512(d, x, V, l, scale);
          done = true;
        }
      }
      if (!done)
        for (int64_t j = 0; j < V; ++j) d[j] = scale * std::exp(x[j] - l);
      d[tgt] -= scale;
    }
  });
}

template double cross_entropy_forward<float>(float*, const float*, const Index*, int64_t, int64_t);
template double cross_entropy_forward<double>(double*, const double*, const Index*, int64_t, int64_t);
template void cross_entropy_backward<float>(float*, double, const float*, const float*, const Index*, int64_t, int64_t);
template void cross_entropy_forward_rows<float>(float*, const float*, const Index*, int64_t, int64_t, double&,
                                                int64_t&);
template void cross_entropy_forward_rows<double>(double*, const double*, const Index*, int64_t, int64_t, double&,
                                                 int64_t&);
template void cross_entropy_backward_rows<float>(float*, double, int64_t, const float*, const float*, const Index*,
                                                 int64_t, int64_t);
template void cross_entropy_backward_rows<double>(double*, double, int64_t, const double*, const double*,
                                                  const Index*, int64_t, int64_t);
template void cross_entropy_backward<double>(double*, double, const double*, const double*, const Index*, int64_t, int64_t);

}  // namespace tinyseek::ops
