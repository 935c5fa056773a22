// The `training` optimizer/schedule keys: parsing, defaults, round trip, bad values
// rejected with the key named, and the model config parser accepting exactly these keys.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tinyseek/base/check.h"
#include "tinyseek/model/config.h"
#include "tinyseek/train/hyper.h"

namespace tinyseek::train {
namespace {

using nlohmann::json;

void expect_error(const json& training, const std::vector<std::string>& fragments) {
  try {
    parse_train_hyper(training, "run.json");
    ADD_FAILURE() << "no error for " << training.dump();
  } catch (const Error& e) {
    std::printf("  rejected %s: %s\n", training.dump().c_str(), e.message().c_str());
    for (const auto& f : fragments)
      EXPECT_NE(e.message().find(f), std::string::npos) << "message lacks '" << f << "': " << e.message();
  }
}

TEST(TrainHyper, DefaultsAreThePaperValues) {
  const TrainHyper h = parse_train_hyper(json(nullptr));
  EXPECT_EQ(h.schedule, LrShape::kCosine);
  EXPECT_EQ(h.lr, 2.2e-4);
  EXPECT_EQ(h.min_lr, 2.2e-5);
  EXPECT_EQ(h.adamw.beta1, 0.9);
  EXPECT_EQ(h.adamw.beta2, 0.95);
  EXPECT_EQ(h.adamw.eps, 1e-8);
  EXPECT_EQ(h.adamw.weight_decay, 0.1);
  EXPECT_EQ(h.grad_clip, 1.0);
  EXPECT_EQ(h.mtp_lambda, 0.3);
  EXPECT_EQ(h.bias_update_speed, 0.001);
  EXPECT_EQ(h.adamw.moments, MomentPrecision::kFp32);
  EXPECT_EQ(h.run.recompute, "none");
  EXPECT_TRUE(h.run.recompute_norm_up);  // DeepSeek-V3 §3.2.3: RMSNorm and MLA up-projections recomputed
  // Keys the model parser owns are ignored here.
  EXPECT_EQ(parse_train_hyper(json{{"seed", 3}, {"init_std", 0.1}}).lr, 2.2e-4);
}

TEST(TrainHyper, ParsesEveryKeyAndRoundTrips) {
  const json j = {{"schedule", "deepseek"}, {"lr", 1e-3}, {"min_lr", 1e-4}, {"warmup_steps", 10},
                  {"decay_start", 50}, {"decay_steps", 40}, {"mtp_lambda", 0.3}, {"mtp_lambda_late", 0.1},
                  {"mtp_lambda_switch_step", 70}, {"bias_update_speed", 0.002}, {"bias_update_stop_step", 90},
                  {"weight_decay", 0.05}, {"beta1", 0.8}, {"beta2", 0.9}, {"eps", 1e-6}, {"grad_clip", 0.5},
                  {"moment_precision", "bf16"}, {"batch_size", 3}, {"seq_len", 17}, {"grad_accum", 2},
                  {"steps", 123}, {"eval_every", 7}, {"eval_batches", 0}, {"save_every", 9},
                  {"max_bad_steps", 4}, {"data_seed", 11}, {"recompute", "selective"},
                  {"recompute_norm_up", false}};
  // Every key of the public list appears in this test, and nothing else.
  ASSERT_EQ(j.size(), known_training_keys().size());
  for (const std::string& k : known_training_keys()) EXPECT_TRUE(j.contains(k)) << k;
  const TrainHyper h = parse_train_hyper(j);
  EXPECT_EQ(h.schedule, LrShape::kDeepSeek);
  EXPECT_EQ(h.lr, 1e-3);
  EXPECT_EQ(h.min_lr, 1e-4);
  EXPECT_EQ(h.warmup_steps, 10);
  EXPECT_EQ(h.decay_start, 50);
  EXPECT_EQ(h.decay_steps, 40);
  EXPECT_EQ(h.mtp_lambda_late, 0.1);
  EXPECT_EQ(h.mtp_lambda_switch_step, 70);
  EXPECT_EQ(h.bias_update_speed, 0.002);
  EXPECT_EQ(h.bias_update_stop_step, 90);
  EXPECT_EQ(h.adamw.weight_decay, 0.05);
  EXPECT_EQ(h.adamw.beta1, 0.8);
  EXPECT_EQ(h.adamw.beta2, 0.9);
  EXPECT_EQ(h.adamw.eps, 1e-6);
  EXPECT_EQ(h.grad_clip, 0.5);
  EXPECT_EQ(h.adamw.moments, MomentPrecision::kBf16);
  EXPECT_EQ(h.run.batch_size, 3);
  EXPECT_EQ(h.run.seq_len, 17);
  EXPECT_EQ(h.run.grad_accum, 2);
  EXPECT_EQ(h.run.steps, 123);
  EXPECT_EQ(h.run.eval_every, 7);
  EXPECT_EQ(h.run.eval_batches, 0);
  EXPECT_EQ(h.run.save_every, 9);
  EXPECT_EQ(h.run.max_bad_steps, 4);
  EXPECT_EQ(h.run.data_seed, 11u);
  EXPECT_EQ(h.run.recompute, "selective");
  EXPECT_FALSE(h.run.recompute_norm_up);
  EXPECT_EQ(to_json(h), j);
  EXPECT_EQ(to_json(parse_train_hyper(to_json(TrainHyper{}))), to_json(TrainHyper{}));
  EXPECT_EQ(parse_train_hyper(json{{"warmup_steps", 2000.0}}).warmup_steps, 2000);  // integral float is fine
}

TEST(TrainHyper, BadValuesNameTheKey) {
  expect_error({{"lr", -1}}, {"training.lr", "positive"});
  expect_error({{"lr", "fast"}}, {"training.lr", "must be a number"});
  expect_error({{"min_lr", 1.0}}, {"training.min_lr", "[0, lr]"});
  expect_error({{"warmup_steps", -5}}, {"training.warmup_steps", ">= 0"});
  expect_error({{"warmup_steps", 2.5}}, {"training.warmup_steps", "integer"});
  expect_error({{"schedule", "linear"}}, {"training.schedule", "\"cosine\", \"deepseek\""});
  expect_error({{"schedule", 3}}, {"training.schedule", "string"});
  expect_error({{"moment_precision", "fp16"}}, {"training.moment_precision", "\"fp32\", \"bf16\""});
  expect_error({{"beta1", 1.0}}, {"training.beta1", "[0, 1)"});
  expect_error({{"beta2", -0.1}}, {"training.beta2", "[0, 1)"});
  expect_error({{"eps", 0}}, {"training.eps", "positive"});
  expect_error({{"weight_decay", -0.1}}, {"training.weight_decay", ">= 0"});
  expect_error({{"grad_clip", -1}}, {"training.grad_clip", ">= 0"});
  expect_error({{"mtp_lambda", -0.3}}, {"training.mtp_lambda", ">= 0"});
  expect_error({{"bias_update_speed", -1e-3}}, {"training.bias_update_speed", ">= 0"});
  expect_error({{"bias_update_stop_step", -1}}, {"training.bias_update_stop_step", ">= 0"});
  expect_error({{"mtp_lambda_late", 0.1}}, {"training.mtp_lambda_switch_step", "missing"});
  expect_error({{"mtp_lambda_switch_step", 10}}, {"training.mtp_lambda_late", "missing"});
  expect_error({{"decay_start", 10}}, {"training.decay_start", "deepseek"});
  expect_error({{"schedule", "deepseek"}, {"warmup_steps", 100}, {"decay_start", 50}},
               {"training.decay_start", "warmup_steps"});
  expect_error({{"recompute", "some"}}, {"training.recompute", "\"none\", \"selective\", \"full\""});
  expect_error({{"recompute_norm_up", "yes"}}, {"training.recompute_norm_up", "true or false", "\"yes\""});
  expect_error({{"recompute_norm_up", 1}}, {"training.recompute_norm_up", "true or false"});
  expect_error(json::array(), {"training must be a JSON object"});
}

json model_config_with(const json& training) {
  json j = json::parse(R"({
    "vocab_size": 64, "hidden_size": 32, "intermediate_size": 48, "moe_intermediate_size": 16,
    "num_hidden_layers": 2, "num_nextn_predict_layers": 1, "num_attention_heads": 4,
    "n_shared_experts": 1, "n_routed_experts": 4, "routed_scaling_factor": 1.0,
    "kv_lora_rank": 16, "q_lora_rank": 24, "qk_rope_head_dim": 4, "v_head_dim": 8,
    "qk_nope_head_dim": 8, "num_experts_per_tok": 2, "first_k_dense_replace": 1,
    "norm_topk_prob": true, "max_position_embeddings": 64, "rms_norm_eps": 1e-6, "rope_theta": 10000.0
  })");
  j["training"] = training;
  return j;
}

TEST(TrainHyper, ModelConfigAcceptsTheseKeysAndStillRejectsTypos) {
  json t = {{"seed", 1}, {"init_std", 0.02}};
  for (const std::string& k : known_training_keys()) t[k] = to_json(TrainHyper{}).value(k, json(1));
  EXPECT_NO_THROW(model::config_from_json(model_config_with(t)));
  t["warmup_stpes"] = 10;
  try {
    model::config_from_json(model_config_with(t), "run.json");
    ADD_FAILURE() << "typo accepted";
  } catch (const Error& e) {
    std::printf("  rejected: %s | hint: %s\n", e.message().c_str(), e.hint().c_str());
    EXPECT_NE(e.message().find("unknown key 'warmup_stpes'"), std::string::npos);
    EXPECT_NE(e.hint().find("warmup_steps"), std::string::npos);  // the hint lists the optimizer keys too
  }
}

}  // namespace
}  // namespace tinyseek::train
