// Tests for the GEMM API (gemm/gemm.h) that do not depend on a backend: the promotion
// interval; promotion semantics on a hand-built case; the tensor-core accumulation model
// (formula, precision loss, determinism over thread counts); and the error messages for bad
// input. The oracle sweeps, training orientations, alpha/beta and kFp32 determinism run
// every backend, the reference included, in gemm_blocked_test.cc.
// Every numerical test prints its evidence.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "tinyseek/base/check.h"
#include "tinyseek/base/rng.h"
#include "tinyseek/gemm/gemm.h"
#include "tinyseek/numerics/bf16.h"
#include "tinyseek/numerics/fp8.h"
#include "tinyseek/numerics/quant.h"
#include "gemm_test_util.h"

namespace tinyseek::gemm {
namespace {

using namespace gemm_test;

// A hand-built QTensor (FP8 codes of the given values, given scales).
QTensor hand_qtensor(Fp8Format f, Granularity g, int64_t rows, int64_t cols, const std::vector<float>& values,
                     const std::vector<float>& scales) {
  QTensor q;
  q.format = f, q.granularity = g, q.rows = rows, q.cols = cols;
  q.grid = numerics::make_scale_grid(g, rows, cols);
  q.codes.resize(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    q.codes[i] = numerics::fp8_encode(values[i], f);
    EXPECT_EQ(numerics::fp8_decode(q.codes[i], f), values[i]) << "value " << values[i] << " is not exact in FP8";
  }
  q.scales.resize(scales.size());
  for (size_t i = 0; i < scales.size(); ++i) q.scales[i] = scales[i];
  EXPECT_EQ(static_cast<int64_t>(scales.size()), q.grid.count());
  return q;
}

TEST(Gemm, PromotionIntervalDerivation) {
  const int64_t M = 256, N = 384, K = 512;
  QTensor x, w, dy, xt, mxa, mxb;
  auto shaped = [](Granularity g, int64_t r, int64_t c) {
    QTensor q;
    q.rows = r, q.cols = c, q.granularity = g, q.grid = numerics::make_scale_grid(g, r, c);
    return q;
  };
  // Fprop: X [M,K] 1x128, W [N,K] block trans -> 128; capped by promote_every.
  x = shaped(Granularity::Tile1x128, M, K), w = shaped(Granularity::Block128x128, N, K);
  EXPECT_EQ(promotion_interval(view_fp8(x), view_fp8(w, true), 128), 128);
  EXPECT_EQ(promotion_interval(view_fp8(x), view_fp8(w, true), 64), 64);
  EXPECT_EQ(promotion_interval(view_fp8(x), view_fp8(w, true), 1024), 128);
  // Dgrad: dY [M,N] 1x128, W [N,K] block (K of the GEMM = N runs down W's rows) -> 128.
  dy = shaped(Granularity::Tile1x128, M, N);
  EXPECT_EQ(promotion_interval(view_fp8(dy), view_fp8(w), 128), 128);
  // Wgrad: A = dY [M,N] tile128x1 trans: K = M runs down dY's rows, tile_rows = 128.
  dy = shaped(Granularity::Tile128x1, M, N), xt = shaped(Granularity::Tile128x1, M, K);
  EXPECT_EQ(promotion_interval(view_fp8(dy, true), view_fp8(xt), 128), 128);
  // ... while 1x128 tiles used transposed have K-extent 1: one scale per K element.
  dy = shaped(Granularity::Tile1x128, M, N);
  EXPECT_EQ(promotion_interval(view_fp8(dy, true), view_fp8(xt), 128), 1);
  // MX: 32-element blocks along K on both sides.
  mxa = shaped(Granularity::Mx1x32, M, K), mxb = shaped(Granularity::Mx32x1, K, N);
  EXPECT_EQ(promotion_interval(view_fp8(mxa), view_fp8(mxb), 128), 32);
  // Whole-extent tiles (tensor, row) count as K; non-FP8 operands only apply the cap.
  x = shaped(Granularity::Tensor, M, K);
  std::vector<float> f(static_cast<size_t>(K * N));
  EXPECT_EQ(promotion_interval(view_fp8(x), view_f32(f.data(), K, N, N), 128), 128);
  EXPECT_EQ(promotion_interval(view_fp8(x), view_f32(f.data(), K, N, N), 100000), K);
  x = shaped(Granularity::Row, M, 100);
  EXPECT_EQ(promotion_interval(view_fp8(x), view_f32(f.data(), 100, N, N), 128), 100);
  EXPECT_EQ(promotion_interval(view_f32(f.data(), N, K, K), view_f32(f.data(), K, N, N), 256), 256);
  // Per-column scales on A not transposed: K-extent 1.
  x = shaped(Granularity::Col, M, K);
  EXPECT_EQ(promotion_interval(view_fp8(x), view_f32(f.data(), K, N, N), 128), 1);
}

// K = 256 in two 128-blocks whose A scales differ by 2^10 (2^8 and 2^-2); B = 1 x scale 1.
//   group 0: a = b = 256 at k = 0, then 127 products 2^-9 * 2^-9 = 2^-18; in FP32,
//            2^16 + 2^-18 rounds back to 2^16 (ulp 2^-7), so P_0 = 2^16 and
//            acc = (2^8 * 1) * 2^16 = 2^24.
//   group 1: 128 products 2 * 2 = 4: P_1 = 512 exactly; (2^-2 * 1) * 512 = 128;
//            acc = 2^24 + 128 = 16777344 exactly.
// Without promotion (every scaled product added to one FP32 sum in k order), each of the
// 128 group-1 terms is 1 = half an ulp of 2^24 and ties to even: the result stays 2^24.
// The exact (oracle) value is 2^24 + 128 + 127 * 2^-10.
TEST(Gemm, PromotionSemanticsHandBuilt) {
  const int64_t K = 256;
  std::vector<float> av(K), bv(K);
  for (int64_t k = 0; k < K; ++k) {
    av[k] = k == 0 ? 256.0f : (k < 128 ? 0x1p-9f : 2.0f);
    bv[k] = av[k];
  }
  const QTensor qa = hand_qtensor(Fp8Format::E4M3, Granularity::Tile1x128, 1, K, av, {0x1p8f, 0x1p-2f});
  const QTensor qb = hand_qtensor(Fp8Format::E4M3, Granularity::Tensor, K, 1, bv, {1.0f});
  const Matrix A = view_fp8(qa), B = view_fp8(qb);
  ASSERT_EQ(promotion_interval(A, B, 128), 128);
  float c = kNaN;
  GemmOptions opt;
  opt.backend = Backend::kReference;
  gemm(&c, 1, A, B, opt);
  float naive = 0.0f;
  for (int64_t k = 0; k < K; ++k) naive += (qa.scale_at(0, k) * 1.0f) * (av[k] * bv[k]);
  double c64 = 0;
  gemm_oracle(&c64, nullptr, 1, A, B);
  std::printf("promotion: gemm %.10g (expected 16777344), unpromoted FP32 sum %.10g, exact %.10f\n", c, naive, c64);
  EXPECT_EQ(c, 16777344.0f);
  EXPECT_EQ(naive, 16777216.0f);
  EXPECT_EQ(c64, 16777344.0 + 127.0 / 1024.0);
  // promote_every beyond the 128-wide scale tiles still promotes at the tile boundary.
  opt.promote_every = 4096;
  c = kNaN;
  gemm(&c, 1, A, B, opt);
  EXPECT_EQ(c, 16777344.0f);
}

struct Fp8Pair {
  QTensor a, b;
};

// A = [M, K] e4m3 tile1x128, B = W [N, K] e4m3 block128x128 (used transposed): Fprop.
Fp8Pair fprop_operands(int64_t M, int64_t N, int64_t K, uint64_t seed, bool positive, Granularity ga,
                       Granularity gb) {
  Philox rng(seed, 3);
  std::vector<float> xa(static_cast<size_t>(M * K)), xb(static_cast<size_t>(N * K));
  for (size_t i = 0; i < xa.size(); ++i) xa[i] = positive ? rng.uniform(i) : static_cast<float>(rng.normal(i));
  for (size_t i = 0; i < xb.size(); ++i)
    xb[i] = positive ? rng.uniform(i + xa.size()) : static_cast<float>(rng.normal(i + xa.size()));
  Fp8Pair p;
  numerics::QuantSpec sa, sb;
  sa.granularity = ga, sb.granularity = gb;
  numerics::quantize(p.a, xa.data(), M, K, K, sa);
  numerics::quantize(p.b, xb.data(), N, K, K, sb);
  return p;
}

// kTensorCore: every P_g is exactly numerics::tensorcore_sum of the group's products; and
// kFp32 is bit for bit the formula written out (P_g summed in k order, acc += (sA*sB)*P_g).
TEST(Gemm, GroupAccumulationMatchesFormulaBitwise) {
  const int64_t M = 3, N = 5, K = 300, G = 128;
  const Fp8Pair p = fprop_operands(M, N, K, 11, false, Granularity::Tile1x128, Granularity::Block128x128);
  GemmOptions opt;
  opt.backend = Backend::kReference;
  opt.accumulation = Accumulation::kTensorCore;
  std::vector<float> C(M * N, kNaN), C32(M * N);
  gemm(C.data(), N, view_fp8(p.a), view_fp8(p.b, true), opt);
  opt.accumulation = Accumulation::kFp32;
  gemm(C32.data(), N, view_fp8(p.a), view_fp8(p.b, true), opt);
  const float* ta = numerics::fp8_decode_table(Fp8Format::E4M3);
  int64_t mismatches = 0, mismatches32 = 0, differs_from_fp32 = 0;
  double max_tc_vs_fp32 = 0;
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      float acc = 0.0f, acc32 = 0.0f;
      for (int64_t k0 = 0; k0 < K; k0 += G) {
        const int64_t len = std::min(G, K - k0);
        std::vector<float> prod(len);
        float P32 = 0.0f;
        for (int64_t j = 0; j < len; ++j) {
          prod[j] = ta[p.a.codes[m * K + k0 + j]] * ta[p.b.codes[n * K + k0 + j]];
          P32 += prod[j];
        }
        const float P = numerics::tensorcore_sum(prod.data(), len, opt.tensorcore);
        const float s = p.a.scale_at(m, k0) * p.b.scale_at(n, k0);
        acc += s * P;
        acc32 += s * P32;
      }
      mismatches += std::bit_cast<uint32_t>(acc) != std::bit_cast<uint32_t>(C[m * N + n]);
      mismatches32 += std::bit_cast<uint32_t>(acc32) != std::bit_cast<uint32_t>(C32[m * N + n]);
      differs_from_fp32 += C[m * N + n] != C32[m * N + n];
      max_tc_vs_fp32 = std::max(max_tc_vs_fp32, std::fabs(static_cast<double>(C[m * N + n]) - C32[m * N + n]));
    }
  std::printf("tensorcore per group: %lld/%lld bitwise mismatches vs direct tensorcore_sum (kFp32 vs the written-out "
              "formula: %lld); %lld outputs differ from kFp32 (max diff %.3e)\n",
              (long long)mismatches, (long long)(M * N), (long long)mismatches32, (long long)differs_from_fp32,
              max_tc_vs_fp32);
  EXPECT_EQ(mismatches, 0);
  EXPECT_EQ(mismatches32, 0);
  EXPECT_GT(differs_from_fp32, 0) << "the model should truncate some sums of random products";
}

// Max relative error against the oracle for positive inputs (no cancellation).
double max_rel_err(const std::vector<float>& C, const std::vector<double>& c64) {
  double r = 0;
  for (size_t i = 0; i < C.size(); ++i) r = std::max(r, std::fabs(C[i] - c64[i]) / std::fabs(c64[i]));
  return r;
}

// DeepSeek-V3 §3.3.2: limited accumulation precision costs ~2% at K = 4096 without
// promotion; promotion every 128 elements bounds it. Uniform [0,1) inputs: the worst case.
TEST(Gemm, TensorCoreAccumulationLosesPrecisionAtLargeK) {
  const int64_t M = 4, N = 4, K = 4096;
  GemmOptions opt;
  opt.backend = Backend::kReference;
  std::vector<float> C(M * N);
  std::vector<double> c64(M * N);
  // DeepSeek-V3 tiles: promotion every 128.
  const Fp8Pair p = fprop_operands(M, N, K, 21, true, Granularity::Tile1x128, Granularity::Block128x128);
  gemm_oracle(c64.data(), nullptr, N, view_fp8(p.a), view_fp8(p.b, true));
  gemm(C.data(), N, view_fp8(p.a), view_fp8(p.b, true), opt);
  const double err_fp32 = max_rel_err(C, c64);
  opt.accumulation = Accumulation::kTensorCore;
  gemm(C.data(), N, view_fp8(p.a), view_fp8(p.b, true), opt);
  const double err_tc128 = max_rel_err(C, c64);
  // Per-tensor scales and promote_every = K: one tensor-core chain over all of K.
  const Fp8Pair t = fprop_operands(M, N, K, 21, true, Granularity::Tensor, Granularity::Tensor);
  gemm_oracle(c64.data(), nullptr, N, view_fp8(t.a), view_fp8(t.b, true));
  opt.promote_every = static_cast<int>(K);
  ASSERT_EQ(promotion_interval(view_fp8(t.a), view_fp8(t.b, true), opt.promote_every), K);
  gemm(C.data(), N, view_fp8(t.a), view_fp8(t.b, true), opt);
  const double err_tc_none = max_rel_err(C, c64);
  std::printf("K=4096 uniform[0,1) e4m3, max rel err vs FP64: fp32 %.3e | tensorcore promote 128 %.3e | "
              "tensorcore no promotion %.3e\n",
              err_fp32, err_tc128, err_tc_none);
  EXPECT_GT(err_tc128, err_fp32);
  EXPECT_GT(err_tc_none, 10 * err_tc128);
  EXPECT_GT(err_tc_none, 1e-3);
}

// The tensor-core model (reference only) gives the same bits for any thread count; the
// kFp32 paths of every backend are checked in GemmBlocked.DeterministicAcrossThreadsAndRuns.
TEST(Gemm, TensorCoreModelDeterministicAcrossThreads) {
  const int saved = omp_get_max_threads();
  const int64_t M = 8, N = 300, K = 384;  // the model is slow; a few rows suffice
  const Fp8Pair p = fprop_operands(M, N, K, 41, false, Granularity::Tile1x128, Granularity::Block128x128);
  GemmOptions opt;
  opt.backend = Backend::kReference;
  opt.accumulation = Accumulation::kTensorCore;
  std::vector<std::vector<float>> runs;
  for (const int threads : {1, 2, 2, 3}) {
    omp_set_num_threads(threads);
    std::vector<float> C(M * N, kNaN);
    gemm(C.data(), N, view_fp8(p.a), view_fp8(p.b, true), opt);
    runs.push_back(std::move(C));
  }
  omp_set_num_threads(saved);
  int64_t differing = 0;
  for (size_t r = 1; r < runs.size(); ++r) differing += count_bit_differences(runs[r], runs[0]);
  std::printf("determinism (tensorcore model): %lld outputs differ from the 1-thread bits over threads 2, 2, 3\n",
              (long long)differing);
  EXPECT_EQ(differing, 0);
}

TEST(Gemm, BadInputIsRejectedWithHelpfulMessages) {
  std::vector<float> a(64 * 256, 1.0f), b(64 * 256, 1.0f), c(64 * 64, 0.0f);
  // Mismatched K.
  expect_error([&] { gemm(c.data(), 3, view_f32(a.data(), 4, 5, 5), view_f32(b.data(), 6, 3, 3)); },
               "inner dimensions differ");
  // ld < cols.
  expect_error([&] { gemm(c.data(), 3, view_f32(a.data(), 4, 5, 4), view_f32(b.data(), 5, 3, 3)); },
               "leading dimension");
  // ldc < N, null C, non-finite alpha.
  expect_error([&] { gemm(c.data(), 2, view_f32(a.data(), 4, 5, 5), view_f32(b.data(), 5, 3, 3)); }, "ldc");
  expect_error([&] { gemm(nullptr, 3, view_f32(a.data(), 4, 5, 5), view_f32(b.data(), 5, 3, 3)); }, "null");
  expect_error(
      [&] {
        GemmOptions o;
        o.alpha = kNaN;
        gemm(c.data(), 3, view_f32(a.data(), 4, 5, 5), view_f32(b.data(), 5, 3, 3), o);
      },
      "finite");
  expect_error(
      [&] {
        GemmOptions o;
        o.promote_every = 0;
        gemm(c.data(), 3, view_f32(a.data(), 4, 5, 5), view_f32(b.data(), 5, 3, 3), o);
      },
      "promote_every must be positive");
  // FP8 without scales; F32 with scales; a grid that does not match the shape.
  const Fp8Pair p = fprop_operands(4, 4, 256, 51, false, Granularity::Tile1x128, Granularity::Block128x128);
  expect_error(
      [&] {
        Matrix A = view_fp8(p.a);
        A.scales = nullptr;
        gemm(c.data(), 4, A, view_fp8(p.b, true));
      },
      "has no scales");
  expect_error(
      [&] {
        Matrix B = view_f32(b.data(), 4, 256, 256, true);
        B.scales = p.b.scales.data();
        gemm(c.data(), 4, view_fp8(p.a), B);
      },
      "carries FP8 scales");
  expect_error(
      [&] {
        Matrix A = view_fp8(p.a);
        A.grid.tile_cols = 64;  // grid_cols still 2: says 4 x 64 tiles would need 4 columns
        gemm(c.data(), 4, A, view_fp8(p.b, true));
      },
      "grid");
  // Scale tiles misaligned with the promotion interval: A's 96-wide tiles vs B's 128 blocks
  // (G = 96, and B's scale changes at k = 128, inside the group [96, 192)).
  expect_error(
      [&] {
        Matrix A = view_fp8(p.a);
        A.grid = numerics::make_scale_grid(Granularity::Tensor, 4, 256);
        A.grid.tile_cols = 96, A.grid.grid_cols = 3;
        std::vector<float> s(12, 1.0f);
        A.scales = s.data();
        gemm(c.data(), 4, A, view_fp8(p.b, true));
      },
      "not a multiple of the promotion interval G = 96");
  // promote_every that does not divide the 128-wide tiles.
  expect_error(
      [&] {
        GemmOptions o;
        o.promote_every = 96;
        gemm(c.data(), 4, view_fp8(p.a), view_fp8(p.b, true), o);
      },
      "not a multiple of the promotion interval");
  // The oracle needs C when beta != 0.
  std::vector<double> c64(16);
  expect_error([&] { gemm_oracle(c64.data(), nullptr, 4, view_fp8(p.a), view_fp8(p.b, true), 1.0f, 1.0f); },
               "C is null");
}

TEST(Gemm, Names) {
  EXPECT_STREQ(to_string(DType::F32), "f32");
  EXPECT_STREQ(to_string(DType::BF16), "bf16");
  EXPECT_STREQ(to_string(DType::E4M3), "e4m3");
  EXPECT_STREQ(to_string(DType::E5M2), "e5m2");
  EXPECT_STREQ(to_string(Backend::kAuto), "auto");
  EXPECT_STREQ(to_string(Backend::kReference), "reference");
  EXPECT_STREQ(to_string(Backend::kPortable), "portable");
  EXPECT_STREQ(to_string(Backend::kAvx512), "avx512");
}

}  // namespace
}  // namespace tinyseek::gemm
