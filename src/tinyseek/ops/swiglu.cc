#include "tinyseek/ops/swiglu.h"

#include <cmath>

#include "tinyseek/base/parallel.h"

namespace tinyseek::ops {

namespace {
template <class T>
inline T sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}
constexpr int64_t kGrain = 4096;
}  // namespace

template <class T>
void swiglu_forward(T* h, const T* g, const T* u, int64_t n) {
  parallel_ranges(n, kGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) h[i] = g[i] * sigmoid(g[i]) * u[i];
  });
}

template <class T>
void swiglu_backward(T* dg, T* du, const T* dh, const T* g, const T* u, int64_t n) {
  parallel_ranges(n, kGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const T s = sigmoid(g[i]);
      const T silu = g[i] * s;
      dg[i] += dh[i] * u[i] * (s * (T(1) + g[i] * (T(1) - s)));
      du[i] += dh[i] * silu;
    }
  });
}

template void swiglu_forward<float>(float*, const float*, const float*, int64_t);
template void swiglu_forward<double>(double*, const double*, const double*, int64_t);
template void swiglu_backward<float>(float*, float*, const float*, const float*, const float*, int64_t);
template void swiglu_backward<double>(double*, double*, const double*, const double*, const double*, int64_t);

}  // namespace tinyseek::ops
