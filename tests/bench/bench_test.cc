// Tests of the GEMM benchmark: the peak microbenchmarks, argument parsing, the format ->
// scale-layout mapping, that the benchmark multiplies what it claims (error of its output
// against an FP64 product, per format), and `tinyseek bench gemm` end to end (JSON keys
// and sane values, human table, bad arguments).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "tinyseek/base/check.h"
#include "tinyseek/bench/gemm_bench.h"
#include "tinyseek/bench/peak.h"
#include "tinyseek/numerics/simd.h"

#include "../common/run_cli.h"

namespace {

using namespace tinyseek::bench;
using tinyseek::numerics::Granularity;

using tinyseek::testing::CliRun;
using tinyseek::testing::run_cli;
using tinyseek::testing::slurp;

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// Expected output error of the benchmark's product vs the FP64 product of the FP32 inputs,
// max |C - exact| / rms(exact): FP32 only rounds sums (~1e-7); BF16 inputs carry 2^-9
// relative rounding; E4M3 2^-4. The lower bounds prove the operands really were converted.
struct ErrRange {
  double lo, hi;
};
ErrRange expected_rel_err(const std::string& format) {
  if (format == "fp32") return {0.0, 1e-5};
  if (format == "bf16") return {1e-4, 3e-2};
  return {1e-2, 0.4};
}

TEST(Peak, MicrobenchmarksReturnPlausiblePeaks) {
  const PeakFlops p = measure_peaks(2, 0.005);
  if (!tinyseek::cpu_has_avx512_bf16()) {
    EXPECT_FALSE(p.fp32_fma_gflops.has_value());
    EXPECT_FALSE(p.bf16_dot_gflops.has_value());
    EXPECT_FALSE(p.note.empty());
    GTEST_SKIP() << "no AVX512-BF16 on this CPU: peaks absent, note: " << p.note;
  }
  ASSERT_TRUE(p.fp32_fma_gflops && p.bf16_dot_gflops);
  std::printf("peak with %d threads: FP32 FMA %.1f GFLOP/s, BF16 dot %.1f GFLOP/s (ratio %.2f)\n", p.threads,
              *p.fp32_fma_gflops, *p.bf16_dot_gflops, *p.bf16_dot_gflops / *p.fp32_fma_gflops);
  EXPECT_GE(p.threads, 1);
  // Any AVX-512 core does at least one zmm FMA per cycle at >= 1 GHz: 32 GFLOP/s per thread.
  EXPECT_GT(*p.fp32_fma_gflops, 16.0 * p.threads);
  EXPECT_LT(*p.fp32_fma_gflops, 2000.0 * p.threads);
  // vdpbf16ps does twice the flops of vfmadd231ps per instruction at the same or half the
  // rate on every AVX512-BF16 core (Cooper Lake, Sapphire Rapids, Zen 4/5).
  EXPECT_GT(*p.bf16_dot_gflops, 0.8 * *p.fp32_fma_gflops);
  EXPECT_LT(*p.bf16_dot_gflops, 2.5 * *p.fp32_fma_gflops);
}

TEST(GemmBenchArgs, ParsesShapesAndFormats) {
  const auto s = parse_gemm_shapes("4096x2048x512, 1x2x3");
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].m, 4096);
  EXPECT_EQ(s[0].n, 2048);
  EXPECT_EQ(s[0].k, 512);
  EXPECT_EQ(s[1].m, 1);
  EXPECT_EQ(s[1].n, 2);
  EXPECT_EQ(s[1].k, 3);
  EXPECT_DOUBLE_EQ(s[0].flops(), 2.0 * 4096 * 2048 * 512);
  for (const char* bad : {"64x48", "0x4x4", "4x4x-1", "4x4x4x4", "axbxc", "4x4x4,", "", "4 x4x"})
    EXPECT_THROW(parse_gemm_shapes(bad), tinyseek::Error) << "'" << bad << "'";

  const auto f = parse_gemm_formats("fp32,bf16,fp8-tile128,fp8-tensor,fp8-row,fp8-mx32");
  ASSERT_EQ(f.size(), 6u);
  for (size_t i = 0; i < f.size(); ++i) EXPECT_EQ(f[i], all_gemm_formats()[i]);
  for (GemmFormat g : all_gemm_formats()) EXPECT_EQ(parse_gemm_format(to_string(g)), g);
  EXPECT_THROW(parse_gemm_formats("fp16"), tinyseek::Error);
  EXPECT_THROW(parse_gemm_formats("fp32,,bf16"), tinyseek::Error);

  const auto d = default_gemm_shapes();
  ASSERT_EQ(d.size(), 6u);
  EXPECT_EQ(d[0].m, 4096);
  EXPECT_EQ(d[0].n, 2048);
  EXPECT_EQ(d[0].k, 512);
  EXPECT_EQ(d[4].m, 512);
  EXPECT_EQ(d[4].n, 256);
  EXPECT_EQ(d[4].k, 256);
}

TEST(GemmBenchArgs, Fp8LayoutsAndPeaks) {
  auto check = [](GemmFormat f, Granularity a, Granularity w) {
    const Fp8Layout l = fp8_layout(f);
    EXPECT_EQ(l.a, a) << to_string(f);
    EXPECT_EQ(l.w, w) << to_string(f);
  };
  check(GemmFormat::Fp8Tile128, Granularity::Tile1x128, Granularity::Block128x128);
  check(GemmFormat::Fp8Tensor, Granularity::Tensor, Granularity::Tensor);
  check(GemmFormat::Fp8Row, Granularity::Row, Granularity::Row);
  check(GemmFormat::Fp8Mx32, Granularity::Mx1x32, Granularity::Mx1x32);
  EXPECT_THROW(fp8_layout(GemmFormat::Bf16), tinyseek::Error);

  PeakFlops peak;
  peak.fp32_fma_gflops = 400.0;
  peak.bf16_dot_gflops = 800.0;
  GemmBenchRow row;
  row.gflops = 200.0;
  row.format = GemmFormat::Fp32;
  EXPECT_DOUBLE_EQ(*percent_of_peak(row, peak), 50.0);
  for (GemmFormat f : {GemmFormat::Bf16, GemmFormat::Fp8Tile128, GemmFormat::Fp8Mx32}) {
    row.format = f;
    EXPECT_DOUBLE_EQ(*percent_of_peak(row, peak), 25.0) << to_string(f);
  }
  peak.bf16_dot_gflops.reset();
  EXPECT_FALSE(percent_of_peak(row, peak).has_value());
}

// In process, every format on an odd shape (K not a multiple of 32 or 128): the output of
// the timed GEMM matches the FP64 product within each format's rounding.
TEST(GemmBench, EveryFormatComputesTheLinearForward) {
  GemmBenchOptions opt;
  opt.shapes = {{37, 29, 160}};
  opt.repeats = 1;
  opt.warmup = 0;
  opt.min_seconds = 0;
  int calls = 0;
  const auto rows = run_gemm_bench(opt, [&](const GemmBenchRow&) { ++calls; });
  ASSERT_EQ(rows.size(), all_gemm_formats().size());
  EXPECT_EQ(calls, static_cast<int>(rows.size()));
  for (const auto& r : rows) {
    const ErrRange e = expected_rel_err(to_string(r.format));
    std::printf("%-12s %lldx%lldx%lld: %.2f GFLOP/s, %.2f with quantize, rel err %.3e (expected in [%g, %g])\n",
                to_string(r.format), static_cast<long long>(r.shape.m), static_cast<long long>(r.shape.n),
                static_cast<long long>(r.shape.k), r.gflops, r.gflops_with_quantize, r.rel_err, e.lo, e.hi);
    EXPECT_GT(r.gflops, 0);
    EXPECT_GT(r.gflops_with_quantize, 0);
    EXPECT_GE(r.rel_err, e.lo) << to_string(r.format);
    EXPECT_LE(r.rel_err, e.hi) << to_string(r.format);
  }
}

TEST(BenchGemmCli, JsonHasDocumentedKeysAndSaneValues) {
  const CliRun r = run_cli("bench gemm --json --shapes 64x48x40 --formats fp32,bf16,fp8-tile128 --repeats 1");
  ASSERT_EQ(r.status, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);  // throws (fails the test) if not JSON
  ASSERT_TRUE(j.contains("peak") && j.contains("threads") && j.contains("simd") && j.contains("rows")) << r.out;
  const auto& peak = j["peak"];
  ASSERT_TRUE(peak.contains("fp32_fma_gflops") && peak.contains("bf16_dot_gflops")) << r.out;
  EXPECT_GE(j["threads"].get<int>(), 1);
  const std::string simd = j["simd"];
  EXPECT_TRUE(simd == "avx512-bf16" || simd == "portable") << simd;
  const bool have_peak = tinyseek::cpu_has_avx512_bf16();
  if (have_peak) {
    EXPECT_GT(peak["fp32_fma_gflops"].get<double>(), 0);
    EXPECT_GT(peak["bf16_dot_gflops"].get<double>(), 0);
  } else {
    EXPECT_TRUE(peak["fp32_fma_gflops"].is_null() && peak["bf16_dot_gflops"].is_null()) << r.out;
  }
  std::printf("peak: %s, threads %d, simd %s\n", peak.dump().c_str(), j["threads"].get<int>(), simd.c_str());
  ASSERT_EQ(j["rows"].size(), 3u);
  const char* formats[] = {"fp32", "bf16", "fp8-tile128"};
  for (size_t i = 0; i < 3; ++i) {
    const auto& row = j["rows"][i];
    std::printf("  %s\n", row.dump().c_str());
    EXPECT_EQ(row["format"], formats[i]);
    EXPECT_EQ(row["m"], 64);
    EXPECT_EQ(row["n"], 48);
    EXPECT_EQ(row["k"], 40);
    EXPECT_GT(row["gflops"].get<double>(), 0);
    EXPECT_GT(row["gflops_with_quantize"].get<double>(), 0);
    ASSERT_TRUE(row.contains("gflops_prepacked")) << "gemm::pack_b exists: the pre-packed timing must be reported";
    EXPECT_GT(row["gflops_prepacked"].get<double>(), 0);
    if (have_peak) {
      const double pct = row["pct_peak"];
      EXPECT_GT(pct, 0);
      EXPECT_LE(pct, 150);
    } else {
      EXPECT_TRUE(row["pct_peak"].is_null());
    }
    const ErrRange e = expected_rel_err(formats[i]);
    EXPECT_GE(row["rel_err"].get<double>(), e.lo) << formats[i];
    EXPECT_LE(row["rel_err"].get<double>(), e.hi) << formats[i];
  }
  EXPECT_TRUE(contains(r.err, "bench gemm")) << "no progress line on stderr: " << r.err;
}

TEST(BenchGemmCli, SimdFieldFollowsTheForcedPortablePath) {
  const CliRun r = run_cli("bench gemm --json --shapes 16x16x16 --formats bf16 --repeats 1 --warmup 0 --min-time 0",
                           "TINYSEEK_SIMD=portable");
  ASSERT_EQ(r.status, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["simd"], "portable");
  EXPECT_GT(j["rows"][0]["gflops"].get<double>(), 0);
}

TEST(BenchGemmCli, HumanTable) {
  const CliRun r = run_cli("bench gemm --shapes 32x16x64 --formats fp32,fp8-mx32 --repeats 1 --min-time 0");
  ASSERT_EQ(r.status, 0) << r.err;
  std::printf("%s", r.out.c_str());
  EXPECT_TRUE(contains(r.out, "GFLOP/s")) << r.out;
  EXPECT_TRUE(contains(r.out, "fp32") && contains(r.out, "fp8-mx32") && contains(r.out, "32x16x64")) << r.out;
}

TEST(BenchGemmCli, BadArgumentsFailWithAMessage) {
  const CliRun shape = run_cli("bench gemm --shapes 64x48 --repeats 1");
  EXPECT_NE(shape.status, 0);
  EXPECT_TRUE(contains(shape.err, "'64x48'") && contains(shape.err, "MxNxK")) << shape.err;
  EXPECT_TRUE(shape.out.empty()) << "a bad argument must fail before benchmarking: " << shape.out;
  const CliRun fmt = run_cli("bench gemm --formats fp32,fp16 --repeats 1");
  EXPECT_NE(fmt.status, 0);
  EXPECT_TRUE(contains(fmt.err, "'fp16'") && contains(fmt.err, "fp8-tile128")) << fmt.err;
  const CliRun rep = run_cli("bench gemm --shapes 8x8x8 --repeats 0");
  EXPECT_NE(rep.status, 0);
  EXPECT_TRUE(contains(rep.err, "--repeats")) << rep.err;
  const CliRun mt = run_cli("bench gemm --shapes 8x8x8 --min-time -1");
  EXPECT_NE(mt.status, 0);
  EXPECT_TRUE(contains(mt.err, "--min-time")) << mt.err;
}

}  // namespace
