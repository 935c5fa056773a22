// The Linear's fast quantizers (ops/linear_quant.h) against the scalar oracle
// numerics::quantize_reference, bit for bit (codes and scales), on both SIMD paths and for
// 1 and 3 threads; and the fused operand paths of ops/linear (both FP8 grids of X and dY in
// one pass, one BF16 dY for Dgrad and Wgrad) against the same GEMMs fed with oracle
// operands: outputs must be bit-identical, i.e. the speed work changed no bit.
#include <gtest/gtest.h>
#include <omp.h>

#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include "tinyseek/base/check.h"
#include "tinyseek/base/rng.h"
#include "tinyseek/gemm/gemm.h"
#include "tinyseek/numerics/bf16.h"
#include "tinyseek/numerics/fp8.h"
#include "tinyseek/numerics/quant.h"
#include "tinyseek/numerics/simd.h"
#include "tinyseek/ops/linear.h"
#include "tinyseek/ops/linear_quant.h"

namespace tinyseek::ops {
namespace {

using gemm::DType;
using numerics::Fp8Format;
using numerics::Granularity;
using numerics::QTensor;
using numerics::QuantSpec;

// Both SIMD paths where the CPU has AVX-512 (the fast kernel, then the portable fallback).
std::vector<SimdPath> simd_paths() {
  if (cpu_has_avx512_bf16()) return {SimdPath::Avx512Bf16, SimdPath::Portable};
  return {SimdPath::Portable};
}

struct SimdGuard {
  explicit SimdGuard(SimdPath p) { set_simd_override(p); }
  ~SimdGuard() { clear_simd_override(); }
};
struct ThreadGuard {
  explicit ThreadGuard(int n) : saved(omp_get_max_threads()) { omp_set_num_threads(n); }
  ~ThreadGuard() { omp_set_num_threads(saved); }
  int saved;
};

// Values that exercise every encoder branch: N(0,1) with outliers, exponents spread over
// ±40 binades (FP8 subnormals and flush-to-zero after scaling), exact ties between FP8
// codes in tiles whose scale is a power of two, ±0, FP32 subnormals and huge values, and
// all-zero tiles.
std::vector<float> hard_values(int64_t rows, int64_t cols, uint64_t seed) {
  const Philox rng(seed, 3);
  std::vector<float> v(size_t(rows * cols));
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      const uint64_t k = uint64_t(i * cols + j);
      const float u = rng.uniform(k), sign = rng.uniform(k + (1ull << 40)) < 0.5f ? -1.0f : 1.0f;
      float x = 0;
      switch ((i / 3 + j / 128) % 6) {
        case 0: x = static_cast<float>(rng.normal(k)) * (k % 97 == 3 ? 40.0f : 1.0f); break;
        case 1: x = sign * std::ldexp(1.0f + u, static_cast<int>(rng.uniform(k + 7) * 80.0f) - 40); break;
        case 2: {  // ties: row amax 448 (scale exactly 1 for E4M3), halfway values between codes
          const float base = std::ldexp(1.0f + std::floor(u * 8.0f) / 8.0f, static_cast<int>(u * 12.0f) - 9);
          x = j % 128 == 0 ? 448.0f : sign * (base + std::ldexp(1.0f, std::ilogb(base) - 4));
          break;
        }
        case 3: x = (j % 5 == 0) ? -0.0f : (j % 5 == 1 ? sign * 1e-40f : sign * 3e38f * u); break;
        case 4: x = 0.0f; break;
        default: x = sign * 1e-36f * (1.0f + u); break;  // below amax_floor: the floor decides the scale
      }
      v[size_t(i * cols + j)] = x;
    }
  return v;
}

bool same_bits(const QTensor& a, const QTensor& b, const char* what, int64_t* diffs) {
  *diffs = 0;
  if (a.rows != b.rows || a.cols != b.cols || a.grid.count() != b.grid.count() || a.granularity != b.granularity ||
      a.format != b.format) {
    ADD_FAILURE() << what << ": shape/grid/format differ";
    return false;
  }
  for (int64_t i = 0; i < a.rows * a.cols; ++i) *diffs += a.codes[size_t(i)] != b.codes[size_t(i)];
  for (int64_t s = 0; s < a.grid.count(); ++s)
    *diffs += std::bit_cast<uint32_t>(a.scales[size_t(s)]) != std::bit_cast<uint32_t>(b.scales[size_t(s)]);
  return *diffs == 0;
}

TEST(LinearQuant, TilesMatchTheOracleBitForBit) {
  struct Shape { int64_t rows, cols; };
  const Shape shapes[] = {{200, 300}, {128, 128}, {1, 17}, {257, 1024}, {130, 5}, {384, 129}};
  int64_t checked = 0;
  for (SimdPath path : simd_paths()) {
    const SimdGuard simd(path);
    for (const Shape& sh : shapes)
      for (Fp8Format f : {Fp8Format::E4M3, Fp8Format::E5M2})
        for (numerics::ScaleType st : {numerics::ScaleType::Fp32, numerics::ScaleType::Pow2})
          for (numerics::Overflow ov : {numerics::Overflow::Saturate, numerics::Overflow::NonSaturate}) {
            const std::vector<float> x = hard_values(sh.rows, sh.cols, uint64_t(sh.rows * 31 + sh.cols));
            QuantSpec spec;
            spec.format = f;
            spec.scale_type = st;
            spec.overflow = ov;
            QTensor want_r, want_c;
            spec.granularity = Granularity::Tile1x128;
            numerics::quantize_reference(want_r, x.data(), sh.rows, sh.cols, sh.cols, spec);
            spec.granularity = Granularity::Tile128x1;
            numerics::quantize_reference(want_c, x.data(), sh.rows, sh.cols, sh.cols, spec);
            for (int threads : {1, 3}) {
              const ThreadGuard tg(threads);
              QTensor both_r, both_c, only_r, only_c;
              quantize_tiles(&both_r, &both_c, x.data(), sh.rows, sh.cols, spec);
              quantize_tiles(&only_r, nullptr, x.data(), sh.rows, sh.cols, spec);
              quantize_tiles(nullptr, &only_c, x.data(), sh.rows, sh.cols, spec);
              int64_t d1, d2, d3, d4;
              const bool ok = same_bits(both_r, want_r, "1x128 (pair)", &d1) &
                              same_bits(both_c, want_c, "128x1 (pair)", &d2) &
                              same_bits(only_r, want_r, "1x128", &d3) & same_bits(only_c, want_c, "128x1", &d4);
              EXPECT_TRUE(ok) << to_string(path) << " [" << sh.rows << ", " << sh.cols << "] "
                              << (f == Fp8Format::E4M3 ? "e4m3 " : "e5m2 ") << numerics::to_string(st) << " threads "
                              << threads << ": differing codes+scales " << d1 << ", " << d2 << ", " << d3 << ", " << d4;
              checked += 4 * sh.rows * sh.cols;
            }
          }
  }
  std::printf("[linear-quant] %lld codes (1x128 and 128x1, alone and paired) equal to quantize_reference, "
              "SIMD paths x {1, 3} threads x e4m3/e5m2 x fp32/pow2 scales x saturate/non-saturate\n",
              (long long)checked);
}

// Values whose quotient x / scale lies within a few FP32 ulps of an FP8 rounding tie, where
// multiplying by the reciprocal instead of dividing picks the other code (random data
// almost never lands there, so this guards the kernel's division against a reciprocal
// "optimisation"). by_rows: the tile's amax (so its scale) sits in each 1x128 tile; else
// in each 128x1 column tile.
std::vector<float> near_ties(int64_t rows, int64_t cols, Fp8Format f, bool by_rows, uint64_t seed,
                             int64_t* naive_wrong) {
  const Philox rng(seed, 9);
  const float fmax = numerics::fp8_traits(f).max_finite;
  std::vector<float> v(size_t(rows * cols));
  std::vector<float> amax(size_t(by_rows ? rows * ((cols + 127) / 128) : ((rows + 127) / 128) * cols));
  for (size_t k = 0; k < amax.size(); ++k)
    amax[k] = std::ldexp(1.0f + rng.uniform(k), int(rng.uniform(k + 99) * 30) - 15);
  *naive_wrong = 0;
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      const uint64_t k = uint64_t(i * cols + j) + 1000003;
      const size_t slot = by_rows ? size_t(i * ((cols + 127) / 128) + j / 128) : size_t((i / 128) * cols + j);
      const float a = amax[slot], s = a / fmax;
      const bool first = by_rows ? j % 128 == 0 : i % 128 == 0;
      if (first) {
        v[size_t(i * cols + j)] = a;
        continue;
      }
      // A tie between two FP8 magnitudes (normal or subnormal range), scaled back by s,
      // then moved by -3..3 FP32 ulps.
      const uint8_t code = uint8_t(1 + rng.uniform(k) * float(numerics::fp8_traits(f).max_code - 1));
      const float lo = numerics::fp8_decode(code, f), hi = numerics::fp8_decode(uint8_t(code + 1), f);
      const float tie = lo + (hi - lo) / 2;  // exact: one more mantissa bit
      float x = tie * s;
      for (int step = int(rng.uniform(k + 5) * 7) - 3; step != 0; step += step > 0 ? -1 : 1)
        x = std::nextafter(x, step > 0 ? INFINITY : 0.0f);
      x = std::min(x, a);
      if (rng.uniform(k + 11) < 0.5f) x = -x;
      v[size_t(i * cols + j)] = x;
      const float by_div = x / s, by_mul = x * (1.0f / s);
      *naive_wrong += numerics::fp8_encode(by_div, f) != numerics::fp8_encode(by_mul, f);
    }
  return v;
}

TEST(LinearQuant, NearTieQuotientsMatchTheOracle) {
  for (SimdPath path : simd_paths()) {
    const SimdGuard simd(path);
    for (Fp8Format f : {Fp8Format::E4M3, Fp8Format::E5M2})
      for (bool by_rows : {true, false}) {
        int64_t naive_wrong = 0;
        const int64_t R = 384, C = 384;
        const std::vector<float> x = near_ties(R, C, f, by_rows, by_rows ? 1 : 2, &naive_wrong);
        QuantSpec spec;
        spec.format = f;
        QTensor want_r, want_c, got_r, got_c;
        spec.granularity = Granularity::Tile1x128;
        numerics::quantize_reference(want_r, x.data(), R, C, C, spec);
        spec.granularity = Granularity::Tile128x1;
        numerics::quantize_reference(want_c, x.data(), R, C, C, spec);
        quantize_tiles(&got_r, &got_c, x.data(), R, C, spec);
        int64_t d1, d2;
        const bool ok = same_bits(got_r, want_r, "1x128", &d1) & same_bits(got_c, want_c, "128x1", &d2);
        std::printf("[linear-quant] near ties %s %s, scales per %s: x * (1/s) would mis-encode %lld of %lld values; "
                    "kernel vs oracle differing codes+scales: %lld (1x128), %lld (128x1)\n",
                    to_string(path), f == Fp8Format::E4M3 ? "e4m3" : "e5m2", by_rows ? "1x128 tile" : "128x1 tile",
                    (long long)naive_wrong, (long long)(R * C), (long long)d1, (long long)d2);
        EXPECT_TRUE(ok);
        EXPECT_GT(naive_wrong, 100);  // the data does hit the cases the fallback exists for
      }
  }
}

TEST(LinearQuant, EveryBinadeOfQuotientsMatchesTheOracle) {
  // Tiles whose amax is fmax (the first row of every 128-row block and the first column are
  // fmax), so every scale is exactly 1 and the encoder sees x itself: every 1009th FP32 bit
  // pattern from +0 to fmax, both signs, i.e. every binade of both FP8 formats, their
  // subnormal ranges and the saturation boundary.
  for (SimdPath path : simd_paths()) {
    const SimdGuard simd(path);
    for (Fp8Format f : {Fp8Format::E4M3, Fp8Format::E5M2}) {
      const float fmax = numerics::fp8_traits(f).max_finite;
      const uint32_t top = std::bit_cast<uint32_t>(fmax);
      const int64_t C = 128, R = ((int64_t(top / 1009) * 2 + 126) / 127 + 127) / 128 * 128;
      std::vector<float> x(size_t(R * C));
      uint64_t k = 0;
      for (int64_t i = 0; i < R; ++i)
        for (int64_t j = 0; j < C; ++j, ++k) {
          if (j == 0 || i % 128 == 0) { x[size_t(i * C + j)] = fmax; continue; }
          const uint32_t pattern = uint32_t((k / 2) * 1009 % (uint64_t(top) + 1));
          x[size_t(i * C + j)] = std::bit_cast<float>(pattern | (k % 2 ? 0x80000000u : 0u));
        }
      QuantSpec spec;
      spec.format = f;
      QTensor want_r, want_c, got_r, got_c;
      spec.granularity = Granularity::Tile1x128;
      numerics::quantize_reference(want_r, x.data(), R, C, C, spec);
      spec.granularity = Granularity::Tile128x1;
      numerics::quantize_reference(want_c, x.data(), R, C, C, spec);
      quantize_tiles(&got_r, &got_c, x.data(), R, C, spec);
      int64_t d1, d2;
      const bool ok = same_bits(got_r, want_r, "1x128", &d1) & same_bits(got_c, want_c, "128x1", &d2);
      std::printf("[linear-quant] %s %s: %lld quotients over every binade up to fmax, differing codes+scales "
                  "%lld (1x128), %lld (128x1)\n", to_string(path), f == Fp8Format::E4M3 ? "e4m3" : "e5m2",
                  (long long)(R * C), (long long)d1, (long long)d2);
      EXPECT_TRUE(ok);
    }
  }
}

TEST(LinearQuant, WeightBlocksMatchTheOracleBitForBit) {
  // quantize_blocks128 (the fp8 recipe's per-step weight quantization) against the scalar
  // oracle: partial blocks on both axes, a short last tile row (192 rows: the column-major
  // split), ragged columns (< 16, 16k + r), both formats, scale types and overflow modes.
  struct Shape { int64_t rows, cols; };
  const Shape shapes[] = {{200, 300}, {128, 128}, {1, 17}, {257, 1024}, {130, 5}, {192, 512}, {384, 129}, {512, 1536}};
  int64_t checked = 0, total_diffs = 0;
  for (SimdPath path : simd_paths()) {
    const SimdGuard simd(path);
    for (const Shape& sh : shapes)
      for (Fp8Format f : {Fp8Format::E4M3, Fp8Format::E5M2})
        for (numerics::ScaleType st : {numerics::ScaleType::Fp32, numerics::ScaleType::Pow2})
          for (numerics::Overflow ov : {numerics::Overflow::Saturate, numerics::Overflow::NonSaturate}) {
            const std::vector<float> x = hard_values(sh.rows, sh.cols, uint64_t(sh.rows * 17 + sh.cols));
            QuantSpec spec;
            spec.format = f;
            spec.scale_type = st;
            spec.overflow = ov;
            spec.granularity = Granularity::Block128x128;
            QTensor want;
            numerics::quantize_reference(want, x.data(), sh.rows, sh.cols, sh.cols, spec);
            for (int threads : {1, 3}) {
              const ThreadGuard tg(threads);
              QTensor got;
              spec.granularity = Granularity::Tile1x128;  // ignored: the grid is always 128x128
              quantize_blocks128(got, x.data(), sh.rows, sh.cols, spec);
              int64_t d = 0;
              const bool ok = same_bits(got, want, "block128x128", &d);
              EXPECT_TRUE(ok) << to_string(path) << " [" << sh.rows << ", " << sh.cols << "] "
                              << (f == Fp8Format::E4M3 ? "e4m3 " : "e5m2 ") << numerics::to_string(st) << " threads "
                              << threads << ": differing codes+scales " << d;
              total_diffs += d;
              checked += sh.rows * sh.cols;
            }
          }
  }
  std::printf("[linear-quant] quantize_blocks128: %lld codes vs quantize_reference, differing codes+scales %lld "
              "(SIMD paths x {1, 3} threads x e4m3/e5m2 x fp32/pow2 x saturate/non-saturate)\n",
              (long long)checked, (long long)total_diffs);
}

TEST(LinearQuant, EveryRoundingDecisionPointMatchesTheOracle) {
  // The encoder's decisions happen at FP8 rounding ties: for every FP8 magnitude m (normal
  // and subnormal, both formats) the quotients at the tie between m and the next code, at
  // m itself and at the binade edges, each moved by -3..3 FP32 ulps, both signs. Tiles hold
  // fmax, so every scale is exactly 1 and the encoder sees these values as they are; run
  // through all three kernels (1x128, 128x1, 128x128 blocks).
  for (SimdPath path : simd_paths()) {
    const SimdGuard simd(path);
    for (Fp8Format f : {Fp8Format::E4M3, Fp8Format::E5M2}) {
      const numerics::Fp8Traits t = numerics::fp8_traits(f);
      std::vector<float> vals;
      for (int code = 0; code <= t.max_code; ++code) {
        const float lo = numerics::fp8_decode(uint8_t(code), f);
        const float hi = code < t.max_code ? numerics::fp8_decode(uint8_t(code + 1), f)
                                           : lo + (lo - numerics::fp8_decode(uint8_t(code - 1), f));
        for (float c : {lo, lo + (hi - lo) / 2}) {  // the code and the tie above it (exact)
          float v = c;
          for (int k = 0; k < 3; ++k) v = std::nextafter(v, 0.0f);
          for (int k = 0; k < 7; ++k, v = std::nextafter(v, INFINITY))
            if (v <= t.max_finite && v >= 0.0f) vals.push_back(v);
        }
      }
      const int64_t C = 128, per_row = C - 1;
      const int64_t n = int64_t(vals.size()) * 2, R = (n + per_row - 1) / per_row;
      std::vector<float> x(size_t(R * C), t.max_finite);  // column 0 and unused slots: fmax
      for (int64_t k = 0; k < n; ++k) {
        const float v = vals[size_t(k / 2)];
        x[size_t((k / per_row) * C + 1 + k % per_row)] = k % 2 ? -v : v;
      }
      for (int64_t i = 0; i < R; i += 128) std::fill(x.begin() + i * C, x.begin() + i * C + C, t.max_finite);
      QuantSpec spec;
      spec.format = f;
      QTensor want_r, want_c, want_b, got_r, got_c, got_b;
      spec.granularity = Granularity::Tile1x128;
      numerics::quantize_reference(want_r, x.data(), R, C, C, spec);
      spec.granularity = Granularity::Tile128x1;
      numerics::quantize_reference(want_c, x.data(), R, C, C, spec);
      spec.granularity = Granularity::Block128x128;
      numerics::quantize_reference(want_b, x.data(), R, C, C, spec);
      quantize_tiles(&got_r, &got_c, x.data(), R, C, spec);
      quantize_blocks128(got_b, x.data(), R, C, spec);
      int64_t d1, d2, d3;
      const bool ok = same_bits(got_r, want_r, "1x128", &d1) & same_bits(got_c, want_c, "128x1", &d2) &
                      same_bits(got_b, want_b, "128x128", &d3);
      std::printf("[linear-quant] %s %s: %lld values at rounding decision points, differing codes+scales %lld "
                  "(1x128), %lld (128x1), %lld (128x128)\n", to_string(path), f == Fp8Format::E4M3 ? "e4m3" : "e5m2",
                  (long long)n, (long long)d1, (long long)d2, (long long)d3);
      EXPECT_TRUE(ok);
    }
  }
}

TEST(LinearQuant, NonFiniteWeightBlockIsRejected) {
  for (SimdPath path : simd_paths()) {
    const SimdGuard simd(path);
    std::vector<float> x = hard_values(256, 256, 9);
    x[size_t(200 * 256 + 130)] = NAN;
    QTensor q;
    try {
      quantize_blocks128(q, x.data(), 256, 256, QuantSpec{});
      ADD_FAILURE() << to_string(path) << ": NaN was quantized";
    } catch (const Error& e) {
      std::printf("[linear-quant] %s, weight NaN at (200, 130): %s\n", to_string(path),
                  std::string(e.what()).substr(0, 90).c_str());
      EXPECT_NE(std::string(e.what()).find("tile row 1, tile col 1"), std::string::npos) << e.what();
    }
  }
}

TEST(LinearQuant, ReusedScratchOfAnotherShapeGivesTheSameBits) {
  // Buffers only grow: a tensor used for a big operand, then a small one, must hold exactly
  // the small one's quantization (read through rows/cols/grid).
  const std::vector<float> big = hard_values(300, 700, 1), small = hard_values(70, 90, 2);
  QuantSpec spec;
  QTensor r, c, want_r, want_c;
  quantize_tiles(&r, &c, big.data(), 300, 700, spec);
  quantize_tiles(&r, &c, small.data(), 70, 90, spec);
  spec.granularity = Granularity::Tile1x128;
  numerics::quantize_reference(want_r, small.data(), 70, 90, 90, spec);
  spec.granularity = Granularity::Tile128x1;
  numerics::quantize_reference(want_c, small.data(), 70, 90, 90, spec);
  int64_t d1, d2;
  EXPECT_TRUE(same_bits(r, want_r, "1x128", &d1) && same_bits(c, want_c, "128x1", &d2));
  std::printf("[linear-quant] reused scratch: %zu code bytes held for 70 x 90 codes, all equal to the oracle\n",
              r.codes.size());
  // Grown once, not shrunk (the fast path; the portable fallback is numerics::quantize,
  // which sizes its buffers exactly).
  if (simd_path() == SimdPath::Avx512Bf16) {
    EXPECT_GE(r.codes.size(), size_t(300 * 700));
  }
}

TEST(LinearQuant, NonFiniteTileIsRejectedOnEveryPath) {
  for (SimdPath path : simd_paths()) {
    const SimdGuard simd(path);
    for (float bad : {NAN, INFINITY, -INFINITY}) {
      std::vector<float> x = hard_values(256, 256, 9);
      x[size_t(200 * 256 + 130)] = bad;
      QTensor r, c;
      try {
        quantize_tiles(&r, &c, x.data(), 256, 256, QuantSpec{});
        ADD_FAILURE() << to_string(path) << ": " << bad << " was quantized";
      } catch (const Error& e) {
        std::printf("[linear-quant] %s, %g at (200, 130): %s\n", to_string(path), bad,
                    std::string(e.what()).substr(0, 90).c_str());
        EXPECT_NE(std::string(e.what()).find("Inf or NaN"), std::string::npos);
      }
    }
  }
}

TEST(LinearQuant, ParallelBf16EncodeEqualsTheScalarCodec) {
  // Every 2^-k-spaced pattern class: random bit patterns (NaN, Inf, subnormals, ties) over
  // 3 chunks of the parallel split plus a ragged tail.
  const size_t n = 3 * 65536 + 1234;
  std::vector<float> x(n);
  const Philox rng(77, 1);
  for (size_t i = 0; i < n; ++i)
    x[i] = std::bit_cast<float>(static_cast<uint32_t>(rng.uniform(i) * 4294967296.0) ^ uint32_t(i & 0xFFFF));
  std::vector<uint16_t> want(n), got(n);
  numerics::bf16_encode_bulk_scalar(want.data(), x.data(), n);
  for (SimdPath path : simd_paths())
    for (int threads : {1, 3}) {
      const SimdGuard simd(path);
      const ThreadGuard tg(threads);
      std::fill(got.begin(), got.end(), 0);
      bf16_encode_parallel(got.data(), x.data(), n);
      size_t diffs = 0;
      for (size_t i = 0; i < n; ++i) diffs += got[i] != want[i];
      std::printf("[linear-quant] bf16_encode_parallel %s, %d threads: %zu of %zu differ from the scalar codec\n",
                  to_string(path), threads, diffs, n);
      EXPECT_EQ(diffs, 0u);
    }
}

// ---- the Linear's fused operand paths, bit for bit against unfused oracle operands

std::vector<float> randn(int64_t n, uint64_t seed, float scale) {
  const Philox rng(seed, 5);
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = scale * float(rng.normal(uint64_t(i))) * (i % 97 == 3 ? 40.0f : 1.0f);
  return v;
}

// One stored operand made by the oracles: FP8 via quantize_reference, BF16 via the scalar codec.
struct Operand {
  QTensor q;
  std::vector<uint16_t> bf;
  gemm::Matrix view(DType t, const float* x, int64_t rows, int64_t cols, Granularity g, numerics::ScaleType st,
                    bool trans) {
    if (t == DType::F32) return gemm::view_f32(x, rows, cols, cols, trans);
    if (t == DType::BF16) {
      bf.resize(size_t(rows * cols));
      numerics::bf16_encode_bulk_scalar(bf.data(), x, bf.size());
      return gemm::view_bf16(bf.data(), rows, cols, cols, trans);
    }
    QuantSpec spec;
    spec.format = t == DType::E5M2 ? Fp8Format::E5M2 : Fp8Format::E4M3;
    spec.granularity = g;
    spec.scale_type = st;
    numerics::quantize_reference(q, x, rows, cols, cols, spec);
    return gemm::view_fp8(q, trans);
  }
};

size_t count_bit_diffs(const std::vector<float>& a, const std::vector<float>& b) {
  size_t d = 0;
  for (size_t i = 0; i < a.size(); ++i) d += std::bit_cast<uint32_t>(a[i]) != std::bit_cast<uint32_t>(b[i]);
  return d;
}

TEST(LinearQuant, FusedOperandPathsAreBitIdenticalToOracleOperands) {
  constexpr int64_t N = 300, IN = 260, OUT = 136;  // partial 128-tiles on every axis
  const std::vector<float> x = randn(N * IN, 1, 1.0f), w = randn(OUT * IN, 2, 0.05f), dy = randn(N * OUT, 3, 1e-3f);
  const std::vector<float> dx0 = randn(N * IN, 4, 1e-4f), dw0 = randn(OUT * IN, 5, 1e-2f);
  struct Case {
    const char* name;
    DType xw, dy, saved;
    numerics::ScaleType st;
    bool x_dropped;
  };
  const auto fp32 = numerics::ScaleType::Fp32, pow2 = numerics::ScaleType::Pow2;
  const Case cases[] = {
      {"fp8 recipe (e4m3, cache e4m3, x dropped)", DType::E4M3, DType::E4M3, DType::E4M3, fp32, true},
      {"fp8 recipe, pow2 scales", DType::E4M3, DType::E4M3, DType::E4M3, pow2, true},
      {"e5m2 everywhere", DType::E5M2, DType::E5M2, DType::E5M2, fp32, true},
      {"hybrid (e5m2 dY), cache e4m3", DType::E4M3, DType::E5M2, DType::E4M3, fp32, true},
      {"e4m3, x kept (no cache)", DType::E4M3, DType::E4M3, DType::F32, fp32, false},
      {"bf16 recipe (cache bf16, x dropped)", DType::BF16, DType::BF16, DType::BF16, fp32, true},
      {"bf16, x kept", DType::BF16, DType::BF16, DType::F32, fp32, false},
  };
  for (SimdPath path : simd_paths())
    for (const Case& c : cases)
      for (int threads : {1, 3}) {
        const SimdGuard simd(path);
        const ThreadGuard tg(threads);
        LinearPrecision p;
        p.fprop_x = p.weight = p.wgrad_x = c.xw;
        p.dgrad_dy = p.wgrad_dy = c.dy;
        p.saved_x = c.saved;
        p.scale_type = c.st;
        LinearState st;
        std::vector<float> y(size_t(N * OUT)), dx = dx0, dw = dw0;
        linear_forward(y.data(), x.data(), w.data(), 7, N, IN, OUT, false, p, st);
        linear_backward(dx.data(), dw.data(), dy.data(), c.x_dropped ? nullptr : x.data(), w.data(), 7, N, IN, OUT,
                        p, st);

        gemm::GemmOptions opt;
        Operand X, W, Wd, DYd, DYw, Xw;
        const gemm::Matrix mx = X.view(c.xw, x.data(), N, IN, Granularity::Tile1x128, c.st, false);
        const gemm::Matrix mw = W.view(c.xw, w.data(), OUT, IN, Granularity::Block128x128, c.st, true);
        const gemm::Matrix mwd = Wd.view(c.xw, w.data(), OUT, IN, Granularity::Block128x128, c.st, false);
        const gemm::Matrix mdyd = DYd.view(c.dy, dy.data(), N, OUT, Granularity::Tile1x128, c.st, false);
        const gemm::Matrix mdyw = DYw.view(c.dy, dy.data(), N, OUT, Granularity::Tile128x1, c.st, true);
        const gemm::Matrix mxw = Xw.view(c.xw, x.data(), N, IN, Granularity::Tile128x1, c.st, false);
        std::vector<float> y_ref(y.size()), dx_ref = dx0, dw_ref = dw0;
        gemm::gemm(y_ref.data(), OUT, mx, mw, opt);
        opt.beta = 1.0f;
        gemm::gemm(dx_ref.data(), IN, mdyd, mwd, opt);
        gemm::gemm(dw_ref.data(), IN, mdyw, mxw, opt);
        const size_t dyf = count_bit_diffs(y, y_ref), dxd = count_bit_diffs(dx, dx_ref),
                     dwd = count_bit_diffs(dw, dw_ref);
        std::printf("[linear-quant] %-11s %d thr %-42s differing bits: y %zu/%zu dx %zu/%zu dW %zu/%zu\n",
                    to_string(path), threads, c.name, dyf, y.size(), dxd, dx.size(), dwd, dw.size());
        EXPECT_EQ(dyf + dxd + dwd, 0u) << c.name;
      }
}

}  // namespace
}  // namespace tinyseek::ops
