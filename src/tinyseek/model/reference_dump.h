// The C++ ↔ PyTorch reference dump (docs/model.md "Reference dump"): a directory with
//   config.json          HF DeepseekV3 keys + training (to_json)
//   model.safetensors    every parameter, F32, HF names, registry order
//   inputs.safetensors   tokens I32 [B, T+1]
//   outputs.safetensors  logits [B, T, V], logits_mtp.{k} [B, T−k, V], loss, loss_main,
//                        loss_mtp.{k}, loss_balance (F32 [1]), load_counts.{layer} (I32 [E]),
//                        grad.{name} for every parameter (zeros for the router bias)
// consumed by tests/reference/compare.py.
#pragma once
#include <cstdint>
#include <string>

#include "tinyseek/model/deepseek.h"
#include "tinyseek/ops/dims.h"

namespace tinyseek::model {

// Runs model.forward (logits) then, after zeroing the gradients, model.forward_backward
// (losses, gradients, load counts) on tokens [B, T+1] and writes the four files into `dir`
// (created if missing). Leaves the model's gradients holding this batch's gradients.
Losses write_reference_dump(const std::string& dir, Model& model, const ops::Index* tokens, int64_t B, int64_t T);

// model.safetensors alone: every parameter as F32 under its HF name.
void save_parameters_f32(const std::string& path, const Registry& reg);

}  // namespace tinyseek::model
