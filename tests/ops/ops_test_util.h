// Test harness for ops/: finite-difference gradient checks in double precision and
// float-vs-double comparisons, with the evidence printed for every check.
//
// Method. Every op kernel is a template instantiated for float and double. For an op under
// test, run<T>(inputs, backward) evaluates the scalar L = Σ G ⊙ outputs (G a fixed random
// cotangent) and, if asked, the op's backward seeded with G. Then:
//  1. d-precision: the double backward is compared with central differences of the double
//     forward, (L(x + h e_i) − L(x − h e_i)) / 2h, h = 1e-5 · rms(x). Truncation error is
//     O(h²) ≈ 1e-10 relative, rounding O(ε_64 |L| / h) ≈ 1e-11: a correct backward agrees
//     to ~1e-9, a wrong one misses by O(1). Tolerance: 1e-6 normwise.
//  2. the float instantiation (what training runs) is compared with the double one, forward
//     outputs and every gradient, normwise relative error ≤ 2e-5 (FP32 rounding of short
//     sums and transcendental functions).
// Normwise relative error = max_i |a_i − b_i| / max_i |b_i|.
// The double backward starts from a random prefill of every accumulated gradient and the
// prefill is subtracted afterwards, so an op that overwrote instead of accumulating fails.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <type_traits>
#include <vector>

#include "tinyseek/base/rng.h"

namespace tinyseek::ops::test {

using Vec = std::vector<double>;

inline Vec randn(size_t n, uint64_t seed, double scale = 1.0) {
  Philox rng(seed, 11);
  Vec v(n);
  for (size_t i = 0; i < n; ++i) v[i] = rng.normal(i) * scale;
  return v;
}

template <class T>
std::vector<T> cast(const Vec& v) {
  return std::vector<T>(v.begin(), v.end());
}

template <class T>
Vec to_double(const T* p, size_t n) {
  return Vec(p, p + n);
}

inline double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

inline double max_abs(const Vec& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::fabs(x));
  return m;
}

inline double max_abs_diff(const Vec& a, const Vec& b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    const double d = std::fabs(a[i] - b[i]);
    if (!(d <= m)) m = d;  // NaN propagates
  }
  return m;
}

// Normwise relative error of a against the reference b.
inline double rel_err(const Vec& a, const Vec& b) {
  const double scale = max_abs(b);
  return max_abs_diff(a, b) / (scale > 0 ? scale : 1.0);
}

// The prefill the double backward starts from (accumulation check); float starts from 0.
template <class T>
std::vector<T> grad_prefill(size_t n, uint64_t seed) {
  if constexpr (std::is_same_v<T, double>) return cast<T>(randn(n, seed, 0.5));
  return std::vector<T>(n, T(0));
}

template <class T>
Vec accumulated(const std::vector<T>& g, size_t n, uint64_t seed) {
  const std::vector<T> pre = grad_prefill<T>(n, seed);
  Vec out(n);
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<double>(g[i]) - static_cast<double>(pre[i]);
  return out;
}

// Result of one evaluation: outputs, L = Σ G ⊙ outputs (or the op's own scalar), gradients
// in the order of the `wrt` list.
struct Eval {
  Vec out;
  double loss = 0;
  std::vector<Vec> grads;
};

inline constexpr double kFdTol = 1e-6;
inline constexpr double kFloatTol = 2e-5;

// Checks an op whose inputs live in `in` (a struct of Vec members). `wrt` lists pointers to
// the differentiated members (names in `names`); `run` is a generic lambda
// [&]<class T>(const Inputs&, bool backward) -> Eval.
template <class Inputs, class RunFn>
void check_op(const std::string& op, double scale, Inputs in, std::vector<Vec Inputs::*> wrt,
              std::vector<std::string> names, RunFn run, double float_tol = kFloatTol) {
  const Eval base = run.template operator()<double>(in, true);
  ASSERT_EQ(base.grads.size(), wrt.size());
  for (size_t w = 0; w < wrt.size(); ++w) {
    Vec& x = in.*wrt[w];
    double rms = 0;
    for (double v : x) rms += v * v;
    rms = std::sqrt(rms / std::max<size_t>(x.size(), 1));
    const double h = 1e-5 * (rms > 0 ? rms : 1.0);
    Vec fd(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
      const double x0 = x[i];
      x[i] = x0 + h;
      const double lp = run.template operator()<double>(in, false).loss;
      x[i] = x0 - h;
      const double lm = run.template operator()<double>(in, false).loss;
      x[i] = x0;
      fd[i] = (lp - lm) / (2 * h);
    }
    const double abs = max_abs_diff(base.grads[w], fd), rel = rel_err(base.grads[w], fd);
    std::printf("[fd]    %-14s d/d%-8s scale %-6g max|grad| %-10.3e max abs err %-10.3e rel %-10.3e (tol %g)\n",
                op.c_str(), names[w].c_str(), scale, max_abs(fd), abs, rel, kFdTol);
    EXPECT_LE(rel, kFdTol) << op << " d/d" << names[w] << " scale " << scale;
    EXPECT_GT(max_abs(fd), 0.0) << op << " d/d" << names[w] << ": gradient is identically 0, the check is vacuous";
  }
  const Eval f = run.template operator()<float>(in, true);
  const double rel_out = rel_err(f.out, base.out);
  std::printf("[float] %-14s forward      scale %-6g rel err vs double %-10.3e (tol %g)\n", op.c_str(), scale,
              rel_out, float_tol);
  EXPECT_LE(rel_out, float_tol) << op << " float forward";
  for (size_t w = 0; w < wrt.size(); ++w) {
    const double rel = rel_err(f.grads[w], base.grads[w]);
    std::printf("[float] %-14s d/d%-8s  scale %-6g rel err vs double %-10.3e (tol %g)\n", op.c_str(),
                names[w].c_str(), scale, rel, float_tol);
    EXPECT_LE(rel, float_tol) << op << " float d/d" << names[w];
  }
}

}  // namespace tinyseek::ops::test
