// `tinyseek bench step` per precision recipe: every recipe runs with what `train --recipe`
// would use (its precision map, BF16 optimizer moments for fp8) and reports MFU against the
// peak of the kernels its GEMMs run on; `--recipes` compares them side by side, one child
// process each, with tokens/s ratios. Tiny config (tests/reference/configs/mtp2.json: MoE
// layers, two MTP depths) on one thread (tiny steps on two threads of a loaded 2-core machine
// spend most of their time in OpenMP barriers), so each run takes well under a second.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "tinyseek/base/check.h"
#include "tinyseek/bench/step_bench.h"
#include "tinyseek/numerics/simd.h"

#include "../common/run_cli.h"

namespace {

using namespace tinyseek::bench;
using tinyseek::testing::CliRun;
using tinyseek::testing::run_cli;

std::string config_path(const std::string& name) {
  return std::string(TINYSEEK_SOURCE_DIR) + "/tests/reference/configs/" + name + ".json";
}
bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

StepBenchResult tiny_run(const std::string& recipe) {
  StepBenchOptions o;
  o.config_path = config_path("mtp2");
  o.recipe = recipe;
  o.batch = 2;
  o.seq = 16;
  o.steps = 1;
  o.warmup = 1;  // first_loss from the warm-up step, last_loss after one AdamW update
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  try {
    StepBenchResult r = run_step_bench(o);
    omp_set_num_threads(threads);
    return r;
  } catch (...) {
    omp_set_num_threads(threads);
    throw;
  }
}

TEST(StepBenchRecipes, EveryRecipeRunsWithItsMomentsAndPeak) {
  struct Want {
    const char* recipe;
    const char* moments;
    const char* peak_kind;
  };
  const Want wants[] = {{"fp32", "fp32", "fp32_fma"}, {"bf16", "fp32", "bf16_dot"}, {"fp8", "bf16", "bf16_dot"}};
  double fp32_first = 0, fp32_last = 0;
  for (const Want& w : wants) {
    const StepBenchResult r = tiny_run(w.recipe);
    std::printf("[%s] recipe %s, moments %s, %.0f tokens/s, MFU %.5f of %s %.0f GFLOP/s, peak RSS %.1f MiB, loss "
                "%.6f -> %.6f\n",
                w.recipe, r.recipe.c_str(), r.moments.c_str(), r.tokens_per_s, r.mfu, r.peak_kind.c_str(),
                r.peak_gflops, r.peak_rss_mb, r.first_loss, r.last_loss);
    EXPECT_EQ(r.recipe, w.recipe);
    EXPECT_EQ(r.moments, w.moments);
    EXPECT_EQ(r.peak_kind, w.peak_kind);
    EXPECT_GT(r.tokens_per_s, 0);
    EXPECT_NEAR(r.tokens_per_s, 32.0 / (r.ms_per_step * 1e-3), 1e-6 * r.tokens_per_s);
    EXPECT_EQ(r.threads, 1);
    if (tinyseek::cpu_has_avx512_bf16()) {
      EXPECT_GT(r.peak_gflops, 0);
      EXPECT_GT(r.mfu, 0);
      EXPECT_LT(r.mfu, 1);
    }
    EXPECT_GT(r.peak_rss_mb, 1);
    EXPECT_NE(r.first_loss, r.last_loss);  // the optimizer stepped
    if (std::string(w.recipe) == "fp32") {
      fp32_first = r.first_loss;
      fp32_last = r.last_loss;
    } else {
      // Same weights and tokens, other numerics: close to FP32, but not the same bits (the
      // recipe really reached the Linears).
      EXPECT_NE(r.first_loss, fp32_first) << w.recipe << " ran the FP32 path";
      EXPECT_NEAR(r.first_loss, fp32_first, 0.02 * fp32_first) << w.recipe;
    }
  }
  // No recipe: the config's own precision section (none in mtp2.json: fp32), bit for bit.
  const StepBenchResult plain = tiny_run("");
  EXPECT_EQ(plain.recipe, "fp32");
  EXPECT_EQ(plain.last_loss, fp32_last);
  // A recipe with overrides, as precision_from_spec reads it.
  const StepBenchResult fp8_fp32_moments = tiny_run("fp8:precision.optimizer_moments=fp32");
  EXPECT_EQ(fp8_fp32_moments.recipe, "fp8");
  EXPECT_EQ(fp8_fp32_moments.moments, "fp32");
  EXPECT_THROW(tiny_run("fp9"), tinyseek::Error);
}

TEST(BenchStepCli, RecipeJsonHasTheFields) {
  const CliRun r = run_cli("bench step --json --config " + config_path("mtp2") +
                           " --recipe fp8 --batch 2 --seq 16 --steps 1 --warmup 0", "OMP_NUM_THREADS=1");
  ASSERT_EQ(r.status, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  std::printf("%s\n", r.out.c_str());
  for (const char* key : {"recipe", "recompute", "tokens_per_s", "mfu", "peak_kind", "peak_gflops", "peak_rss_mb",
                          "ms_per_step", "ms_forward_backward", "ms_optimizer", "cpu_ms_per_step",
                          "saved_activation_mb", "moments", "timed", "threads", "simd", "model_gflop_per_step"})
    EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_EQ(j["recipe"], "fp8");
  EXPECT_EQ(j["moments"], "bf16");
  EXPECT_EQ(j["peak_kind"], "bf16_dot");
  EXPECT_TRUE(contains(j["timed"].get<std::string>(), "bf16 moments")) << j["timed"];
  EXPECT_GT(j["tokens_per_s"].get<double>(), 0);
}

TEST(BenchStepCli, RecipesSideBySideWithRatios) {
  const std::string args = "bench step --config " + config_path("mtp2") +
                           " --recipes fp32,bf16,fp8 --batch 2 --seq 16 --steps 1 --warmup 0";
  const CliRun r = run_cli(args + " --json", "OMP_NUM_THREADS=1");
  ASSERT_EQ(r.status, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  ASSERT_TRUE(j.contains("runs") && j.contains("ratios")) << r.out;
  ASSERT_EQ(j["runs"].size(), 3u);
  const char* recipes[] = {"fp32", "bf16", "fp8"};
  for (size_t i = 0; i < 3; ++i) {
    const auto& run = j["runs"][i];
    std::printf("  %s: %.0f tokens/s, %s, peak RSS %.1f MiB, moments %s\n", recipes[i],
                run["tokens_per_s"].get<double>(), run["peak_kind"].get<std::string>().c_str(),
                run["peak_rss_mb"].get<double>(), run["moments"].get<std::string>().c_str());
    EXPECT_EQ(run["recipe"], recipes[i]);
    EXPECT_GT(run["tokens_per_s"].get<double>(), 0);
    EXPECT_GT(run["peak_rss_mb"].get<double>(), 1);  // each child's own
    EXPECT_EQ(run["rounds_tokens_per_s"].size(), 1u);
  }
  // Every later recipe over every earlier one: bf16/fp32, fp8/fp32, fp8/bf16.
  ASSERT_EQ(j["ratios"].size(), 3u);
  const int pairs[3][2] = {{1, 0}, {2, 0}, {2, 1}};
  for (size_t k = 0; k < 3; ++k) {
    const auto& q = j["ratios"][k];
    EXPECT_EQ(q["numerator"], recipes[pairs[k][0]]);
    EXPECT_EQ(q["denominator"], recipes[pairs[k][1]]);
    const double want = j["runs"][pairs[k][0]]["tokens_per_s"].get<double>() /
                        j["runs"][pairs[k][1]]["tokens_per_s"].get<double>();
    EXPECT_NEAR(q["tokens_per_s_ratio"].get<double>(), want, 1e-3 * want) << q.dump();
  }
  const CliRun table = run_cli(args, "OMP_NUM_THREADS=1");
  ASSERT_EQ(table.status, 0) << table.err;
  std::printf("%s", table.out.c_str());
  EXPECT_TRUE(contains(table.out, "fp8 / bf16") && contains(table.out, "fp8 / fp32")) << table.out;
  EXPECT_TRUE(contains(table.out, "bf16_dot") && contains(table.out, "fp32_fma")) << table.out;
}

TEST(BenchStepCli, BadRecipesFailBeforeRunning) {
  const CliRun typo = run_cli("bench step --config " + config_path("mtp2") + " --recipes fp32,fp9 --steps 1");
  EXPECT_NE(typo.status, 0);
  EXPECT_TRUE(contains(typo.err, "fp9") && contains(typo.err, "fp32, bf16, fp8")) << typo.err;
  EXPECT_TRUE(typo.out.empty()) << typo.out;
  const CliRun both =
      run_cli("bench step --config " + config_path("mtp2") + " --recipe fp8 --recipes fp32,fp8 --steps 1");
  EXPECT_NE(both.status, 0);
  EXPECT_TRUE(contains(both.err, "--recipe or --recipes")) << both.err;
}

}  // namespace
