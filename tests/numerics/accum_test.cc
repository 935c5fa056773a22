// Tests of the limited-precision tensor-core accumulation model (numerics/accum.h):
// hand-computed truncations with a 3-bit mantissa (4 significant bits), promotion resetting
// the accumulator, and the DeepSeek-V3 §3.3.2 ordering of errors limited > promoted > FP32.
#include <gtest/gtest.h>

#include <bit>
#include <cstdio>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "tinyseek/base/check.h"
#include "tinyseek/numerics/accum.h"

namespace tinyseek::numerics {
namespace {

AccumModel model(int bits, int group, int promote) {
  AccumModel m;
  m.mantissa_bits = bits;
  m.align_group = group;
  m.promote_every = promote;
  return m;
}

// With 3 explicit bits the group quantum is 2^(e - 3) for the largest addend in [2^e, 2^(e+1)):
// for largest 1.x that is 1/8; each addend and the group sum are truncated toward zero.
TEST(TensorcoreSum, HandComputedTruncationWithThreeMantissaBits) {
  struct Case {
    std::vector<float> p;
    int group;
    float want, exact;
    const char* why;
  };
  const Case cases[] = {
      {{1.0f, 0.0625f}, 32, 1.0f, 1.0625f, "0.0625 < quantum 1/8: dropped"},
      {{1.0f, 0.9375f}, 32, 1.875f, 1.9375f, "0.9375 -> 0.875 (7 quanta)"},
      {{1.875f, 1.0625f}, 32, 2.75f, 2.9375f, "1.0625 -> 1.0; sum 2.875 -> 2.75 (quantum 1/4)"},
      {{1.0f, -0.1875f}, 32, 0.875f, 0.8125f, "-0.1875 -> -0.125 (toward zero)"},
      {{-1.0f, 0.1875f}, 32, -0.875f, -0.8125f, "mirror image"},
      {{1.0f, -1.0f}, 32, 0.0f, 0.0f, "exact cancellation"},
      {{0.0625f, 0.0625f, 1.0f}, 32, 1.0f, 1.125f, "small ones first, same group: still dropped"},
      {{0.0625f, 0.0625f, 1.0f}, 2, 1.125f, 1.125f, "group 1 = 0.125 exactly, then 1 + 0.125 fits 4 bits"},
      {{1.0f, 0.0625f, 0.0625f, 0.0625f}, 2, 1.0f, 1.1875f, "acc 1.0 sets the quantum of later groups"},
      {{}, 32, 0.0f, 0.0f, "empty"},
  };
  for (const Case& c : cases) {
    const float got = tensorcore_sum(c.p.data(), static_cast<int64_t>(c.p.size()), model(3, c.group, 0));
    std::printf("tensorcore_sum(bits 3, group %d) of %zu products = %g (want %g, exact %g): %s\n", c.group,
                c.p.size(), got, c.want, c.exact, c.why);
    EXPECT_EQ(got, c.want) << c.why;
  }
}

TEST(TensorcoreDot, PromotionResetsTheAccumulator) {
  const std::vector<float> a = {1.0f, 0.0625f, 0.0625f, 0.0625f}, ones(4, 1.0f);
  const float limited = tensorcore_dot(a.data(), ones.data(), 4, model(3, 32, 0));
  // Promote every 2: chunk {1, 0.0625} -> 1.0; the fresh chunk {0.0625, 0.0625} has its own,
  // finer quantum and sums exactly to 0.125; FP32 1.0 + 0.125 = 1.125.
  const float promoted = tensorcore_dot(a.data(), ones.data(), 4, model(3, 32, 2));
  std::printf("dot, bits 3: no promotion %g, promote every 2: %g (exact 1.1875)\n", limited, promoted);
  EXPECT_EQ(limited, 1.0f);
  EXPECT_EQ(promoted, 1.125f);
  // The dot multiplies first: a * b products.
  const std::vector<float> b = {2.0f, 4.0f, 0.0f, 0.0f};
  EXPECT_EQ(tensorcore_dot(a.data(), b.data(), 4, model(3, 32, 0)), 2.25f);  // 2 + 0.25 (quantum 1/4)
}

TEST(TensorcoreSum, RejectsBadModels) {
  const float p[2] = {1, 2};
  EXPECT_THROW(tensorcore_sum(p, 2, model(0, 32, 0)), tinyseek::Error);
  EXPECT_THROW(tensorcore_sum(p, 2, model(24, 32, 0)), tinyseek::Error);
  EXPECT_THROW(tensorcore_sum(p, 2, model(13, 0, 0)), tinyseek::Error);
  EXPECT_THROW(accumulation_study({1024}, 0, 1, AccumModel{}), tinyseek::Error);
  EXPECT_THROW(accumulation_study({0}, 4, 1, AccumModel{}), tinyseek::Error);
  try {
    parse_accum_inputs("gaussian");
    ADD_FAILURE() << "parse_accum_inputs accepted 'gaussian'";
  } catch (const tinyseek::Error& e) {
    EXPECT_NE(std::string(e.what()).find("normal"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("uniform"), std::string::npos) << e.what();
  }
  EXPECT_EQ(parse_accum_inputs("uniform"), AccumInputs::kUniform);
  EXPECT_STREQ(to_string(AccumInputs::kNormal), "normal");
}

TEST(AccumulationStudy, LimitedWorseThanPromotedWorseThanFp32) {
  for (AccumInputs in : {AccumInputs::kNormal, AccumInputs::kUniform}) {
    const AccumStudy s = accumulation_study({1024, 2048}, 128, 1234, AccumModel{}, in);
    ASSERT_EQ(s.rows.size(), 2u);
    for (const AccumRow& r : s.rows) {
      std::printf("%-7s K=%5lld max rel err: limited %.3e > promoted %.3e > fp32 %.3e (means %.3e %.3e %.3e)\n",
                  to_string(in), static_cast<long long>(r.k), r.max_rel_err_limited, r.max_rel_err_promoted,
                  r.max_rel_err_fp32, r.mean_rel_err_limited, r.mean_rel_err_promoted, r.mean_rel_err_fp32);
      EXPECT_GT(r.max_rel_err_limited, r.max_rel_err_promoted) << to_string(in) << " K=" << r.k;
      EXPECT_GT(r.max_rel_err_promoted, r.max_rel_err_fp32) << to_string(in) << " K=" << r.k;
      EXPECT_GT(r.mean_rel_err_limited, r.mean_rel_err_promoted) << to_string(in) << " K=" << r.k;
    }
  }
}

TEST(AccumulationStudy, ErrorGrowsWithKWithoutPromotion) {
  // Non-negative inputs: truncation errors all point the same way and the accumulator's
  // quantum grows with the running sum, so the relative error grows with K.
  const std::vector<int64_t> ks = {128, 512, 2048, 8192};
  const AccumStudy s = accumulation_study(ks, 32, 99, AccumModel{}, AccumInputs::kUniform);
  for (size_t i = 0; i < s.rows.size(); ++i) {
    const AccumRow& r = s.rows[i];
    std::printf("uniform K=%5lld mean rel err: limited %.4e, promoted %.4e\n", static_cast<long long>(r.k),
                r.mean_rel_err_limited, r.mean_rel_err_promoted);
    if (i > 0) {
      EXPECT_GT(r.mean_rel_err_limited, s.rows[i - 1].mean_rel_err_limited) << "K=" << r.k;
    }
  }
  // With promotion the error stays at the level of one N_C = 128 chunk.
  EXPECT_LT(s.rows.back().mean_rel_err_promoted, 2.0 * s.rows.front().mean_rel_err_limited);
  EXPECT_GT(s.rows.back().mean_rel_err_limited, 10.0 * s.rows.back().mean_rel_err_promoted);
}

TEST(AccumulationStudy, SameBitsForAnyThreadCount) {
#ifdef _OPENMP
  const int old = omp_get_max_threads();
  omp_set_num_threads(1);
  const AccumStudy one = accumulation_study({1000}, 16, 5, AccumModel{});
  omp_set_num_threads(2);
  const AccumStudy two = accumulation_study({1000}, 16, 5, AccumModel{});
  omp_set_num_threads(old);
  EXPECT_EQ(std::bit_cast<uint64_t>(one.rows[0].max_rel_err_limited),
            std::bit_cast<uint64_t>(two.rows[0].max_rel_err_limited));
  EXPECT_EQ(std::bit_cast<uint64_t>(one.rows[0].mean_rel_err_promoted),
            std::bit_cast<uint64_t>(two.rows[0].mean_rel_err_promoted));
  std::printf("study K=1000, 16 trials: 1 thread %.9e, 2 threads %.9e\n", one.rows[0].max_rel_err_limited,
              two.rows[0].max_rel_err_limited);
#else
  GTEST_SKIP() << "built without OpenMP";
#endif
}

}  // namespace
}  // namespace tinyseek::numerics
