// The training loop (DESIGN.md §4): micro-batches → gradients accumulated in FP32 → global
// norm clip → AdamW → aux-loss-free router-bias update → next step; validation, metrics,
// the loss plot and atomic checkpoints on a cadence; exact resume.
//
// Gradient accumulation: every micro-batch has the same B·T tokens, so the step's loss
// normalised per token over the whole step is the mean of the micro-batch losses, and its
// gradient is (Σ micro-batch gradients) / k. The 1/k is folded into the factor AdamW applies
// as it reads the gradients (with the clip factor), so no extra pass over memory.
//
// Determinism and resume: the state that decides the next step is the parameters (incl.
// router biases), the AdamW moments and step count, the loader position, the global step
// and, with delayed scaling, every Linear's amax histories; every schedule is a function
// of the global step. All of it is in the checkpoint, so N steps == N/2 steps + resume +
// N/2 steps bit for bit, for every precision recipe.
//
// Precision map and resume: the checkpoint's config.json holds the resolved map. A resume
// whose map differs (another recipe, a precision.* override) is refused with the list of
// differing fields, because the run would no longer be the one that was saved; with
// TrainerOptions::allow_precision_change (`--allow-precision-change`) it continues under
// the new map: optimizer moments are converted if their format changed and the
// delayed-scaling histories start afresh (their shape depends on the map).
//
// Evaluation changes no training numerics: it quantizes with the current histories but
// records no amaxes (model::set_linear_amax_recording), so a run with evaluations trains
// bit for bit like one without. Telemetry (TrainerOptions::telemetry_every) runs extra
// shadow GEMMs only and changes no bit either.
//
// Data parallel (`mpirun -np N`, dist/data_parallel.h; docs/architecture.md): every rank
// runs the same loader, so all ranks see the step's global batch of grad_accum × batch_size
// windows in the single-process order; rank r trains on rows [r·B/N, (r+1)·B/N) of every
// micro-batch (B % N == 0). Gradients are reduce-scattered (Σ in rank order), clipped by
// the global norm over all shards, AdamW updates each rank's ZeRO-1 shard, and the
// parameters are all-gathered. The step's gradient is Σ_ranks Σ_micro / (k·N) and its loss
// the rank-ordered Σ of the ranks' means / N. Router load counts are summed over ranks before
// the bias update, so all ranks keep identical biases. Rank 0 alone prints and writes
// metrics.jsonl, loss.svg and checkpoints; the checkpoint holds the unsharded optimizer
// (gathered), so a run resumes on any rank count. Not yet with more than one rank:
// delayed scaling (each rank's amax histories would see only its rows) and numerics
// telemetry (shadow GEMMs of one rank's rows); both are refused with a message.
//
// Expert parallel (TrainerOptions::expert_parallel = the world size, `--expert-parallel N`;
// dist/expert_parallel.h): the same data-parallel rows per rank, but rank q runs only the
// routed experts it owns, on the rows every rank dispatches to it (all-to-all, FP8 when
// ep_fp8_dispatch); their gradients and AdamW moments stay on the owner, everything else
// is reduce-scattered / ZeRO-1 / all-gathered as above. Evaluation runs every batch on all
// ranks together (each rank its rows; all ranks the whole batch when the rows do not split),
// since every MoE layer needs every rank. Checkpoints gather the experts and moments on rank
// 0: they are single-process checkpoints, resumable on any rank count with or without EP.
#pragma once
#include <csignal>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "tinyseek/base/check.h"
#include "tinyseek/data/loader.h"
#include "tinyseek/dist/data_parallel.h"
#include "tinyseek/dist/expert_parallel.h"
#include "tinyseek/model/config.h"
#include "tinyseek/model/deepseek.h"
#include "tinyseek/train/adamw.h"
#include "tinyseek/train/hyper.h"
#include "tinyseek/train/metrics.h"
#include "tinyseek/train/telemetry.h"

namespace tinyseek::train {

struct TrainData {
  std::shared_ptr<const data::TokenSplit> train, val;
  std::string data_dir;         // prepared data directory ("" for in-memory tests)
  std::string tokenizer_json;   // contents copied into each checkpoint ("" = none)
  uint64_t tokenizer_hash = 0;  // 0 = unknown
};
// Loads a prepared data directory (data.json, shards, tokenizer.json).
TrainData load_train_data(const std::string& data_dir);

struct StepRecord {
  int64_t step = 0;  // global step after this update (1 for the first)
  model::Losses losses;  // averaged over the micro-batches
  double lr = 0, grad_norm = 0, mtp_lambda = 0, imbalance = 0;
  double ms = 0, tokens_per_s = 0;
  std::optional<double> mfu;
  int64_t tokens = 0;  // tokens seen so far
  bool skipped = false;
  // Telemetry step only: model::linear_telemetry_json of this step (metrics.jsonl "numerics").
  std::optional<nlohmann::json> numerics;
};

struct EvalResult {
  int64_t step = 0;
  double val_loss = 0, perplexity = 0, bits_per_byte = 0;
  int64_t tokens = 0;
};

struct TrainerOptions {
  std::string run_dir;        // "" = no files at all (tests)
  bool print = true;          // start-up summary and progress lines on stdout
  // Checked after every step; when set, the loop saves a checkpoint and returns.
  const volatile std::sig_atomic_t* stop_flag = nullptr;
  // Numerics telemetry for one step every N steps (0: never); see train/telemetry.h.
  int64_t telemetry_every = 0;
  // Resume under a precision map other than the checkpoint's (see above).
  bool allow_precision_change = false;
  // Expert parallelism over this many ranks (1 = off; otherwise the world size).
  int expert_parallel = 1;
  // Dispatch the experts' inputs in FP8 (E4M3, 1x128 tiles); unset: on exactly when the
  // precision map's GEMM format is FP8 (the fp8 recipe).
  std::optional<bool> ep_fp8_dispatch;
  // Tests: called after the micro-batches' backward, before clipping (fault injection);
  // under data parallelism before the gradients are reduced (this rank's rows only).
  std::function<void(int64_t step, model::Registry&)> after_backward;
};

class Trainer {
 public:
  // `cfg` and `hyper` are the run's resolved config; hyper.run.steps must be set (the
  // planned length the schedule decays over).
  Trainer(const model::ModelConfig& cfg, const TrainHyper& hyper, TrainData data, TrainerOptions opt);

  void init_fresh();                        // parameters from training.seed, step 0
  void resume(const std::string& run_dir);  // everything from the run's checkpoint

  // One optimizer step (or a skipped one if the loss or gradients are not finite).
  StepRecord train_step();
  // Main-head cross-entropy over up to max_batches validation batches (0 = the whole split).
  EvalResult evaluate(int64_t max_batches);

  enum class Stop { kReachedStep, kSignal };
  // Trains until global step `until` with the cadences of hyper.run; evaluates and saves
  // at the end (and when stopped by the flag, saves without evaluating).
  Stop run(int64_t until);
  void save_checkpoint();

  int64_t step() const { return step_; }
  model::Model& model() { return *model_; }
  // The optimizer (not under expert parallelism, whose optimizer is in pieces).
  const AdamW& optimizer() const {
    TS_ASSERT(adamw_ != nullptr);
    return *adamw_;
  }
  // Under expert parallelism, its state (null otherwise).
  const dist::ExpertParallel* expert_parallel() const { return ep_.get(); }
  const data::LoaderState loader_state() const { return loader_->state(); }
  const MetricsLog& metrics() const { return metrics_; }
  // Telemetry summed over this process's telemetry steps.
  const TelemetryTotals& telemetry() const { return telemetry_; }
  // The config.json a checkpoint of this run holds (HF keys + training + precision).
  nlohmann::json run_config_json() const;
  // Approximate training FLOPs per token (6 × active matmul parameters + attention).
  double flops_per_token() const;

 private:
  void log_step(const StepRecord& r, int64_t until);
  void log_eval(const EvalResult& e);
  void write_plot();
  void print_header(int64_t until);
  void set_mtp_lambda(double lambda);
  bool root_writes() const { return !opt_.run_dir.empty() && comm_.is_root(); }
  bool stop_requested() const;

  model::ModelConfig cfg_;
  TrainHyper hyper_;
  TrainData data_;
  TrainerOptions opt_;
  const dist::Comm& comm_;
  std::unique_ptr<model::Model> model_;
  std::unique_ptr<dist::DataParallel> dp_;
  std::unique_ptr<AdamW> adamw_;          // null under expert parallelism
  std::unique_ptr<dist::ExpertParallel> ep_;  // after model_: released before the model
  std::unique_ptr<data::WindowLoader> loader_;
  LrSchedule lr_;
  StepSwitch lambda_, gamma_;
  int64_t step_ = 0, tokens_seen_ = 0, bad_in_row_ = 0;
  int64_t last_eval_step_ = -1, last_save_step_ = -1;
  double last_lr_ = 0;
  std::vector<int32_t> batch_;  // [B, T+1], the global micro-batch (this rank trains on its rows)
  MetricsLog metrics_;
  TelemetryTotals telemetry_;
  std::optional<double> peak_gflops_;
};

}  // namespace tinyseek::train
