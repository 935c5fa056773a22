#include "tinyseek/model/config.h"

#include <cmath>
#include <fstream>
#include <sstream>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "tinyseek/base/check.h"
#include "tinyseek/train/hyper.h"

namespace tinyseek::model {
namespace {

using nlohmann::json;

enum class Presence {
  kRequired,          // missing -> error
  kRequiredNullable,  // missing -> error; null -> 0 (q_lora_rank, n_routed_experts)
  kOptional,          // missing -> the struct's default
};

// One row per JSON key: the key, where it lives in the struct, and whether it must appear.
template <class S>
struct Field {
  const char* key;
  std::variant<int64_t S::*, uint64_t S::*, double S::*, bool S::*, std::string S::*> member;
  Presence presence;
};

using MF = Field<ModelConfig>;
const MF kModelFields[] = {
    {"vocab_size", &ModelConfig::vocab_size, Presence::kRequired},
    {"hidden_size", &ModelConfig::hidden_size, Presence::kRequired},
    {"intermediate_size", &ModelConfig::intermediate_size, Presence::kRequired},
    {"moe_intermediate_size", &ModelConfig::moe_intermediate_size, Presence::kRequired},
    {"num_hidden_layers", &ModelConfig::num_hidden_layers, Presence::kRequired},
    {"num_nextn_predict_layers", &ModelConfig::num_nextn_predict_layers, Presence::kRequired},
    {"num_attention_heads", &ModelConfig::num_attention_heads, Presence::kRequired},
    {"n_shared_experts", &ModelConfig::n_shared_experts, Presence::kRequired},
    {"n_routed_experts", &ModelConfig::n_routed_experts, Presence::kRequiredNullable},
    {"routed_scaling_factor", &ModelConfig::routed_scaling_factor, Presence::kRequired},
    {"kv_lora_rank", &ModelConfig::kv_lora_rank, Presence::kRequired},
    {"q_lora_rank", &ModelConfig::q_lora_rank, Presence::kRequiredNullable},
    {"qk_rope_head_dim", &ModelConfig::qk_rope_head_dim, Presence::kRequired},
    {"v_head_dim", &ModelConfig::v_head_dim, Presence::kRequired},
    {"qk_nope_head_dim", &ModelConfig::qk_nope_head_dim, Presence::kRequired},
    {"n_group", &ModelConfig::n_group, Presence::kOptional},
    {"topk_group", &ModelConfig::topk_group, Presence::kOptional},
    {"num_experts_per_tok", &ModelConfig::num_experts_per_tok, Presence::kRequired},
    {"first_k_dense_replace", &ModelConfig::first_k_dense_replace, Presence::kRequired},
    {"norm_topk_prob", &ModelConfig::norm_topk_prob, Presence::kRequired},
    {"scoring_func", &ModelConfig::scoring_func, Presence::kOptional},
    {"max_position_embeddings", &ModelConfig::max_position_embeddings, Presence::kRequired},
    {"rms_norm_eps", &ModelConfig::rms_norm_eps, Presence::kRequired},
    {"rope_theta", &ModelConfig::rope_theta, Presence::kRequired},
};

using TF = Field<TrainingConfig>;
const TF kTrainingFields[] = {
    {"seed", &TrainingConfig::seed, Presence::kOptional},
    {"init_std", &TrainingConfig::init_std, Presence::kOptional},
    {"mtp_lambda", &TrainingConfig::mtp_lambda, Presence::kOptional},
    {"balance_alpha", &TrainingConfig::balance_alpha, Presence::kOptional},
};

// Hugging Face keys with only one value tinyseek implements. Absent is fine (HF
// defaults agree); present with another value is an error rather than a silently
// different model. to_json writes `value` (num_key_value_heads is derived, see below).
struct HfConstant {
  const char* key;
  json value;
  const char* why;
};
const std::vector<HfConstant>& hf_constants() {
  static const std::vector<HfConstant> k = {
      {"model_type", "deepseek_v3", "tinyseek implements DeepSeek-V3"},
      {"architectures", json::array({"DeepseekV3ForCausalLM"}), "tinyseek implements DeepSeek-V3"},
      {"hidden_act", "silu", "the FFNs are SwiGLU"},
      {"topk_method", "noaux_tc", "routing is top-K over sigmoid score + correction bias"},
      {"tie_word_embeddings", false, "DeepSeek-V3 unties embedding and output head"},
      {"moe_layer_freq", 1, "every layer from first_k_dense_replace on is MoE"},
      {"attention_bias", false, "the projections have no bias"},
      {"rope_scaling", nullptr, "long-context YaRN scaling is out of scope"},
  };
  return k;
}

std::string type_name(const json& v) { return v.type_name(); }

std::string valid_keys(const auto& table) {
  std::string s;
  for (const auto& f : table) s += (s.empty() ? "" : ", ") + std::string(f.key);
  return s;
}

template <class S>
void read_field(S& out, const Field<S>& f, const json& obj, const std::string& where) {
  const auto it = obj.find(f.key);
  if (it == obj.end()) {
    TS_CHECK(f.presence == Presence::kOptional, where << ": missing key '" << f.key << "'",
             "add \"" << f.key << "\" (see docs/model.md for its meaning)");
    return;
  }
  const json& v = *it;
  if (v.is_null()) {
    TS_CHECK(f.presence == Presence::kRequiredNullable,
             where << ": key '" << f.key << "' must not be null",
             "give a value for \"" << f.key << "\"");
    std::visit([&](auto m) {
      using T = std::remove_reference_t<decltype(out.*m)>;
      if constexpr (std::is_same_v<T, int64_t>) out.*m = 0;
    }, f.member);
    return;
  }
  std::visit([&](auto m) {
    using T = std::remove_reference_t<decltype(out.*m)>;
    if constexpr (std::is_same_v<T, int64_t>) {
      TS_CHECK(v.is_number_integer(), where << ": key '" << f.key << "' must be an integer, got "
               << type_name(v) << " " << v.dump(), "write e.g. \"" << f.key << "\": 64");
      TS_CHECK(v.is_number_integer() && (!v.is_number_unsigned() ||
               v.get<uint64_t>() <= static_cast<uint64_t>(INT64_MAX)),
               where << ": key '" << f.key << "' is out of range: " << v.dump(), "use a smaller value");
      out.*m = v.get<int64_t>();
    } else if constexpr (std::is_same_v<T, uint64_t>) {
      TS_CHECK(v.is_number_integer() && (v.is_number_unsigned() || v.get<int64_t>() >= 0),
               where << ": key '" << f.key << "' must be a non-negative integer, got "
               << type_name(v) << " " << v.dump(), "write e.g. \"" << f.key << "\": 1234");
      out.*m = v.get<uint64_t>();
    } else if constexpr (std::is_same_v<T, double>) {
      TS_CHECK(v.is_number(), where << ": key '" << f.key << "' must be a number, got "
               << type_name(v) << " " << v.dump(), "write e.g. \"" << f.key << "\": 1e-6");
      out.*m = v.get<double>();
    } else if constexpr (std::is_same_v<T, bool>) {
      TS_CHECK(v.is_boolean(), where << ": key '" << f.key << "' must be true or false, got "
               << type_name(v) << " " << v.dump(), "write \"" << f.key << "\": true");
      out.*m = v.get<bool>();
    } else {
      TS_CHECK(v.is_string(), where << ": key '" << f.key << "' must be a string, got "
               << type_name(v) << " " << v.dump(), "write e.g. \"" << f.key << "\": \"sigmoid\"");
      out.*m = v.get<std::string>();
    }
  }, f.member);
}

template <class S>
json write_field(const S& in, const Field<S>& f) {
  return std::visit([&](auto m) -> json {
    using T = std::remove_cvref_t<decltype(in.*m)>;
    if constexpr (std::is_same_v<T, int64_t>) {
      if (f.presence == Presence::kRequiredNullable && in.*m == 0) return nullptr;
    }
    return in.*m;
  }, f.member);
}

void check_positive(int64_t v, const char* key, const std::string& src, const char* why = "") {
  TS_CHECK(v > 0, src << ": key '" << key << "' must be positive, got " << v << why,
           "set \"" << key << "\" to a positive integer");
}
void check_non_negative(int64_t v, const char* key, const std::string& src) {
  TS_CHECK(v >= 0, src << ": key '" << key << "' must be >= 0, got " << v,
           "set \"" << key << "\" to 0 or a positive integer");
}
void check_positive_finite(double v, const char* key, const std::string& src) {
  TS_CHECK(std::isfinite(v) && v > 0, src << ": key '" << key << "' must be a positive finite number, got " << v,
           "set \"" << key << "\" to e.g. the DeepSeek-V3 value");
}
void check_non_negative_finite(double v, const char* key, const std::string& src) {
  TS_CHECK(std::isfinite(v) && v >= 0, src << ": key '" << key << "' must be a finite number >= 0, got " << v,
           "set \"" << key << "\" to 0 to disable it, or e.g. the paper's value");
}

void validate_routing(const ModelConfig& c, const std::string& s) {
  const int64_t E = c.n_routed_experts;
  check_positive(c.moe_intermediate_size, "moe_intermediate_size", s, " (the config has MoE layers)");
  check_positive(c.num_experts_per_tok, "num_experts_per_tok", s, " (the config has MoE layers)");
  TS_CHECK(c.num_experts_per_tok <= E, s << ": num_experts_per_tok (" << c.num_experts_per_tok
           << ") must be <= n_routed_experts (" << E << ")", "lower num_experts_per_tok or add experts");
  check_positive(c.n_group, "n_group", s);
  TS_CHECK(E % c.n_group == 0, s << ": n_group (" << c.n_group << ") must divide n_routed_experts ("
           << E << ")", "choose n_group among the divisors of n_routed_experts, or 1");
  TS_CHECK(c.n_group == 1 || E / c.n_group >= 2, s << ": each expert group needs >= 2 experts when n_group > 1 "
           << "(the group score is the sum of its top-2 scores), got n_routed_experts/n_group = "
           << E / c.n_group, "use fewer groups (n_group <= n_routed_experts/2) or n_group 1");
  check_positive(c.topk_group, "topk_group", s);
  TS_CHECK(c.topk_group <= c.n_group, s << ": topk_group (" << c.topk_group << ") must be <= n_group ("
           << c.n_group << ")", "keep at most n_group groups");
  const int64_t kept = c.topk_group * (E / c.n_group);
  TS_CHECK(c.num_experts_per_tok <= kept, s << ": num_experts_per_tok (" << c.num_experts_per_tok
           << ") must be <= the experts in the kept groups, topk_group * n_routed_experts / n_group = "
           << kept, "raise topk_group or lower num_experts_per_tok");
}

}  // namespace

bool ModelConfig::is_moe_layer(int64_t layer) const {
  if (n_routed_experts <= 0) return false;
  if (layer >= num_hidden_layers) return num_hidden_layers >= first_k_dense_replace;
  return layer >= first_k_dense_replace;
}
bool ModelConfig::has_moe_layers() const {
  for (int64_t l = 0; l < num_total_layers(); ++l)
    if (is_moe_layer(l)) return true;
  return false;
}
bool ModelConfig::has_dense_layers() const {
  for (int64_t l = 0; l < num_total_layers(); ++l)
    if (!is_moe_layer(l)) return true;
  return false;
}

void validate(const ModelConfig& c, const std::string& s) {
  check_positive(c.vocab_size, "vocab_size", s);
  check_positive(c.hidden_size, "hidden_size", s);
  check_positive(c.num_hidden_layers, "num_hidden_layers", s);
  check_positive(c.num_attention_heads, "num_attention_heads", s);
  check_non_negative(c.q_lora_rank, "q_lora_rank", s);
  check_positive(c.kv_lora_rank, "kv_lora_rank", s);
  check_positive(c.qk_nope_head_dim, "qk_nope_head_dim", s);
  check_positive(c.qk_rope_head_dim, "qk_rope_head_dim", s);
  TS_CHECK(c.qk_rope_head_dim % 2 == 0, s << ": key 'qk_rope_head_dim' must be even (RoPE rotates pairs), got "
           << c.qk_rope_head_dim, "use e.g. 64 as DeepSeek-V3 does");
  check_positive(c.v_head_dim, "v_head_dim", s);
  check_positive(c.max_position_embeddings, "max_position_embeddings", s);
  check_non_negative(c.n_routed_experts, "n_routed_experts", s);
  check_non_negative(c.n_shared_experts, "n_shared_experts", s);
  check_non_negative(c.first_k_dense_replace, "first_k_dense_replace", s);
  check_non_negative(c.num_nextn_predict_layers, "num_nextn_predict_layers", s);
  check_positive_finite(c.rms_norm_eps, "rms_norm_eps", s);
  check_positive_finite(c.rope_theta, "rope_theta", s);
  check_positive_finite(c.routed_scaling_factor, "routed_scaling_factor", s);
  TS_CHECK(c.scoring_func == "sigmoid", s << ": key 'scoring_func' must be \"sigmoid\", got \""
           << c.scoring_func << "\"", "DeepSeek-V3 uses sigmoid affinities; softmax scoring (V2) is not supported");
  if (c.has_dense_layers())
    check_positive(c.intermediate_size, "intermediate_size", s, " (the config has dense FFN layers)");
  if (c.n_routed_experts > 0) validate_routing(c, s);
  check_positive_finite(c.training.init_std, "training.init_std", s);
  check_non_negative_finite(c.training.mtp_lambda, "training.mtp_lambda", s);
  check_non_negative_finite(c.training.balance_alpha, "training.balance_alpha", s);
  validate(c.precision, s + ": precision", c.num_hidden_layers);
}

ModelConfig config_from_json(const json& j, const std::string& source) {
  TS_CHECK(j.is_object(), source << ": the config must be a JSON object, got " << j.type_name(),
           "write a Hugging Face-style config.json: {\"hidden_size\": 64, ...}");
  ModelConfig c;
  for (const MF& f : kModelFields) read_field(c, f, j, source);
  for (const HfConstant& k : hf_constants()) {
    const auto it = j.find(k.key);
    if (it == j.end()) continue;
    TS_CHECK(*it == k.value, source << ": key '" << k.key << "' must be " << k.value.dump() << ", got "
             << it->dump() << " (" << k.why << ")", "remove \"" << k.key << "\" or set it to " << k.value.dump());
  }
  if (const auto it = j.find("num_key_value_heads"); it != j.end()) {
    TS_CHECK(it->is_number_integer() && it->get<int64_t>() == c.num_attention_heads,
             source << ": key 'num_key_value_heads' must equal num_attention_heads (" << c.num_attention_heads
             << "), got " << it->dump() << " (MLA has one key/value per head)",
             "remove \"num_key_value_heads\" or set it to num_attention_heads");
  }
  if (const auto it = j.find("training"); it != j.end()) {
    const std::string where = source + ": training";
    TS_CHECK(it->is_object(), where << " must be a JSON object, got " << it->type_name(),
             "write \"training\": {\"seed\": 1, \"init_std\": 0.006}");
    for (const auto& [key, value] : it->items()) {
      // The optimizer/schedule keys are parsed by train/hyper.cc, which owns their list.
      bool known = train::is_train_hyper_key(key);
      for (const TF& f : kTrainingFields) known = known || key == f.key;
      TS_CHECK(known, where << ": unknown key '" << key << "'", "valid keys: " << valid_keys(kTrainingFields)
               << ", " << train::known_training_keys_list());
    }
    for (const TF& f : kTrainingFields) read_field(c.training, f, *it, where);
  }
  // The precision map parses and validates its own section (model/precision.cc).
  if (const auto it = j.find("precision"); it != j.end())
    c.precision = precision_from_json(*it, source + ": precision", c.num_hidden_layers);
  validate(c, source);
  return c;
}

ModelConfig load_config(const std::string& path) {
  std::ifstream in(path);
  TS_CHECK(in.good(), "cannot open config file " << path, "check the path");
  json j;
  try {
    j = json::parse(in);
  } catch (const json::parse_error& e) {
    TS_FAIL(path << ": invalid JSON: " << e.what(), "fix the syntax (e.g. trailing commas, quotes)");
  }
  return config_from_json(j, path);
}

json to_json(const ModelConfig& c) {
  json j = json::object();
  for (const HfConstant& k : hf_constants()) j[k.key] = k.value;
  j["num_key_value_heads"] = c.num_attention_heads;
  for (const MF& f : kModelFields) j[f.key] = write_field(c, f);
  json t = json::object();
  for (const TF& f : kTrainingFields) t[f.key] = write_field(c.training, f);
  j["training"] = t;
  j["precision"] = precision_to_json(c.precision);
  return j;
}

std::string summary(const ModelConfig& c) {
  std::ostringstream o;
  o << "D " << c.hidden_size << " L " << c.num_hidden_layers << " H " << c.num_attention_heads << " dq "
    << c.q_lora_rank << " dc " << c.kv_lora_rank << " dn " << c.qk_nope_head_dim << " dr " << c.qk_rope_head_dim
    << " dv " << c.v_head_dim << " F " << c.intermediate_size << " V " << c.vocab_size;
  if (c.n_routed_experts > 0)
    o << " E " << c.n_routed_experts << " Es " << c.n_shared_experts << " K " << c.num_experts_per_tok << " Fe "
      << c.moe_intermediate_size << " groups " << c.topk_group << "/" << c.n_group << " dense "
      << c.first_k_dense_replace;
  o << " Dmtp " << c.num_nextn_predict_layers;
  return o.str();
}

}  // namespace tinyseek::model
