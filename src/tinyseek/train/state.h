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
void load_optimizer_state(AdamW& opt, const model::Registry& reg, const std::string& path);

}  // namespace tinyseek::train
