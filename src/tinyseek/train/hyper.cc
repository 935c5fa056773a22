#include "tinyseek/train/hyper.h"

#include <algorithm>
#include <cmath>

#include <nlohmann/json.hpp>

#include "tinyseek/base/check.h"

namespace tinyseek::train {
namespace {

using nlohmann::json;

// The one list of the keys this file owns; the readers below refuse any other key, so
// the list and the parser cannot drift apart.
const std::vector<std::string> kKeys = {
    "schedule",         "lr",           "min_lr",
    "warmup_steps",     "decay_start",  "decay_steps",
    "mtp_lambda",       "mtp_lambda_late", "mtp_lambda_switch_step",
    "bias_update_speed", "bias_update_stop_step",
    "weight_decay",     "beta1",        "beta2",
    "eps",              "grad_clip",    "moment_precision",
    "batch_size",       "seq_len",      "grad_accum",
    "steps",            "eval_every",   "eval_batches",
    "save_every",       "max_bad_steps", "data_seed",
    "recompute",        "recompute_norm_up",
};

class Reader {
 public:
  Reader(const json& obj, const std::string& source) : obj_(obj), source_(source) {}

  // nullptr if the key is absent (JSON null counts as absent: "use the default").
  const json* find(const char* key) const {
    TS_ASSERT(is_train_hyper_key(key));
    if (!obj_.is_object()) return nullptr;
    const auto it = obj_.find(key);
    return it == obj_.end() || it->is_null() ? nullptr : &*it;
  }

  void number(const char* key, double* out) const {
    const json* v = find(key);
    if (!v) return;
    TS_CHECK(v->is_number(), where(key) << " must be a number, got " << v->type_name() << " " << v->dump(),
             "write e.g. \"" << key << "\": " << *out);
    *out = v->get<double>();
  }

  void step(const char* key, int64_t* out) const {
    const json* v = find(key);
    if (!v) return;
    // 2000.0 is accepted (JSON writers may emit it); 2000.5 is not.
    const bool integral = v->is_number_integer() ||
                          (v->is_number_float() && std::isfinite(v->get<double>()) &&
                           v->get<double>() == std::floor(v->get<double>()) && std::abs(v->get<double>()) < 9e15);
    TS_CHECK(integral, where(key) << " must be an integer number of steps, got " << v->type_name() << " " << v->dump(),
             "write e.g. \"" << key << "\": 1000");
    TS_CHECK(!(v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)),
             where(key) << " is out of range: " << v->dump(), "use a smaller value");
    const int64_t s = v->is_number_float() ? static_cast<int64_t>(v->get<double>()) : v->get<int64_t>();
    TS_CHECK(s >= 0, where(key) << " must be >= 0, got " << s, "steps count optimizer updates from 0");
    *out = s;
  }

  void flag(const char* key, bool* out) const {
    const json* v = find(key);
    if (!v) return;
    TS_CHECK(v->is_boolean(), where(key) << " must be true or false, got " << v->type_name() << " " << v->dump(),
             "write \"" << key << "\": " << (*out ? "true" : "false") << " (a JSON boolean, not a string or number)");
    *out = v->get<bool>();
  }

  // One of `choices`; returns its index, or -1 if the key is absent.
  int choice(const char* key, const std::vector<std::string>& choices) const {
    const json* v = find(key);
    if (!v) return -1;
    std::string list;
    for (const std::string& c : choices) list += (list.empty() ? "\"" : ", \"") + c + "\"";
    TS_CHECK(v->is_string(), where(key) << " must be a string (" << list << "), got " << v->type_name() << " "
             << v->dump(), "write e.g. \"" << key << "\": \"" << choices[0] << "\"");
    const auto it = std::find(choices.begin(), choices.end(), v->get<std::string>());
    TS_CHECK(it != choices.end(), where(key) << " must be one of " << list << ", got " << v->dump(),
             "pick one of " << list);
    return static_cast<int>(it - choices.begin());
  }

  std::string where(const char* key) const { return source_ + ": training." + key; }

 private:
  const json& obj_;
  const std::string& source_;
};

std::string where(const std::string& source, const char* key) { return source + ": training." + key; }

void check_range(bool ok, const std::string& source, const char* key, double v, const char* rule, const char* hint) {
  TS_CHECK(ok, where(source, key) << " must be " << rule << ", got " << v, hint);
}

}  // namespace

const std::vector<std::string>& known_training_keys() { return kKeys; }

std::string known_training_keys_list() {
  std::string s;
  for (const std::string& k : kKeys) s += (s.empty() ? "" : ", ") + k;
  return s;
}

bool is_train_hyper_key(std::string_view key) { return std::find(kKeys.begin(), kKeys.end(), key) != kKeys.end(); }

TrainHyper parse_train_hyper(const json& training, const std::string& source) {
  TS_CHECK(training.is_null() || training.is_object(),
           source << ": training must be a JSON object, got " << training.type_name(),
           "write \"training\": {\"lr\": 3e-4, \"warmup_steps\": 100}");
  const Reader r(training, source);
  TrainHyper h;
  if (const int s = r.choice("schedule", {"cosine", "deepseek"}); s >= 0)
    h.schedule = s == 0 ? LrShape::kCosine : LrShape::kDeepSeek;
  r.number("lr", &h.lr);
  r.number("min_lr", &h.min_lr);
  r.step("warmup_steps", &h.warmup_steps);
  r.step("decay_start", &h.decay_start);
  r.step("decay_steps", &h.decay_steps);
  r.number("mtp_lambda", &h.mtp_lambda);
  h.mtp_lambda_late = h.mtp_lambda;
  r.number("mtp_lambda_late", &h.mtp_lambda_late);
  r.step("mtp_lambda_switch_step", &h.mtp_lambda_switch_step);
  r.number("bias_update_speed", &h.bias_update_speed);
  r.step("bias_update_stop_step", &h.bias_update_stop_step);
  r.number("weight_decay", &h.adamw.weight_decay);
  r.number("beta1", &h.adamw.beta1);
  r.number("beta2", &h.adamw.beta2);
  r.number("eps", &h.adamw.eps);
  r.number("grad_clip", &h.grad_clip);
  if (const int m = r.choice("moment_precision", {"fp32", "bf16"}); m >= 0)
    h.adamw.moments = m == 0 ? MomentPrecision::kFp32 : MomentPrecision::kBf16;
  r.step("batch_size", &h.run.batch_size);
  r.step("seq_len", &h.run.seq_len);
  r.step("grad_accum", &h.run.grad_accum);
  r.step("steps", &h.run.steps);
  r.step("eval_every", &h.run.eval_every);
  r.step("eval_batches", &h.run.eval_batches);
  r.step("save_every", &h.run.save_every);
  r.step("max_bad_steps", &h.run.max_bad_steps);
  int64_t data_seed = static_cast<int64_t>(h.run.data_seed);
  r.step("data_seed", &data_seed);
  h.run.data_seed = static_cast<uint64_t>(data_seed);
  if (const int m = r.choice("recompute", {"none", "selective", "full"}); m >= 0)
    h.run.recompute = m == 0 ? "none" : m == 1 ? "selective" : "full";
  r.flag("recompute_norm_up", &h.run.recompute_norm_up);

  // Key-pair rules that need to know what was written (not only the values).
  const bool has_late = r.find("mtp_lambda_late") != nullptr;
  const bool has_switch = r.find("mtp_lambda_switch_step") != nullptr;
  TS_CHECK(has_late == has_switch,
           where(source, has_late ? "mtp_lambda_switch_step" : "mtp_lambda_late")
               << " is missing: training.mtp_lambda_late and training.mtp_lambda_switch_step go together",
           "give both (DeepSeek-V3: \"mtp_lambda\": 0.3, \"mtp_lambda_late\": 0.1 from the switch step) or neither");
  TS_CHECK(!(h.schedule == LrShape::kCosine && r.find("decay_start")),
           where(source, "decay_start") << " applies only to \"schedule\": \"deepseek\" (the cosine shape decays "
           "right after the warmup)", "remove training.decay_start or set \"schedule\": \"deepseek\"");
  validate(h, source);
  return h;
}

void validate(const TrainHyper& h, const std::string& source) {
  check_range(std::isfinite(h.lr) && h.lr > 0, source, "lr", h.lr, "a positive finite number",
              "the paper's peak is 2.2e-4; small models train well with 1e-3");
  check_range(std::isfinite(h.min_lr) && h.min_lr >= 0 && h.min_lr <= h.lr, source, "min_lr", h.min_lr,
              "a finite number in [0, lr]", "the paper decays to lr/10 (2.2e-5)");
  check_range(h.warmup_steps >= 0, source, "warmup_steps", static_cast<double>(h.warmup_steps), ">= 0",
              "0 disables the warmup");
  if (h.decay_start != TrainHyper::kUnset) {
    TS_CHECK(h.decay_start >= h.warmup_steps,
             where(source, "decay_start") << " (" << h.decay_start << ") must be >= training.warmup_steps ("
             << h.warmup_steps << ")", "the decay starts after the warmup; raise decay_start");
  }
  check_range(h.decay_steps == TrainHyper::kUnset || h.decay_steps >= 0, source, "decay_steps",
              static_cast<double>(h.decay_steps), ">= 0", "omit it to decay until the last step");
  check_range(std::isfinite(h.mtp_lambda) && h.mtp_lambda >= 0, source, "mtp_lambda", h.mtp_lambda,
              "a finite number >= 0", "the paper uses 0.3 then 0.1");
  check_range(std::isfinite(h.mtp_lambda_late) && h.mtp_lambda_late >= 0, source, "mtp_lambda_late",
              h.mtp_lambda_late, "a finite number >= 0", "the paper uses 0.1");
  check_range(std::isfinite(h.bias_update_speed) && h.bias_update_speed >= 0, source, "bias_update_speed",
              h.bias_update_speed, "a finite number >= 0", "the paper uses 0.001; 0 disables the bias update");
  check_range(std::isfinite(h.adamw.weight_decay) && h.adamw.weight_decay >= 0, source, "weight_decay",
              h.adamw.weight_decay, "a finite number >= 0", "the paper uses 0.1");
  check_range(h.adamw.beta1 >= 0 && h.adamw.beta1 < 1, source, "beta1", h.adamw.beta1, "in [0, 1)",
              "the paper uses 0.9");
  check_range(h.adamw.beta2 >= 0 && h.adamw.beta2 < 1, source, "beta2", h.adamw.beta2, "in [0, 1)",
              "the paper uses 0.95");
  check_range(std::isfinite(h.adamw.eps) && h.adamw.eps > 0, source, "eps", h.adamw.eps, "a positive finite number",
              "use 1e-8");
  check_range(std::isfinite(h.grad_clip) && h.grad_clip >= 0, source, "grad_clip", h.grad_clip,
              "a finite number >= 0", "the paper clips at 1.0; 0 disables clipping");
  check_range(h.run.batch_size >= 1, source, "batch_size", static_cast<double>(h.run.batch_size), ">= 1",
              "sequences per micro-batch, e.g. 8");
  check_range(h.run.seq_len >= 2, source, "seq_len", static_cast<double>(h.run.seq_len), ">= 2",
              "tokens per sequence, e.g. 128 (<= max_position_embeddings)");
  check_range(h.run.grad_accum >= 1, source, "grad_accum", static_cast<double>(h.run.grad_accum), ">= 1",
              "micro-batches per optimizer step; 1 = no accumulation");
  check_range(h.run.steps == TrainHyper::kUnset || h.run.steps >= 1, source, "steps",
              static_cast<double>(h.run.steps), ">= 1", "the planned number of optimizer steps");
  check_range(h.run.max_bad_steps >= 1, source, "max_bad_steps", static_cast<double>(h.run.max_bad_steps), ">= 1",
              "non-finite steps tolerated in a row before aborting, e.g. 5");
}

json to_json(const TrainHyper& h) {
  json j = json::object();
  j["schedule"] = to_string(h.schedule);
  j["lr"] = h.lr;
  j["min_lr"] = h.min_lr;
  j["warmup_steps"] = h.warmup_steps;
  if (h.decay_start != TrainHyper::kUnset) j["decay_start"] = h.decay_start;
  if (h.decay_steps != TrainHyper::kUnset) j["decay_steps"] = h.decay_steps;
  j["mtp_lambda"] = h.mtp_lambda;
  if (h.mtp_lambda_switch_step != TrainHyper::kUnset) {
    j["mtp_lambda_late"] = h.mtp_lambda_late;
    j["mtp_lambda_switch_step"] = h.mtp_lambda_switch_step;
  }
  j["bias_update_speed"] = h.bias_update_speed;
  if (h.bias_update_stop_step != TrainHyper::kUnset) j["bias_update_stop_step"] = h.bias_update_stop_step;
  j["weight_decay"] = h.adamw.weight_decay;
  j["beta1"] = h.adamw.beta1;
  j["beta2"] = h.adamw.beta2;
  j["eps"] = h.adamw.eps;
  j["grad_clip"] = h.grad_clip;
  j["moment_precision"] = to_string(h.adamw.moments);
  j["batch_size"] = h.run.batch_size;
  j["seq_len"] = h.run.seq_len;
  j["grad_accum"] = h.run.grad_accum;
  if (h.run.steps != TrainHyper::kUnset) j["steps"] = h.run.steps;
  j["eval_every"] = h.run.eval_every;
  j["eval_batches"] = h.run.eval_batches;
  j["save_every"] = h.run.save_every;
  j["max_bad_steps"] = h.run.max_bad_steps;
  j["data_seed"] = h.run.data_seed;
  j["recompute"] = h.run.recompute;
  j["recompute_norm_up"] = h.run.recompute_norm_up;
  return j;
}

LrSchedule lr_schedule(const TrainHyper& h, int64_t total_steps) {
  LrSchedule s;
  s.shape = h.schedule;
  s.peak = h.lr;
  s.floor = h.min_lr;
  s.warmup_steps = h.warmup_steps;
  s.decay_start = h.schedule == LrShape::kDeepSeek && h.decay_start != TrainHyper::kUnset ? h.decay_start
                                                                                           : h.warmup_steps;
  if (h.decay_steps != TrainHyper::kUnset) {
    s.decay_steps = h.decay_steps;
  } else {
    TS_CHECK(total_steps > 0, "the learning-rate schedule decays until the run's last step, but the run has "
             << total_steps << " steps", "pass --steps N (> 0) or set training.decay_steps");
    // The last update (step total_steps − 1) is the first at the floor.
    s.decay_steps = std::max<int64_t>(0, total_steps - 1 - s.decay_start);
  }
  return s;
}

StepSwitch mtp_lambda_schedule(const TrainHyper& h) {
  if (h.mtp_lambda_switch_step == TrainHyper::kUnset) return {h.mtp_lambda, h.mtp_lambda, StepSwitch::kNever};
  return {h.mtp_lambda, h.mtp_lambda_late, h.mtp_lambda_switch_step};
}

StepSwitch bias_speed_schedule(const TrainHyper& h) {
  if (h.bias_update_stop_step == TrainHyper::kUnset) return {h.bias_update_speed, 0.0, StepSwitch::kNever};
  return {h.bias_update_speed, 0.0, h.bias_update_stop_step};
}

}  // namespace tinyseek::train
