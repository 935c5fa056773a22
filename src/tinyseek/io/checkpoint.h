// Checkpoint directories: atomic save, lookup, and the model weights.
//
// A run directory holds one current checkpoint and the run's logs:
//   RUN/step-00000040/        config.json (with the resolved precision map), model.safetensors,
//                             tokenizer.json, optimizer.safetensors, scaling.safetensors
//                             (delayed-scaling amax histories), trainer_state.json
//                             (complete, fsync'ed; the last three: train/state.h)
//   RUN/checkpoint -> step-00000040            the current checkpoint (a relative symlink)
//   RUN/config.json -> checkpoint/config.json  (and one such link per checkpoint file, so
//                             RUN itself looks like a Hugging Face model directory)
//   RUN/metrics.jsonl, RUN/loss.svg            written by the trainer
// Saving writes RUN/.tmp-step-N-<pid>/, fsyncs every file and the directory, renames it to
// RUN/step-N, then swaps the `checkpoint` symlink with rename(2) (atomic on POSIX) and only
// then deletes the previous step directory. A kill at any moment leaves `checkpoint`
// pointing at a complete directory (the old one until the swap, the new one after);
// leftovers (.tmp-*, orphan step-*) are removed by the next save.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "tinyseek/model/registry.h"

namespace tinyseek::io {

// The files of a tinyseek checkpoint, in the order they are written.
inline const std::vector<std::string>& checkpoint_files() {
  static const std::vector<std::string> kFiles = {"config.json", "model.safetensors", "tokenizer.json",
                                                  "optimizer.safetensors", "scaling.safetensors",
                                                  "trainer_state.json"};
  return kFiles;
}

// Writes a checkpoint for `step` into `run_dir` atomically (see above). `write_files`
// receives the temporary directory and writes the files into it (each fsync'ed, e.g. with
// write_file_synced or SafetensorsWriter). Creates run_dir if needed; throws naming the
// directory if it is not writable. Returns the final step directory.
std::string save_checkpoint_atomic(const std::string& run_dir, int64_t step,
                                   const std::function<void(const std::string& dir)>& write_files);

// The directory holding the checkpoint files for `path`: RUN/checkpoint's target for a run
// directory, or `path` itself if it directly holds config.json and model.safetensors.
// Throws with a clear message if neither.
std::string resolve_checkpoint_dir(const std::string& path);
bool has_checkpoint(const std::string& run_dir);

// Writes `bytes` to `path` (temp file + fsync + rename). Throws naming the path.
void write_file_synced(const std::string& path, const std::string& bytes);
std::string read_text_file(const std::string& path, const char* what);
nlohmann::json read_json_file(const std::string& path, const char* what);

// model.safetensors: every registry tensor as F32 under its Hugging Face name, in
// registry order (the router bias included).
void write_model_safetensors(const model::Registry& reg, const std::string& path);
// Loads every registry tensor from `path`, checking names and shapes against the registry;
// missing or extra tensors are an error that names them (a checkpoint from another config).
// Besides tinyseek's F32 it reads a Hugging Face export (io/hf_export.h) transparently: BF16
// tensors, F8_E4M3 weights dequantized with their `<name>_scale_inv` blocks into the FP32
// master weights, and the MTP layer's copies of embedding and head (which must equal the
// shared ones). Calls reg.params_changed().
void load_model_safetensors(model::Registry& reg, const std::string& path);

// Architecture keys (everything but `training`) of two config.json objects that differ,
// as "key: a vs b" lines; empty if the models are the same shape.
std::vector<std::string> architecture_differences(const nlohmann::json& a, const nlohmann::json& b);

}  // namespace tinyseek::io
