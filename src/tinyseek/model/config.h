// DeepSeek-V3 model configuration: the Hugging Face DeepseekV3Config keys (so a tinyseek
// config.json loads in `transformers` and vice versa) plus a `training` section.
//
// The parser is table-driven (config.cc: kModelFields, kTrainingFields, kHfConstants): a
// later issue adds a key by adding one row, and parsing, the error messages listing the
// valid keys, and to_json all follow from that row.
#pragma once
#include <cstdint>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "tinyseek/model/precision.h"

namespace tinyseek::model {

// Hyper-parameters of the training run that the model itself needs (initialisation and
// loss weights). Unknown keys in `training` are an error: a typo must not silently fall
// back to a default.
struct TrainingConfig {
  uint64_t seed = 0;             // Philox seed of the parameter initialisation
  double init_std = 0.006;       // N(0, init_std²) for linear, embedding, head, router (paper §4.2)
  double mtp_lambda = 0.3;       // λ: L = CE_main + λ/Dmtp Σ_k CE_k + α L_bal
  double balance_alpha = 1e-4;   // α of the sequence-wise balance loss
};

struct ModelConfig {
  // Names are the Hugging Face keys; the comment gives the DESIGN.md §3 symbol.
  int64_t hidden_size = 0;               // D
  int64_t num_hidden_layers = 0;         // L (main blocks)
  int64_t num_attention_heads = 0;       // H
  int64_t q_lora_rank = 0;               // dq; 0 (JSON null or 0) = direct q_proj
  int64_t kv_lora_rank = 0;              // dc
  int64_t qk_nope_head_dim = 0;          // dn
  int64_t qk_rope_head_dim = 0;          // dr (even: RoPE rotates pairs)
  int64_t v_head_dim = 0;                // dv
  int64_t intermediate_size = 0;         // F (dense SwiGLU)
  int64_t moe_intermediate_size = 0;     // Fe (per expert)
  int64_t n_routed_experts = 0;          // E; 0 (JSON null or 0) = no MoE layers at all
  int64_t n_shared_experts = 0;          // Es
  int64_t num_experts_per_tok = 0;       // K
  int64_t n_group = 1;                   // expert groups for group-limited routing
  int64_t topk_group = 1;                // groups kept per token
  double routed_scaling_factor = 1.0;
  bool norm_topk_prob = true;
  std::string scoring_func = "sigmoid";  // only sigmoid (DeepSeek-V3) is supported
  int64_t first_k_dense_replace = 0;     // layers ℓ < this are dense
  int64_t num_nextn_predict_layers = 0;  // Dmtp
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  int64_t vocab_size = 0;                // V
  int64_t max_position_embeddings = 0;   // upper bound on T
  TrainingConfig training;
  PrecisionMap precision;                // the `precision` section (model/precision.h); default fp32

  bool has_q_lora() const { return q_lora_rank > 0; }
  int64_t qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
  // Checkpoint layers: main blocks 0..L-1, then MTP module k at L+k-1.
  int64_t num_total_layers() const { return num_hidden_layers + num_nextn_predict_layers; }
  // Whether checkpoint layer `layer` (main or MTP) has a MoE FFN. Main layer ℓ: routed
  // experts exist and ℓ >= first_k_dense_replace. MTP layers follow docs/model.md: MoE if
  // the config has routed experts and num_hidden_layers >= first_k_dense_replace (as the
  // released MTP layer), i.e. the same answer as the last main layer would get at index L.
  bool is_moe_layer(int64_t layer) const;
  bool has_moe_layers() const;
  bool has_dense_layers() const;
  int64_t experts_per_group() const { return n_group > 0 ? n_routed_experts / n_group : 0; }
};

// Parses and validates. `source` names the input in error messages (e.g. the file path).
// Throws tinyseek::Error naming the key and the rule.
ModelConfig config_from_json(const nlohmann::json& j, const std::string& source = "config.json");
ModelConfig load_config(const std::string& path);

// Checks every rule (dims positive, routing consistent, ...). Called by config_from_json;
// call it yourself after building a ModelConfig in code.
void validate(const ModelConfig& c, const std::string& source = "config");

// The Hugging Face config.json (DeepseekV3ForCausalLM keys) plus `training`.
nlohmann::json to_json(const ModelConfig& c);

// One-line summary for logs: "D 64 L 2 H 4 dq 32 dc 16 dn 8 dr 4 dv 8 V 256 E 8 K 2 ..."
std::string summary(const ModelConfig& c);

}  // namespace tinyseek::model
