// Tests of model/config: parsing of the Hugging Face keys and `training`, defaults,
// to_json round trip, and one test per bad-input rule (the message must name the key and
// the rule).
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tinyseek/base/check.h"
#include "tinyseek/model/config.h"

namespace tinyseek::model {
namespace {

using nlohmann::json;

json valid_moe_config() {
  return json::parse(R"({
    "vocab_size": 64, "hidden_size": 32, "intermediate_size": 48, "moe_intermediate_size": 16,
    "num_hidden_layers": 3, "num_nextn_predict_layers": 1, "num_attention_heads": 4,
    "n_shared_experts": 1, "n_routed_experts": 8, "routed_scaling_factor": 2.5,
    "kv_lora_rank": 16, "q_lora_rank": 24, "qk_rope_head_dim": 4, "v_head_dim": 8,
    "qk_nope_head_dim": 8, "n_group": 4, "topk_group": 2, "num_experts_per_tok": 3,
    "first_k_dense_replace": 1, "norm_topk_prob": true, "scoring_func": "sigmoid",
    "max_position_embeddings": 128, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
    "training": {"seed": 7, "init_std": 0.02}
  })");
}

// Expects config_from_json to throw with a message containing every fragment.
void expect_error(const json& j, const std::vector<std::string>& fragments) {
  try {
    config_from_json(j, "test.json");
    ADD_FAILURE() << "no error for " << j.dump();
  } catch (const Error& e) {
    std::printf("  rejected: %s\n", e.message().c_str());
    for (const auto& f : fragments)
      EXPECT_NE(e.message().find(f), std::string::npos) << "message lacks '" << f << "': " << e.message();
  }
}

TEST(Config, ParsesEveryKeyAndTrainingDefaults) {
  const ModelConfig c = config_from_json(valid_moe_config());
  EXPECT_EQ(c.vocab_size, 64);
  EXPECT_EQ(c.hidden_size, 32);
  EXPECT_EQ(c.intermediate_size, 48);
  EXPECT_EQ(c.moe_intermediate_size, 16);
  EXPECT_EQ(c.num_hidden_layers, 3);
  EXPECT_EQ(c.num_nextn_predict_layers, 1);
  EXPECT_EQ(c.num_attention_heads, 4);
  EXPECT_EQ(c.n_shared_experts, 1);
  EXPECT_EQ(c.n_routed_experts, 8);
  EXPECT_DOUBLE_EQ(c.routed_scaling_factor, 2.5);
  EXPECT_EQ(c.kv_lora_rank, 16);
  EXPECT_EQ(c.q_lora_rank, 24);
  EXPECT_TRUE(c.has_q_lora());
  EXPECT_EQ(c.qk_rope_head_dim, 4);
  EXPECT_EQ(c.v_head_dim, 8);
  EXPECT_EQ(c.qk_nope_head_dim, 8);
  EXPECT_EQ(c.qk_head_dim(), 12);
  EXPECT_EQ(c.n_group, 4);
  EXPECT_EQ(c.topk_group, 2);
  EXPECT_EQ(c.num_experts_per_tok, 3);
  EXPECT_EQ(c.first_k_dense_replace, 1);
  EXPECT_TRUE(c.norm_topk_prob);
  EXPECT_EQ(c.max_position_embeddings, 128);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
  EXPECT_EQ(c.training.seed, 7u);
  EXPECT_DOUBLE_EQ(c.training.init_std, 0.02);
  EXPECT_DOUBLE_EQ(c.training.mtp_lambda, 0.3);     // default
  EXPECT_DOUBLE_EQ(c.training.balance_alpha, 1e-4);  // default
  // Layer kinds: 0 dense, 1..2 MoE, MTP layer 3 MoE (L >= first_k_dense_replace).
  EXPECT_FALSE(c.is_moe_layer(0));
  EXPECT_TRUE(c.is_moe_layer(1));
  EXPECT_TRUE(c.is_moe_layer(2));
  EXPECT_TRUE(c.is_moe_layer(3));
  std::printf("summary: %s\n", summary(c).c_str());
}

TEST(Config, OptionalKeysDefaultAndNullMeansAbsent) {
  json j = valid_moe_config();
  j.erase("n_group");
  j.erase("topk_group");
  j.erase("scoring_func");
  j.erase("training");
  j["q_lora_rank"] = nullptr;
  ModelConfig c = config_from_json(j);
  EXPECT_EQ(c.n_group, 1);
  EXPECT_EQ(c.topk_group, 1);
  EXPECT_EQ(c.scoring_func, "sigmoid");
  EXPECT_EQ(c.q_lora_rank, 0);
  EXPECT_FALSE(c.has_q_lora());
  EXPECT_DOUBLE_EQ(c.training.init_std, 0.006);
  j["q_lora_rank"] = 0;
  EXPECT_FALSE(config_from_json(j).has_q_lora());
  // No routed experts: every layer (main and MTP) is dense.
  j["n_routed_experts"] = nullptr;
  c = config_from_json(j);
  EXPECT_FALSE(c.has_moe_layers());
  EXPECT_FALSE(c.is_moe_layer(3));
}

TEST(Config, MtpLayerKindFollowsFirstKDense) {
  json j = valid_moe_config();
  j["first_k_dense_replace"] = 3;  // all main layers dense, L >= first_k: MTP is MoE
  EXPECT_TRUE(config_from_json(j).is_moe_layer(3));
  j["first_k_dense_replace"] = 4;  // beyond L: MTP dense as well
  EXPECT_FALSE(config_from_json(j).is_moe_layer(3));
  EXPECT_FALSE(config_from_json(j).has_moe_layers());
}

TEST(Config, ToJsonRoundTripsAndHasHfKeys) {
  json in = valid_moe_config();
  in["q_lora_rank"] = nullptr;
  const ModelConfig a = config_from_json(in);
  const json out = to_json(a);
  EXPECT_EQ(out["architectures"], json::array({"DeepseekV3ForCausalLM"}));
  EXPECT_EQ(out["model_type"], "deepseek_v3");
  EXPECT_EQ(out["hidden_act"], "silu");
  EXPECT_EQ(out["topk_method"], "noaux_tc");
  EXPECT_EQ(out["num_key_value_heads"], 4);
  EXPECT_EQ(out["tie_word_embeddings"], false);
  EXPECT_EQ(out["moe_layer_freq"], 1);
  EXPECT_TRUE(out["q_lora_rank"].is_null());  // HF's spelling of "direct q_proj"
  EXPECT_EQ(out["training"]["seed"], 7);
  const ModelConfig b = config_from_json(out);
  EXPECT_EQ(to_json(b), out);
  EXPECT_EQ(b.q_lora_rank, 0);
  EXPECT_EQ(b.n_group, a.n_group);
  EXPECT_DOUBLE_EQ(b.training.init_std, a.training.init_std);
  std::printf("to_json has %zu keys\n", out.size());
}

TEST(Config, LoadConfigReadsFileAndReportsBadJson) {
  const std::string path = ::testing::TempDir() + "/tinyseek_config_test.json";
  {
    std::ofstream(path) << valid_moe_config().dump(2);
  }
  EXPECT_EQ(load_config(path).hidden_size, 32);
  {
    std::ofstream(path) << "{\"hidden_size\": 32,}";
  }
  try {
    load_config(path);
    ADD_FAILURE() << "no error for invalid JSON";
  } catch (const Error& e) {
    std::printf("  rejected: %s\n", e.message().c_str());
    EXPECT_NE(e.message().find("invalid JSON"), std::string::npos);
  }
  EXPECT_THROW(load_config(path + ".does-not-exist"), Error);
  std::remove(path.c_str());
}

TEST(ConfigBadInput, MissingKey) {
  for (const char* key : {"hidden_size", "q_lora_rank", "n_routed_experts", "rope_theta", "norm_topk_prob"}) {
    json j = valid_moe_config();
    j.erase(key);
    expect_error(j, {"missing key", key});
  }
}

TEST(ConfigBadInput, WrongTypes) {
  auto with = [](const char* key, json v) {
    json j = valid_moe_config();
    j[key] = v;
    return j;
  };
  expect_error(with("hidden_size", "32"), {"hidden_size", "must be an integer", "string"});
  expect_error(with("hidden_size", 32.5), {"hidden_size", "must be an integer"});
  expect_error(with("rms_norm_eps", "1e-6"), {"rms_norm_eps", "must be a number"});
  expect_error(with("norm_topk_prob", 1), {"norm_topk_prob", "must be true or false"});
  expect_error(with("scoring_func", 3), {"scoring_func", "must be a string"});
  expect_error(with("hidden_size", nullptr), {"hidden_size", "must not be null"});
  expect_error(json::array({1, 2}), {"must be a JSON object"});
  json j = valid_moe_config();
  j["training"] = 3;
  expect_error(j, {"training", "must be a JSON object"});
  j = valid_moe_config();
  j["training"]["seed"] = -1;
  expect_error(j, {"seed", "non-negative integer"});
}

TEST(ConfigBadInput, UnknownTrainingKeyListsValidOnes) {
  json j = valid_moe_config();
  j["training"]["init_sdt"] = 0.1;
  expect_error(j, {"unknown key 'init_sdt'"});
  try {
    config_from_json(j);
  } catch (const Error& e) {
    EXPECT_NE(e.hint().find("seed, init_std, mtp_lambda, balance_alpha"), std::string::npos) << e.hint();
  }
}

TEST(ConfigBadInput, NonPositiveDims) {
  for (const char* key : {"vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "kv_lora_rank",
                          "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "max_position_embeddings",
                          "intermediate_size", "moe_intermediate_size", "num_experts_per_tok"}) {
    json j = valid_moe_config();
    j[key] = 0;
    expect_error(j, {key, "must be positive"});
  }
  for (const char* key : {"q_lora_rank", "n_routed_experts", "n_shared_experts", "first_k_dense_replace",
                          "num_nextn_predict_layers"}) {
    json j = valid_moe_config();
    j[key] = -1;
    expect_error(j, {key, "must be >= 0"});
  }
  for (const char* key : {"rms_norm_eps", "rope_theta", "routed_scaling_factor"}) {
    json j = valid_moe_config();
    j[key] = 0.0;
    expect_error(j, {key, "positive finite"});
  }
  json j = valid_moe_config();
  j["training"]["init_std"] = -0.1;
  expect_error(j, {"training.init_std", "positive finite"});
  j = valid_moe_config();
  j["training"]["mtp_lambda"] = -0.1;
  expect_error(j, {"training.mtp_lambda", ">= 0"});
  j = valid_moe_config();
  j["training"]["balance_alpha"] = -1.0;
  expect_error(j, {"training.balance_alpha", ">= 0"});
}

TEST(ConfigBadInput, DenseWidthOnlyRequiredWhenDenseLayersExist) {
  json j = valid_moe_config();
  j["first_k_dense_replace"] = 0;  // every layer MoE: intermediate_size unused
  j["intermediate_size"] = 0;
  EXPECT_NO_THROW(config_from_json(j));
  j["first_k_dense_replace"] = 1;
  expect_error(j, {"intermediate_size", "must be positive", "dense FFN layers"});
}

TEST(ConfigBadInput, RoutingRules) {
  json j = valid_moe_config();
  j["num_experts_per_tok"] = 9;
  expect_error(j, {"num_experts_per_tok (9) must be <= n_routed_experts (8)"});
  j = valid_moe_config();
  j["n_group"] = 3;
  expect_error(j, {"n_group (3) must divide n_routed_experts (8)"});
  j = valid_moe_config();
  j["n_group"] = 8;
  j["topk_group"] = 2;
  j["num_experts_per_tok"] = 2;
  expect_error(j, {"each expert group needs >= 2 experts", "n_routed_experts/n_group = 1"});
  j = valid_moe_config();
  j["topk_group"] = 5;
  expect_error(j, {"topk_group (5) must be <= n_group (4)"});
  j = valid_moe_config();
  j["topk_group"] = 1;  // kept experts = 1 * 8/4 = 2 < K = 3
  expect_error(j, {"num_experts_per_tok (3) must be <= the experts in the kept groups", "= 2"});
  j = valid_moe_config();
  j["n_group"] = 0;
  expect_error(j, {"n_group", "must be positive"});
  j = valid_moe_config();
  j["topk_group"] = 0;
  expect_error(j, {"topk_group", "must be positive"});
}

TEST(ConfigBadInput, RopeDimOddAndScoringFunc) {
  json j = valid_moe_config();
  j["qk_rope_head_dim"] = 5;
  expect_error(j, {"qk_rope_head_dim", "must be even"});
  j = valid_moe_config();
  j["scoring_func"] = "softmax";
  expect_error(j, {"scoring_func", "must be \"sigmoid\"", "softmax"});
}

TEST(ConfigBadInput, HfConstantsMustMatch) {
  const std::vector<std::pair<const char*, json>> bad = {
      {"tie_word_embeddings", true}, {"hidden_act", "gelu"}, {"topk_method", "greedy"},
      {"moe_layer_freq", 2},          {"model_type", "llama"}, {"num_key_value_heads", 1},
      {"rope_scaling", json::object({{"type", "yarn"}})}};
  for (const auto& [key, value] : bad) {
    json j = valid_moe_config();
    j[key] = value;
    expect_error(j, {key, "must"});
  }
  json j = valid_moe_config();
  j["tie_word_embeddings"] = false;  // the one supported value is accepted
  j["num_key_value_heads"] = 4;
  j["torch_dtype"] = "bfloat16";  // other HF keys are ignored
  EXPECT_NO_THROW(config_from_json(j));
}

}  // namespace
}  // namespace tinyseek::model
