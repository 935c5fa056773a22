// Tests for the FP8 quantizers (numerics/quant.h): names, scale grids, the scale rule,
// fast path vs oracle (bitwise, any SIMD path and thread count), round-trip error bounds,
// zero tiles, outlier behaviour per granularity, pow2/E8M0 scales, delayed scaling and the
// error statistics. Every numerical test prints its evidence.
#include <gtest/gtest.h>
#include <omp.h>

#include <bit>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "tinyseek/base/check.h"
#include "tinyseek/base/rng.h"
#include "tinyseek/numerics/fp8.h"
#include "tinyseek/numerics/quant.h"
#include "tinyseek/numerics/simd.h"

namespace tinyseek::numerics {
namespace {

constexpr Granularity kAllGranularities[] = {Granularity::Tensor,    Granularity::Row,          Granularity::Col,
                                             Granularity::Tile1x128, Granularity::Tile128x1,    Granularity::Block128x128,
                                             Granularity::Mx1x32,    Granularity::Mx32x1};
constexpr Fp8Format kFormats[] = {Fp8Format::E4M3, Fp8Format::E5M2};

bool is_mx(Granularity g) { return g == Granularity::Mx1x32 || g == Granularity::Mx32x1; }

// [rows, ld] N(0,1) values times 2^k, k uniform in [-16, 15] per element: a dynamic range
// (2^31) wider than either format's inside every tile, so small elements land in the FP8
// subnormal range (E5M2's starts 2^30 below its max) and some flush. Every
// 23rd element is +0 and every 101st is -0.
std::vector<float> wide_range_matrix(int64_t rows, int64_t ld, uint64_t seed) {
  Philox rng(seed, 1);
  std::vector<float> x(static_cast<size_t>(rows * ld));
  for (size_t i = 0; i < x.size(); ++i) {
    const int k = static_cast<int>(rng.uniform(2 * i + 1) * 32.0f) - 16;
    x[i] = std::ldexp(static_cast<float>(rng.normal(2 * i)), k);
    if (i % 23 == 0) x[i] = 0.0f;
    if (i % 101 == 0) x[i] = -0.0f;
  }
  return x;
}

// [rows, ld] values whose quotient by the tile scale lands on or within 2 FP32 ulps of an FP8
// rounding midpoint (random sign). Rows and columns 0, 32, 64, ... hold +-amax = 3.7, so every
// tile of every granularity contains it and has the FP32 scale s = fl(3.7 / fmax). Random data almost never
// sits that close to a midpoint; here a quotient off by one ulp (x * (1/s) instead of x / s,
// say) flips codes.
std::vector<float> near_midpoint_matrix(int64_t rows, int64_t ld, Fp8Format f, uint64_t seed) {
  const Fp8Traits t = fp8_traits(f);
  const float amax = 3.7f, s = amax / t.max_finite;
  std::vector<float> mids;
  for (int c = 0; c < t.max_code; ++c)
    mids.push_back(0.5f * (fp8_decode(static_cast<uint8_t>(c), f) + fp8_decode(static_cast<uint8_t>(c + 1), f)));
  Philox rng(seed, 4);
  std::vector<float> x(static_cast<size_t>(rows * ld));
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < ld; ++j) {
      const auto b = rng.block(static_cast<uint64_t>(i * ld + j));
      float v = mids[b[0] % mids.size()] * s;
      for (int k = static_cast<int>(b[1] % 5) - 2; k != 0; k += k > 0 ? -1 : 1)
        v = std::nextafter(v, k > 0 ? INFINITY : 0.0f);
      if (i % 32 == 0 || j % 32 == 0) v = amax;
      x[i * ld + j] = (b[2] & 1) ? -v : v;
    }
  return x;
}

std::vector<float> normal_matrix(int64_t rows, int64_t cols, uint64_t seed) {
  Philox rng(seed, 2);
  std::vector<float> x(static_cast<size_t>(rows * cols));
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(rng.normal(i));
  return x;
}

// Per-slot max |x| computed independently of the library (double compare, plain loops).
std::vector<float> slot_amax(const std::vector<float>& x, int64_t rows, int64_t cols, int64_t ld, const ScaleGrid& g) {
  std::vector<float> a(static_cast<size_t>(g.count()), 0.0f);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      const int64_t s = (i / g.tile_rows) * g.grid_cols + j / g.tile_cols;
      a[s] = std::fmax(a[s], std::fabs(x[i * ld + j]));
    }
  return a;
}

// Number of codes or scales (compared as bit patterns) that differ.
int64_t bit_mismatches(const QTensor& a, const QTensor& b) {
  if (a.codes.size() != b.codes.size() || a.scales.size() != b.scales.size()) return -1;
  int64_t bad = 0;
  for (size_t k = 0; k < a.codes.size(); ++k) bad += a.codes[k] != b.codes[k];
  for (size_t k = 0; k < a.scales.size(); ++k)
    bad += std::bit_cast<uint32_t>(a.scales[k]) != std::bit_cast<uint32_t>(b.scales[k]);
  return bad;
}

bool is_pow2(float s) {
  int e = 0;
  return s > 0 && std::frexp(s, &e) == 0.5f;
}

struct SimdGuard {
  ~SimdGuard() { clear_simd_override(); }
};
struct ThreadsGuard {
  int saved = omp_get_max_threads();
  ~ThreadsGuard() { omp_set_num_threads(saved); }
};

// ---------------------------------------------------------------------------------------

TEST(QuantNames, RoundTripAndErrorsListValidNames) {
  for (Granularity g : kAllGranularities) EXPECT_EQ(parse_granularity(to_string(g)), g) << to_string(g);
  EXPECT_STREQ(to_string(Granularity::Tile1x128), "tile1x128");
  EXPECT_STREQ(to_string(Granularity::Block128x128), "block128x128");
  EXPECT_EQ(parse_granularity("MX32x1"), Granularity::Mx32x1);  // case-insensitive like the format names
  EXPECT_EQ(parse_scale_type("fp32"), ScaleType::Fp32);
  EXPECT_EQ(parse_scale_type("pow2"), ScaleType::Pow2);
  EXPECT_STREQ(to_string(ScaleType::Pow2), "pow2");
  try {
    parse_granularity("tile128");
    FAIL() << "unknown granularity accepted";
  } catch (const Error& e) {
    const std::string all = e.message() + " " + e.hint();
    std::printf("parse_granularity(\"tile128\") -> %s | %s\n", e.message().c_str(), e.hint().c_str());
    for (Granularity g : kAllGranularities) EXPECT_NE(all.find(to_string(g)), std::string::npos) << to_string(g);
  }
  try {
    parse_scale_type("e8m0");
    FAIL() << "unknown scale type accepted";
  } catch (const Error& e) {
    EXPECT_NE(e.hint().find("fp32"), std::string::npos);
    EXPECT_NE(e.hint().find("pow2"), std::string::npos);
  }
}

TEST(QuantGrid, ShapesAndPartialEdgeTiles) {
  // [300, 200]: 300 = 2*128 + 44 and 9*32 + 12 rows, 200 = 128 + 72 and 6*32 + 8 cols.
  struct Expect { Granularity g; int64_t tr, tc, gr, gc; };
  const Expect cases[] = {{Granularity::Tensor, 300, 200, 1, 1},       {Granularity::Row, 1, 200, 300, 1},
                          {Granularity::Col, 300, 1, 1, 200},          {Granularity::Tile1x128, 1, 128, 300, 2},
                          {Granularity::Tile128x1, 128, 1, 3, 200},    {Granularity::Block128x128, 128, 128, 3, 2},
                          {Granularity::Mx1x32, 1, 32, 300, 7},        {Granularity::Mx32x1, 32, 1, 10, 200}};
  for (const Expect& c : cases) {
    const ScaleGrid g = make_scale_grid(c.g, 300, 200);
    EXPECT_EQ(g.tile_rows, c.tr) << to_string(c.g);
    EXPECT_EQ(g.tile_cols, c.tc) << to_string(c.g);
    EXPECT_EQ(g.grid_rows, c.gr) << to_string(c.g);
    EXPECT_EQ(g.grid_cols, c.gc) << to_string(c.g);
    EXPECT_EQ(g.index(299, 199), g.count() - 1) << to_string(c.g);  // last element is in the last (partial) tile
    EXPECT_EQ(g.index(0, 0), 0);
  }
  EXPECT_THROW(make_scale_grid(Granularity::Row, 0, 5), Error);
  EXPECT_THROW(make_scale_grid(Granularity::Tile1x128, 5, 0), Error);
  EXPECT_THROW(make_scale_grid(Granularity::Tensor, -1, 5), Error);
}

TEST(QuantScale, RuleExactValues) {
  QuantSpec fp32;  // E4M3, tile1x128, fp32 scales, floor 1e-30
  QuantSpec pow2 = fp32;
  pow2.scale_type = ScaleType::Pow2;
  QuantSpec mx = fp32;  // mx forces pow2 even though scale_type says fp32
  mx.granularity = Granularity::Mx1x32;
  QuantSpec e5 = fp32;
  e5.format = Fp8Format::E5M2;

  EXPECT_EQ(scale_from_amax(0.0f, fp32), 1.0f);
  EXPECT_EQ(scale_from_amax(0.0f, pow2), 1.0f);
  EXPECT_EQ(scale_from_amax(448.0f, fp32), 1.0f);
  EXPECT_EQ(scale_from_amax(3.0f, fp32), 3.0f / 448.0f);
  EXPECT_EQ(scale_from_amax(3.0f, e5), 3.0f / 57344.0f);
  EXPECT_EQ(scale_from_amax(1e-35f, fp32), 1e-30f / 448.0f);  // below the floor: the floor's scale
  EXPECT_EQ(scale_from_amax(1e-35f, pow2), 0x1p-108f);         // 1e-30/448 = 2^-108.47 -> 2^-108
  // pow2: smallest 2^e with amax <= 448 * 2^e.
  EXPECT_EQ(scale_from_amax(448.0f, pow2), 1.0f);
  EXPECT_EQ(scale_from_amax(224.0f, pow2), 0.5f);
  EXPECT_EQ(scale_from_amax(448.0f * 1024.0f, pow2), 1024.0f);
  // 448*2^10 (1 + 2^-23): a/fmax rounds to 2^10 (1 + 2^-23) and log2 of that rounds to 10.0f in
  // float, so a float log2 would return 1024 and this value would exceed fmax; exact: 2048.
  EXPECT_EQ(scale_from_amax(std::nextafter(448.0f * 1024.0f, INFINITY), pow2), 2048.0f);
  EXPECT_EQ(scale_from_amax(std::nextafter(448.0f, 0.0f), pow2), 1.0f);
  EXPECT_EQ(scale_from_amax(3.0f, mx), 0x1p-7f);  // 3/448 = 2^-7.22 -> 2^-7
  EXPECT_EQ(scale_from_amax(FLT_MAX, pow2), 0x1p120f);
  EXPECT_EQ(scale_from_amax(57344.0f * 8.0f, QuantSpec{Fp8Format::E5M2, Granularity::Row, ScaleType::Pow2}), 8.0f);
  std::printf("scale(nextafter(448*2^10)) pow2 = %g (float log2 would give 1024)\n",
              scale_from_amax(std::nextafter(448.0f * 1024.0f, INFINITY), pow2));

  EXPECT_THROW(scale_from_amax(-1.0f, fp32), Error);
  EXPECT_THROW(scale_from_amax(INFINITY, fp32), Error);
  EXPECT_THROW(scale_from_amax(NAN, fp32), Error);
  QuantSpec tiny_floor = fp32;
  tiny_floor.amax_floor = 1e-40f;  // would make amax/448 an FP32 subnormal
  EXPECT_THROW(scale_from_amax(1.0f, tiny_floor), Error);
}

// The fast path must reproduce the scalar oracle bit for bit: codes and scales, every
// granularity, both formats and scale types, online and overridden amax, odd shapes and
// ld > cols, the portable and AVX-512 codecs, 1 thread and all threads. Two kinds of data:
// a wide dynamic range, and quotients at FP8 rounding midpoints (where an off-by-one-ulp
// quotient shows up).
TEST(QuantFast, MatchesReferenceBitwise) {
  SimdGuard simd_guard;
  ThreadsGuard threads_guard;
  struct Shape { int64_t rows, cols, ld; };
  // Odd sizes around the 32/128 tile edges; ~70K elements per configuration keeps this fast.
  const Shape shapes[] = {{1, 1, 1}, {3, 5, 7}, {33, 31, 31}, {129, 257, 260}, {257, 130, 130}};
  std::vector<SimdPath> paths = {SimdPath::Portable};
  if (cpu_has_avx512_bf16()) paths.push_back(SimdPath::Avx512Bf16);
  const int all_threads = threads_guard.saved;
  int64_t configs = 0, elements = 0, mismatches = 0, amax_out_mismatches = 0, saturated = 0;

  auto check = [&](const std::vector<float>& x, const Shape& sh, Granularity g, Fp8Format f, ScaleType st,
                   const float* ov, const std::vector<float>& amax) {
    const QuantSpec spec{f, g, st};
    QTensor ref;
    quantize_reference(ref, x.data(), sh.rows, sh.cols, sh.ld, spec, ov);
    if (ov) saturated += quant_error(x.data(), sh.ld, ref).saturated;
    auto run = [&](SimdPath p, int threads) {
      set_simd_override(p);
      omp_set_num_threads(threads);
      QTensor q;
      std::vector<float> amax_out(amax.size(), -1.0f);
      quantize(q, x.data(), sh.rows, sh.cols, sh.ld, spec, ov, amax_out.data());
      const int64_t bad = bit_mismatches(q, ref);
      if (bad != 0 && mismatches == 0)
        ADD_FAILURE() << "first mismatch: " << sh.rows << "x" << sh.cols << " " << to_string(g) << " "
                      << to_string(f) << " " << to_string(st) << " override=" << (ov != nullptr) << " simd "
                      << to_string(p) << " threads " << threads << ": " << bad << " differences";
      mismatches += bad;
      amax_out_mismatches += std::memcmp(amax_out.data(), amax.data(), amax.size() * sizeof(float)) != 0;
      elements += sh.rows * sh.cols;
    };
    for (SimdPath p : paths) run(p, all_threads);
    run(paths.back(), 1);
    ++configs;
  };

  for (const Shape& sh : shapes) {
    // 0: wide dynamic range; 1, 2: quotients at E4M3 resp. E5M2 rounding midpoints.
    for (int kind = 0; kind < 3; ++kind) {
      const std::vector<float> x = kind == 0 ? wide_range_matrix(sh.rows, sh.ld, 7 + sh.rows)
                                             : near_midpoint_matrix(sh.rows, sh.ld, kFormats[kind - 1], 7 + sh.rows);
      for (Granularity g : kAllGranularities) {
        const ScaleGrid grid = make_scale_grid(g, sh.rows, sh.cols);
        const std::vector<float> amax = slot_amax(x, sh.rows, sh.cols, sh.ld, grid);
        // Overrides between amax/4 (values saturate) and 4*amax, plus zeros (scale 1).
        std::vector<float> override_amax(amax.size());
        Philox rng(99, 3);
        for (size_t s = 0; s < amax.size(); ++s)
          override_amax[s] = s % 7 == 3 ? 0.0f : amax[s] * std::ldexp(1.0f, static_cast<int>(rng.uniform(s) * 5) - 2);
        for (Fp8Format f : kFormats) {
          if (kind != 0 && f != kFormats[kind - 1]) continue;  // midpoints are per format
          for (ScaleType st : {ScaleType::Fp32, ScaleType::Pow2}) {
            check(x, sh, g, f, st, nullptr, amax);
            check(x, sh, g, f, st, override_amax.data(), amax);
          }
        }
      }
    }
  }
  std::printf("fast vs reference: %lld configs x (%zu SIMD paths at %d threads + 1 thread), %lld elements, "
              "%lld saturated in the overridden cases; code/scale mismatches %lld, amax_out mismatches %lld\n",
              static_cast<long long>(configs), paths.size(), all_threads, static_cast<long long>(elements),
              static_cast<long long>(saturated), static_cast<long long>(mismatches),
              static_cast<long long>(amax_out_mismatches));
  EXPECT_EQ(mismatches, 0);
  EXPECT_EQ(amax_out_mismatches, 0);
  EXPECT_GT(saturated, 0);  // the overridden configs did exercise saturation
}

// Round-trip bound. With s the scale, y = fl(x / s) (FP32 division, |y - x/s| <= 2^-24 |x/s|),
// q = RNE_fp8(y) and x̂ = fl(q * s) (|x̂ - q s| <= 2^-24 |x̂|):
//   |x - x̂| <= s |x/s - y| + s |y - q| + |q s - x̂|
//           <= 2^-24 |x| + s * halfulp(|y|) + 2^-24 |x̂|  (+ s 2^-149 if y is an FP32 subnormal)
// where halfulp(a) = 2^(floor(log2 a) - m - 1) for a >= min normal (m = 3 for E4M3, 2 for E5M2:
// a relative 2^-4 resp. 2^-3 of the binade), and min_subnormal / 2 below min normal. Online
// scaling never clips (|y| <= fmax (1 + 2^-23) rounds to fmax), so no saturation term.
TEST(QuantRoundTrip, ErrorWithinHalfUlpOfScaledValue) {
  const int64_t rows = 257, cols = 300, ld = 301;
  const std::vector<float> x = wide_range_matrix(rows, ld, 11);
  std::vector<float> xh(static_cast<size_t>(rows * ld));
  for (Fp8Format f : kFormats) {
    const Fp8Traits t = fp8_traits(f);
    const double min_normal = std::ldexp(1.0, t.emin);
    for (ScaleType st : {ScaleType::Fp32, ScaleType::Pow2})
      for (Granularity g : kAllGranularities) {
        const QuantSpec spec{f, g, st};
        QTensor q;
        quantize(q, x.data(), rows, cols, ld, spec);
        dequantize(xh.data(), ld, q);
        const std::vector<float> amax = slot_amax(x, rows, cols, ld, q.grid);
        int64_t scale_bad = 0;
        for (int64_t s = 0; s < q.grid.count(); ++s) scale_bad += q.scales[s] != scale_from_amax(amax[s], spec);
        double worst_ratio = 0, worst_rel_normal = 0;
        int64_t over = 0, subnormal = 0;
        for (int64_t i = 0; i < rows; ++i)
          for (int64_t j = 0; j < cols; ++j) {
            const float xv = x[i * ld + j], s = q.scale_at(i, j), y = std::fabs(xv / s);
            const double hu = y < min_normal ? t.min_subnormal / 2.0 : std::ldexp(1.0, std::ilogb(y) - t.man_bits - 1);
            const double xhv = xh[i * ld + j];
            const double bound = s * hu + 0x1p-24 * (std::fabs(xv) + std::fabs(xhv)) + s * 0x1p-149;
            const double err = std::fabs(static_cast<double>(xv) - xhv);
            over += err > bound;
            worst_ratio = std::max(worst_ratio, err / bound);
            if (y >= min_normal) worst_rel_normal = std::max(worst_rel_normal, err / std::fabs(xv));
            else subnormal += xv != 0;
          }
        std::printf("%s %-4s %-12s max err/bound %.4f  max rel err (normal range) %.5f (bound %.5f)  "
                    "subnormal-range elements %lld\n",
                    to_string(f), to_string(st), to_string(g), worst_ratio, worst_rel_normal,
                    std::ldexp(1.0, -t.man_bits - 1), static_cast<long long>(subnormal));
        EXPECT_EQ(over, 0) << to_string(f) << " " << to_string(g);
        EXPECT_EQ(scale_bad, 0) << to_string(f) << " " << to_string(g);
        EXPECT_GT(subnormal, 0);  // both branches of the bound were exercised
        // Largest at y = 2^e (1 + 2^-(m+1)), a tie: 2^-(m+1) / (1 + 2^-(m+1)) plus FP32 rounding.
        EXPECT_LE(worst_rel_normal, std::ldexp(1.0, -t.man_bits - 1));
      }
  }
}

TEST(QuantZeros, AllZeroTilesGetScaleOneAndZeroCodes) {
  // Whole tensor zero (+0 and -0): scale 1, codes are zeros, dequantize is exact.
  for (Fp8Format f : kFormats) {
    std::vector<float> z(64 * 200, 0.0f);
    z[5] = -0.0f;
    QTensor q;
    quantize(q, z.data(), 64, 200, 200, QuantSpec{f, Granularity::Tensor});
    EXPECT_EQ(q.scales[0], 1.0f);
    for (int64_t k = 0; k < 64 * 200; ++k) EXPECT_EQ(q.codes[k], k == 5 ? 0x80 : 0x00) << k;
    const QuantError e = quant_error(z.data(), 200, q);
    EXPECT_TRUE(std::isinf(e.sqnr_db) && e.max_abs_err == 0);
  }
  // N(0,1) with zero regions: rows 0..127 x cols 0..127, row 200, column 250. Mixed tiles
  // (zeros and nonzeros) must keep their zeros exact and use the nonzeros' amax.
  const int64_t rows = 260, cols = 300;
  std::vector<float> x = normal_matrix(rows, cols, 5);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j)
      if ((i < 128 && j < 128) || i == 200 || j == 250) x[i * cols + j] = 0.0f;
  for (Fp8Format f : kFormats)
    for (Granularity g : kAllGranularities) {
      const QuantSpec spec{f, g};
      QTensor q;
      quantize(q, x.data(), rows, cols, cols, spec);
      const std::vector<float> amax = slot_amax(x, rows, cols, cols, q.grid);
      int64_t zero_slots = 0, mixed_slots = 0, bad = 0;
      std::vector<int> has_zero(static_cast<size_t>(q.grid.count()), 0);
      for (int64_t i = 0; i < rows; ++i)
        for (int64_t j = 0; j < cols; ++j) {
          const int64_t s = q.grid.index(i, j);
          const float xv = x[i * cols + j];
          has_zero[s] |= xv == 0.0f;
          const uint8_t want = xv == 0.0f ? 0x00 : fp8_encode(xv / q.scales[s], f);
          bad += q.codes[i * cols + j] != want;
        }
      for (int64_t s = 0; s < q.grid.count(); ++s) {
        if (amax[s] == 0.0f) {
          ++zero_slots;
          bad += q.scales[s] != 1.0f;
        } else {
          mixed_slots += has_zero[s];
          bad += q.scales[s] != scale_from_amax(amax[s], spec);
        }
      }
      std::printf("%s %-12s all-zero slots %4lld, mixed zero/nonzero slots %4lld, wrong codes+scales %lld\n",
                  to_string(f), to_string(g), static_cast<long long>(zero_slots), static_cast<long long>(mixed_slots),
                  static_cast<long long>(bad));
      EXPECT_EQ(bad, 0) << to_string(g);
      EXPECT_GT(mixed_slots, 0) << to_string(g);
      if (g != Granularity::Tensor) {
        EXPECT_GT(zero_slots, 0) << to_string(g);
      }
    }
}

// One outlier of 1e6 in an N(0,1) [256, 512] matrix, E4M3, FP32 scales. Elements sharing the
// outlier's scale (1e6/448 = 2232) map to |x/s| ~ 4.5e-4 < min_subnormal/2 = 9.8e-4 and flush
// to zero, so the noise is dominated by how many elements share the outlier's tile:
// tensor 131071, row 511, tile1x128 127. Elsewhere all three give the same E4M3 relative
// error (~33 dB), which changes the totals by far less than those flushed counts. So the
// ordering is strict by construction: SQNR(tile1x128) > SQNR(row) > SQNR(tensor).
TEST(QuantOutlier, FinerTilesIsolateTheOutlier) {
  const int64_t rows = 256, cols = 512;
  std::vector<float> x = normal_matrix(rows, cols, 17);
  x[17 * cols + 300] = 1e6f;
  auto run = [&](Granularity g) {
    QTensor q;
    quantize(q, x.data(), rows, cols, cols, QuantSpec{Fp8Format::E4M3, g});
    const QuantError e = quant_error(x.data(), cols, q);
    std::printf("outlier 1e6: %-12s SQNR %7.2f dB  flushed %6lld  max abs err %.4g\n", to_string(g), e.sqnr_db,
                static_cast<long long>(e.flushed_to_zero), e.max_abs_err);
    return e;
  };
  const QuantError tensor = run(Granularity::Tensor), row = run(Granularity::Row), tile = run(Granularity::Tile1x128);
  const QuantError block = run(Granularity::Block128x128), mx = run(Granularity::Mx1x32);
  EXPECT_GT(tile.sqnr_db, row.sqnr_db);
  EXPECT_GT(row.sqnr_db, tensor.sqnr_db);
  EXPECT_GT(tensor.flushed_to_zero, 100000);  // most of the matrix is lost to per-tensor scaling
  EXPECT_LE(row.flushed_to_zero, 511 + 64);    // the outlier's row (+ a few tiny N(0,1) values)
  EXPECT_LE(tile.flushed_to_zero, 127 + 64);
  EXPECT_LT(block.sqnr_db, row.sqnr_db);  // a 128x128 block shares the outlier with 16383 values
  // mx1x32 flushes least (31 values share the outlier) but its SQNR is the lowest: the pow2
  // scale 2^12 puts the outlier itself at 1e6/4096 = 244.1 in E4M3's [128, 256) binade (ulp 16),
  // so it is stored as 240 (error 1.7e4, noise 2.9e8), whereas an FP32 scale maps it to 448 exactly.
  EXPECT_LT(mx.flushed_to_zero, tile.flushed_to_zero);
  EXPECT_EQ(mx.max_abs_err, 1e6 - 240.0 * 4096.0);
}

TEST(QuantPow2, ExactPowersNoSaturationMxE8M0) {
  const int64_t rows = 200, cols = 300;
  const std::vector<float> x = wide_range_matrix(rows, cols, 23);
  int64_t scales_checked = 0;
  for (Fp8Format f : kFormats) {
    const float fmax = fp8_traits(f).max_finite;
    for (Granularity g : kAllGranularities)
      for (ScaleType st : {ScaleType::Pow2, ScaleType::Fp32}) {
        if (st == ScaleType::Fp32 && !is_mx(g)) continue;  // fp32 requested: only mx forces pow2
        const QuantSpec spec{f, g, st};
        QTensor q;
        quantize(q, x.data(), rows, cols, cols, spec);
        const std::vector<float> amax = slot_amax(x, rows, cols, cols, q.grid);
        int64_t not_pow2 = 0, not_minimal = 0, e8m0_bad = 0;
        for (int64_t s = 0; s < q.grid.count(); ++s) {
          const float sc = q.scales[s];
          not_pow2 += !is_pow2(sc);
          // ceil rule: amax <= fmax * s (nothing clips) and amax > fmax * s / 2 (s is the smallest such).
          if (amax[s] > 0)
            not_minimal += !(amax[s] <= static_cast<double>(fmax) * sc && amax[s] > static_cast<double>(fmax) * sc / 2);
          if (is_mx(g)) e8m0_bad += e8m0_decode(e8m0_encode_pow2(sc)) != sc;
          ++scales_checked;
        }
        double max_abs_y = 0;
        for (int64_t i = 0; i < rows; ++i)
          for (int64_t j = 0; j < cols; ++j)
            max_abs_y = std::max(max_abs_y, static_cast<double>(std::fabs(x[i * cols + j] / q.scale_at(i, j))));
        const QuantError e = quant_error(x.data(), cols, q);
        std::printf("pow2 %s %-12s (asked %s): max |x/s| = %.4f <= %g, saturated %lld, non-pow2 %lld, "
                    "non-minimal %lld, E8M0 failures %lld\n",
                    to_string(f), to_string(g), to_string(st), max_abs_y, fmax, static_cast<long long>(e.saturated),
                    static_cast<long long>(not_pow2), static_cast<long long>(not_minimal),
                    static_cast<long long>(e8m0_bad));
        EXPECT_EQ(not_pow2, 0);
        EXPECT_EQ(not_minimal, 0);
        EXPECT_EQ(e8m0_bad, 0);
        EXPECT_EQ(e.saturated, 0);
        EXPECT_LE(max_abs_y, fmax);
      }
  }
  EXPECT_GT(scales_checked, 1000);
}

// Hand example, E4M3, one tensor scale from amax_override = 5 (history max below the current
// amax 10): s = 5/448, y = x * 89.6. E4M3's largest finite is 448 and the next grid point
// would be 480, so y rounds beyond max finite exactly when |y| > 464.
//   x = 5.1 -> y = 456.96 -> 448, clipped by rounding only (not saturated);
//   x = 6, 10, -7 -> |y| = 537.6, 896, 627.2 -> saturated, codes 0x7E, 0x7E, 0xFE.
TEST(QuantDelayed, SmallerHistoryMaxSaturatesAndCounts) {
  const std::vector<float> x = {1, 2, 5, 5.1f, 6, 10, -7, 0.5f};
  const float override_amax = 5.0f;
  float current = -1;
  QTensor q;
  quantize(q, x.data(), 1, 8, 8, QuantSpec{Fp8Format::E4M3, Granularity::Tensor}, &override_amax, &current);
  const QuantError e = quant_error(x.data(), 8, q);
  std::printf("delayed (hand): scale %.9g (5/448 = %.9g), current amax %g, saturated %lld, codes %02X %02X %02X %02X\n",
              q.scales[0], 5.0f / 448.0f, current, static_cast<long long>(e.saturated), q.codes[3], q.codes[4],
              q.codes[5], q.codes[6]);
  EXPECT_EQ(q.scales[0], 5.0f / 448.0f);
  EXPECT_EQ(current, 10.0f);  // amax_out reports the current amax, not the override
  EXPECT_EQ(e.saturated, 3);
  EXPECT_EQ(q.codes[3], 0x7E);
  EXPECT_EQ(q.codes[4], 0x7E);
  EXPECT_EQ(q.codes[5], 0x7E);
  EXPECT_EQ(q.codes[6], 0xFE);
  EXPECT_EQ(fp8_decode(q.codes[2], Fp8Format::E4M3) * q.scales[0], 5.0f);  // x = override amax is not clipped

  // Random [128, 256] tile1x128: history max = amax / 2 per slot. Expected saturation count
  // is counted independently: |fl(x/s)| > 464 (E4M3) resp. > 61440 (E5M2: 57344 + half ulp 4096).
  const int64_t rows = 128, cols = 256;
  const std::vector<float> r = normal_matrix(rows, cols, 31);
  for (Fp8Format f : kFormats) {
    const QuantSpec spec{f, Granularity::Tile1x128};
    const ScaleGrid grid = make_scale_grid(spec.granularity, rows, cols);
    std::vector<float> amax = slot_amax(r, rows, cols, cols, grid), hist_max(amax.size());
    AmaxHistory h(4, grid.count());
    for (float k : {0.25f, 0.5f, 0.125f}) {
      for (size_t s = 0; s < amax.size(); ++s) hist_max[s] = amax[s] * k;
      h.push(hist_max.data());
    }
    h.amax_for_scaling(hist_max.data());
    QTensor qr;
    quantize(qr, r.data(), rows, cols, cols, spec, hist_max.data());
    const double limit = f == Fp8Format::E4M3 ? 464.0 : 61440.0;
    int64_t expect_sat = 0, clipped_codes = 0;
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) {
        const float y = r[i * cols + j] / qr.scale_at(i, j);
        if (std::fabs(y) > limit) {
          ++expect_sat;
          clipped_codes += (qr.codes[i * cols + j] & 0x7F) == fp8_traits(f).max_code;
        }
      }
    const QuantError er = quant_error(r.data(), cols, qr);
    std::printf("delayed %s history max = amax/2: saturated %lld (independent count %lld, all at max code: %lld)\n",
                to_string(f), static_cast<long long>(er.saturated), static_cast<long long>(expect_sat),
                static_cast<long long>(clipped_codes));
    EXPECT_GT(expect_sat, 0);
    EXPECT_EQ(er.saturated, expect_sat);
    EXPECT_EQ(clipped_codes, expect_sat);
  }
}

TEST(QuantDelayed, LargerHistoryMaxSetsTheScale) {
  const int64_t rows = 130, cols = 200;
  const std::vector<float> x = normal_matrix(rows, cols, 41);
  const QuantSpec spec{Fp8Format::E4M3, Granularity::Block128x128};
  const ScaleGrid grid = make_scale_grid(spec.granularity, rows, cols);
  const std::vector<float> amax = slot_amax(x, rows, cols, cols, grid);
  AmaxHistory h(3, grid.count());
  std::vector<float> step(amax.size()), used(amax.size()), current(amax.size());
  for (float k : {1.5f, 3.0f, 2.0f}) {
    for (size_t s = 0; s < amax.size(); ++s) step[s] = amax[s] * k;
    h.push(step.data());
  }
  h.amax_for_scaling(used.data());
  QTensor q;
  quantize(q, x.data(), rows, cols, cols, spec, used.data(), current.data());
  int64_t bad = 0;
  for (int64_t s = 0; s < grid.count(); ++s) {
    bad += used[s] != amax[s] * 3.0f;
    bad += q.scales[s] != (amax[s] * 3.0f) / 448.0f;
    bad += current[s] != amax[s];
  }
  const QuantError e = quant_error(x.data(), cols, q);
  std::printf("delayed history max = 3*amax: slot 0 scale %.9g (want %.9g), saturated %lld, SQNR %.2f dB, "
              "wrong scales/amax %lld\n",
              q.scales[0], amax[0] * 3.0f / 448.0f, static_cast<long long>(e.saturated), e.sqnr_db,
              static_cast<long long>(bad));
  EXPECT_EQ(bad, 0);
  EXPECT_EQ(e.saturated, 0);
}

TEST(AmaxHistoryTest, KeepsExactlyLengthEntriesAndRestores) {
  AmaxHistory h(3, 2);
  EXPECT_TRUE(h.empty());
  float out[2];
  EXPECT_THROW(h.amax_for_scaling(out), Error);
  const float steps[5][2] = {{1, 10}, {2, 9}, {3, 8}, {4, 7}, {0.5f, 0.25f}};
  // Max over the last min(t, 3) pushes: {1,10} {2,10} {3,10} then {1,10} drops -> {4,9},
  // then {2,9} drops -> {4,8}.
  const float want[5][2] = {{1, 10}, {2, 10}, {3, 10}, {4, 9}, {4, 8}};
  for (int t = 0; t < 5; ++t) {
    h.push(steps[t]);
    h.amax_for_scaling(out);
    std::printf("history step %d: filled %d, amax for scaling {%g, %g} (want {%g, %g})\n", t, h.filled(), out[0],
                out[1], want[t][0], want[t][1]);
    EXPECT_EQ(h.filled(), std::min(t + 1, 3));
    EXPECT_EQ(out[0], want[t][0]) << t;
    EXPECT_EQ(out[1], want[t][1]) << t;
  }
  AmaxHistory r(3, 2);
  r.restore(h.ring(), h.head(), h.filled());
  r.amax_for_scaling(out);
  EXPECT_EQ(out[0], 4.0f);
  EXPECT_EQ(out[1], 8.0f);
  r.push(steps[0]);  // drops {3, 8}: {4,7} {0.5,0.25} {1,10}
  r.amax_for_scaling(out);
  EXPECT_EQ(out[0], 4.0f);
  EXPECT_EQ(out[1], 10.0f);
  EXPECT_THROW(r.restore(std::vector<float>(5, 0.0f), 0, 1), Error);  // 5 != 3 x 2
  EXPECT_THROW(r.restore(std::vector<float>(6, 0.0f), 3, 1), Error);  // head outside [0, 3)
  EXPECT_THROW(r.restore(std::vector<float>(6, 0.0f), 0, 4), Error);  // filled > length
  EXPECT_THROW(r.restore(std::vector<float>(6, NAN), 0, 1), Error);
  EXPECT_THROW(AmaxHistory(0, 4), Error);
}

TEST(QuantBadInput, ClearErrors) {
  std::vector<float> x(64, 1.0f);
  QTensor q;
  const QuantSpec spec;
  EXPECT_THROW(parse_granularity("blockwise"), Error);
  EXPECT_THROW(quantize(q, x.data(), 0, 8, 8, spec), Error);
  EXPECT_THROW(quantize_reference(q, x.data(), 0, 8, 8, spec), Error);
  EXPECT_THROW(quantize(q, x.data(), 8, 8, 4, spec), Error);  // ld < cols
  x[9] = NAN;                                                  // no finite amax for its tile
  for (Granularity g : kAllGranularities) {
    EXPECT_THROW(quantize(q, x.data(), 8, 8, 8, QuantSpec{Fp8Format::E4M3, g}), Error) << to_string(g);
    EXPECT_THROW(quantize_reference(q, x.data(), 8, 8, 8, QuantSpec{Fp8Format::E4M3, g}), Error) << to_string(g);
  }
  x[9] = INFINITY;
  EXPECT_THROW(quantize(q, x.data(), 8, 8, 8, spec), Error);
  try {
    quantize(q, x.data(), 0, 8, 8, spec);
  } catch (const Error& e) {
    std::printf("zero rows -> %s | %s\n", e.message().c_str(), e.hint().c_str());
  }
}

// Hand example, E4M3, scale exactly 1 (amax_override = 448):
//   x        code value  |err|                    note
//   500      448         52                       |y| = 500 > 464: saturated
//   1        1           0
//   -0.3f    -0.3125     0.3125 - 0.3f = 0.012499988079071045   (0.3 / 2^-5 = 9.6 -> 10 quanta)
//   0        0           0                        excluded from max_rel
//   0.0009f  0           0.0008999999845400453    < 2^-10 = min_subnormal/2: flushed, rel err 1
//   460      448         12                       460 < 464: rounds to max, not saturated
// sum x^2 = 461601.09000081714, sum err^2 = 2848.000157059702 -> SQNR 22.09726816754283 dB.
TEST(QuantErrorStats, HandComputedExample) {
  const std::vector<float> x = {500, 1, -0.3f, 0, 0.0009f, 460};
  const float override_amax = 448.0f;
  QTensor q;
  quantize(q, x.data(), 1, 6, 6, QuantSpec{Fp8Format::E4M3, Granularity::Tensor}, &override_amax);
  ASSERT_EQ(q.scales[0], 1.0f);
  const QuantError e = quant_error(x.data(), 6, q);
  std::printf("quant_error: count %lld sqnr %.14f dB max_abs %.17g max_rel %.17g saturated %lld flushed %lld\n",
              static_cast<long long>(e.count), e.sqnr_db, e.max_abs_err, e.max_rel_err,
              static_cast<long long>(e.saturated), static_cast<long long>(e.flushed_to_zero));
  EXPECT_EQ(e.count, 6);
  EXPECT_NEAR(e.sqnr_db, 22.09726816754283, 1e-12);
  EXPECT_EQ(e.max_abs_err, 52.0);
  EXPECT_EQ(e.max_rel_err, 1.0);
  EXPECT_EQ(e.saturated, 1);
  EXPECT_EQ(e.flushed_to_zero, 1);
  // Without the flushed element the max relative error is 52/500 = 0.104.
  const std::vector<float> x2 = {500, 1, -0.3f, 0, 460};
  quantize(q, x2.data(), 1, 5, 5, QuantSpec{Fp8Format::E4M3, Granularity::Tensor}, &override_amax);
  const QuantError e2 = quant_error(x2.data(), 5, q);
  EXPECT_DOUBLE_EQ(e2.max_rel_err, 52.0 / 500.0);
  EXPECT_EQ(e2.flushed_to_zero, 0);
}

}  // namespace
}  // namespace tinyseek::numerics
