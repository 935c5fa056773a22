// A checkpoint ready for inference: the model built from the checkpoint's config.json with
// its weights, and its tokenizer — loaded through io/checkpoint exactly as `tinyseek eval`
// does (resolve_checkpoint_dir, then load_model_safetensors), so every directory eval reads
// (a run directory, a step directory, an exported Hugging Face directory) works here too.
#pragma once
#include <memory>
#include <optional>
#include <string>

#include "tinyseek/data/bpe.h"
#include "tinyseek/model/deepseek.h"

namespace tinyseek::infer {

struct LoadedCheckpoint {
  std::string dir;                          // the directory holding the files
  std::unique_ptr<model::Model> model;
  std::optional<data::Tokenizer> tokenizer; // absent when the directory has no tokenizer.json
};

// Throws with a hint for a missing directory, a directory without a checkpoint, or files
// that do not match the config.
LoadedCheckpoint load_checkpoint(const std::string& path);

}  // namespace tinyseek::infer
