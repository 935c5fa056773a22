// The trainer's part of a checkpoint: optimizer.safetensors and trainer_state.json.
//
// optimizer.safetensors: for every optimizer-trained tensor `name`, "exp_avg.<name>" and
// "exp_avg_sq.<name>" with the tensor's shape, dtype F32 or BF16 (the moments' storage
// format, bit for bit); metadata "step_count" (AdamW's t) and "moment_precision".
//
// trainer_state.json:
//   {"format": "tinyseek-trainer-state", "version": 1, "step": N, "tokens_seen": ...,
//    "bad_steps_in_row": 0, "lr": <lr of the last step>, "next_lr": ..., "mtp_lambda": <λ of
//    the next step>, "loader": {"epoch", "index", "seed", "window", "stride", "tokens"},
//    "rng": {"data_seed", "init_seed"}, "data_dir": ..., "tokenizer_hash": "<hex>",
//    "router_biases": {"<layer>": [E floats]}}
// The router biases are also in model.safetensors (the source of truth on load); the copy
// here is for humans and is checked against it. Floats are written with 17 significant
// digits, which round-trips every FP32 value exactly.
//
// scaling.safetensors: the delayed-scaling amax histories of every Linear (ops/linear.h),
// the only numerics state a resume needs besides the weights. One F32 tensor
// "<weight name>/<operand>" (operand: fprop.x, fprop.w, dgrad.w, dgrad.dy, wgrad.dy,
// wgrad.x) of shape [filled, slots] per history that recorded anything: its filled entries
// oldest first, so the file does not depend on where the ring buffer's cursor stands;
// metadata "<tensor name>" = the history length, plus "format" and "scaling" (online |
// delayed). Binary F32 keeps every amax bit for bit in 4 bytes, where the JSON of
// linear_scaling_state() spends ~20 characters per value on the whole ring, zeros of unfilled
// rows included (tiny config after 8 steps with the default 16-step history: 126 KB instead of
// ~473 KB).
// Online scaling writes the file with no tensors, so every checkpoint has the same files.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "tinyseek/data/loader.h"
#include "tinyseek/model/deepseek.h"
#include "tinyseek/train/adamw.h"

namespace tinyseek::train {

struct TrainerState {
  int64_t step = 0, tokens_seen = 0, bad_steps_in_row = 0;
  double lr = 0, next_lr = 0, mtp_lambda = 0;
  data::LoaderState loader;
  uint64_t data_seed = 0, init_seed = 0;
  std::string data_dir;
  uint64_t tokenizer_hash = 0;
  std::map<int64_t, std::vector<float>> router_biases;  // checkpoint layer -> [E]
};

void write_trainer_state(const TrainerState& s, const std::string& path);
TrainerState read_trainer_state(const std::string& path);  // validates types and ranges
void collect_router_biases(TrainerState& s, const model::Model& m);
// Throws if the state's router biases differ from the registry's (a mixed-up checkpoint).
void check_router_biases(const TrainerState& s, const model::Registry& reg);

void write_optimizer_state(const AdamW& opt, const model::Registry& reg, const std::string& path);
// Checks names, shapes and the moment format against `opt` and `reg`; restores the step count.
// convert_moments: moments saved in the other format (FP32 vs BF16) are converted (BF16 →
// FP32 exactly, FP32 → BF16 round-to-nearest-even) instead of rejected; used only when a
// resume changes the precision map on purpose (--allow-precision-change).
void load_optimizer_state(AdamW& opt, const model::Registry& reg, const std::string& path,
                          bool convert_moments = false);

// scaling.safetensors (above). write_scaling_state commits the current step's amaxes first
// (model::linear_scaling_state), as a continuing run would at its next step.
void write_scaling_state(const model::Registry& reg, const std::string& path);
// Restores the histories into a model built with the checkpoint's precision map. A missing
// file is accepted only when the map scales online (checkpoints from before delayed scaling).
void load_scaling_state(const model::Registry& reg, const std::string& path);

}  // namespace tinyseek::train
