#include "tinyseek/ops/balance_loss.h"

#include "tinyseek/base/check.h"
#include "tinyseek/base/parallel.h"
#include "tinyseek/ops/kernels.h"

namespace tinyseek::ops {

template <class T>
double balance_loss_forward(T* f, const T* scores, const Index* indices, int64_t B, int64_t T_seq,
                            int64_t E, int64_t K) {
  TS_CHECK(B > 0 && T_seq > 0 && E > 0 && K > 0,
           "balance loss needs positive B, T, E, K; got " << B << ", " << T_seq << ", " << E << ", " << K,
           "this is a caller bug");
  // Per sequence, accumulated in double: counts → f, normalised scores → P, then Σ f P.
  double* per_seq = detail::scratch<double>(0, static_cast<size_t>(B));
  detail::ThreadSlices<double> slices(1, static_cast<size_t>(E));
  parallel_for(B, [&](int64_t b) {
    double* P = slices.slice();
    T* fb = f + b * E;
    for (int64_t i = 0; i < E; ++i) {
      fb[i] = T(0);
      P[i] = 0.0;
    }
    for (int64_t t = 0; t < T_seq; ++t) {
      const int64_t n = b * T_seq + t;
      for (int64_t k = 0; k < K; ++k) fb[indices[n * K + k]] += T(1);
      const T* s = scores + n * E;
      const double inv_total = 1.0 / static_cast<double>(detail::sum(s, E));
      for (int64_t i = 0; i < E; ++i) P[i] += static_cast<double>(s[i]) * inv_total;
    }
    const double f_scale = static_cast<double>(E) / (static_cast<double>(K) * static_cast<double>(T_seq));
    double loss = 0.0;
    for (int64_t i = 0; i < E; ++i) {
      fb[i] = static_cast<T>(static_cast<double>(fb[i]) * f_scale);
      loss += static_cast<double>(fb[i]) * P[i] / static_cast<double>(T_seq);
    }
    per_seq[b] = loss;
  });
  double total = 0.0;
  for (int64_t b = 0; b < B; ++b) total += per_seq[b];
  return total / static_cast<double>(B);
}

template <class T>
void balance_loss_backward(T* dscores, double dloss, const T* f, const T* scores, int64_t B,
                           int64_t T_seq, int64_t E) {
  const T c = static_cast<T>(dloss / (static_cast<double>(B) * static_cast<double>(T_seq)));
  parallel_ranges(B * T_seq, 16, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const T* s = scores + n * E;
      const T* fb = f + (n / T_seq) * E;
      const T total = detail::sum(s, E);
      const T fs = detail::dot(fb, s, E) / total;  // Σ_i f_i s_i / S
      T* d = dscores + n * E;
      for (int64_t j = 0; j < E; ++j) d[j] += c * (fb[j] - fs) / total;
    }
  });
}

template double balance_loss_forward<float>(float*, const float*, const Index*, int64_t, int64_t, int64_t, int64_t);
template double balance_loss_forward<double>(double*, const double*, const Index*, int64_t, int64_t, int64_t, int64_t);
template void balance_loss_backward<float>(float*, double, const float*, const float*, int64_t, int64_t, int64_t);
template void balance_loss_backward<double>(double*, double, const double*, const double*, int64_t, int64_t, int64_t);

}  // namespace tinyseek::ops
