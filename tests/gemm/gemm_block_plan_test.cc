// Block sizes change only the speed, never the bits (gemm.h: "the order of operations of an
// element depends only on K and G"): the same GEMMs under forced block plans (kc, mc, nc
// limits set with detail::set_block_limits_override, as TINYSEEK_GEMM_BLOCKS does) must give
// C bit for bit equal to the default plan's, on every blocked backend, 1 and 2 threads, B
// unpacked and pre-packed: FP32, BF16 and FP8 (tile128 x block128, per tensor, per row,
// MX 1x32, E5M2) in the three training orientations (Fprop, Dgrad, Wgrad with beta = 1),
// odd shapes whose K spans several kc blocks under the small plans. Each case checks that
// the plans really differ (kc groups, mc, nc from plan_blocks) so the comparison is not
// vacuous. Also: limits derived from cache sizes (Zen 4 / Zen 5 / unknown) and the
// TINYSEEK_GEMM_BLOCKS parser. A planted dependence on the plan (e.g. rounding the running
// sums differently when they cross a kc block) makes BitsDoNotDependOnTheBlockPlan fail.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "gemm_test_util.h"
#include "tinyseek/base/check.h"
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

struct Plan {
  const char* name;
  detail::BlockLimits limits;  // {0, 0, 0}: the kernel's own (derived) limits
};

// Restores the override when a check fails mid-loop.
struct OverrideGuard {
  detail::BlockLimits saved;
  explicit OverrideGuard(const detail::BlockLimits& l) : saved(detail::set_block_limits_override(l)) {}
  ~OverrideGuard() { detail::set_block_limits_override(saved); }
};

TEST(GemmBlockPlan, BitsDoNotDependOnTheBlockPlan) {
  const OperandSpec f32{DType::F32}, bf16{DType::BF16};
  const OperandSpec tile{DType::E4M3, Granularity::Tile1x128}, block{DType::E4M3, Granularity::Block128x128};
  const OperandSpec col{DType::E4M3, Granularity::Tile128x1}, col5{DType::E5M2, Granularity::Tile128x1};
  const OperandSpec tensor{DType::E4M3, Granularity::Tensor}, row{DType::E4M3, Granularity::Row};
  const OperandSpec mx{DType::E4M3, Granularity::Mx1x32}, mxc{DType::E4M3, Granularity::Mx32x1};
  const OperandSpec tile5{DType::E5M2, Granularity::Tile1x128};
  // label, M, N, K, ta, tb, A, B, alpha, beta, pad. Fprop: B transposed; Dgrad: B as
  // stored; Wgrad: A transposed, beta = 1.
  std::vector<Case> cases = {
      {"f32-fprop", 77, 133, 700, false, true, f32, f32},
      {"f32-dgrad", 45, 70, 515, false, false, f32, f32, 1.0f, 0.0f, 3},
      {"f32-wgrad", 70, 41, 300, true, false, f32, f32, 1.0f, 1.0f},
      {"bf16-fprop", 77, 133, 700, false, true, bf16, bf16},       // A read in place
      {"bf16-k-odd", 37, 90, 641, false, true, bf16, bf16, 1.0f, 0.0f, 1},  // A packed
      {"bf16-dgrad", 45, 70, 515, false, false, bf16, bf16},
      {"bf16-wgrad", 70, 41, 300, true, false, bf16, bf16, 0.5f, 1.0f},
      {"fp8-tile128", 77, 133, 700, false, true, tile, block},
      {"fp8-e5m2", 29, 70, 400, false, true, tile5, block},
      {"fp8-dgrad", 45, 100, 515, false, false, tile, block},
      {"fp8-wgrad", 70, 41, 300, true, false, col, col5, 1.0f, 1.0f},
      {"fp8-tensor", 50, 75, 600, false, true, tensor, tensor},
      {"fp8-row", 50, 75, 600, false, true, row, row},
      {"fp8-mx32", 33, 70, 450, false, true, mx, mx},
      {"fp8-mx32-wgrad", 64, 40, 224, true, false, mxc, mxc, 1.0f, 1.0f},
  };
  // Small limits: many kc blocks (running sums cross blocks), A blocks of one or three
  // MR panels, many narrow tasks; large: one kc block, one A block, one task.
  const std::vector<Plan> plans = {{"default", {}},
                                   {"kc32-mc8-nc32", {32, 8, 32}},
                                   {"kc96-mc24-nc96", {96, 24, 96}},
                                   {"kc512-mc512-nc4096", {512, 512, 4096}}};
  const int saved_threads = omp_get_max_threads();
  int seed = 0;
  for (Backend be : blocked_backends()) {
    const bool pairs = be == Backend::kAvx512;
    const int mr = pairs ? 8 : 4, nr = pairs ? detail::avx512_nr(true) : detail::portable_nr();
    // The kernels' own limits (gemm_avx512.cc: derived from the caches; gemm_portable.cc).
    const detail::BlockLimits portable_limits{256, 128, 1024, 256, 0};
    const detail::BlockLimits kernel_limits =
        pairs ? detail::derive_block_limits(detail::detected_cache_sizes(), mr, nr, portable_limits) : portable_limits;
    for (const Case& c : cases) {
      const Problem p = make_problem(c, 31000 + seed++);
      const int64_t G = promotion_interval(p.A.view(), p.B.view(), c.promote_every);
      const bool bf16_kernel = pairs && c.a.dtype != DType::F32 && c.b.dtype != DType::F32;
      const detail::KLayout kl = detail::make_klayout(c.K, G, bf16_kernel ? 2 : 1);
      std::vector<float> first;
      int64_t differ = 0;
      std::vector<std::string> seen;  // distinct (kc groups, mc, nc) of the plans
      for (const Plan& plan : plans) {
        const OverrideGuard guard(plan.limits);
        // The kc / mc / nc this plan gives (shared-B planning, 1 thread; the actual run may
        // plan per task, but the limits bound both).
        const detail::BlockLimits lim = detail::limits_for_k(detail::effective_block_limits(kernel_limits), kl, nr);
        const detail::BlockPlan bp =
            detail::plan_blocks(c.M, c.N, kl, mr, nr, lim.mc_max, lim.nc_max, lim.kc_steps, 1, {});
        const std::string key =
            std::to_string(bp.kc_groups) + "/" + std::to_string(bp.mc) + "/" + std::to_string(bp.nc);
        if (std::find(seen.begin(), seen.end(), key) == seen.end()) seen.push_back(key);
        for (const int threads : {1, 2})
          for (const bool prepacked : {false, true}) {
            omp_set_num_threads(threads);
            const std::vector<float> C = run_backend(c, p, be, prepacked);
            omp_set_num_threads(saved_threads);
            if (first.empty()) {
              first = C;
              judge(c, p, C, to_string(be), /*print=*/false);
            } else {
              differ += count_bit_differences(C, first);
            }
          }
      }
      std::string plans_seen;
      for (const std::string& s : seen) plans_seen += " " + s;
      std::printf("  %-8s %-15s M %3lld N %3lld K %3lld G %3lld: %zu plans x 1,2 threads x unpacked/prepacked, "
                  "kc-groups/mc/nc seen:%s; %lld outputs differ from the default plan's bits\n",
                  to_string(be), c.label.c_str(), static_cast<long long>(c.M), static_cast<long long>(c.N),
                  static_cast<long long>(c.K), static_cast<long long>(G), plans.size(), plans_seen.c_str(),
                  static_cast<long long>(differ));
      EXPECT_GE(seen.size(), 3u) << c.label << ": the forced plans should give at least 3 distinct block plans";
      EXPECT_EQ(differ, 0) << to_string(be) << " " << c.label << ": the block plan changed the bits";
    }
  }
}

TEST(GemmBlockPlan, LimitsFollowTheCaches) {
  const detail::BlockLimits fallback{256, 128, 1024, 256, 0};
  // Zen 4: 32 KiB L1d, 1 MiB L2; Zen 5: 48 KiB L1d, 1 MiB L2 (the limits tuned there).
  const detail::BlockLimits zen4 = detail::derive_block_limits({32 << 10, 1 << 20}, 8, 32, fallback);
  const detail::BlockLimits zen5 = detail::derive_block_limits({48 << 10, 1 << 20}, 8, 32, fallback);
  const detail::BlockLimits none = detail::derive_block_limits({0, 0}, 8, 32, fallback);
  const detail::CacheSizes here = detail::detected_cache_sizes();
  const detail::BlockLimits mine = detail::derive_block_limits(here, 8, 32, fallback);
  auto show = [](const char* name, const detail::BlockLimits& b) {
    std::printf("%-28s kc %lld kc_one %lld mc %lld nc %lld acc %lld KiB\n", name, (long long)b.kc_steps,
                (long long)b.kc_one, (long long)b.mc_max, (long long)b.nc_max, (long long)b.acc_bytes >> 10);
  };
  show("zen4 (32 KiB, 1 MiB)", zen4);
  show("zen5 (48 KiB, 1 MiB)", zen5);
  show("unknown caches", none);
  std::printf("this CPU: L1d %lld, L2 %lld bytes\n", (long long)here.l1d, (long long)here.l2);
  show("this CPU", mine);
  EXPECT_EQ(zen5.kc_steps, 256);
  EXPECT_EQ(zen5.mc_max, 128);
  EXPECT_EQ(zen4.kc_steps, 160);  // 2/3 of 32 KiB in 128-byte steps, a multiple of 32
  EXPECT_EQ(zen4.kc_one, 256);    // a 32 KiB micro-panel
  EXPECT_EQ(zen4.mc_max, 128);
  EXPECT_EQ(zen4.acc_bytes, 256 << 10);
  EXPECT_EQ(none.kc_steps, fallback.kc_steps);
  EXPECT_EQ(none.mc_max, fallback.mc_max);
  EXPECT_EQ(none.nc_max, fallback.nc_max);
  EXPECT_EQ(none.acc_bytes, 0);
  // Per K (BF16 pairs, G = 128: 64 steps per group): K = 512 fits in kc_one (one block of
  // 4 groups); K = 1024 is cut at 160 steps (2 groups) and nc is capped to 512 columns.
  const detail::BlockLimits k512 = detail::limits_for_k(zen4, detail::make_klayout(512, 128, 2), 32);
  const detail::BlockLimits k1024 = detail::limits_for_k(zen4, detail::make_klayout(1024, 128, 2), 32);
  EXPECT_EQ(k512.kc_steps, 256);
  EXPECT_EQ(k512.nc_max, 1024);
  EXPECT_EQ(k1024.kc_steps, 160);
  EXPECT_EQ(k1024.nc_max, 512);
  // A forced kc cuts K at kc even when it would fit in one block; a forced nc drops the cap.
  const detail::BlockLimits saved = detail::set_block_limits_override({64, 0, 2048});
  const detail::BlockLimits forced = detail::effective_block_limits(zen4);
  detail::set_block_limits_override(saved);
  EXPECT_EQ(detail::limits_for_k(forced, detail::make_klayout(512, 128, 2), 32).kc_steps, 64);
  EXPECT_EQ(detail::limits_for_k(forced, detail::make_klayout(1024, 128, 2), 32).nc_max, 2048);
}

TEST(GemmBlockPlan, EnvironmentSyntax) {
  const detail::BlockLimits b = detail::parse_block_limits("kc=128,nc=512");
  EXPECT_EQ(b.kc_steps, 128);
  EXPECT_EQ(b.mc_max, 0);
  EXPECT_EQ(b.nc_max, 512);
  const detail::BlockLimits none = detail::parse_block_limits(nullptr);
  EXPECT_EQ(none.kc_steps + none.mc_max + none.nc_max, 0);
  for (const char* bad : {"kc=0", "kc=12x", "mc", "xx=4", "kc=128,,mc=8", "nc=-1"}) {
    try {
      detail::parse_block_limits(bad);
      ADD_FAILURE() << "TINYSEEK_GEMM_BLOCKS='" << bad << "' was accepted";
    } catch (const Error& e) {
      std::printf("'%s' rejected: %s\n", bad, e.what());
      EXPECT_NE(e.hint().find("kc=<k-steps>"), std::string::npos) << e.hint();
    }
  }
}

}  // namespace
}  // namespace tinyseek::gemm
