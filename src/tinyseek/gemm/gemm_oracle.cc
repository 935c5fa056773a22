// The FP64 oracle every GEMM kernel is tested against, and the a-priori error bound for
// comparing an FP32 GEMM with it. Kept forever (DESIGN §3: a naive oracle beside every fast
// kernel).
//
// Oracle: C64[m,n] = alpha * Σ_k (a(m,k) sA(m,k)) (b(k,n) sB(k,n)) + beta * C[m,n], every
// operation in FP64. The scaled operands a·sA, b·sB are exact in FP64 (FP8: <= 4 significant
// bits times a 24-bit scale), so only the products and the sums round, at 2^-53. Scales are
// applied per element: grouping by K-blocks does not change the exact sum, since the scales
// are constant within a group.
#include <algorithm>
#include <cmath>

#include "tinyseek/base/aligned.h"
#include "tinyseek/base/check.h"
#include "tinyseek/base/parallel.h"
#include "tinyseek/gemm/gemm_internal.h"

namespace tinyseek::gemm {

namespace {

// op(X) with its scales applied, in FP64: out[op_rows, op_cols]; |x| if `absolute`.
void scaled_op_f64(const Matrix& X, bool absolute, double* out) {
  const int64_t R = X.op_rows(), Cn = X.op_cols();
  parallel_for(R, [&](int64_t r) {
    for (int64_t c = 0; c < Cn; ++c) {
      const float v = X.trans ? detail::stored_value(X, c, r) : detail::stored_value(X, r, c);
      const double s = static_cast<double>(v) * static_cast<double>(detail::op_scale(X, r, c));
      out[r * Cn + c] = absolute ? std::fabs(s) : s;
    }
  });
}

// out[M, N] (ld N) = Σ_k a[m,k] b[k,n] in FP64, k in order for every output.
void gemm_f64(double* out, const Matrix& A, const Matrix& B, bool absolute) {
  const int64_t M = A.op_rows(), N = B.op_cols(), K = A.op_cols();
  AlignedBuffer<double> a(static_cast<size_t>(M * K)), b(static_cast<size_t>(K * N));
  scaled_op_f64(A, absolute, a.data());
  scaled_op_f64(B, absolute, b.data());
  parallel_for(M, [&](int64_t m) {
    double* o = out + m * N;
    std::fill(o, o + N, 0.0);
    for (int64_t k = 0; k < K; ++k) {
      const double am = a[m * K + k];
      const double* bk = b.data() + k * N;
      for (int64_t n = 0; n < N; ++n) o[n] += am * bk[n];
    }
  });
}

void check_c_for_beta(const float* C, int64_t ldc, int64_t N, float beta) {
  TS_CHECK(beta == 0.0f || C != nullptr, "beta is " << beta << " but C is null",
           "pass the FP32 C the GEMM starts from (it may be null only when beta == 0)");
  TS_CHECK(C == nullptr || ldc >= std::max<int64_t>(N, 1), "ldc " << ldc << " is smaller than the " << N
           << " columns of C", "C is row-major [M, N]; ldc must be at least N");
}

}  // namespace

void gemm_oracle(double* C64, const float* C, int64_t ldc, const Matrix& A, const Matrix& B, float alpha,
                 float beta) {
  detail::validate_operands(A, B);
  const int64_t M = A.op_rows(), N = B.op_cols();
  check_c_for_beta(C, ldc, N, beta);
  TS_CHECK(C64 != nullptr || M * N == 0, "oracle output C64 is null", "pass a [M, N] double buffer");
  gemm_f64(C64, A, B, false);
  parallel_for(M, [&](int64_t m) {
    for (int64_t n = 0; n < N; ++n) {
      double& o = C64[m * N + n];
      o = static_cast<double>(alpha) * o;
      if (beta != 0.0f) o += static_cast<double>(beta) * static_cast<double>(C[m * ldc + n]);
    }
  });
}

// Where c_K comes from (first order in u = 2^-24, the unit roundoff of FP32):
//   G - 1   additions inside a group (P_g starts from its first product; the products are
//           exact for FP8/BF16; for F32 operands the product's rounding uses the slot that
//           the scale multiplications below leave free, since their scales are exactly 1),
//   2       (sA*sB) and its product with P_g,
//   ceil(K/G) - 1   additions into the FP32 accumulator,
//   2       alpha * acc and the final add of beta * C.
// beta * C contributes its own rounding and the final add: 2 u |beta C|. Groups never hold
// more than K elements, so G is taken as min(G, K) here (the bound only gets tighter).
void gemm_error_bound(double* tol, const float* C, int64_t ldc, const Matrix& A, const Matrix& B, float alpha,
                      float beta, int promote_every) {
  detail::validate_operands(A, B);
  const int64_t M = A.op_rows(), N = B.op_cols(), K = A.op_cols();
  check_c_for_beta(C, ldc, N, beta);
  TS_CHECK(tol != nullptr || M * N == 0, "error-bound output tol is null", "pass a [M, N] double buffer");
  const int64_t G = std::max<int64_t>(1, std::min(detail::checked_promotion_interval(A, B, promote_every), K));
  const int64_t groups = (K + G - 1) / G;
  const double u = std::ldexp(1.0, -24);
  const double c_k = static_cast<double>(G + groups + 2) * u;
  gemm_f64(tol, A, B, true);
  parallel_for(M, [&](int64_t m) {
    for (int64_t n = 0; n < N; ++n) {
      double& t = tol[m * N + n];
      t = c_k * std::fabs(static_cast<double>(alpha)) * t;
      if (beta != 0.0f) t += 2.0 * u * std::fabs(static_cast<double>(beta) * static_cast<double>(C[m * ldc + n]));
    }
  });
}

}  // namespace tinyseek::gemm
