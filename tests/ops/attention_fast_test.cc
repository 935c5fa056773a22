// The AVX-512 blocked attention (attention_avx512.cc) against the reference implementation
// (attention_forward_reference / attention_backward_reference, run in double as the oracle),
// on shapes that exercise every tail: odd head dims (tiles padded to 16 floats), sequences
// that end mid-block and mid-vector, several blocks of 64 queries, B·H tasks, and
// accumulation into non-zero gradients. Also: both paths agree with each other, and the fast
// path gives identical bits with 1 and 2 threads.
#include <gtest/gtest.h>
#include <omp.h>

#include <cstdio>
#include <cstring>

#include "ops_test_util.h"
#include "tinyseek/numerics/simd.h"
#include "tinyseek/ops/attention.h"

namespace tinyseek::ops::test {
namespace {

struct Shape {
  int64_t B, T, H, dn, dr, dv;
};
// ctest shows the shape instead of the struct's bytes.
inline void PrintTo(const Shape& s, std::ostream* os) {
  *os << "B" << s.B << " T" << s.T << " H" << s.H << " dn" << s.dn << " dr" << s.dr << " dv" << s.dv;
}

struct Result {
  Vec o, lse, dq, dkv, dkpe;
};

// Runs forward + backward in T on the same inputs (gradients start from a non-zero prefill,
// so accumulation is checked); `fast` = the public entry point, else the reference.
template <class T>
Result run(const Shape& s, bool fast) {
  const int64_t N = s.B * s.T, dqk = s.dn + s.dr;
  // Scale 1.5 gives peaked softmax rows (scores up to ~±15), where exp accuracy matters.
  const auto q = cast<T>(randn(size_t(N * s.H * dqk), 1, 1.5)), kv = cast<T>(randn(size_t(N * s.H * (s.dn + s.dv)), 2, 1.5)),
             kpe = cast<T>(randn(size_t(N * s.dr), 3, 1.5)), dout = cast<T>(randn(size_t(N * s.H * s.dv), 4));
  std::vector<T> o(static_cast<size_t>(N * s.H * s.dv)), lse(static_cast<size_t>(N * s.H));
  auto dq = cast<T>(randn(q.size(), 5, 0.1)), dkv = cast<T>(randn(kv.size(), 6, 0.1)),
       dkpe = cast<T>(randn(kpe.size(), 7, 0.1));
  if (fast) {
    attention_forward(o.data(), lse.data(), q.data(), kv.data(), kpe.data(), s.B, s.T, s.H, s.dn, s.dr, s.dv);
    attention_backward(dq.data(), dkv.data(), dkpe.data(), dout.data(), q.data(), kv.data(), kpe.data(), o.data(),
                       lse.data(), s.B, s.T, s.H, s.dn, s.dr, s.dv);
  } else {
    attention_forward_reference(o.data(), lse.data(), q.data(), kv.data(), kpe.data(), s.B, s.T, s.H, s.dn, s.dr,
                                s.dv);
    attention_backward_reference(dq.data(), dkv.data(), dkpe.data(), dout.data(), q.data(), kv.data(), kpe.data(),
                                 o.data(), lse.data(), s.B, s.T, s.H, s.dn, s.dr, s.dv);
  }
  return {to_double(o.data(), o.size()), to_double(lse.data(), lse.size()), to_double(dq.data(), dq.size()),
          to_double(dkv.data(), dkv.size()), to_double(dkpe.data(), dkpe.size())};
}

bool bits_equal(const Result& a, const Result& b) {
  return a.o == b.o && a.lse == b.lse && a.dq == b.dq && a.dkv == b.dkv && a.dkpe == b.dkpe;
}

class AttentionFast : public ::testing::TestWithParam<Shape> {};

TEST_P(AttentionFast, MatchesReference) {
  if (!cpu_has_avx512_bf16()) GTEST_SKIP() << "no AVX-512 on this CPU: the reference path runs everywhere";
  const Shape s = GetParam();
  const Result oracle = run<double>(s, false);
  const Result fast = run<float>(s, true);
  const Result ref32 = run<float>(s, false);
  const double tol = 2e-5;  // normwise, FP32 sums of up to ~300 terms
  const std::pair<const char*, const Vec Result::*> fields[] = {
      {"o", &Result::o}, {"lse", &Result::lse}, {"dq", &Result::dq}, {"dkv", &Result::dkv}, {"dk_pe", &Result::dkpe}};
  for (const auto& [name, f] : fields) {
    const double e_fast = rel_err(fast.*f, oracle.*f), e_ref = rel_err(ref32.*f, oracle.*f);
    std::printf("attention B%lld T%lld H%lld dn%lld dr%lld dv%lld %-6s rel err vs fp64: avx512 %.2e, reference fp32 "
                "%.2e (tol %.0e)\n",
                (long long)s.B, (long long)s.T, (long long)s.H, (long long)s.dn, (long long)s.dr, (long long)s.dv, name,
                e_fast, e_ref, tol);
    EXPECT_LE(e_fast, tol) << name;
  }
}

TEST_P(AttentionFast, SameBitsForAnyThreadCount) {
  if (!cpu_has_avx512_bf16()) GTEST_SKIP() << "no AVX-512 on this CPU";
  const Shape s = GetParam();
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const Result one = run<float>(s, true);
  omp_set_num_threads(2);
  const Result two = run<float>(s, true);
  omp_set_num_threads(saved);
  EXPECT_TRUE(bits_equal(one, two));
}

INSTANTIATE_TEST_SUITE_P(Shapes, AttentionFast,
                         ::testing::Values(Shape{2, 5, 2, 4, 2, 3},        // one partial block, tiny heads
                                           Shape{1, 37, 3, 17, 2, 3},      // odd dims, ends mid-vector
                                           Shape{2, 130, 2, 64, 32, 64},   // three blocks, model-sized heads
                                           Shape{1, 64, 1, 16, 16, 16},    // exactly one block
                                           Shape{1, 200, 2, 24, 8, 40}));  // dv = 2.5 vectors

// The softmax must not overflow or lose rows with huge score ranges (max subtraction) and
// must give exact zeros above the diagonal (no leakage from the future).
TEST(AttentionFastEdge, LargeScoresAndCausality) {
  if (!cpu_has_avx512_bf16()) GTEST_SKIP() << "no AVX-512 on this CPU";
  const Shape s{1, 40, 1, 8, 8, 8};
  const int64_t N = s.T, dqk = s.dn + s.dr;
  auto q = cast<float>(randn(size_t(N * dqk), 11, 30.0)), kv = cast<float>(randn(size_t(N * (s.dn + s.dv)), 12, 30.0)),
       kpe = cast<float>(randn(size_t(N * s.dr), 13, 30.0));
  std::vector<float> o(static_cast<size_t>(N * s.dv)), lse(static_cast<size_t>(N)), o_ref(o.size()), lse_ref(lse.size());
  attention_forward(o.data(), lse.data(), q.data(), kv.data(), kpe.data(), s.B, s.T, s.H, s.dn, s.dr, s.dv);
  attention_forward_reference(o_ref.data(), lse_ref.data(), q.data(), kv.data(), kpe.data(), s.B, s.T, s.H, s.dn,
                              s.dr, s.dv);
  const double e = rel_err(to_double(o.data(), o.size()), to_double(o_ref.data(), o_ref.size()));
  const double el = rel_err(to_double(lse.data(), lse.size()), to_double(lse_ref.data(), lse_ref.size()));
  std::printf("scores up to ~1e4: o rel diff %.2e, lse rel diff %.2e (tol 1e-5)\n", e, el);
  EXPECT_LE(e, 1e-5);
  EXPECT_LE(el, 1e-5);
  // Changing a future value must not change earlier outputs at all (and must change its own).
  q = cast<float>(randn(q.size(), 14)), kv = cast<float>(randn(kv.size(), 15)), kpe = cast<float>(randn(kpe.size(), 16));
  attention_forward(o.data(), lse.data(), q.data(), kv.data(), kpe.data(), s.B, s.T, s.H, s.dn, s.dr, s.dv);
  kv[size_t(30 * (s.dn + s.dv) + s.dn + 2)] += 100.0f;
  std::vector<float> o2(o.size()), lse2(lse.size());
  attention_forward(o2.data(), lse2.data(), q.data(), kv.data(), kpe.data(), s.B, s.T, s.H, s.dn, s.dr, s.dv);
  EXPECT_EQ(0, std::memcmp(o.data(), o2.data(), sizeof(float) * 30 * s.dv));
  EXPECT_NE(0, std::memcmp(o.data() + 30 * s.dv, o2.data() + 30 * s.dv, sizeof(float) * s.dv));
}

}  // namespace
}  // namespace tinyseek::ops::test
