// ops/linear (FP32 through gemm::gemm): forward against the direct formula in double, the
// accumulate flag, backward against central finite differences of L(x, W) = Σ G ⊙ (x Wᵀ)
// evaluated in double (the op itself is float-only, so this compares FP32 gradients with
// double-precision FD at FP32 tolerance), accumulation into dx/dW, skipping null gradients,
// and the up-front rejection of inconsistent precisions.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

#include "ops_test_util.h"
#include "tinyseek/base/check.h"
#include "tinyseek/ops/linear.h"

namespace tinyseek::ops::test {
namespace {

constexpr int64_t N = 13, IN = 37, OUT = 11;

Vec direct(const Vec& x, const Vec& w) {  // y = x Wᵀ in double
  Vec y(N * OUT, 0.0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < OUT; ++o)
      for (int64_t i = 0; i < IN; ++i) y[n * OUT + o] += x[n * IN + i] * w[o * IN + i];
  return y;
}

TEST(Linear, ForwardAndAccumulate) {
  const Vec x = randn(N * IN, 1), w = randn(OUT * IN, 2), y0 = randn(N * OUT, 3);
  const auto xf = cast<float>(x), wf = cast<float>(w);
  std::vector<float> y(N * OUT, 12345.f);
  linear_forward(y.data(), xf.data(), wf.data(), N, IN, OUT);
  const Vec want = direct(x, w);
  const double rel = rel_err(to_double(y.data(), y.size()), want);
  std::printf("[linear] forward rel err %.3e (tol 1e-6)\n", rel);
  EXPECT_LE(rel, 1e-6);
  auto ya = cast<float>(y0);
  linear_forward(ya.data(), xf.data(), wf.data(), N, IN, OUT, /*accumulate=*/true);
  Vec want_acc = want;
  for (size_t i = 0; i < want_acc.size(); ++i) want_acc[i] += static_cast<double>(static_cast<float>(y0[i]));
  const double rel_acc = rel_err(to_double(ya.data(), ya.size()), want_acc);
  std::printf("[linear] forward accumulate rel err %.3e (tol 1e-6)\n", rel_acc);
  EXPECT_LE(rel_acc, 1e-6);
}

TEST(Linear, BackwardMatchesFiniteDifferences) {
  Vec x = randn(N * IN, 4), w = randn(OUT * IN, 5);
  const Vec G = randn(N * OUT, 6);
  const auto loss = [&] { return dot(direct(x, w), G); };
  auto fd = [&](Vec& p) {
    Vec g(p.size());
    for (size_t i = 0; i < p.size(); ++i) {
      const double p0 = p[i], h = 1e-5;
      p[i] = p0 + h;
      const double lp = loss();
      p[i] = p0 - h;
      const double lm = loss();
      p[i] = p0;
      g[i] = (lp - lm) / (2 * h);
    }
    return g;
  };
  const Vec fd_x = fd(x), fd_w = fd(w);
  const auto xf = cast<float>(x), wf = cast<float>(w), gf = cast<float>(G);
  const Vec pre_x = randn(N * IN, 7), pre_w = randn(OUT * IN, 8);
  auto dx = cast<float>(pre_x), dw = cast<float>(pre_w);
  linear_backward(dx.data(), dw.data(), gf.data(), xf.data(), wf.data(), N, IN, OUT);
  Vec gx(dx.size()), gw(dw.size());
  for (size_t i = 0; i < gx.size(); ++i) gx[i] = dx[i] - static_cast<double>(static_cast<float>(pre_x[i]));
  for (size_t i = 0; i < gw.size(); ++i) gw[i] = dw[i] - static_cast<double>(static_cast<float>(pre_w[i]));
  const double rx = rel_err(gx, fd_x), rw = rel_err(gw, fd_w);
  std::printf("[fd]    linear d/dx max|grad| %.3e rel %.3e, d/dW max|grad| %.3e rel %.3e (tol 1e-5, FP32 op)\n",
              max_abs(fd_x), rx, max_abs(fd_w), rw);
  EXPECT_LE(rx, 1e-5);
  EXPECT_LE(rw, 1e-5);
  // Null gradients are skipped; the other one is still accumulated.
  std::vector<float> dw2(OUT * IN, 0.f);
  linear_backward(nullptr, dw2.data(), gf.data(), xf.data(), wf.data(), N, IN, OUT);
  Vec gw2 = to_double(dw2.data(), dw2.size());
  EXPECT_LE(rel_err(gw2, fd_w), 1e-5);
}

TEST(Linear, InconsistentPrecisionIsRejected) {
  // The FP8 paths are tested in linear_fp8_test.cc; here only the up-front validation.
  std::vector<float> x(N * IN), w(OUT * IN), y(N * OUT);
  LinearPrecision p;
  LinearState st;
  p.fprop_x = p.weight = gemm::DType::E4M3;
  p.granularity = LinearGranularity::kMx32;  // E8M0 scales need scale_type pow2
  try {
    linear_forward(y.data(), x.data(), w.data(), 0, N, IN, OUT, false, p, st);
    FAIL() << "mx32 with FP32 scales should be rejected";
  } catch (const Error& e) {
    std::printf("[linear] %s\n", e.message().c_str());
    EXPECT_NE((e.message() + e.hint()).find("pow2"), std::string::npos);
  }
  p = {};
  p.saved_x = gemm::DType::E4M3;  // the cached FP8 X must be the Wgrad operand
  EXPECT_THROW(linear_backward(x.data(), w.data(), y.data(), x.data(), w.data(), 0, N, IN, OUT, p, st), Error);
}

}  // namespace
}  // namespace tinyseek::ops::test
