#include "tinyseek/ops/moe_dispatch.h"

#include <cstring>

#include "tinyseek/base/check.h"
#include "tinyseek/base/parallel.h"
#include "tinyseek/ops/kernels.h"

namespace tinyseek::ops {

void moe_plan(int64_t* offsets, Index* row_token, int64_t* row_of, const Index* indices,
              int64_t N, int64_t K, int64_t E) {
  // Stable counting sort of the (n, k) pairs by expert: count, prefix-sum, then place in
  // ascending n, so each expert sees its tokens in ascending order.
  for (int64_t e = 0; e <= E; ++e) offsets[e] = 0;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      const Index e = indices[n * K + k];
      TS_CHECK(e >= 0 && e < E, "expert index " << e << " of token " << n << " is outside [0, " << E << ")",
               "indices must come from router_forward with the same n_routed_experts");
      for (int64_t j = 0; j < k; ++j)
        TS_CHECK(indices[n * K + j] != e, "token " << n << " selects expert " << e << " twice",
                 "indices must come from router_forward (distinct experts per token)");
      ++offsets[e + 1];
    }
  for (int64_t e = 0; e < E; ++e) offsets[e + 1] += offsets[e];
  int64_t* next = detail::scratch<int64_t>(0, static_cast<size_t>(E) + 1);
  for (int64_t e = 0; e < E; ++e) next[e] = offsets[e];
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      const int64_t r = next[indices[n * K + k]]++;
      row_token[r] = static_cast<Index>(n);
      row_of[n * K + k] = r;
    }
}

template <class T>
void moe_gather_forward(T* xe, const T* x, const Index* row_token, int64_t N, int64_t K,
                        int64_t D) {
  parallel_ranges(N * K, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      std::memcpy(xe + r * D, x + static_cast<int64_t>(row_token[r]) * D, sizeof(T) * D);
  });
}

template <class T>
void moe_gather_backward(T* dx, const T* dxe, const int64_t* row_of, int64_t N, int64_t K,
                         int64_t D) {
  parallel_ranges(N, 16, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      T* d = dx + n * D;
      for (int64_t k = 0; k < K; ++k) {
        const T* src = dxe + row_of[n * K + k] * D;
        for (int64_t j = 0; j < D; ++j) d[j] += src[j];
      }
    }
  });
}

template <class T>
void moe_combine_forward(T* y, const T* ye, const T* gates, const int64_t* row_of, int64_t N,
                         int64_t K, int64_t D) {
  parallel_ranges(N, 16, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n)
      for (int64_t k = 0; k < K; ++k)
        detail::axpy(y + n * D, gates[n * K + k], ye + row_of[n * K + k] * D, D);
  });
}

template <class T>
void moe_combine_backward(T* dye, T* dgates, const T* dy, const T* ye, const T* gates,
                          const int64_t* row_of, int64_t N, int64_t K, int64_t D, bool overwrite_dye) {
  // Each (n, k) pair owns one expert-grouped row, so rows are written by exactly one task.
  parallel_ranges(N, 16, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n)
      for (int64_t k = 0; k < K; ++k) {
        const int64_t r = row_of[n * K + k];
        dgates[n * K + k] += detail::dot(dy + n * D, ye + r * D, D);
        if (overwrite_dye) detail::axpy_into_zero(dye + r * D, gates[n * K + k], dy + n * D, D);
        else detail::axpy(dye + r * D, gates[n * K + k], dy + n * D, D);
      }
  });
}

template void moe_gather_forward<float>(float*, const float*, const Index*, int64_t, int64_t, int64_t);
template void moe_gather_forward<double>(double*, const double*, const Index*, int64_t, int64_t, int64_t);
template void moe_gather_backward<float>(float*, const float*, const int64_t*, int64_t, int64_t, int64_t);
template void moe_gather_backward<double>(double*, const double*, const int64_t*, int64_t, int64_t, int64_t);
template void moe_combine_forward<float>(float*, const float*, const float*, const int64_t*, int64_t, int64_t, int64_t);
template void moe_combine_forward<double>(double*, const double*, const double*, const int64_t*, int64_t, int64_t, int64_t);
template void moe_combine_backward<float>(float*, float*, const float*, const float*, const float*, const int64_t*, int64_t, int64_t, int64_t, bool);
template void moe_combine_backward<double>(double*, double*, const double*, const double*, const double*, const int64_t*, int64_t, int64_t, int64_t, bool);

}  // namespace tinyseek::ops
