#include "tinyseek/train/run_config.h"

#include <filesystem>

#include "tinyseek/base/check.h"
#include "tinyseek/io/checkpoint.h"

namespace tinyseek::train {
using nlohmann::json;

namespace {

// Every top-level key a model config can have (the parser's own list, via to_json of a
// valid config), so an override knows which keys are model keys.
const json& model_key_set() {
  static const json keys = [] {
    model::ModelConfig c;
    c.hidden_size = 8, c.num_hidden_layers = 1, c.num_attention_heads = 1, c.kv_lora_rank = 4;
    c.qk_nope_head_dim = 4, c.qk_rope_head_dim = 2, c.v_head_dim = 4, c.intermediate_size = 8;
    c.vocab_size = 16, c.max_position_embeddings = 8;
    return model::to_json(c);
  }();
  return keys;
}

json parse_value(const std::string& text) {
  try {
    return json::parse(text);
  } catch (const json::parse_error&) {
    return json(text);  // e.g. schedule=cosine
  }
}

}  // namespace

void apply_override(json& j, const std::string& assignment) {
  const size_t eq = assignment.find('=');
  TS_CHECK(eq != std::string::npos && eq > 0, "'" << assignment << "' is not a key=value override",
           "write e.g. lr=1e-3 or precision.recipe=bf16 (options start with --)");
  const std::string key = assignment.substr(0, eq);
  const json value = parse_value(assignment.substr(eq + 1));
  if (key == "precision.recipe") {
    // A recipe sets every field (model/precision.h): earlier fields, e.g. the resolved map
    // of a resumed run's config.json, must not survive it.
    j["precision"] = json{{"recipe", value}};
  } else if (key.rfind("precision.", 0) == 0) {
    if (!j["precision"].is_object()) j["precision"] = json::object();
    j["precision"][key.substr(10)] = value;
  } else if (key.rfind("training.", 0) == 0) {
    if (!j["training"].is_object()) j["training"] = json::object();
    j["training"][key.substr(9)] = value;
  } else if (model_key_set().contains(key) && key != "training" && key != "precision") {
    j[key] = value;
  } else {
    if (!j["training"].is_object()) j["training"] = json::object();
    j["training"][key] = value;
  }
}

RunConfig parse_run_config(json j, const std::vector<std::string>& overrides, const std::string& source) {
  TS_CHECK(j.is_object(), source << ": the config must be a JSON object, got " << j.type_name(),
           "start from configs/tiny.json");
  for (const std::string& o : overrides) apply_override(j, o);
  const std::string where = overrides.empty() ? source : source + " (with the command-line overrides)";
  RunConfig rc;
  rc.model = model::config_from_json(j, where);
  rc.hyper = parse_train_hyper(j.contains("training") ? j["training"] : json(), where);
  rc.json = std::move(j);
  return rc;
}

json read_config_file(const std::string& path) {
  TS_CHECK(std::filesystem::is_regular_file(path), "config file " << path << " does not exist",
           "pass e.g. --config configs/small.json");
  return io::read_json_file(path, "config");
}

}  // namespace tinyseek::train
