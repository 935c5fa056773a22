#include "tinyseek/ops/rmsnorm.h"

#include <cmath>

#include "tinyseek/base/check.h"
#include "tinyseek/base/parallel.h"
#include "tinyseek/ops/kernels.h"

namespace tinyseek::ops {

namespace {
// Rows per chunk of the dw reduction. Fixed (never derived from the thread count) so the
// partial sums, and therefore the bits of dw, are the same for any number of threads.
constexpr int64_t kRowsPerChunk = 32;
}  // namespace

template <class T>
void rmsnorm_forward(T* y, T* rstd, const T* x, const T* w, int64_t N, int64_t D, double eps,
                     int64_t ldx) {
  TS_CHECK(D > 0, "rmsnorm needs a positive width, got D = " << D, "check the model config");
  if (ldx == 0) ldx = D;
  const T e = static_cast<T>(eps);
  parallel_ranges(N, 16, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const T* xr = x + n * ldx;
      T* yr = y + n * D;
      const T r = T(1) / std::sqrt(detail::sum_squares(xr, D) / static_cast<T>(D) + e);
      rstd[n] = r;
      for (int64_t d = 0; d < D; ++d) yr[d] = xr[d] * r * w[d];
    }
  });
}

template <class T>
void rmsnorm_backward(T* dx, T* dw, const T* dy, const T* x, const T* w, const T* rstd,
                      int64_t N, int64_t D, int64_t ldx) {
  if (ldx == 0) ldx = D;
  const int64_t chunks = (N + kRowsPerChunk - 1) / kRowsPerChunk;
  // partial[c, d] = Σ_{n in chunk c} dy[n, d] x[n, d] rstd[n]
  T* partial = detail::scratch<T>(0, static_cast<size_t>(std::max<int64_t>(chunks * D, 1)));
  detail::ThreadSlices<T> g_slices(1, static_cast<size_t>(D));
  parallel_for(chunks, [&](int64_t c) {
    T* g = g_slices.slice();
    T* pw = partial + c * D;
    for (int64_t d = 0; d < D; ++d) pw[d] = T(0);
    const int64_t n1 = std::min(N, (c + 1) * kRowsPerChunk);
    for (int64_t n = c * kRowsPerChunk; n < n1; ++n) {
      const T* xr = x + n * ldx;
      const T* dyr = dy + n * D;
      T* dxr = dx + n * ldx;
      const T r = rstd[n];
      for (int64_t d = 0; d < D; ++d) g[d] = dyr[d] * w[d];
      // mean(g ⊙ xhat) = r · Σ g x / D
      const T m = r * detail::dot(g, xr, D) / static_cast<T>(D);
      for (int64_t d = 0; d < D; ++d) {
        const T xhat = xr[d] * r;
        dxr[d] += r * (g[d] - xhat * m);
        pw[d] += dyr[d] * xhat;
      }
    }
  });
  // dw[d] += Σ_c partial[c, d], chunks in order; threads split the columns.
  parallel_ranges(D, 64, [&](int64_t d0, int64_t d1) {
    for (int64_t d = d0; d < d1; ++d) {
      T acc = T(0);
      for (int64_t c = 0; c < chunks; ++c) acc += partial[c * D + d];
      dw[d] += acc;
    }
  });
}

template void rmsnorm_forward<float>(float*, float*, const float*, const float*, int64_t, int64_t, double, int64_t);
template void rmsnorm_forward<double>(double*, double*, const double*, const double*, int64_t, int64_t, double, int64_t);
template void rmsnorm_backward<float>(float*, float*, const float*, const float*, const float*, const float*, int64_t, int64_t, int64_t);
template void rmsnorm_backward<double>(double*, double*, const double*, const double*, const double*, const double*, int64_t, int64_t, int64_t);

}  // namespace tinyseek::ops
