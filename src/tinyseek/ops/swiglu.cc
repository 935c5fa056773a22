#include "tinyseek/ops/swiglu.h"

#include <cmath>
#include <type_traits>

#include "tinyseek/base/parallel.h"
#include "tinyseek/numerics/simd.h"
#include "tinyseek/ops/elementwise_avx512.h"

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
  if constexpr (std::is_same_v<T, float>) {
    if (simd_path() == SimdPath::Avx512Bf16) {  // vectorised exp (elementwise_avx512.cc)
      parallel_ranges(n, kGrain, [&](int64_t i0, int64_t i1) {
        detail::swiglu_forward_avx512(h + i0, g + i0, u + i0, i1 - i0);
      });
      return;
    }
  }
  parallel_ranges(n, kGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) h[i] = g[i] * sigmoid(g[i]) * u[i];
  });
}

template <class T>
void swiglu_backward(T* dg, T* du, const T* dh, const T* g, const T* u, int64_t n, bool overwrite) {
  if constexpr (std::is_same_v<T, float>) {
    if (simd_path() == SimdPath::Avx512Bf16) {
      parallel_ranges(n, kGrain, [&](int64_t i0, int64_t i1) {
        detail::swiglu_backward_avx512(dg + i0, du + i0, dh + i0, g + i0, u + i0, i1 - i0, overwrite);
      });
      return;
    }
  }
  parallel_ranges(n, kGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const T s = sigmoid(g[i]);
      const T silu = g[i] * s;
      // + into +0 when overwriting: -0 terms become +0, as after a zero fill.
      dg[i] = (overwrite ? T(0) : dg[i]) + dh[i] * u[i] * (s * (T(1) + g[i] * (T(1) - s)));
      du[i] = (overwrite ? T(0) : du[i]) + dh[i] * silu;
    }
  });
}

template void swiglu_forward<float>(float*, const float*, const float*, int64_t);
template void swiglu_forward<double>(double*, const double*, const double*, int64_t);
template void swiglu_backward<float>(float*, float*, const float*, const float*, const float*, int64_t, bool);
template void swiglu_backward<double>(double*, double*, const double*, const double*, const double*, int64_t, bool);

}  // namespace tinyseek::ops
