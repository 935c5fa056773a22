// Pre-packed weights (pack_b) at training shapes: compact FP8 panels are widened to BF16
// pairs either per (A block, panel) into a per-thread buffer, or once per gemm() call into
// a buffer all threads share when the call has enough A row blocks (run_blocked's
// wide_once: >= 2 blocks on 1 thread, >= 4 per thread on more). Both must give the bits of
// the unpacked B and of the BF16-pair panels, for Fprop (B = Wᵀ), Dgrad (B = W, beta = 1),
// E5M2, several kc blocks, 1 and 2 threads.
#include <gtest/gtest.h>
#include <omp.h>

#include <cstdio>
#include <vector>

#include "gemm_test_util.h"
#include "tinyseek/gemm/gemm_blocked.h"
#include "tinyseek/numerics/simd.h"

namespace tinyseek::gemm {
namespace {

using namespace gemm_test;

// Row blocks of run_blocked's plan for a pre-packed B on the AVX-512 BF16 kernel (MR 8,
// NR 32, mc_max 128, nc_max 1024, kc 256 steps: the constants of gemm_avx512.cc). Only
// the evidence printed below uses it; the bits are checked whatever the plan.
int64_t row_blocks(int64_t M, int64_t N, int64_t K, int threads) {
  const detail::KLayout kl = detail::make_klayout(K, 128, 2);
  detail::PackCosts costs;
  costs.a = 10;
  return detail::plan_blocks(M, N, kl, 8, 32, 128, 1024, 256, threads, costs).blocks_m;
}

TEST(GemmPrepacked, CompactFp8WidenedOncePerCallGivesTheSameBits) {
  if (!cpu_has_avx512_bf16()) GTEST_SKIP() << "compact FP8 panels exist only for the AVX-512 kernels";
  const OperandSpec tile{DType::E4M3, Granularity::Tile1x128}, block{DType::E4M3, Granularity::Block128x128};
  const OperandSpec tile5{DType::E5M2, Granularity::Tile1x128}, block5{DType::E5M2, Granularity::Block128x128};
  const std::vector<Case> cases = {
      {"fprop-k256", 1030, 96, 256, false, true, tile, block},            // 9 row blocks
      {"fprop-k160", 520, 70, 160, false, true, tile5, block5},          // K tail group, N tail
      {"dgrad-beta", 530, 64, 300, false, false, tile, block, 1.0f, 1.0f},  // B as stored, accumulate
      {"fprop-2kc", 260, 40, 1100, false, true, tile, block, 0.5f, 0.25f},  // 3 kc blocks, 3 row blocks
      {"fprop-small", 100, 64, 256, false, true, tile, block},           // one row block: per block
  };
  const int saved_threads = omp_get_max_threads();
  int64_t differ = 0, once_runs = 0, per_block_runs = 0;
  int seed = 0;
  for (const Case& c : cases) {
    const Problem p = make_problem(c, 31000 + seed++);
    GemmOptions opt = case_options(c, Backend::kAvx512);
    const int64_t G = promotion_interval(p.A.view(), p.B.view(), c.promote_every);
    opt.compact_fp8 = true;
    const PackedB compact = pack_b(p.B.view(), opt, G);
    opt.compact_fp8 = false;
    const PackedB wide = pack_b(p.B.view(), opt, G);
    ASSERT_TRUE(compact.fp8_codes && !wide.fp8_codes) << c.label;
    const std::vector<float> want = run_backend(c, p, Backend::kAvx512);  // unpacked B
    judge(c, p, want, "avx512", /*print=*/true);
    for (const int threads : {1, 2}) {
      const bool once = row_blocks(c.M, c.N, c.K, threads) >= (threads == 1 ? 2 : 4 * threads);
      (once ? once_runs : per_block_runs) += 1;
      omp_set_num_threads(threads);
      int64_t d = 0;
      for (const PackedB* packed : {&compact, &wide}) {
        std::vector<float> C = p.C0;
        gemm(C.data(), p.ldc, p.A.view(), *packed, opt);
        d += count_bit_differences(C, want);
      }
      omp_set_num_threads(saved_threads);
      std::printf("  %-12s %d thread(s), %lld row blocks, compact B widened %s: compact and BF16-pair panels vs "
                  "unpacked B: %lld of %lld outputs differ in bits\n",
                  c.label.c_str(), threads, static_cast<long long>(row_blocks(c.M, c.N, c.K, threads)),
                  once ? "once per call" : "per A block", static_cast<long long>(d),
                  static_cast<long long>(2 * c.M * c.N));
      differ += d;
    }
  }
  EXPECT_EQ(differ, 0);
  // Both widening paths ran at least twice (else the cases no longer test what they claim).
  EXPECT_GE(once_runs, 2);
  EXPECT_GE(per_block_runs, 2);
}

}  // namespace
}  // namespace tinyseek::gemm
