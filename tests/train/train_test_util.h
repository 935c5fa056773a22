// Shared fixtures of the train tests: a small DeepSeek-V3 config whose registry has every
// role (dense + MoE layers, router bias, MTP projection) and tensors larger than one
// optimizer chunk (embedding / head [512, 64] = 32768 > 16384 elements).
#pragma once
#include <cstdint>
#include <vector>

#include "tinyseek/base/rng.h"
#include "tinyseek/model/config.h"
#include "tinyseek/model/registry.h"

namespace tinyseek::train::testing {

inline model::ModelConfig small_config() {
  model::ModelConfig c;
  c.vocab_size = 512;
  c.hidden_size = 64;
  c.intermediate_size = 96;
  c.moe_intermediate_size = 16;
  c.num_hidden_layers = 2;
  c.num_nextn_predict_layers = 1;
  c.num_attention_heads = 2;
  c.n_shared_experts = 1;
  c.n_routed_experts = 4;
  c.num_experts_per_tok = 2;
  c.kv_lora_rank = 16;
  c.q_lora_rank = 24;
  c.qk_rope_head_dim = 8;
  c.qk_nope_head_dim = 8;
  c.v_head_dim = 8;
  c.first_k_dense_replace = 1;
  c.max_position_embeddings = 32;
  c.training.init_std = 0.02;
  model::validate(c);
  return c;
}

// Gradients N(0, std²) from Philox(seed, tensor id), the padding left at zero.
inline void fill_grads(model::Registry& reg, uint64_t seed, double std) {
  reg.zero_grad();
  for (size_t id = 0; id < reg.size(); ++id) {
    const Philox rng(seed, id);
    float* g = reg.grad(static_cast<int>(id));
    for (size_t i = 0; i < reg.info(static_cast<int>(id)).numel; ++i) g[i] = static_cast<float>(rng.normal(i) * std);
  }
}

// Ids of the tensors with a given role.
inline std::vector<int> ids_with_role(const model::Registry& reg, model::Role role) {
  std::vector<int> ids;
  for (size_t id = 0; id < reg.size(); ++id)
    if (reg.info(static_cast<int>(id)).role == role) ids.push_back(static_cast<int>(id));
  return ids;
}

}  // namespace tinyseek::train::testing
