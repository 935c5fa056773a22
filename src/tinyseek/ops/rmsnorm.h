// RMSNorm: y = x / sqrt(mean(x²) + eps) · w, computed in T (FP32 in training).
#pragma once
#include <cstdint>

namespace tinyseek::ops {

// y[n, :] = x[n, :] · rstd[n] · w,  rstd[n] = 1 / sqrt(mean_d x[n, d]² + eps).
//   y    [N, D]      contiguous
//   rstd [N]         saved for backward
//   x    [N, D]      row stride ldx (0 means D), so a column slice such as c_kv_raw =
//                    kv_a[:, 0:dc] (ldx = dc + dr) is normalised without a copy
//   w    [D]
template <class T>
void rmsnorm_forward(T* y, T* rstd, const T* x, const T* w, int64_t N, int64_t D, double eps,
                     int64_t ldx = 0);

// With xhat = x · rstd and g = dy ⊙ w:
//   dx[n, :] += rstd[n] · (g − xhat · mean_d(g ⊙ xhat))      (accumulated, row stride ldx)
//   dw       += Σ_n dy[n, :] ⊙ xhat[n, :]                    (accumulated; fixed row chunks
//                                                             combined in chunk order)
//   dx   [N, D] (ldx)    dw [D]    dy [N, D]    x [N, D] (ldx)    w [D]    rstd [N]
template <class T>
void rmsnorm_backward(T* dx, T* dw, const T* dy, const T* x, const T* w, const T* rstd,
                      int64_t N, int64_t D, int64_t ldx = 0);

}  // namespace tinyseek::ops
