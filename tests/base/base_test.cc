// Tests of src/tinyseek/base: Philox known answers and statistics, deterministic parallel
// reductions, error messages, duration/progress formatting, aligned buffers.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "tinyseek/base/aligned.h"
#include "tinyseek/base/check.h"
#include "tinyseek/base/parallel.h"
#include "tinyseek/base/progress.h"
#include "tinyseek/base/rng.h"
#include "tinyseek/base/timer.h"

namespace tinyseek {
namespace {

// ---------------------------------------------------------------------------------------
// Philox4x32-10 known answers: Random123 kat_vectors (lines "philox4x32 10 CTR[4] KEY[2]
// EXPECTED[4]"). Our mapping: key = (seed lo, seed hi), counter = (i lo, i hi, stream lo,
// stream hi).
struct Kat {
  std::array<uint32_t, 4> ctr;
  std::array<uint32_t, 2> key;
  std::array<uint32_t, 4> want;
};
constexpr Kat kPhiloxKats[] = {
    {{0x00000000, 0x00000000, 0x00000000, 0x00000000}, {0x00000000, 0x00000000},
     {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
    {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff},
     {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
    {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0},
     {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
};

uint64_t join(uint32_t lo, uint32_t hi) { return uint64_t{lo} | (uint64_t{hi} << 32); }

TEST(Philox, Random123KnownAnswers) {
  for (const Kat& k : kPhiloxKats) {
    const Philox rng(join(k.key[0], k.key[1]), join(k.ctr[2], k.ctr[3]));
    const auto got = rng.block(join(k.ctr[0], k.ctr[1]));
    std::printf("philox ctr %08x %08x %08x %08x key %08x %08x -> %08x %08x %08x %08x (want %08x %08x %08x %08x)\n",
                k.ctr[0], k.ctr[1], k.ctr[2], k.ctr[3], k.key[0], k.key[1], got[0], got[1], got[2], got[3],
                k.want[0], k.want[1], k.want[2], k.want[3]);
    for (int j = 0; j < 4; ++j) EXPECT_EQ(got[j], k.want[j]) << "word " << j;
  }
}

TEST(Philox, DerivedValuesAreFunctionsOfTheBlock) {
  const Philox rng(42, 3);
  for (uint64_t i : {uint64_t{0}, uint64_t{1}, uint64_t{123456789}, ~uint64_t{0}}) {
    const auto b = rng.block(i);
    EXPECT_EQ(rng.u64(i), (uint64_t{b[0]} << 32) | b[1]);
    EXPECT_EQ(rng.uniform(i), static_cast<float>(b[0] >> 8) / 16777216.0f);
    EXPECT_EQ(Philox(42, 3).block(i), b);  // stateless: same (seed, stream, i) -> same words
    EXPECT_NE(Philox(42, 4).block(i), b);  // another stream differs
    EXPECT_NE(Philox(43, 3).block(i), b);  // another seed differs
  }
}

TEST(Philox, UniformAndNormalStatistics) {
  constexpr int64_t kN = 1'000'000;
  const Philox rng(2024, 11);
  double s1 = 0, s2 = 0, u_sum = 0, uo_min = 1, uo_max = 0;
  int64_t within_1sd = 0, u_out_of_range = 0;
  for (int64_t i = 0; i < kN; ++i) {
    const double z = rng.normal(i);
    s1 += z;
    s2 += z * z;
    within_1sd += std::fabs(z) < 1.0;
    const float u = rng.uniform(i);
    u_sum += u;
    u_out_of_range += !(u >= 0.0f && u < 1.0f);
    const double uo = rng.uniform_open(i);
    uo_min = std::min(uo_min, uo);
    uo_max = std::max(uo_max, uo);
  }
  const double mean = s1 / kN, var = s2 / kN - mean * mean, frac1 = static_cast<double>(within_1sd) / kN;
  // 5-sigma bounds: sd(mean) = 1/sqrt(N); sd(var) = sqrt(2/N) for a normal; sd(frac) = sqrt(p(1-p)/N).
  const double tol_mean = 5.0 / std::sqrt(kN), tol_var = 5.0 * std::sqrt(2.0 / kN);
  const double p1 = 0.6826894921370859, tol_frac = 5.0 * std::sqrt(p1 * (1 - p1) / kN);
  const double u_mean = u_sum / kN, tol_u = 5.0 * std::sqrt(1.0 / 12 / kN);
  std::printf("normal over %lld: mean %.5f (tol %.5f), var %.5f (tol 1 +- %.5f), P(|z|<1) %.5f (want %.5f +- %.5f)\n",
              static_cast<long long>(kN), mean, tol_mean, var, tol_var, frac1, p1, tol_frac);
  std::printf("uniform mean %.5f (want 0.5 +- %.5f), out of [0,1): %lld; uniform_open range [%.3g, %.9f]\n", u_mean,
              tol_u, static_cast<long long>(u_out_of_range), uo_min, uo_max);
  EXPECT_LT(std::fabs(mean), tol_mean);
  EXPECT_LT(std::fabs(var - 1.0), tol_var);
  EXPECT_LT(std::fabs(frac1 - p1), tol_frac);
  EXPECT_LT(std::fabs(u_mean - 0.5), tol_u);
  EXPECT_EQ(u_out_of_range, 0);
  EXPECT_GT(uo_min, 0.0);
  EXPECT_LE(uo_max, 1.0);
}

// ---------------------------------------------------------------------------------------
int set_threads(int n) {
#ifdef _OPENMP
  const int old = omp_get_max_threads();
  omp_set_num_threads(n);
  return old;
#else
  return 1;
#endif
}

TEST(Parallel, DeterministicSumIsIdenticalForOneAndTwoThreads) {
  // Values spanning many magnitudes so that any change of summation order changes the bits.
  constexpr int64_t kN = 1'000'003;
  std::vector<float> x(kN);
  const Philox rng(7, 1);
  for (int64_t i = 0; i < kN; ++i) x[i] = static_cast<float>(rng.normal(i) * std::ldexp(1.0, static_cast<int>(i % 40) - 20));
  const auto partial = [&](int64_t b, int64_t e) {
    float s = 0;
    for (int64_t i = b; i < e; ++i) s += x[i];
    return s;
  };
  const int old = set_threads(1);
  const float one = deterministic_sum<float>(kN, 4096, partial);
  set_threads(2);
  const float two = deterministic_sum<float>(kN, 4096, partial);
  const int threads_used = max_threads();
  set_threads(old);
  // The same fixed chunks added in chunk order, computed serially here.
  float chunked = 0;
  for (int64_t b = 0; b < kN; b += 4096) chunked += partial(b, std::min(kN, b + 4096));
  const float sequential = partial(0, kN);  // a different order: shows the order matters
  std::printf("deterministic_sum: 1 thread %a, %d threads %a, serial chunked %a, plain sequential %a\n", one,
              threads_used, two, chunked, sequential);
  EXPECT_EQ(std::bit_cast<uint32_t>(one), std::bit_cast<uint32_t>(two));
  EXPECT_EQ(std::bit_cast<uint32_t>(one), std::bit_cast<uint32_t>(chunked));
  EXPECT_EQ(deterministic_sum<double>(0, 16, [](int64_t, int64_t) { return 1.0; }), 0.0);
}

TEST(Parallel, RangesDependOnlyOnSizeAndGrain) {
  for (int threads : {1, 2}) {
    const int old = set_threads(threads);
    std::vector<std::pair<int64_t, int64_t>> ranges(4);
    parallel_ranges(1000, 300, [&](int64_t b, int64_t e) { ranges[b / 300] = {b, e}; });
    std::vector<int> hits(1000, 0);
    parallel_for(1000, [&](int64_t i) { hits[i] += 1; });
    set_threads(old);
    EXPECT_EQ(ranges, (std::vector<std::pair<int64_t, int64_t>>{{0, 300}, {300, 600}, {600, 900}, {900, 1000}}))
        << threads << " threads";
    EXPECT_EQ(std::count(hits.begin(), hits.end(), 1), 1000) << threads << " threads";
  }
}

// ---------------------------------------------------------------------------------------
void fail_with_value(int k, int* line) {
  *line = __LINE__ + 1;
  TS_CHECK(k > 0, "--k must be positive, got " << k, "pass e.g. --k " << 4096);
}

TEST(Check, ErrorNamesWhatWhereAndHint) {
  int line = 0;
  try {
    fail_with_value(-3, &line);
    FAIL() << "TS_CHECK did not throw";
  } catch (const Error& e) {
    const std::string what = e.what();
    const std::string where = std::string("base_test.cc:") + std::to_string(line);
    std::printf("TS_CHECK message:\n%s\n", what.c_str());
    EXPECT_NE(what.find("--k must be positive, got -3"), std::string::npos);
    EXPECT_NE(what.find("hint: pass e.g. --k 4096"), std::string::npos);
    EXPECT_NE(what.find(where), std::string::npos) << "want " << where;
    EXPECT_EQ(e.message(), "--k must be positive, got -3");
    EXPECT_EQ(e.hint(), "pass e.g. --k 4096");
    EXPECT_EQ(e.line(), line);
    EXPECT_NE(std::string(e.file()).find("base_test.cc"), std::string::npos);
  }
  EXPECT_NO_THROW(fail_with_value(1, &line));
  EXPECT_EQ(format_error("bad", "", "f.cc", 7), "error: bad\n  at f.cc:7");
  EXPECT_EQ(format_error("bad", "do x", "f.cc", 7), "error: bad\n  hint: do x\n  at f.cc:7");
  try {
    TS_ASSERT(1 + 1 == 3);
    FAIL() << "TS_ASSERT did not throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("internal check failed: 1 + 1 == 3"), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------------------------------
TEST(Progress, FormatDuration) {
  const std::pair<double, const char*> cases[] = {
      {0, "0s"},         {45, "45s"},         {59.4, "59s"},      {59.6, "1m00s"},
      {187, "3m07s"},    {3599.4, "59m59s"},  {3600, "1h00m"},    {7500, "2h05m"},
      {-1, "?"},         {std::nan(""), "?"}, {INFINITY, "?"},
  };
  for (const auto& [s, want] : cases) {
    EXPECT_EQ(format_duration(s), want) << s;
    std::printf("format_duration(%g) = %s\n", s, format_duration(s).c_str());
  }
}

TEST(Progress, RenderContent) {
  const Progress p("train", 1024, /*enabled=*/false);
  const std::string half = p.render(512, 10.0, "loss 3.412");
  std::printf("render: '%s'\n", half.c_str());
  EXPECT_EQ(half, "train [############............] 512/1024  50% 51.2 it/s ETA 10s | loss 3.412");
  EXPECT_EQ(p.render(0, 0.0, ""), "train [........................] 0/1024   0% 0 it/s ETA ?");
  EXPECT_EQ(p.render(1024, 200.0, ""), "train [########################] 1024/1024 100% 5.12 it/s ETA 0s");
  // More than the total (a caller overshooting) or a negative count stays well formed.
  EXPECT_EQ(p.render(2048, 1.0, "").substr(0, 32), "train [########################]");
  EXPECT_EQ(p.render(-2048, 1.0, "").substr(0, 32), "train [........................]");
  const Progress open("tokenize", 0, false);
  EXPECT_EQ(open.render(7, 187.0, "x"), "tokenize 7 done, 3m07s elapsed | x");
}

TEST(Progress, PrintsPlainLinesWhenNotATerminalAndNothingWhenDisabled) {
  ::testing::internal::CaptureStderr();
  {
    Progress p("work", 10, /*enabled=*/true, /*log_every_s=*/0.0);
    p.update(5, "a");
    p.finish("done");
    Progress quiet("quiet", 10, /*enabled=*/false);
    quiet.update(5);
    quiet.finish();
  }
  const std::string err = ::testing::internal::GetCapturedStderr();
  std::printf("captured stderr:\n%s", err.c_str());
  EXPECT_NE(err.find("work [############............] 5/10  50%"), std::string::npos);
  EXPECT_NE(err.find("10/10 100%"), std::string::npos);
  EXPECT_NE(err.find("| done\n"), std::string::npos);
  EXPECT_EQ(err.find("quiet"), std::string::npos);
  EXPECT_EQ(err.find('\r'), std::string::npos);  // no in-place redraw off a terminal
}

TEST(Timer, Median) {
  EXPECT_EQ(median({}), 0.0);
  EXPECT_EQ(median({3, 1, 2}), 2.0);
  EXPECT_EQ(median({4, 1, 3, 2}), 2.5);
}

// ---------------------------------------------------------------------------------------
TEST(AlignedBuffer, AlignmentSizesAndZero) {
  int checked = 0;
  for (size_t n : {1, 2, 3, 15, 16, 17, 63, 64, 65, 1000, 4097}) {
    AlignedBuffer<float> f(n);
    AlignedBuffer<uint8_t> b(n);
    AlignedBuffer<double> d(n);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(f.data()) % kAlignment, 0u) << n;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data()) % kAlignment, 0u) << n;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(d.data()) % kAlignment, 0u) << n;
    EXPECT_EQ(f.size(), n);
    EXPECT_EQ(f.end() - f.begin(), static_cast<std::ptrdiff_t>(n));
    for (size_t i = 0; i < n; ++i) f[i] = 1.5f;  // whole range writable (ASan would catch otherwise)
    f.zero();
    for (size_t i = 0; i < n; ++i) ASSERT_EQ(f[i], 0.0f);
    ++checked;
  }
  AlignedBuffer<float> empty;
  EXPECT_TRUE(empty.empty());
  EXPECT_EQ(empty.data(), nullptr);
  empty.zero();  // no-op on an empty buffer
  AlignedBuffer<float> zero_sized(0);
  EXPECT_EQ(zero_sized.data(), nullptr);
  AlignedBuffer<float> same(32);
  float* p = same.data();
  same.resize(32);
  EXPECT_EQ(same.data(), p);  // same size: no reallocation
  std::printf("AlignedBuffer: %d sizes x 3 types, all %zu-byte aligned\n", checked, kAlignment);
}

TEST(AlignedBuffer, MovesTransferOwnership) {
  AlignedBuffer<int> a(100);
  for (int i = 0; i < 100; ++i) a[i] = i;
  int* p = a.data();
  AlignedBuffer<int> b(std::move(a));
  EXPECT_EQ(b.data(), p);
  EXPECT_EQ(b.size(), 100u);
  EXPECT_EQ(a.data(), nullptr);  // NOLINT(bugprone-use-after-move): moved-from is empty by contract
  EXPECT_TRUE(a.empty());
  AlignedBuffer<int> c(7);
  c = std::move(b);
  EXPECT_EQ(c.data(), p);
  EXPECT_EQ(c[99], 99);
  EXPECT_TRUE(b.empty());
  AlignedBuffer<int>& self = c;
  c = std::move(self);  // self-move keeps the contents
  EXPECT_EQ(c.data(), p);
  EXPECT_EQ(c.size(), 100u);
}

TEST(AlignedBuffer, ImpossibleSizesThrowAndLeaveTheBufferUsable) {
  AlignedBuffer<float> f(16);
  // n * sizeof(float) wraps around size_t: must be rejected, not allocate a tiny block.
  const size_t wraps = std::numeric_limits<size_t>::max() / sizeof(float) + 2;
  EXPECT_THROW(f.resize(wraps), Error);
  EXPECT_THROW(f.resize(size_t{1} << 60), Error);  // more than any address space
  EXPECT_THROW(AlignedBuffer<uint8_t>(std::numeric_limits<size_t>::max() - 10), Error);
  // After a failed resize the buffer is empty (not dangling) and can be reused; its
  // destructor must not free the old block twice.
  EXPECT_TRUE(f.empty());
  f.resize(8);
  f.zero();
  EXPECT_EQ(f[7], 0.0f);
  try {
    f.resize(size_t{1} << 60);
  } catch (const Error& e) {
    std::printf("oversized allocation: %s\n", e.what());
    EXPECT_NE(std::string(e.what()).find("bytes"), std::string::npos);
  }
}

}  // namespace
}  // namespace tinyseek
