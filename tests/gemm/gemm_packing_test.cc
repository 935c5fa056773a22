// The blocked kernels' packing and driver paths give identical bits: B packed by each task
// for its own columns or once and shared (per-task limit forced both ways), A read in place
// (BF16/FP32 rows) or packed (odd ld, odd K, FP8, transposed), FP8 widened
// with AVX512-VBMI byte lookups or without, A blocks packed as one run (dense rows) or row by
// row (padded rows, several kc blocks). Every path's C must equal the first one's bit for bit
// and lie within the oracle's bound. Also checks the per-task block plans: they cover C
// exactly and split the multiply-adds evenly over two threads.
#include <gtest/gtest.h>
#include <omp.h>

#include <cstdio>
#include <string>
#include <vector>

#include "gemm_test_util.h"
#include "tinyseek/gemm/gemm_blocked.h"
#include "tinyseek/numerics/simd.h"

namespace tinyseek::gemm {
namespace {

using namespace gemm_test;

std::vector<Backend> blocked_backends() {
  std::vector<Backend> b = {Backend::kPortable};
  if (cpu_has_avx512_bf16()) b.push_back(Backend::kAvx512);
  return b;
}

// One way of running the same GEMM.
struct Path {
  std::string name;
  size_t per_task_limit;  // bytes of packed B packed per task (0: always shared)
  bool vbmi;
};

TEST(GemmPacking, EveryPathGivesTheSameBits) {
  const OperandSpec bf16{DType::BF16}, f32{DType::F32};
  const OperandSpec tile{DType::E4M3, Granularity::Tile1x128}, block{DType::E4M3, Granularity::Block128x128};
  const OperandSpec tile5{DType::E5M2, Granularity::Tile1x128}, col{DType::E5M2, Granularity::Tile128x1};
  // label, M, N, K, ta, tb, A, B, alpha, beta, pad (ld = cols + pad). Fprop unless noted.
  std::vector<Case> cases = {
      {"bf16-direct", 70, 100, 256, false, true, bf16, bf16},            // A read in place, one kc block
      {"bf16-ld-odd", 70, 100, 256, false, true, bf16, bf16, 1.0f, 0.0f, 1},  // odd ld: packed
      {"bf16-k-odd", 70, 100, 255, false, true, bf16, bf16},             // odd K: packed
      {"bf16-long", 37, 100, 700, false, true, bf16, bf16, 1.0f, 0.0f, 2},    // in place, several kc blocks
      {"f32-direct", 70, 100, 300, false, true, f32, f32},
      {"fp8-run", 70, 100, 256, false, true, tile, block},               // A block = one run
      {"fp8-rows", 70, 100, 256, false, true, tile, block, 1.0f, 0.0f, 3},    // padded rows
      {"fp8-long", 70, 100, 700, false, true, tile5, block},             // several kc blocks, K tail
      {"fp8-dgrad", 45, 100, 300, false, false, tile, block},           // B not transposed
      {"fp8-wgrad", 70, 100, 300, true, false, col, col, 1.0f, 1.0f},    // A transposed
      {"fp8-wide", 33, 1030, 520, false, true, tile, block},            // packed B > 1 MiB
  };
  const int saved_threads = omp_get_max_threads();
  int seed = 0;
  for (Backend be : blocked_backends()) {
    std::vector<Path> paths = {{"default", size_t{1} << 20, true}, {"shared", 0, true}, {"per-task", SIZE_MAX, true}};
    if (be == Backend::kAvx512) paths.push_back({"no-vbmi", SIZE_MAX, false});
    for (const Case& c : cases) {
      const Problem p = make_problem(c, 21000 + seed++);
      std::vector<float> first;
      int64_t differ = 0;
      for (const Path& path : paths)
        for (const int threads : {1, 2}) {
          const size_t limit = detail::set_per_task_b_limit(path.per_task_limit);
          const bool vbmi = detail::avx512_set_vbmi(path.vbmi);
          omp_set_num_threads(threads);
          const std::vector<float> C = run_backend(c, p, be);
          omp_set_num_threads(saved_threads);
          detail::avx512_set_vbmi(vbmi);
          detail::set_per_task_b_limit(limit);
          if (first.empty()) {
            first = C;
            judge(c, p, C, to_string(be), /*print=*/true);
          } else {
            differ += count_bit_differences(C, first);
          }
        }
      std::printf("  %-8s %-11s: %zu paths x 1, 2 threads: %lld outputs differ from the first path's bits\n",
                  to_string(be), c.label.c_str(), paths.size(), static_cast<long long>(differ));
      EXPECT_EQ(differ, 0) << to_string(be) << " " << c.label;
    }
  }
}

// Compact FP8 panels (GemmOptions::compact_fp8, the default; AVX-512 only): pack_b keeps FP8
// codes and gemm() widens each kc block per panel. Same bits as the BF16-pair panels and as
// the unpacked B, for Fprop (B transposed), Dgrad (B as stored), MX 1x32 groups, odd K, K
// tails and several kc blocks, N not a multiple of the panel width, 1 and 2 threads, with
// and without VBMI; the panels take exactly half the bytes (the scales are unchanged).
TEST(GemmPacking, CompactFp8PanelsGiveTheSameBitsInHalfTheBytes) {
  if (!cpu_has_avx512_bf16()) GTEST_SKIP() << "compact FP8 panels exist only for the AVX-512 kernels";
  const OperandSpec tile{DType::E4M3, Granularity::Tile1x128}, block{DType::E4M3, Granularity::Block128x128};
  const OperandSpec tile5{DType::E5M2, Granularity::Tile1x128}, block5{DType::E5M2, Granularity::Block128x128};
  const OperandSpec mx{DType::E4M3, Granularity::Mx1x32};
  std::vector<Case> cases = {
      {"fprop", 70, 100, 256, false, true, tile, block},
      {"fprop-long", 37, 260, 1100, false, true, tile5, block5, 1.0f, 0.0f, 3},  // 3 kc blocks, K tail
      {"fprop-k-odd", 20, 33, 255, false, true, tile, block},                   // last pair half zero
      {"fprop-mx", 40, 64, 320, false, true, mx, mx},                            // G = 32
      {"dgrad", 45, 100, 300, false, false, tile, block},                        // B as stored
      {"dgrad-wide", 130, 1030, 520, false, false, tile, block, 0.5f, 1.0f},     // > 1 MiB, beta
  };
  const int saved_threads = omp_get_max_threads();
  int seed = 0;
  for (const Case& c : cases) {
    const Problem p = make_problem(c, 23000 + seed++);
    GemmOptions opt = case_options(c, Backend::kAvx512);
    const int64_t G = promotion_interval(p.A.view(), p.B.view(), c.promote_every);
    opt.compact_fp8 = false;
    const PackedB wide = pack_b(p.B.view(), opt, G);
    opt.compact_fp8 = true;
    const PackedB compact = pack_b(p.B.view(), opt, G);
    ASSERT_TRUE(compact.fp8_codes && !wide.fp8_codes) << c.label;
    EXPECT_EQ(compact.panels.size(), 0u);
    EXPECT_EQ(compact.codes.size() * 2, wide.panels.size() * sizeof(uint32_t)) << c.label;
    EXPECT_EQ(compact.scales.size(), wide.scales.size()) << c.label;
    const std::vector<float> want = run_backend(c, p, Backend::kAvx512);  // unpacked B
    judge(c, p, want, "avx512", /*print=*/true);
    int64_t differ = 0;
    for (const bool vbmi_on : {true, false})
      for (const int threads : {1, 2}) {
        const bool vbmi = detail::avx512_set_vbmi(vbmi_on);
        omp_set_num_threads(threads);
        for (const PackedB* packed : {&compact, &wide}) {
          std::vector<float> C = p.C0;
          gemm(C.data(), p.ldc, p.A.view(), *packed, opt);
          differ += count_bit_differences(C, want);
        }
        omp_set_num_threads(saved_threads);
        detail::avx512_set_vbmi(vbmi);
      }
    std::printf("  compact %-11s: packed B %zu bytes (BF16 pairs %zu, scales %zu); compact and BF16-pair panels x "
                "VBMI on/off x 1, 2 threads vs unpacked: %lld outputs differ in bits\n",
                c.label.c_str(), compact.bytes(), wide.bytes(), compact.scales.size() * sizeof(float),
                static_cast<long long>(differ));
    EXPECT_EQ(differ, 0) << c.label;
  }
  // Only FP8 B on AVX-512 is compact: BF16 B and the portable backend keep their panels.
  const Problem p = make_problem(cases[0], 23100, false);
  GemmOptions opt = case_options(cases[0], Backend::kPortable);
  opt.compact_fp8 = true;
  EXPECT_FALSE(pack_b(p.B.view(), opt).fp8_codes);
  opt.backend = Backend::kAvx512;
  const Matrix b = p.B.view();
  EXPECT_FALSE(pack_b(view_bf16(std::vector<uint16_t>(b.rows * b.cols).data(), b.rows, b.cols, b.cols, true), opt).fp8_codes);
  opt.compact_fp8 = false;
  EXPECT_FALSE(pack_b(b, opt).fp8_codes);
  EXPECT_TRUE(GemmOptions{}.compact_fp8) << "compact FP8 panels are the default";
}

// A per-task plan covers C with whole tasks (mc, nc multiples of the micro-tile, no more
// blocks than needed) and, on two threads, gives neither thread more than 55% of the
// multiply-adds (what the expert-sized GEMMs rely on to use both cores).
TEST(GemmPacking, PerTaskPlansCoverCAndBalanceTwoThreads) {
  const int64_t shapes[][3] = {{512, 256, 256}, {1024, 512, 256}, {4096, 256, 256}, {300, 257, 129},
                               {64, 4096, 128}, {9, 1000, 64},    {1, 300, 129},    {520, 40, 512}};
  for (const auto& s : shapes)
    for (const double a_cost : {0.0, 10.0}) {
      const int64_t M = s[0], N = s[1], K = s[2];
      const detail::KLayout kl = detail::make_klayout(K, 128, 2);
      detail::PackCosts costs;
      // As run_avx512 sets them: BF16 A read in place (2 bytes per element), or FP8 A packed.
      costs.a = a_cost, costs.b = 20, costs.remote_a = costs.remote_b = a_cost == 0 ? 20 : 10;
      const detail::BlockPlan p = detail::plan_blocks(M, N, kl, 8, 32, 128, 1024, 256, 2, costs);
      EXPECT_EQ(p.mc % 8, 0);
      EXPECT_EQ(p.nc % 32, 0);
      EXPECT_LE(p.nc, 1024);
      EXPECT_TRUE(p.mc_sub > 0 && p.mc_sub <= 128 && p.mc_sub % 8 == 0);
      EXPECT_EQ(p.blocks_m, (M + p.mc - 1) / p.mc);
      EXPECT_EQ(p.blocks_n, (N + p.nc - 1) / p.nc);
      EXPECT_LT((p.blocks_m - 1) * p.mc, M);
      EXPECT_LT((p.blocks_n - 1) * p.nc, N);
      // Multiply-adds per thread when the tasks are split evenly in order (as on a quiet machine).
      const int64_t tasks = p.tasks();
      double share[2] = {0, 0};
      for (int t = 0; t < 2; ++t)
        for (int64_t task = tasks * t / 2; task < tasks * (t + 1) / 2; ++task)
          share[t] += static_cast<double>(std::min(p.mc, M - task / p.blocks_n * p.mc)) *
                      static_cast<double>(std::min(p.nc, N - task % p.blocks_n * p.nc));
      const double larger = std::max(share[0], share[1]) / (share[0] + share[1]);
      std::printf("  %5lldx%5lldx%4lld A cost %2.0f: tasks %lld x %lld of %lld x %lld (A blocks of %lld rows), "
                  "larger thread share %.3f\n",
                  (long long)M, (long long)N, (long long)K, a_cost, (long long)p.blocks_m, (long long)p.blocks_n,
                  (long long)p.mc, (long long)p.nc, (long long)p.mc_sub, larger);
      if (M * N >= 64 * 64) {
        EXPECT_LE(larger, 0.55) << M << "x" << N << "x" << K;
      }
    }
}

}  // namespace
}  // namespace tinyseek::gemm
