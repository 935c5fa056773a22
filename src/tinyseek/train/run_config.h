// A run's config: a config.json (HF keys + `training` + `precision`) with command-line
// overrides applied, parsed into the model config and the trainer's hyper-parameters.
//
// Overrides are "key=value". The value is read as JSON when it parses (3e-4, 12, true,
// null, "text") and as a plain string otherwise (cosine). The key picks the section:
//   precision.<field>   the precision map (model/precision.h); precision.recipe=<name>
//                       replaces the whole section (a recipe sets every field), so put
//                       field overrides after it
//   training.<key>      the training section
//   <model key>         a top-level Hugging Face key (hidden_size, vocab_size, ...)
//   anything else       the training section (lr=1e-3, steps=200); a typo is rejected
//                       there with the list of valid keys.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tinyseek/model/config.h"
#include "tinyseek/train/hyper.h"

namespace tinyseek::train {

struct RunConfig {
  nlohmann::json json;  // the config after overrides
  model::ModelConfig model;
  TrainHyper hyper;
};

// Applies one "key=value" to `j`; throws for a malformed assignment.
void apply_override(nlohmann::json& j, const std::string& assignment);
// Parses `j` (after overrides) into both halves; `source` names it in errors.
RunConfig parse_run_config(nlohmann::json j, const std::vector<std::string>& overrides, const std::string& source);
// Reads a config file (clear errors for a missing file or invalid JSON).
nlohmann::json read_config_file(const std::string& path);

}  // namespace tinyseek::train
