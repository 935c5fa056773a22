// tinyseek bench gemm|step|decode. `bench gemm` measures the GEMM engine against this
// machine's measured FP32-FMA and BF16-dot peaks; step and decode land with issues #5, #7.
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "tinyseek/base/progress.h"
#include "tinyseek/bench/gemm_bench.h"
#include "tinyseek/bench/peak.h"
#include "tinyseek/cli/commands.h"
#include "tinyseek/numerics/simd.h"

namespace tinyseek::cli {

namespace {

// 4 significant digits: benchmark numbers carry no more information than that, and the
// JSON stays readable. Never rounds a positive number to zero.
double sig4(double x) {
  if (x == 0 || !std::isfinite(x)) return x;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", x);
  return std::strtod(buf, nullptr);
}

nlohmann::ordered_json optional_number(const std::optional<double>& v) {
  return v ? nlohmann::ordered_json(sig4(*v)) : nlohmann::ordered_json(nullptr);
}

// One decimal, or 3 significant digits below 1 (tiny shapes in tests must not print 0.0).
std::string gflops_text(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, x >= 1 ? "%.1f" : "%.3g", x);
  return buf;
}

std::string shape_text(const bench::GemmShape& s) {
  return std::to_string(s.m) + "x" + std::to_string(s.n) + "x" + std::to_string(s.k);
}

void print_json(const bench::PeakFlops& peak, const std::vector<bench::GemmBenchRow>& rows,
                const bench::GemmBenchOptions& opt) {
  nlohmann::ordered_json j;
  j["peak"] = {{"fp32_fma_gflops", optional_number(peak.fp32_fma_gflops)},
               {"bf16_dot_gflops", optional_number(peak.bf16_dot_gflops)}};
  if (!peak.note.empty()) j["peak"]["note"] = peak.note;
  j["threads"] = peak.threads;
  j["simd"] = to_string(simd_path());
  j["repeats"] = opt.repeats;
  j["warmup"] = opt.warmup;
  j["min_time"] = opt.min_seconds;
  j["rows"] = nlohmann::ordered_json::array();
  for (const auto& r : rows) {
    nlohmann::ordered_json o;
    o["format"] = bench::to_string(r.format);
    o["m"] = r.shape.m;
    o["n"] = r.shape.n;
    o["k"] = r.shape.k;
    o["gflops"] = sig4(r.gflops);
    o["gflops_with_quantize"] = sig4(r.gflops_with_quantize);
    if (r.gflops_prepacked) o["gflops_prepacked"] = sig4(*r.gflops_prepacked);
    o["pct_peak"] = optional_number(bench::percent_of_peak(r, peak));
    o["rel_err"] = sig4(r.rel_err);
    j["rows"].push_back(o);
  }
  std::printf("%s\n", j.dump().c_str());
}

void print_table(const bench::PeakFlops& peak, const std::vector<bench::GemmBenchRow>& rows,
                 const bench::GemmBenchOptions& opt) {
  std::printf("GEMM C[M,N] = A[M,K] * W[N,K]^T (Linear forward), %d threads, SIMD path %s, "
              "median of >= %d runs (>= %.2g s) after %d warm-up\n",
              peak.threads, to_string(simd_path()), opt.repeats, opt.min_seconds, opt.warmup);
  if (peak.fp32_fma_gflops && peak.bf16_dot_gflops)
    std::printf("measured peak: FP32 FMA %.1f GFLOP/s, BF16 dot %.1f GFLOP/s (%%peak: fp32 vs FP32 FMA, "
                "others vs BF16 dot)\n",
                *peak.fp32_fma_gflops, *peak.bf16_dot_gflops);
  else
    std::printf("measured peak: none (%s)\n", peak.note.c_str());
  std::printf("%-12s %17s %9s %6s %10s %10s %9s\n", "format", "MxNxK", "GFLOP/s", "%peak", "+quantize",
              "prepacked", "rel.err");
  for (const auto& r : rows) {
    const std::optional<double> pct = bench::percent_of_peak(r, peak);
    std::printf("%-12s %17s %9s %6s %10s %10s %9.2e\n", bench::to_string(r.format), shape_text(r.shape).c_str(),
                gflops_text(r.gflops).c_str(), pct ? gflops_text(*pct).c_str() : "-",
                gflops_text(r.gflops_with_quantize).c_str(),
                r.gflops_prepacked ? gflops_text(*r.gflops_prepacked).c_str() : "-", r.rel_err);
  }
  std::printf("+quantize: end to end from FP32 A and W (BF16 conversion / FP8 quantization timed). rel.err: "
              "max |C - exact| / rms(exact) over sampled outputs.\n");
}

struct GemmArgs {
  bool json = false;
  std::string shapes, formats;
  int repeats = 5, warmup = 1;
  double min_time = 0.2;
  uint64_t seed = 1234;
};

void run_gemm(const GemmArgs& a) {
  bench::GemmBenchOptions opt;
  // Parse everything before measuring anything, so a typo fails at once.
  if (!a.shapes.empty()) opt.shapes = bench::parse_gemm_shapes(a.shapes);
  if (!a.formats.empty()) opt.formats = bench::parse_gemm_formats(a.formats);
  opt.repeats = a.repeats;
  opt.warmup = a.warmup;
  opt.min_seconds = a.min_time;
  opt.seed = a.seed;
  TS_CHECK(opt.repeats >= 1, "--repeats must be at least 1, got " << opt.repeats, "the default is 5");
  TS_CHECK(opt.warmup >= 0, "--warmup must be >= 0, got " << opt.warmup, "the default is 1");
  TS_CHECK(opt.min_seconds >= 0, "--min-time must be >= 0 seconds, got " << opt.min_seconds, "the default is 0.2");

  const bench::PeakFlops peak = bench::measure_peaks();
  Progress progress("bench gemm", static_cast<int64_t>(opt.shapes.size() * opt.formats.size()));
  int64_t done = 0;
  progress.update(0, "measured peaks");
  const auto rows = bench::run_gemm_bench(opt, [&](const bench::GemmBenchRow& r) {
    char extra[96];
    std::snprintf(extra, sizeof extra, "%s %s %.1f GFLOP/s", bench::to_string(r.format), shape_text(r.shape).c_str(),
                  r.gflops);
    progress.update(++done, extra);
  });
  progress.finish();
  if (a.json) print_json(peak, rows, opt);
  else print_table(peak, rows, opt);
}

}  // namespace

void add_bench(CLI::App& app) {
  CLI::App* group = app.add_subcommand("bench", "benchmarks: gemm | step | decode");
  group->require_subcommand(1, 1);

  static GemmArgs args;
  CLI::App* g = group->add_subcommand(
      "gemm", "GFLOP/s of C = A*W^T per format and shape, vs the machine's measured FP32/BF16 peaks");
  g->add_flag("--json", args.json, "machine-readable output on stdout");
  g->add_option("--shapes", args.shapes,
                "comma-separated MxNxK (default 4096x2048x512,4096x512x2048,2048x2048x2048,1024x1024x1024,"
                "512x256x256,1024x512x256)");
  g->add_option("--formats", args.formats,
                "comma-separated subset of fp32,bf16,fp8-tile128,fp8-tensor,fp8-row,fp8-mx32 (default all)");
  g->add_option("--repeats", args.repeats, "timed runs per row, at least (the median is reported)")
      ->capture_default_str();
  g->add_option("--min-time", args.min_time,
                "seconds of timed kernel runs per row: small shapes repeat beyond --repeats until this (max 1000 runs)")
      ->capture_default_str();
  g->add_option("--warmup", args.warmup, "untimed runs before timing")->capture_default_str();
  g->add_option("--seed", args.seed, "random seed of the operands")->capture_default_str();
  g->callback([] { run_gemm(args); });

  CLI::App* step = group->add_subcommand("step", "training-step throughput [not built yet]");
  step->allow_extras();
  step->callback([] { throw NotBuilt{"bench step", "#5"}; });
  CLI::App* decode = group->add_subcommand("decode", "generation throughput [not built yet]");
  decode->allow_extras();
  decode->callback([] { throw NotBuilt{"bench decode", "#7"}; });
}

}  // namespace tinyseek::cli
