// Training-step throughput: `tinyseek bench step`.
//
// One timed step = zero_grad + Model::forward_backward + one AdamW update, the same work as a
// PyTorch step `opt.zero_grad(); loss.backward(); opt.step()` (bench/peers/torch_step.py), on
// random tokens of a fixed batch. The recipe sets the model's precision map exactly as
// `tinyseek train --recipe` does (precision.recipe = it, every field reset), and with it the
// optimizer moments (BF16 for fp8, FP32 for fp32 and bf16).
//
// Model FLOPs per step (the numerator of MFU; no recomputation counted, so MFU does not reward
// recomputing):
//   6 · Σ_heads P_active · tokens(head)  +  3 · Σ_attention layers B·H·(dn+dr+dv)·T_l(T_l+1)
// where P_active = the weights of every Linear a token passes through (MLA projections,
// dense FFN or shared + K routed experts + router, eh_proj for MTP, and lm_head; not the
// embedding lookup), tokens = B·T for the main model and B·(T−k) for MTP depth k; the
// attention term counts the causal score and value products (Σ_t (t+1) = T(T+1)/2 key
// positions per query, 2 FLOPs per multiply-add, ×3 for forward + backward).
// MFU = FLOPs / (seconds · the machine's peak measured by bench/peak.h for the recipe's GEMMs):
// the FP32 FMA peak for fp32, the BF16 dot peak (vdpbf16ps) for bf16 and fp8, whose GEMMs
// both run on the BF16 dot-product kernel (FP8 codes are widened to BF16 exactly; this CPU
// has no FP8 arithmetic), the same rule as the trainer's progress line.
//
// Under mpirun (`mpirun -np N tinyseek bench step`, docs/architecture.md "Data parallel" and
// "Expert parallel"): --batch is the global batch, as training.batch_size; every rank draws
// the same random global batch and runs the step on its rows [r·B/N, (r+1)·B/N) with the
// trainer's machinery: dist::DataParallel (gradient reduce-scatter, AdamW on the ZeRO-1
// shard, parameter all-gather) or, with expert_parallel = N, dist::ExpertParallel (experts
// on their owners, token all-to-alls in every MoE layer, the rest as DP). The timed step is
// zero_grad + forward_backward + reduce-scatter + AdamW + all-gather (no norm, clip or loss
// reductions: the single-process bench has none either). Each rank measures its own step
// and its communicator's counters (dist::CommStats, with split_wait on: a barrier before
// every MPI call separates waiting for the slower rank from the transfer); the per-rank
// numbers are all-gathered, so every rank's result holds them. tokens_per_s is then the
// global batch over rank 0's median step, MFU divides by N peaks.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tinyseek/model/config.h"
#include "tinyseek/model/deepseek.h"

namespace tinyseek::bench {

struct StepFlops {
  double linear = 0;      // 6 · Σ P_active · tokens
  double attention = 0;   // 3 · Σ B·H·(dn+dr+dv)·T(T+1)
  double total() const { return linear + attention; }
  int64_t params_active = 0;  // per main-model token (main blocks + lm_head)
};
StepFlops step_flops(const model::ModelConfig& c, int64_t B, int64_t T);

struct StepBenchOptions {
  std::string config_path;
  // A recipe spec as `precision_from_spec` reads it: "fp32", "bf16", "fp8", or with
  // overrides "fp8:precision.scale_type=pow2". Empty: the config's own precision section.
  std::string recipe;
  int steps = 5;       // timed steps (the median is reported)
  int warmup = 1;      // untimed steps first (allocations, page faults)
  int64_t batch = 8;   // B
  int64_t seq = 256;   // T
  model::Recompute recompute = model::Recompute::kNone;
  bool recompute_norm_up = true;  // Model::set_norm_up_recompute (training.recompute_norm_up)
  bool optimizer = true;  // time the AdamW update too
  int64_t head_chunk_rows = 0;  // Model::set_head_chunk_rows (-1: unchunked head, for comparisons)
  uint64_t seed = 1;
  // Under mpirun: partition the routed experts over the N ranks (N = the world size; 1 = off).
  int expert_parallel = 1;
};

// One rank's step under mpirun. Per-step values: bytes are means over the timed steps (exact
// counts; they vary between steps only through the routing), times are medians.
struct RankStepStats {
  double tokens_per_s = 0;         // this rank's rows · T / its median step
  double ms_per_step = 0;          // this rank's median step
  double gradient_bytes = 0;       // sent by the reduce-scatter + all-gather (CommKind::kGradients)
  double expert_bytes = 0;         // sent by the token all-to-alls and row counts (kExperts)
  double other_bytes = 0;          // anything else inside the step (kOther; 0 today)
  double comm_ms = 0;              // wall time in MPI calls, waiting included
  double wait_ms = 0;              // of which in the barriers before the calls (rank skew)
  double comm_share = 0;           // median over steps of comm time / step time
  // Expert parallelism: (token, expert) rows this rank sent to / received from other ranks
  // per forward, from the routers' load counts (independent of the communicator's counts).
  double expert_rows_sent = 0, expert_rows_received = 0;
};

struct DistStepStats {
  int ranks = 1;
  int expert_parallel = 1;         // 1: data parallel
  bool ep_fp8_dispatch = false;    // expert inputs as E4M3 codes + 1x128 scales
  int64_t param_floats = 0;        // the registry's parameter buffer (with padding)
  int64_t reduced_floats = 0;      // what the reduce-scatter / all-gather cover: param_floats
                                   // (DP) or the non-expert elements (EP)
  int64_t moe_layers = 0;          // MoE layers (main + MTP) that exchange tokens under EP
  std::vector<RankStepStats> per_rank;
};

struct StepBenchResult {
  model::ModelConfig config;
  int64_t batch = 0, seq = 0;
  double ms_per_step = 0;        // median
  double ms_forward_backward = 0;  // median of the forward_backward part alone
  double ms_optimizer = 0;       // median of zero_grad + AdamW
  double cpu_ms_per_step = 0;    // median CPU time of all threads (includes OpenMP spin-waiting)
  double tokens_per_s = 0;       // B·T / median step time
  std::string recipe;            // the resolved map's recipe name (fp32 | bf16 | fp8)
  std::string moments;           // optimizer moment precision ("fp32" | "bf16")
  double mfu = 0;                // fraction of peak_gflops
  std::string peak_kind;         // "fp32_fma" (fp32 recipe) or "bf16_dot" (bf16, fp8)
  double peak_gflops = 0;        // the measured peak MFU divides by (0 if unavailable)
  double peak_rss_mb = 0;        // getrusage max RSS of this process
  double saved_activation_mb = 0;  // bytes the model holds for backward after forward
  // Where the memory is after the timed steps (buffers never shrink, so this is the most any
  // of them held): bytes per category from the buffers' sizes, in print order; the last
  // entries are their sum ("accounted"), getrusage's peak RSS in bytes ("peak_rss") and
  // the difference ("unaccounted": code, libraries, thread stacks, allocator free lists
  // and fragmentation, buffers freed before the end of the step).
  std::vector<std::pair<std::string, int64_t>> memory;
  StepFlops flops;
  int64_t params_total = 0;
  double first_loss = 0, last_loss = 0;
  int threads = 1;
  std::vector<double> step_ms;
  std::optional<DistStepStats> dist;  // under mpirun only
};

// Runs warmup + steps training steps and measures. Throws tinyseek::Error on bad options.
StepBenchResult run_step_bench(const StepBenchOptions& opt);

// The memory breakdown of StepBenchResult::memory for a model after a step.
// moment_elements: the elements this process keeps AdamW moments for (-1: all parameters;
// under mpirun the rank's shard and experts).
std::vector<std::pair<std::string, int64_t>> step_memory(const model::Model& m, int64_t moment_bytes,
                                                         double peak_rss_mib, int64_t moment_elements = -1);

// CPU time used by all threads of this process so far, in ms.
double process_cpu_ms();

// Max resident set size of this process so far, in MiB (getrusage).
double peak_rss_mb();

}  // namespace tinyseek::bench
