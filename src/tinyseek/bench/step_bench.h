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
#pragma once
#include <cstdint>
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
  bool optimizer = true;  // time the AdamW update too
  int64_t head_chunk_rows = 0;  // Model::set_head_chunk_rows (-1: unchunked head, for comparisons)
  uint64_t seed = 1;
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
};

// Runs warmup + steps training steps and measures. Throws tinyseek::Error on bad options.
StepBenchResult run_step_bench(const StepBenchOptions& opt);

// The memory breakdown of StepBenchResult::memory for a model after a step.
std::vector<std::pair<std::string, int64_t>> step_memory(const model::Model& m, int64_t moment_bytes,
                                                         double peak_rss_mib);

// CPU time used by all threads of this process so far, in ms.
double process_cpu_ms();

// Max resident set size of this process so far, in MiB (getrusage).
double peak_rss_mb();

}  // namespace tinyseek::bench
