// Shared helpers of the model tests: a tiny DeepSeek-V3 config (MoE + MTP, widths past one
// 128-element FP8 tile) with a precision spec, parameters with non-trivial norms and router
// biases, random tokens, thread-count control and bit comparisons.
#pragma once
#include <cstring>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "tinyseek/base/rng.h"
#include "tinyseek/model/config.h"
#include "tinyseek/model/deepseek.h"
#include "tinyseek/model/precision.h"

namespace tinyseek::model::tiny {

// K = E by default: every expert sees every token (the routing stays continuous, so FP8 and
// FP32 runs route alike); pass experts_per_token < 4 for real top-k routing.
inline nlohmann::json tiny_config(const std::string& precision_spec, int experts_per_token = 4) {
  nlohmann::json j = {{"vocab_size", 96},
                      {"hidden_size", 160},
                      {"intermediate_size", 192},
                      {"moe_intermediate_size", 64},
                      {"num_hidden_layers", 3},
                      {"num_nextn_predict_layers", 1},
                      {"num_attention_heads", 2},
                      {"n_shared_experts", 1},
                      {"n_routed_experts", 4},
                      {"routed_scaling_factor", 2.5},
                      {"kv_lora_rank", 32},
                      {"q_lora_rank", 48},
                      {"qk_rope_head_dim", 8},
                      {"v_head_dim", 16},
                      {"qk_nope_head_dim", 16},
                      {"num_experts_per_tok", experts_per_token},
                      {"first_k_dense_replace", 1},
                      {"norm_topk_prob", true},
                      {"max_position_embeddings", 128},
                      {"rms_norm_eps", 1e-6},
                      {"rope_theta", 10000.0},
                      {"training", {{"mtp_lambda", 0.3}, {"balance_alpha", 0.01}}}};
  if (!precision_spec.empty()) j["precision"] = precision_to_json(precision_from_spec(precision_spec));
  return j;
}

// init(seed), then norms 1 + N(0, 0.1²) and router biases N(0, 0.1²) (every norm matters).
inline void prepare(Model& m, uint64_t seed) {
  m.init(seed);
  Registry& r = m.registry();
  const Philox rng(seed ^ 0x5eedull, 991);
  uint64_t counter = 0;
  for (size_t i = 0; i < r.size(); ++i) {
    const TensorInfo& t = r.info(int(i));
    if (t.role != Role::kNorm && t.role != Role::kRouterBias) continue;
    float* p = r.param(int(i));
    for (size_t j = 0; j < t.numel; ++j)
      p[j] = (t.role == Role::kNorm ? 1.0f : 0.0f) + static_cast<float>(0.1 * rng.normal(counter++));
  }
  r.params_changed();
}

inline std::vector<ops::Index> tokens(int64_t B, int64_t T, int64_t V, uint64_t seed) {
  const Philox rng(seed, 17);
  std::vector<ops::Index> t(size_t(B * (T + 1)));
  for (size_t i = 0; i < t.size(); ++i) t[i] = static_cast<ops::Index>(rng.uniform(i) * static_cast<float>(V)) % V;
  return t;
}

// Number of floats whose bits differ.
inline size_t differing(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return a.size() + b.size();
  size_t n = 0;
  for (size_t i = 0; i < a.size(); ++i) n += std::memcmp(&a[i], &b[i], sizeof(float)) != 0;
  return n;
}

inline std::vector<float> grads_of(const Model& m) {
  const AlignedBuffer<float>& g = m.registry().grads();
  return std::vector<float>(g.data(), g.data() + g.size());
}

inline void set_threads(int n) {
#ifdef _OPENMP
  omp_set_num_threads(n);
#else
  (void)n;
#endif
}
inline int get_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

}  // namespace tinyseek::model::tiny
