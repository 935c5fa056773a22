// Shared helpers of the inference tests: tiny random models built in-process (dense, MoE,
// q_lora_rank null; fp32 or fp8 recipe; MTP depth 1 or 2), logits with a useful spread, and
// comparisons that print their evidence.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tinyseek/base/rng.h"
#include "tinyseek/model/config.h"
#include "tinyseek/model/deepseek.h"
#include "tinyseek/model/precision.h"

#include "../model/tiny_model.h"

namespace tinyseek::infer::testing {

enum class Arch { kDense, kMoe, kNoQLora };
inline const char* to_string(Arch a) { return a == Arch::kDense ? "dense" : a == Arch::kMoe ? "moe" : "q_lora null"; }

// D = 160 (past one 128-wide FP8 tile), 2 main layers, MTP depth `mtp`; MoE with top-2 of
// 4 routed experts + 1 shared (layer 0 dense).
inline nlohmann::json infer_config(Arch arch, const std::string& recipe, int64_t mtp = 2, int64_t vocab = 64,
                                   int64_t max_pos = 64) {
  // The model tests' tiny config (same widths) with 2 main layers, top-2 routing and a larger
  // init so the random logits spread.
  nlohmann::json j = model::tiny::tiny_config(recipe, 2);
  j["vocab_size"] = vocab;
  j["num_hidden_layers"] = 2;
  j["num_nextn_predict_layers"] = mtp;
  j["max_position_embeddings"] = max_pos;
  j["training"] = {{"init_std", 0.05}};
  if (arch == Arch::kDense) j["n_routed_experts"] = nullptr;
  if (arch == Arch::kNoQLora) j["q_lora_rank"] = nullptr;
  return j;
}

// A model with random weights: init(seed), norms 1 + N(0, 0.1²), router biases N(0, 0.1²),
// and the output head scaled so logits spread over a few units (peaked but not one-hot
// distributions: sampling tests need mass on several tokens, greedy tests need clear maxima).
inline std::unique_ptr<model::Model> random_model(const nlohmann::json& j, uint64_t seed, float head_scale = 6.0f) {
  auto m = std::make_unique<model::Model>(model::config_from_json(j, "test config"));
  m->init(seed);
  model::Registry& r = m->registry();
  const Philox rng(seed ^ 0x5eedull, 991);
  uint64_t counter = 0;
  for (size_t i = 0; i < r.size(); ++i) {
    const model::TensorInfo& t = r.info(int(i));
    float* p = r.param(int(i));
    if (t.role == model::Role::kNorm || t.role == model::Role::kRouterBias) {
      for (size_t e = 0; e < t.numel; ++e)
        p[e] = (t.role == model::Role::kNorm ? 1.0f : 0.0f) + static_cast<float>(0.1 * rng.normal(counter++));
    } else if (t.role == model::Role::kHead) {
      for (size_t e = 0; e < t.numel; ++e) p[e] *= head_scale;
    }
  }
  r.params_changed();
  return m;
}

inline std::vector<int32_t> random_tokens(int64_t n, int64_t V, uint64_t seed) {
  const Philox rng(seed, 17);
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (size_t i = 0; i < t.size(); ++i) t[i] = static_cast<int32_t>(rng.uniform(i) * static_cast<float>(V)) % int32_t(V);
  return t;
}

// max |a − b| / max |b| over n values (normwise relative difference).
inline double rel_diff(const float* a, const float* b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    num = std::max(num, std::fabs(double(a[i]) - double(b[i])));
    den = std::max(den, std::fabs(double(b[i])));
  }
  return den > 0 ? num / den : num;
}

}  // namespace tinyseek::infer::testing
