// Hugging Face DeepSeek-V3 export (`tinyseek export`) and the reading side of its weights.
//
// An export directory holds:
//   config.json             DeepseekV3ForCausalLM keys (released DeepSeek-V3 layout) plus the
//                           run's `training` and `precision` sections (Hugging Face keeps
//                           unknown keys as attributes; tinyseek needs them to evaluate with
//                           the run's batch shape and recipe); with --fp8 a quantization_config
//                           {"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [128, 128],
//                           "activation_scheme": "dynamic"}
//   model.safetensors       the tensors under their registry (= HF) names, stored as the released
//                           weights are: see hf_storage(); the MTP layer additionally carries
//                           copies of the shared embedding and head (mtp_shared_copies())
//   tokenizer.json          copied from the checkpoint
//   generation_config.json  bos/eos ids
// Loading an export back needs no special path: io::load_model_safetensors accepts F32, BF16
// and F8_E4M3 + `<name>_scale_inv` tensors (read_hf_tensor) and the MTP copies.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "tinyseek/io/safetensors.h"
#include "tinyseek/model/registry.h"

namespace tinyseek::io {

// How one registry tensor is stored in an export, following the released DeepSeek-V3 weights:
// with --fp8 the Linear weights of the attention and FFN/expert projections (main and MTP
// blocks) are F8_E4M3 with an F32 `<name>_scale_inv` per 128×128 block; embeddings, the head,
// norms, the router weight and the MTP eh_proj stay BF16; the router bias
// (e_score_correction_bias) is F32 in both exports, as released.
enum class HfStorage { kBf16, kF32, kFp8Block };
HfStorage hf_storage(model::Role role, bool fp8);
const char* to_string(HfStorage s);

// The FP8 block edge (weight_block_size [128, 128]) and the scale tensor's name.
inline constexpr int64_t kHfFp8Block = 128;
inline std::string scale_inv_name(const std::string& weight) { return weight + "_scale_inv"; }

// The MTP layer's copies of shared tensors in the released layout:
// ("model.layers.{L+k-1}.embed_tokens.weight", embed_tokens id) and
// ("model.layers.{L+k-1}.shared_head.head.weight", lm_head id) for every module k.
std::vector<std::pair<std::string, int>> mtp_shared_copies(const model::Registry& reg);

// config.json of an export: the HF DeepSeek-V3 keys of reg.config(), `training` and
// `precision` from `run_config` (the checkpoint's config.json) when present, bos/eos ids
// (-1 = unknown: omitted), quantization_config with fp8.
nlohmann::json hf_config_json(const model::ModelConfig& cfg, const nlohmann::json& run_config, bool fp8,
                              int64_t bos_id, int64_t eos_id);

// Writes model.safetensors of an export from the registry's FP32 parameters.
void write_hf_model_safetensors(const model::Registry& reg, const std::string& path, bool fp8);

// Decodes tensor `v` (F32, BF16, or F8_E4M3 with its `<name>_scale_inv` in `r`) into dst
// (numel floats), checking the shape against `shape`; F8 dequantizes as code × scale_inv of
// its 128×128 block. Throws naming the tensor on a wrong dtype, shape, scale layout, or a
// non-finite value. Appends the names it consumed (the tensor and its scale) to `used`.
void read_hf_tensor(const SafetensorsReader& r, const TensorView& v, const std::vector<int64_t>& shape, float* dst,
                    std::vector<std::string>* used);

struct ExportOptions {
  bool fp8 = false;    // F8_E4M3 Linear weights with 128×128 block scales
  bool force = false;  // write into a non-empty directory (replacing the export files)
};

// `tinyseek export`: loads the checkpoint at `checkpoint` (a run directory or any directory
// with config.json + model.safetensors, including an earlier export) and writes the export
// into `out_dir`. A non-empty out_dir without force is an error. Returns the files written.
std::vector<std::string> export_hf(const std::string& checkpoint, const std::string& out_dir,
                                   const ExportOptions& opt);

}  // namespace tinyseek::io
