// The "overwrite" forms of backward ops, which let callers skip zero-filling a gradient
// buffer that the op is the first to write: swiglu_backward(overwrite), moe_combine_backward
// (overwrite_dye), linear_backward(overwrite_dx). Each must give exactly the bits of
// accumulating into a zero-filled buffer (including +0 where a term is -0), whatever the
// buffer held before: the outputs start as NaN here, so a missed element shows.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <vector>

#include "ops_test_util.h"
#include "tinyseek/numerics/simd.h"
#include "tinyseek/ops/linear.h"
#include "tinyseek/ops/moe_dispatch.h"
#include "tinyseek/ops/swiglu.h"

namespace tinyseek::ops::test {
namespace {

using F = std::vector<float>;
F randf(size_t n, uint64_t seed, double scale = 1.0) { return cast<float>(randn(n, seed, scale)); }
F nans(size_t n) { return F(n, std::numeric_limits<float>::quiet_NaN()); }
bool same_bits(const F& a, const F& b) { return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0; }
int64_t negative_zeros(const F& v) {
  int64_t n = 0;
  for (float x : v) n += (x == 0.0f && std::signbit(x));
  return n;
}

// Every 5th upstream gradient is +0: its products with negative values are -0, which the
// accumulating form turns into +0 (0 + -0) and the overwriting form must too.
F with_zeros(F v) {
  for (size_t i = 0; i < v.size(); i += 5) v[i] = 0.0f;
  return v;
}

std::vector<SimdPath> paths() {
  std::vector<SimdPath> p{SimdPath::Portable};
  if (cpu_has_avx512_bf16()) p.push_back(SimdPath::Avx512Bf16);
  return p;
}

TEST(Overwrite, SwigluBackwardEqualsAccumulatingIntoZeros) {
  const int64_t n = 70000;  // several parallel chunks and a SIMD tail
  const F g = randf(n, 1), u = randf(n, 2), dh = with_zeros(randf(n, 3));
  for (SimdPath path : paths()) {
    set_simd_override(path);
    F dg0(n, 0.0f), du0(n, 0.0f), dg = nans(n), du = nans(n);
    swiglu_backward(dg0.data(), du0.data(), dh.data(), g.data(), u.data(), n);
    swiglu_backward(dg.data(), du.data(), dh.data(), g.data(), u.data(), n, /*overwrite=*/true);
    // -0 terms the overwrite must turn into +0: dh = +0 times a negative factor.
    int64_t neg_terms = 0;
    for (int64_t i = 0; i < n; ++i) neg_terms += dh[size_t(i)] == 0.0f && u[size_t(i)] < 0.0f;
    std::printf("[overwrite] swiglu_backward %-11s dg, du (from NaN) == += into zeros: %s, %s; -0 terms %lld, "
                "-0 outputs %lld\n", to_string(path), same_bits(dg, dg0) ? "yes" : "NO", same_bits(du, du0) ? "yes" : "NO",
                (long long)neg_terms, (long long)(negative_zeros(dg) + negative_zeros(du)));
    EXPECT_TRUE(same_bits(dg, dg0));
    EXPECT_TRUE(same_bits(du, du0));
    EXPECT_GT(neg_terms, 0);
    EXPECT_EQ(negative_zeros(dg) + negative_zeros(du), 0);
  }
  clear_simd_override();
}

TEST(Overwrite, MoeCombineBackwardEqualsAccumulatingIntoZeros) {
  const int64_t N = 300, K = 3, D = 96;
  // row_of: a permutation of the N·K expert-grouped rows.
  std::vector<int64_t> row_of(size_t(N * K));
  for (int64_t i = 0; i < N * K; ++i) row_of[size_t(i)] = (i * 7) % (N * K);
  const F dy = with_zeros(randf(size_t(N * D), 4)), ye = randf(size_t(N * K * D), 5);
  F gates = randf(size_t(N * K), 6);
  gates[0] = -0.5f;
  F dye0(size_t(N * K * D), 0.0f), dye = nans(dye0.size()), dg0(size_t(N * K), 0.0f), dg(dg0.size(), 0.0f);
  moe_combine_backward(dye0.data(), dg0.data(), dy.data(), ye.data(), gates.data(), row_of.data(), N, K, D);
  moe_combine_backward(dye.data(), dg.data(), dy.data(), ye.data(), gates.data(), row_of.data(), N, K, D,
                       /*overwrite_dye=*/true);
  std::printf("[overwrite] moe_combine_backward dye (from NaN) == += into zeros: %s; dgates: %s; -0 in dye %lld\n",
              same_bits(dye, dye0) ? "yes" : "NO", same_bits(dg, dg0) ? "yes" : "NO", (long long)negative_zeros(dye));
  EXPECT_TRUE(same_bits(dye, dye0));
  EXPECT_TRUE(same_bits(dg, dg0));
  EXPECT_EQ(negative_zeros(dye), 0);
}

TEST(Overwrite, LinearBackwardDxEqualsAccumulatingIntoZeros) {
  const int64_t N = 200, IN = 300, OUT = 136;
  const F x = randf(size_t(N * IN), 7), w = randf(size_t(OUT * IN), 8, 0.05);
  F dy = randf(size_t(N * OUT), 9, 1e-3);
  for (int64_t j = 0; j < OUT; ++j) dy[size_t(5 * OUT + j)] = 0.0f;  // an all-zero row: dx row of sums of ±0
  LinearPrecision fp8;
  fp8.fprop_x = fp8.weight = fp8.dgrad_dy = fp8.wgrad_dy = fp8.wgrad_x = gemm::DType::E4M3;
  LinearPrecision bf16;
  bf16.fprop_x = bf16.weight = bf16.dgrad_dy = bf16.wgrad_dy = bf16.wgrad_x = gemm::DType::BF16;
  struct Case {
    const char* name;
    const LinearPrecision* p;  // null: the plain FP32 pair
  };
  for (const Case& c : {Case{"fp32", nullptr}, Case{"bf16", &bf16}, Case{"e4m3 tile128", &fp8}}) {
    F dx0(size_t(N * IN), 0.0f), dx = nans(dx0.size()), dw0(size_t(OUT * IN), 0.0f), dw(dw0.size(), 0.0f);
    if (c.p == nullptr) {
      linear_backward(dx0.data(), dw0.data(), dy.data(), x.data(), w.data(), N, IN, OUT);
      linear_backward(dx.data(), dw.data(), dy.data(), x.data(), w.data(), N, IN, OUT, /*overwrite_dx=*/true);
    } else {
      LinearState s0, s1;
      linear_backward(dx0.data(), dw0.data(), dy.data(), x.data(), w.data(), 1, N, IN, OUT, *c.p, s0);
      linear_backward(dx.data(), dw.data(), dy.data(), x.data(), w.data(), 1, N, IN, OUT, *c.p, s1, InputShare::kNone,
                      /*overwrite_dx=*/true);
    }
    std::printf("[overwrite] linear_backward %-13s dx (from NaN) == += into zeros: %s; dW unchanged: %s; "
                "-0 in dx %lld\n", c.name, same_bits(dx, dx0) ? "yes" : "NO", same_bits(dw, dw0) ? "yes" : "NO",
                (long long)negative_zeros(dx));
    EXPECT_TRUE(same_bits(dx, dx0));
    EXPECT_TRUE(same_bits(dw, dw0));
  }
}

}  // namespace
}  // namespace tinyseek::ops::test
