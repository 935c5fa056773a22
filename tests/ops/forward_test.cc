// Forward of every op against a direct formula written out here in double (the op's double
// instantiation to ~1e-12, its float instantiation to FP32 accuracy), plus the properties the
// model relies on: in-place RoPE, RoPE backward = inverse rotation, the MoE plan's ordering,
// cross-entropy stability at extreme logits and its in-place backward. Evidence is printed.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <vector>

#include "ops_test_util.h"
#include "tinyseek/ops/attention.h"
#include "tinyseek/ops/balance_loss.h"
#include "tinyseek/ops/cross_entropy.h"
#include "tinyseek/ops/embedding.h"
#include "tinyseek/ops/moe_dispatch.h"
#include "tinyseek/ops/rmsnorm.h"
#include "tinyseek/ops/rope.h"
#include "tinyseek/ops/router.h"
#include "tinyseek/ops/swiglu.h"

namespace tinyseek::ops::test {
namespace {

void expect_close(const char* label, const Vec& got, const Vec& want, double tol) {
  const double rel = rel_err(got, want);
  std::printf("[direct] %-28s max abs diff %-10.3e rel %-10.3e (tol %g)\n", label, max_abs_diff(got, want), rel, tol);
  EXPECT_LE(rel, tol) << label;
}

TEST(OpsForward, EmbeddingGathersRows) {
  const int64_t V = 6, D = 4, N = 5;
  const std::vector<Index> tokens = {5, 0, 5, 2, 1};
  const auto table = cast<float>(randn(V * D, 1));
  std::vector<float> out(N * D);
  embedding_forward(out.data(), tokens.data(), table.data(), N, D, V);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t d = 0; d < D; ++d) ASSERT_EQ(out[n * D + d], table[tokens[n] * D + d]);
}

TEST(OpsForward, RmsNorm) {
  const int64_t N = 9, D = 21;
  const double eps = 1e-5;
  const Vec x = randn(N * D, 2, 3.0), w = randn(D, 3);
  Vec want(N * D);
  for (int64_t n = 0; n < N; ++n) {
    double ms = 0;
    for (int64_t d = 0; d < D; ++d) ms += x[n * D + d] * x[n * D + d];
    const double r = 1.0 / std::sqrt(ms / D + eps);
    for (int64_t d = 0; d < D; ++d) want[n * D + d] = x[n * D + d] * r * w[d];
  }
  std::vector<double> y(N * D), rstd(N);
  rmsnorm_forward(y.data(), rstd.data(), x.data(), w.data(), N, D, eps);
  expect_close("rmsnorm double", y, want, 1e-13);
  const auto xf = cast<float>(x), wf = cast<float>(w);
  std::vector<float> yf(N * D), rf(N);
  rmsnorm_forward(yf.data(), rf.data(), xf.data(), wf.data(), N, D, eps);
  expect_close("rmsnorm float", to_double(yf.data(), yf.size()), want, 1e-6);
}

// RoPE against the formula of docs/model.md: pair (2i, 2i+1) rotated by pos·θ_i.
TEST(OpsForward, RopeMatchesFormulaAndInverts) {
  const int64_t B = 2, T_seq = 5, N = B * T_seq, H = 3, dr = 8, offset = 3;
  const double theta = 10000.0;
  const auto table = make_rope_table<double>(dr, 16, theta);
  const auto table_f = make_rope_table<float>(dr, 16, theta);
  const Vec x = randn(N * H * dr, 4);
  Vec want(x.size());
  for (int64_t n = 0; n < N; ++n)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < dr / 2; ++i) {
        const double pos = static_cast<double>(offset + n % T_seq);
        const double a = pos * std::pow(theta, -2.0 * i / dr);
        const double* v = &x[(n * H + h) * dr + 2 * i];
        want[(n * H + h) * dr + 2 * i] = v[0] * std::cos(a) - v[1] * std::sin(a);
        want[(n * H + h) * dr + 2 * i + 1] = v[0] * std::sin(a) + v[1] * std::cos(a);
      }
  std::vector<double> y(x.size());
  rope_forward(y.data(), x.data(), table, N, H, T_seq, offset, dr, dr);
  expect_close("rope double", y, want, 1e-14);
  auto yf = cast<float>(x);  // in place
  rope_forward(yf.data(), yf.data(), table_f, N, H, T_seq, offset, dr, dr);
  expect_close("rope float in place", to_double(yf.data(), yf.size()), want, 1e-6);
  // backward is the inverse rotation: applying it (in place) to y gives back x.
  rope_backward(y.data(), y.data(), table, N, H, T_seq, offset, dr, dr);
  expect_close("rope backward(forward(x)) = x", y, x, 1e-14);
}

TEST(OpsForward, RopeRejectsPositionsBeyondTable) {
  const auto table = make_rope_table<float>(4, 8, 10000.0);
  std::vector<float> x(4 * 10);
  EXPECT_THROW(rope_forward(x.data(), x.data(), table, 10, 1, 10, 0, 4, 4), Error);
  EXPECT_THROW(rope_forward(x.data(), x.data(), table, 2, 1, 2, 7, 4, 4), Error);
  EXPECT_NO_THROW(rope_forward(x.data(), x.data(), table, 10, 1, 5, 3, 4, 4));
  EXPECT_THROW(make_rope_table<float>(5, 8, 10000.0), Error);
}

// Attention against explicit full score matrices with a causal mask and a softmax.
TEST(OpsForward, AttentionMatchesDirectSoftmax) {
  const int64_t B = 2, T_seq = 40, H = 3, dn = 5, dr = 4, dv = 6, N = B * T_seq;
  const Vec q = randn(N * H * (dn + dr), 5), kv = randn(N * H * (dn + dv), 6), k_pe = randn(N * dr, 7);
  Vec want_o(N * H * dv), want_lse(N * H);
  const double scale = 1.0 / std::sqrt(static_cast<double>(dn + dr));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t t = 0; t < T_seq; ++t) {
        const int64_t nt = b * T_seq + t;
        Vec sc(t + 1);
        double m = -1e300;
        for (int64_t s = 0; s <= t; ++s) {
          const int64_t ns = b * T_seq + s;
          double v = 0;
          for (int64_t j = 0; j < dn; ++j) v += q[(nt * H + h) * (dn + dr) + j] * kv[(ns * H + h) * (dn + dv) + j];
          for (int64_t j = 0; j < dr; ++j) v += q[(nt * H + h) * (dn + dr) + dn + j] * k_pe[ns * dr + j];
          sc[s] = v * scale;
          m = std::max(m, sc[s]);
        }
        double z = 0;
        for (double v : sc) z += std::exp(v - m);
        want_lse[nt * H + h] = m + std::log(z);
        for (int64_t j = 0; j < dv; ++j) {
          double acc = 0;
          for (int64_t s = 0; s <= t; ++s)
            acc += std::exp(sc[s] - m) / z * kv[((b * T_seq + s) * H + h) * (dn + dv) + dn + j];
          want_o[nt * H * dv + h * dv + j] = acc;
        }
      }
  std::vector<double> o(N * H * dv), lse(N * H);
  attention_forward(o.data(), lse.data(), q.data(), kv.data(), k_pe.data(), B, T_seq, H, dn, dr, dv);
  expect_close("attention o double", o, want_o, 1e-13);
  expect_close("attention lse double", lse, want_lse, 1e-13);
  const auto qf = cast<float>(q), kvf = cast<float>(kv), kpf = cast<float>(k_pe);
  std::vector<float> of(N * H * dv), lf(N * H);
  attention_forward(of.data(), lf.data(), qf.data(), kvf.data(), kpf.data(), B, T_seq, H, dn, dr, dv);
  expect_close("attention o float", to_double(of.data(), of.size()), want_o, 2e-6);
  expect_close("attention lse float", to_double(lf.data(), lf.size()), want_lse, 2e-6);
}

TEST(OpsForward, SwiGlu) {
  const int64_t n = 50;
  const Vec g = randn(n, 8, 4.0), u = randn(n, 9);
  Vec want(n);
  for (int64_t i = 0; i < n; ++i) want[i] = g[i] / (1.0 + std::exp(-g[i])) * u[i];
  const auto gf = cast<float>(g), uf = cast<float>(u);
  std::vector<float> h(n);
  swiglu_forward(h.data(), gf.data(), uf.data(), n);
  expect_close("swiglu float", to_double(h.data(), n), want, 1e-6);
}

TEST(OpsForward, BalanceLossMatchesFormula) {
  const int64_t B = 3, T_seq = 5, E = 6, K = 2, N = B * T_seq;
  const RouterConfig cfg{.E = E, .K = K};
  const auto logits = randn(N * E, 10);
  std::vector<Index> idx(N * K);
  std::vector<double> gates(N * K), s(N * E), f(B * E);
  std::vector<int32_t> load(E);
  router_forward(idx.data(), gates.data(), s.data(), load.data(), logits.data(), static_cast<const double*>(nullptr), N, cfg);
  double want = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < E; ++i) {
      double count = 0, P = 0;
      for (int64_t t = 0; t < T_seq; ++t) {
        const int64_t n = b * T_seq + t;
        for (int64_t k = 0; k < K; ++k) count += idx[n * K + k] == i;
        double tot = 0;
        for (int64_t j = 0; j < E; ++j) tot += s[n * E + j];
        P += s[n * E + i] / tot / T_seq;
      }
      want += static_cast<double>(E) / (K * T_seq) * count * P / B;
    }
  const double got = balance_loss_forward(f.data(), s.data(), idx.data(), B, T_seq, E, K);
  std::printf("[direct] balance loss %.15g want %.15g\n", got, want);
  EXPECT_NEAR(got, want, 1e-14);
  // Perfectly balanced routing with uniform scores: f_i = 1 and P_i = 1/E, so L = 1.
  std::vector<double> su(2 * 4, 0.5), fu(4);
  const std::vector<Index> iu = {0, 1, 2, 3};
  EXPECT_NEAR(balance_loss_forward(fu.data(), su.data(), iu.data(), 1, 2, 4, 2), 1.0, 1e-15);
}

TEST(OpsForward, MoePlanOrdersTokensPerExpert) {
  const int64_t N = 6, K = 2, E = 4;
  const std::vector<Index> indices = {3, 1, 1, 0, 0, 3, 1, 2, 3, 0, 1, 3};
  std::vector<int64_t> offsets(E + 1), row_of(N * K);
  std::vector<Index> row_token(N * K);
  moe_plan(offsets.data(), row_token.data(), row_of.data(), indices.data(), N, K, E);
  // expert 0: tokens 1, 2, 4; expert 1: 0, 1, 3, 5; expert 2: 3; expert 3: 0, 2, 4, 5
  EXPECT_EQ(offsets, (std::vector<int64_t>{0, 3, 7, 8, 12}));
  EXPECT_EQ(row_token, (std::vector<Index>{1, 2, 4, 0, 1, 3, 5, 3, 0, 2, 4, 5}));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      const int64_t r = row_of[n * K + k];
      EXPECT_EQ(row_token[r], n);
      EXPECT_TRUE(r >= offsets[indices[n * K + k]] && r < offsets[indices[n * K + k] + 1]);
    }
  const std::vector<Index> dup = {1, 1};
  EXPECT_THROW(moe_plan(offsets.data(), row_token.data(), row_of.data(), dup.data(), 1, 2, E), Error);
  // Combine = direct Σ_k g_k ye[(n,k)] on top of y.
  const int64_t D = 5;
  const Vec ye = randn(N * K * D, 11), g = randn(N * K, 12), y0 = randn(N * D, 13);
  Vec y = y0, want = y0;
  moe_combine_forward(y.data(), ye.data(), g.data(), row_of.data(), N, K, D);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t d = 0; d < D; ++d) want[n * D + d] += g[n * K + k] * ye[row_of[n * K + k] * D + d];
  expect_close("moe combine", y, want, 1e-15);
}

TEST(OpsForward, CrossEntropyMatchesFormulaAndIsStable) {
  const int64_t N = 7, V = 300;
  const std::vector<Index> targets = {0, 299, 17, -1, 5, 5, 123};
  const Vec x = randn(N * V, 14, 5.0);
  double want = 0;
  int valid = 0;
  for (int64_t n = 0; n < N; ++n) {
    if (targets[n] < 0) continue;
    double z = 0;
    for (int64_t j = 0; j < V; ++j) z += std::exp(x[n * V + j]);
    want += std::log(z) - x[n * V + targets[n]];
    ++valid;
  }
  want /= valid;
  const auto xf = cast<float>(x);
  std::vector<float> lse(N);
  const double got = cross_entropy_forward(lse.data(), xf.data(), targets.data(), N, V);
  std::printf("[direct] cross-entropy float %.9g want %.9g rel %.3e\n", got, want, std::fabs(got - want) / want);
  EXPECT_NEAR(got, want, 1e-6 * want);
  // Extreme logits: no overflow (naive exp(1e4) = inf), loss = gap to the max for a one-hot row.
  std::vector<float> big = {1e4f, 0.f, -1e4f, 1e4f - 3.f};
  std::vector<Index> t1 = {3};
  float l1;
  const double lbig = cross_entropy_forward(&l1, big.data(), t1.data(), 1, 4);
  std::printf("[direct] cross-entropy at logits 1e4: %.9g (want ~3.0486)\n", lbig);
  EXPECT_NEAR(lbig, 3.0 + std::log1p(std::exp(-3.0)), 1e-3);
  // All rows masked: loss 0, zero gradient.
  std::vector<Index> none(N, -1);
  EXPECT_EQ(cross_entropy_forward(lse.data(), xf.data(), none.data(), N, V), 0.0);
  // Backward in place (dlogits aliases logits) equals out of place.
  std::vector<float> out_of_place(N * V), in_place = xf;
  cross_entropy_forward(lse.data(), xf.data(), targets.data(), N, V);
  cross_entropy_backward(out_of_place.data(), 1.0, xf.data(), lse.data(), targets.data(), N, V);
  cross_entropy_backward(in_place.data(), 1.0, in_place.data(), lse.data(), targets.data(), N, V);
  EXPECT_EQ(in_place, out_of_place);
  // Each valid row's gradient sums to 0 (softmax − one-hot).
  for (int64_t n = 0; n < N; ++n) {
    double s = 0;
    for (int64_t j = 0; j < V; ++j) s += out_of_place[n * V + j];
    EXPECT_NEAR(s, 0.0, 1e-7);
  }
  std::vector<Index> bad = {0, 300, 0, 0, 0, 0, 0};
  EXPECT_THROW(cross_entropy_forward(lse.data(), xf.data(), bad.data(), N, V), Error);
}

TEST(OpsForward, EmbeddingRejectsBadToken) {
  std::vector<float> table(4 * 2), out(2 * 2);
  const std::vector<Index> bad = {1, 4};
  try {
    embedding_forward(out.data(), bad.data(), table.data(), 2, 2, 4);
    FAIL() << "no error for token 4 >= V = 4";
  } catch (const Error& e) {
    std::printf("[error] %s\n", e.what());
    EXPECT_NE(std::string(e.what()).find("token id 4"), std::string::npos);
  }
}

}  // namespace
}  // namespace tinyseek::ops::test
