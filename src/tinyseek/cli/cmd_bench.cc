// tinyseek bench gemm|step|decode. `bench gemm` measures the GEMM engine against this
// machine's measured FP32-FMA and BF16-dot peaks; `bench step` the training-step throughput
// (tokens/s, MFU, peak RSS); `bench decode` (cmd_generate.cc) plain vs speculative decoding.
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "tinyseek/base/progress.h"
#include "tinyseek/base/timer.h"
#include "tinyseek/bench/gemm_bench.h"
#include "tinyseek/bench/peak.h"
#include "tinyseek/bench/step_bench.h"
#include "tinyseek/cli/commands.h"
#include "tinyseek/dist/comm.h"
#include "tinyseek/dist/expert_parallel.h"
#include "tinyseek/model/precision.h"
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


// ---- bench step ---------------------------------------------------------------------------

struct StepArgs {
  bool json = false;
  std::string config, recipe, recipes, recompute = "none";
  int steps = 5, warmup = 1, rounds = 1;
  int64_t batch = 8, seq = 256;
  bool no_optimizer = false;
  uint64_t seed = 1;
  int64_t head_chunk_rows = 0;
  int expert_parallel = 1;
  bool recompute_norm_up = true;
};

nlohmann::ordered_json step_json(const bench::StepBenchResult& r, const StepArgs& a) {
  nlohmann::ordered_json j;
  j["recipe"] = r.recipe;
  j["recompute"] = a.recompute;
  j["recompute_norm_up"] = a.recompute_norm_up;
  j["tokens_per_s"] = sig4(r.tokens_per_s);
  j["mfu"] = sig4(r.mfu);
  j["peak_kind"] = r.peak_kind;
  j["peak_gflops"] = sig4(r.peak_gflops);
  j["peak_rss_mb"] = sig4(r.peak_rss_mb);
  j["ms_per_step"] = sig4(r.ms_per_step);
  j["ms_forward_backward"] = sig4(r.ms_forward_backward);
  j["ms_optimizer"] = sig4(r.ms_optimizer);
  j["cpu_ms_per_step"] = sig4(r.cpu_ms_per_step);
  j["saved_activation_mb"] = sig4(r.saved_activation_mb);
  j["moments"] = r.moments;
  const std::string adamw = "AdamW(" + r.moments + " moments)";
  j["timed"] = a.no_optimizer ? "forward_backward"
               : r.dist ? "zero_grad + forward_backward + gradient reduce-scatter + " + adamw + " + parameter all-gather"
                        : "zero_grad + forward_backward + " + adamw;
  j["batch"] = r.batch;
  j["seq"] = r.seq;
  j["threads"] = r.threads;
  j["simd"] = to_string(simd_path());
  j["model_gflop_per_step"] = sig4(r.flops.total() * 1e-9);
  j["attention_gflop_per_step"] = sig4(r.flops.attention * 1e-9);
  j["params_active"] = r.flops.params_active;
  j["params_total"] = r.params_total;
  j["steps"] = r.step_ms.size();
  j["loss_first"] = sig4(r.first_loss);
  j["loss_last"] = sig4(r.last_loss);
  nlohmann::ordered_json mem;
  for (const auto& [name, bytes] : r.memory) mem[name] = bytes;
  j["memory"] = mem;
  if (r.dist) {
    // Under mpirun only (bench/step_bench.h): bytes exact (means over the timed steps), times
    // medians of wall time in MPI calls, the split_wait barriers' share as "wait".
    const bench::DistStepStats& d = *r.dist;
    j["ranks"] = d.ranks;
    j["expert_parallel"] = d.expert_parallel;
    j["ep_fp8_dispatch"] = d.ep_fp8_dispatch;
    j["param_floats"] = d.param_floats;
    j["reduced_floats"] = d.reduced_floats;
    j["moe_layers"] = d.moe_layers;
    j["per_rank"] = nlohmann::ordered_json::array();
    for (size_t q = 0; q < d.per_rank.size(); ++q) {
      const bench::RankStepStats& s = d.per_rank[q];
      nlohmann::ordered_json o;
      o["rank"] = q;
      o["tokens_per_s"] = sig4(s.tokens_per_s);
      o["ms_per_step"] = sig4(s.ms_per_step);
      o["comm_bytes_per_step"] = {{"gradients", s.gradient_bytes}, {"experts", s.expert_bytes},
                                  {"other", s.other_bytes}, {"total", s.gradient_bytes + s.expert_bytes + s.other_bytes}};
      o["comm_ms_per_step"] = sig4(s.comm_ms);
      o["comm_wait_ms_per_step"] = sig4(s.wait_ms);
      o["comm_transfer_ms_per_step"] = sig4(s.comm_ms - s.wait_ms);
      o["comm_share"] = sig4(s.comm_share);
      o["expert_rows_sent_per_step"] = s.expert_rows_sent;
      o["expert_rows_received_per_step"] = s.expert_rows_received;
      j["per_rank"].push_back(o);
    }
  }
  return j;
}

// Under mpirun: one line per rank after the table.
void print_rank_table(const nlohmann::ordered_json& j) {
  std::printf("%lld ranks, %s; %lld floats reduce-scattered + all-gathered per step (of %lld in the parameter "
              "buffer)\n",
              j["ranks"].get<long long>(),
              j["expert_parallel"].get<int>() > 1
                  ? (std::string("expert parallel (") + (j["ep_fp8_dispatch"].get<bool>() ? "FP8 E4M3" : "FP32") +
                     " dispatch)").c_str()
                  : "data parallel",
              j["reduced_floats"].get<long long>(), j["param_floats"].get<long long>());
  std::printf("%-5s %10s %9s %14s %14s %10s %9s %11s %6s\n", "rank", "tokens/s", "ms/step", "grad MiB/step",
              "expert MiB/step", "comm ms", "wait ms", "transfer ms", "share");
  for (const auto& q : j["per_rank"]) {
    const auto& b = q["comm_bytes_per_step"];
    std::printf("%-5lld %10.0f %9.1f %14.3f %14.3f %10.1f %9.1f %11.1f %5.1f%%\n", q["rank"].get<long long>(),
                q["tokens_per_s"].get<double>(), q["ms_per_step"].get<double>(), b["gradients"].get<double>() / 1048576.0,
                b["experts"].get<double>() / 1048576.0, q["comm_ms_per_step"].get<double>(),
                q["comm_wait_ms_per_step"].get<double>(), q["comm_transfer_ms_per_step"].get<double>(),
                100.0 * q["comm_share"].get<double>());
  }
  std::printf("bytes: sent by the rank per step (exact); comm ms: wall time inside MPI calls (median per step), "
              "wait = the barrier before each call (waiting for the slower rank), transfer = the rest; share = comm / "
              "step time. tokens/s above: the global batch over rank 0's step.\n");
}

// One row per (recipe, policy): medians over rounds (a single run is one round).
void print_step_table(const std::vector<nlohmann::ordered_json>& rows, int rounds) {
  const auto& f = rows.front();
  const bool adamw = f["timed"].get<std::string>().find("AdamW") != std::string::npos;
  std::printf("training step, B %lld x T %lld, %d threads, SIMD %s; timed: %s; median of %d steps",
              f["batch"].get<long long>(), f["seq"].get<long long>(), f["threads"].get<int>(),
              f["simd"].get<std::string>().c_str(),
              adamw ? "zero_grad + forward_backward + AdamW (moments per row)" : "forward_backward",
              f["steps"].get<int>());
  if (rounds > 1) std::printf(", then the median over %d rounds", rounds);
  std::printf("\nmodel: %lld active params per token (%lld total); %.4g GFLOP per step (attention %.3g)\n",
              f["params_active"].get<long long>(), f["params_total"].get<long long>(),
              f["model_gflop_per_step"].get<double>(), f["attention_gflop_per_step"].get<double>());
  std::printf("%-7s %-10s %-7s %10s %9s %10s %8s %9s %6s %-17s %13s %12s\n", "recipe", "recompute", "moments",
              "tokens/s", "ms/step", "fwd+bwd ms", "optim ms", "CPU ms", "MFU", "peak GFLOP/s", "saved act MiB",
              "peak RSS MiB");
  for (const auto& r : rows) {
    char peak[48];
    std::snprintf(peak, sizeof peak, "%s %.0f", r["peak_kind"].get<std::string>().c_str(),
                  r["peak_gflops"].get<double>());
    std::printf("%-7s %-10s %-7s %10.0f %9.1f %10.1f %8.1f %9.1f %5.1f%% %-17s %13.1f %12.1f\n",
                r["recipe"].get<std::string>().c_str(), r["recompute"].get<std::string>().c_str(),
                r["moments"].get<std::string>().c_str(),
                r["tokens_per_s"].get<double>(), r["ms_per_step"].get<double>(), r["ms_forward_backward"].get<double>(),
                r["ms_optimizer"].get<double>(), r["cpu_ms_per_step"].get<double>(), 100.0 * r["mfu"].get<double>(),
                peak, r["saved_activation_mb"].get<double>(), r["peak_rss_mb"].get<double>());
  }
  if (f.contains("memory")) {
    std::printf("memory after the timed steps, MiB (bytes of each category's buffers; unaccounted = peak RSS - "
                "accounted):\n%-18s", "");
    for (const auto& r : rows) std::printf(" %9s", r["recipe"].get<std::string>().c_str());
    std::printf("\n");
    for (const auto& [name, bytes] : f["memory"].items()) {
      std::printf("%-18s", name.c_str());
      for (const auto& r : rows)
        std::printf(" %9.1f", r["memory"].contains(name) ? r["memory"][name].get<double>() / 1048576.0 : 0.0);
      std::printf("\n");
    }
  }
  std::printf("MFU = (6 * active params * tokens + 3 * B*H*(dn+dr+dv)*T*(T+1) per attention layer, MTP heads "
              "included) / (time * measured peak): FP32 FMA for fp32, BF16 dot (vdpbf16ps) for bf16 and fp8, whose "
              "GEMMs run on the BF16 dot kernel. Peak RSS: getrusage max RSS of the process that ran the row.\n");
}

// Runs `tinyseek bench step ... --recipe <recipe> --recompute <policy> --json` as a child
// process (so that its peak RSS is its own) and returns its JSON.
nlohmann::ordered_json run_step_child(const StepArgs& a, const std::string& recipe, const std::string& policy) {
  std::vector<std::string> args = {"tinyseek", "bench", "step", "--json", "--config", a.config,
                                   "--recompute", policy, "--steps", std::to_string(a.steps),
                                   "--warmup", std::to_string(a.warmup), "--batch", std::to_string(a.batch),
                                   "--seq", std::to_string(a.seq), "--seed", std::to_string(a.seed)};
  if (!recipe.empty()) args.insert(args.end(), {"--recipe", recipe});
  if (a.no_optimizer) args.push_back("--no-optimizer");
  if (!a.recompute_norm_up) args.insert(args.end(), {"--recompute-norm-up", "false"});
  if (a.head_chunk_rows != 0) args.insert(args.end(), {"--head-chunk-rows", std::to_string(a.head_chunk_rows)});
  std::vector<char*> argv;
  for (auto& s : args) argv.push_back(s.data());
  argv.push_back(nullptr);
  int out[2];
  TS_CHECK(pipe(out) == 0, "bench step: cannot create a pipe for the child process", "check ulimit -n");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_addclose(&fa, out[0]);
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, "/proc/self/exe", &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  close(out[1]);
  TS_CHECK(rc == 0, "bench step: cannot start a child process (posix_spawn error " << rc << ")",
           "run each recipe and policy yourself with --recipe R --recompute P");
  std::string text;
  char buf[4096];
  for (ssize_t n; (n = read(out[0], buf, sizeof buf)) > 0;) text.append(buf, static_cast<size_t>(n));
  close(out[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  TS_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
           "bench step: the child process for --recipe " << (recipe.empty() ? "(config)" : recipe) << " --recompute "
           << policy << " failed", "see its message above");
  return nlohmann::ordered_json::parse(text);
}

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    const size_t end = std::min(s.find(',', start), s.size());
    out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

// The medians over rounds of one (recipe, policy) cell; per_round keeps each round's tokens/s.
nlohmann::ordered_json median_row(const std::vector<nlohmann::ordered_json>& runs) {
  nlohmann::ordered_json m = runs.front();
  for (const char* key : {"tokens_per_s", "mfu", "peak_rss_mb", "ms_per_step", "ms_forward_backward", "ms_optimizer",
                          "cpu_ms_per_step", "saved_activation_mb", "peak_gflops"}) {
    std::vector<double> v;
    for (const auto& r : runs) v.push_back(r[key].get<double>());
    m[key] = sig4(median(v));
  }
  m["rounds_tokens_per_s"] = nlohmann::ordered_json::array();
  for (const auto& r : runs) m["rounds_tokens_per_s"].push_back(r["tokens_per_s"]);
  return m;
}

// --recipes and/or --recompute all: one child process per (round, recipe, policy), recipes
// alternating inside each round so that a shared machine's load hits every recipe alike;
// medians over rounds, and tokens/s ratios between recipes (ratio of medians, with the
// per-round range).
void run_step_matrix(const StepArgs& a) {
  const std::vector<std::string> recipes = a.recipes.empty() ? std::vector<std::string>{a.recipe}
                                                             : split_commas(a.recipes);
  for (const std::string& r : recipes)  // fail on a typo before running anything
    if (!r.empty()) (void)model::precision_from_spec(r);
  const std::vector<std::string> policies = a.recompute == "all"
                                                ? std::vector<std::string>{"none", "selective", "full"}
                                                : std::vector<std::string>{a.recompute};
  TS_CHECK(a.rounds >= 1, "--rounds must be at least 1, got " << a.rounds, "the default is 1");
  const size_t cells = recipes.size() * policies.size();
  std::vector<std::vector<nlohmann::ordered_json>> runs(cells);
  Progress progress("bench step", static_cast<int64_t>(cells) * a.rounds);
  int64_t done = 0;
  for (int round = 0; round < a.rounds; ++round)
    for (size_t i = 0; i < recipes.size(); ++i)
      for (size_t p = 0; p < policies.size(); ++p) {
        runs[i * policies.size() + p].push_back(run_step_child(a, recipes[i], policies[p]));
        const auto& r = runs[i * policies.size() + p].back();
        char extra[96];
        std::snprintf(extra, sizeof extra, "%s/%s %.0f tok/s", r["recipe"].get<std::string>().c_str(),
                      policies[p].c_str(), r["tokens_per_s"].get<double>());
        progress.update(++done, extra);
      }
  progress.finish();
  std::vector<nlohmann::ordered_json> rows;
  for (const auto& cell : runs) rows.push_back(median_row(cell));

  // Ratios of every later recipe to every earlier one, per policy.
  nlohmann::ordered_json ratios = nlohmann::ordered_json::array();
  for (size_t p = 0; p < policies.size(); ++p)
    for (size_t i = 0; i < recipes.size(); ++i)
      for (size_t k = 0; k < i; ++k) {
        const auto& num = runs[i * policies.size() + p];
        const auto& den = runs[k * policies.size() + p];
        std::vector<double> per_round;
        for (int r = 0; r < a.rounds; ++r)
          per_round.push_back(num[r]["tokens_per_s"].get<double>() / den[r]["tokens_per_s"].get<double>());
        const double ratio = rows[i * policies.size() + p]["tokens_per_s"].get<double>() /
                             rows[k * policies.size() + p]["tokens_per_s"].get<double>();
        ratios.push_back({{"numerator", rows[i * policies.size() + p]["recipe"]},
                          {"denominator", rows[k * policies.size() + p]["recipe"]},
                          {"recompute", policies[p]},
                          {"tokens_per_s_ratio", sig4(ratio)},
                          {"round_min", sig4(*std::min_element(per_round.begin(), per_round.end()))},
                          {"round_max", sig4(*std::max_element(per_round.begin(), per_round.end()))}});
      }

  if (a.json) {
    nlohmann::ordered_json j = rows.front();
    j["rounds"] = a.rounds;
    j["runs"] = rows;
    j["ratios"] = ratios;
    if (recipes.size() == 1) {  // the per-policy summary of --recompute all
      j["policies"] = nlohmann::ordered_json::array();
      for (const auto& r : rows)
        j["policies"].push_back({{"recompute", r["recompute"]}, {"tokens_per_s", r["tokens_per_s"]},
                                 {"ms_per_step", r["ms_per_step"]}, {"mfu", r["mfu"]},
                                 {"cpu_ms_per_step", r["cpu_ms_per_step"]}, {"peak_rss_mb", r["peak_rss_mb"]},
                                 {"saved_activation_mb", r["saved_activation_mb"]}});
    }
    std::printf("%s\n", j.dump().c_str());
    return;
  }
  print_step_table(rows, a.rounds);
  for (const auto& r : ratios)
    std::printf("tokens/s %s / %s (recompute %s): %.3fx (per round %.3f-%.3f)\n",
                r["numerator"].get<std::string>().c_str(), r["denominator"].get<std::string>().c_str(),
                r["recompute"].get<std::string>().c_str(), r["tokens_per_s_ratio"].get<double>(),
                r["round_min"].get<double>(), r["round_max"].get<double>());
}

void run_step(const StepArgs& a) {
  TS_CHECK(!a.config.empty(), "bench step needs --config PATH", "e.g. --config configs/base.json");
  TS_CHECK(a.recipes.empty() || a.recipe.empty(), "bench step takes --recipe or --recipes, not both",
           "e.g. --recipes fp32,bf16,fp8 to compare recipes side by side");
  const dist::Comm& comm = dist::world();
  const bool matrix = a.recompute == "all" || !a.recipes.empty() || a.rounds > 1;
  // The matrix runs every cell in a child process of its own (its own peak RSS); an MPI rank
  // cannot start a child that joins the job, so under mpirun one launch measures one cell.
  TS_CHECK(!matrix || !comm.distributed(), "under mpirun, bench step measures one recipe and one recompute policy "
           "per launch (--recipes, --rounds and --recompute all run each cell in a child process, which an MPI rank "
           "cannot start)", "launch once per cell: mpirun -np " << comm.size() << " tinyseek bench step --config "
           << a.config << " --recipe fp32, then --recipe fp8, ...");
  TS_CHECK(!matrix || a.expert_parallel == 1, "--expert-parallel needs mpirun, and under mpirun bench step measures "
           "one cell per launch", "drop --recipes/--rounds/--recompute all and launch with mpirun -np "
           << a.expert_parallel);
  if (matrix) {
    run_step_matrix(a);
    return;
  }
  bench::StepBenchOptions opt;
  opt.config_path = a.config;
  opt.recipe = a.recipe;
  opt.recompute = model::parse_recompute(a.recompute);
  opt.recompute_norm_up = a.recompute_norm_up;
  opt.steps = a.steps;
  opt.warmup = a.warmup;
  opt.batch = a.batch;
  opt.seq = a.seq;
  opt.optimizer = !a.no_optimizer;
  opt.seed = a.seed;
  opt.head_chunk_rows = a.head_chunk_rows;
  opt.expert_parallel = a.expert_parallel;
  const bench::StepBenchResult r = bench::run_step_bench(opt);
  if (!comm.is_root()) return;  // every rank holds the gathered numbers; rank 0 alone prints
  const nlohmann::ordered_json j = step_json(r, a);
  if (a.json) {
    std::printf("%s\n", j.dump().c_str());
    return;
  }
  print_step_table({j}, 1);
  if (r.dist) print_rank_table(j);
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

  static StepArgs sargs;
  CLI::App* step = group->add_subcommand(
      "step", "training-step throughput: tokens/s, MFU, peak RSS (per recipe with --recipes, per recompute "
      "policy with --recompute all); under mpirun per rank: tokens/s, bytes sent and time in MPI per step");
  step->add_option("--config", sargs.config, "model config.json")->required();
  step->add_option("--recipe", sargs.recipe,
                   "precision recipe fp32 | bf16 | fp8, optionally with overrides (fp8:precision.scale_type=pow2); "
                   "default: the config's precision section");
  step->add_option("--recipes", sargs.recipes,
                   "comma-separated recipes to compare side by side, one child process each, with tokens/s ratios "
                   "(e.g. fp32,bf16,fp8)");
  step->add_option("--rounds", sargs.rounds,
                   "with --recipes or --recompute all: repeat the set this many times, alternating, and report "
                   "medians over rounds")->capture_default_str();
  step->add_option("--recompute", sargs.recompute,
                   "none | selective | full | all (all: one child process per policy, each with its own peak RSS)")
      ->capture_default_str();
  step->add_option("--recompute-norm-up", sargs.recompute_norm_up,
                   "under --recompute none: recompute the norms and MLA up-projections in backward instead of "
                   "storing them (the run config's training.recompute_norm_up; false: store them)")
      ->capture_default_str();
  step->add_option("--steps", sargs.steps, "timed steps (median reported)")->capture_default_str();
  step->add_option("--warmup", sargs.warmup, "untimed steps first")->capture_default_str();
  step->add_option("--batch", sargs.batch, "sequences per step (B)")->capture_default_str();
  step->add_option("--seq", sargs.seq, "tokens per sequence (T)")->capture_default_str();
  step->add_option("--seed", sargs.seed, "seed of the weights and the random tokens")->capture_default_str();
  step->add_option("--head-chunk-rows", sargs.head_chunk_rows,
                   "rows of logits the output head computes at a time (0: ~8 MiB of logits; -1: all at once)")
      ->capture_default_str();
  step->add_flag("--no-optimizer", sargs.no_optimizer,
                 "time zero_grad + forward_backward only (no AdamW; under mpirun no gradient/parameter collectives "
                 "either)");
  step->add_option("--expert-parallel", sargs.expert_parallel,
                   "under mpirun -np N: partition the routed experts over the N ranks as train --expert-parallel N "
                   "(FP8 dispatch under the fp8 recipe); 1 = data parallel")
      ->capture_default_str();
  step->add_flag("--json", sargs.json, "machine-readable output on stdout");
  step->callback([] { run_step(sargs); });
  add_bench_decode(*group);
}

}  // namespace tinyseek::cli
