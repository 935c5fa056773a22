// The optimizer and schedule keys of a config's `training` section, parsed and validated.
//
// The model parser (model/config.cc) owns the keys the model needs (seed, init_std,
// mtp_lambda, balance_alpha) and rejects every key that neither it nor
// known_training_keys() lists, so a typo never falls back to a default silently. This
// parser reads only its own keys and ignores the rest.
//
//   key                     default   meaning
//   schedule                "cosine"  "deepseek" | "cosine" (schedule.h)
//   lr                      2.2e-4    peak learning rate (DeepSeek-V3 §4.2)
//   min_lr                  2.2e-5    floor of the cosine decay (<= lr)
//   warmup_steps            2000      linear warmup length (0 = none)
//   decay_start             =warmup   "deepseek" only: first step of the cosine decay
//   decay_steps             (run)     cosine length; absent = so that the run's last step
//                                     (total_steps − 1) is the first at the floor
//   mtp_lambda              0.3       λ until mtp_lambda_switch_step
//   mtp_lambda_late         -         λ from mtp_lambda_switch_step on (both or neither)
//   mtp_lambda_switch_step  -
//   bias_update_speed       0.001     γ of the aux-loss-free bias update (0 disables)
//   bias_update_stop_step   -         γ = 0 from this step on (absent = never)
//   weight_decay            0.1       decoupled, not on norms / router bias
//   beta1, beta2, eps       0.9, 0.95, 1e-8
//   grad_clip               1.0       global-norm clip (0 = off)
//   moment_precision        "fp32"    "fp32" | "bf16" (AdamW moments, adamw.h); the
//                                     precision map's optimizer_moments = bf16 also selects BF16
// The run itself (trainer.h):
//   batch_size              8         B sequences per micro-batch
//   seq_len                 128       T tokens per sequence (the loader serves T+1)
//   grad_accum              1         micro-batches per optimizer step
//   steps                   -         planned run length: the schedule decays over it; absent =
//                                     the first invocation's --steps (then stored in the run)
//   eval_every              100       validation every N steps (0 = only at the end)
//   eval_batches            20        validation batches (0 = the whole val split)
//   save_every              100       checkpoint every N steps (0 = only at the end)
//   max_bad_steps           5         abort after this many non-finite steps in a row
//   data_seed               0         Philox seed of the data order
//   recompute               "none"    "none" | "selective" | "full" (model/recompute.h)
//   recompute_norm_up       true      under "none": recompute RMSNorm outputs and MLA's
//                                     latent norms and up-projections (q, kv) in backward
//                                     instead of keeping them (DeepSeek-V3 §3.2.3); the same
//                                     bits, less memory, ~2% more GEMM work; false keeps them
//                                     (Model::set_norm_up_recompute)
// Step keys are integers >= 0, counted in optimizer updates (schedule.h).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "tinyseek/train/adamw.h"
#include "tinyseek/train/schedule.h"

namespace tinyseek::train {

// The run's shape and cadence (steps count optimizer updates, like the schedule keys).
struct RunOptions {
  int64_t batch_size = 8;
  int64_t seq_len = 128;
  int64_t grad_accum = 1;
  int64_t steps = -1;  // kUnset
  int64_t eval_every = 100;
  int64_t eval_batches = 20;
  int64_t save_every = 100;
  int64_t max_bad_steps = 5;
  uint64_t data_seed = 0;
  std::string recompute = "none";
  bool recompute_norm_up = true;
};

struct TrainHyper {
  static constexpr int64_t kUnset = -1;

  LrShape schedule = LrShape::kCosine;
  double lr = 2.2e-4;
  double min_lr = 2.2e-5;
  int64_t warmup_steps = 2000;
  int64_t decay_start = kUnset;  // kDeepSeek only; unset = warmup_steps
  int64_t decay_steps = kUnset;  // unset = until the run's last step
  double mtp_lambda = 0.3;
  double mtp_lambda_late = 0.3;
  int64_t mtp_lambda_switch_step = kUnset;  // unset = never
  double bias_update_speed = 0.001;
  int64_t bias_update_stop_step = kUnset;   // unset = never
  AdamWConfig adamw;                        // weight_decay, beta1, beta2, eps, moment_precision
  double grad_clip = 1.0;
  RunOptions run;
};

// The keys parse_train_hyper reads (the model config parser accepts these too).
const std::vector<std::string>& known_training_keys();
bool is_train_hyper_key(std::string_view key);
std::string known_training_keys_list();  // "schedule, lr, ..." for error hints

// Parses the `training` object (null = all defaults). Throws tinyseek::Error naming
// "<source>: training.<key>" and the rule for a wrong type or value.
TrainHyper parse_train_hyper(const nlohmann::json& training, const std::string& source = "config.json");
// Every key of known_training_keys() that is set (round-trips through parse_train_hyper).
nlohmann::json to_json(const TrainHyper& h);
// Cross-key rules (also run by parse_train_hyper); call after editing a TrainHyper in code.
void validate(const TrainHyper& h, const std::string& source = "config");

// The resolved schedules. total_steps = the step the run trains to (only used when
// decay_steps is unset); it must be > 0 then.
LrSchedule lr_schedule(const TrainHyper& h, int64_t total_steps);
StepSwitch mtp_lambda_schedule(const TrainHyper& h);   // λ(step)
StepSwitch bias_speed_schedule(const TrainHyper& h);   // γ(step): speed, then 0

}  // namespace tinyseek::train
