#include "tinyseek/train/state.h"

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <sstream>

#include <nlohmann/json.hpp>

#include "tinyseek/base/check.h"
#include "tinyseek/io/checkpoint.h"
#include "tinyseek/io/safetensors.h"
#include "tinyseek/model/linear_site.h"
#include "tinyseek/model/precision.h"
#include "tinyseek/numerics/bf16.h"

namespace tinyseek::train {
using nlohmann::json;
namespace {

constexpr const char* kFormat = "tinyseek-trainer-state";
constexpr int kVersion = 1;

std::string hex64(uint64_t v) {
  char buf[20];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

template <class T>
T get(const json& j, const char* key, const std::string& path) {
  TS_CHECK(j.contains(key), path << " lacks \"" << key << "\"", "the file is corrupt or from another program");
  try {
    return j.at(key).get<T>();
  } catch (const json::exception& e) {
    TS_FAIL(path << ": \"" << key << "\" has the wrong type (" << j.at(key).dump() << ")", "the file is corrupt");
  }
}

int bias_id(const model::Registry& reg, int64_t layer) {
  const model::ModelIds& ids = reg.ids();
  const int64_t L = static_cast<int64_t>(ids.layers.size());
  TS_CHECK(layer >= 0 && layer < L + static_cast<int64_t>(ids.mtp.size()), "router bias of layer " << layer
           << " but the model has " << L + static_cast<int64_t>(ids.mtp.size()) << " layers",
           "the checkpoint belongs to another config");
  const model::BlockIds& b = layer < L ? ids.layers[size_t(layer)] : ids.mtp[size_t(layer - L)].block;
  TS_CHECK(b.is_moe, "router bias of layer " << layer << ", which is not a MoE layer", "the checkpoint belongs to another config");
  return b.moe.bias;
}

}  // namespace

void write_trainer_state(const TrainerState& s, const std::string& path) {
  json j;
  j["format"] = kFormat;
  j["version"] = kVersion;
  j["step"] = s.step;
  j["tokens_seen"] = s.tokens_seen;
  j["bad_steps_in_row"] = s.bad_steps_in_row;
  j["lr"] = s.lr;
  j["next_lr"] = s.next_lr;
  j["mtp_lambda"] = s.mtp_lambda;
  j["loader"] = {{"epoch", s.loader.epoch}, {"index", s.loader.index}, {"seed", s.loader.seed},
                 {"window", s.loader.window}, {"stride", s.loader.stride}, {"tokens", s.loader.tokens}};
  j["rng"] = {{"data_seed", s.data_seed}, {"init_seed", s.init_seed}};
  j["data_dir"] = s.data_dir;
  j["tokenizer_hash"] = hex64(s.tokenizer_hash);
  json biases = json::object();
  for (const auto& [layer, b] : s.router_biases) {
    json arr = json::array();
    for (float v : b) arr.push_back(static_cast<double>(v));
    biases[std::to_string(layer)] = arr;
  }
  j["router_biases"] = biases;
  io::write_file_synced(path, j.dump(1) + "\n");
}

TrainerState read_trainer_state(const std::string& path) {
  const json j = io::read_json_file(path, "trainer state");
  TS_CHECK(j.is_object() && j.value("format", "") == kFormat, path << " is not a tinyseek trainer state",
           "pass a run directory written by `tinyseek train`");
  TS_CHECK(j.value("version", 0) == kVersion, path << " has version " << j.value("version", 0) << ", expected "
           << kVersion, "this checkpoint was written by another tinyseek version");
  TrainerState s;
  s.step = get<int64_t>(j, "step", path);
  s.tokens_seen = get<int64_t>(j, "tokens_seen", path);
  s.bad_steps_in_row = get<int64_t>(j, "bad_steps_in_row", path);
  TS_CHECK(s.step >= 0 && s.tokens_seen >= 0 && s.bad_steps_in_row >= 0, path << ": negative step or counters",
           "the file is corrupt");
  s.lr = get<double>(j, "lr", path);
  s.next_lr = get<double>(j, "next_lr", path);
  s.mtp_lambda = get<double>(j, "mtp_lambda", path);
  const json& l = j.at("loader");
  const std::string lp = path + ": loader";
  s.loader.epoch = get<uint64_t>(l, "epoch", lp);
  s.loader.index = get<uint64_t>(l, "index", lp);
  s.loader.seed = get<uint64_t>(l, "seed", lp);
  s.loader.window = get<int64_t>(l, "window", lp);
  s.loader.stride = get<int64_t>(l, "stride", lp);
  s.loader.tokens = get<int64_t>(l, "tokens", lp);
  s.data_seed = get<uint64_t>(j.at("rng"), "data_seed", path);
  s.init_seed = get<uint64_t>(j.at("rng"), "init_seed", path);
  s.data_dir = get<std::string>(j, "data_dir", path);
  s.tokenizer_hash = std::stoull(get<std::string>(j, "tokenizer_hash", path), nullptr, 16);
  for (const auto& [layer, arr] : j.at("router_biases").items()) {
    std::vector<float> b;
    for (const json& v : arr) b.push_back(static_cast<float>(v.get<double>()));
    s.router_biases[std::stoll(layer)] = std::move(b);
  }
  return s;
}

void collect_router_biases(TrainerState& s, const model::Model& m) {
  const model::Registry& reg = m.registry();
  for (int64_t layer : m.moe_layers()) {
    const int id = bias_id(reg, layer);
    const float* p = reg.param(id);
    s.router_biases[layer] = std::vector<float>(p, p + reg.info(id).numel);
  }
}

void check_router_biases(const TrainerState& s, const model::Registry& reg) {
  for (const auto& [layer, b] : s.router_biases) {
    const int id = bias_id(reg, layer);
    TS_CHECK(b.size() == reg.info(id).numel && std::memcmp(b.data(), reg.param(id), b.size() * sizeof(float)) == 0,
             "the router biases of layer " << layer << " in trainer_state.json differ from model.safetensors",
             "the checkpoint's files come from different saves; restore a consistent checkpoint");
  }
}

void write_optimizer_state(const AdamW& opt, const model::Registry& reg, const std::string& path) {
  io::SafetensorsWriter w;
  const io::Dtype dt = opt.moment_precision() == MomentPrecision::kBf16 ? io::Dtype::BF16 : io::Dtype::F32;
  for (size_t id = 0; id < reg.size(); ++id) {
    const model::TensorInfo& t = reg.info(static_cast<int>(id));
    if (!model::trained_by_optimizer(t.role)) continue;
    const auto m = opt.exp_avg(static_cast<int>(id)), v = opt.exp_avg_sq(static_cast<int>(id));
    w.add("exp_avg." + t.name, dt, t.shape, m.data(), m.size());
    w.add("exp_avg_sq." + t.name, dt, t.shape, v.data(), v.size());
  }
  w.set_metadata("step_count", std::to_string(opt.step_count()));
  w.set_metadata("moment_precision", to_string(opt.moment_precision()));
  w.write(path);
}

namespace {

// Moments of one tensor saved as `saved` (F32 or BF16) into `dst` held as `want`.
void convert_moment(const io::TensorView& v, io::Dtype want, std::span<std::byte> dst) {
  const size_t n = static_cast<size_t>(v.numel());
  TS_ASSERT(dst.size() == n * io::dtype_size(want));
  for (size_t i = 0; i < n; ++i) {
    if (v.dtype == io::Dtype::F32) {  // -> BF16
      float f;
      std::memcpy(&f, v.data + 4 * i, 4);
      const uint16_t h = numerics::bf16_encode(f);
      std::memcpy(dst.data() + 2 * i, &h, 2);
    } else {  // BF16 -> F32, exact
      uint16_t h;
      std::memcpy(&h, v.data + 2 * i, 2);
      const float f = numerics::bf16_decode(h);
      std::memcpy(dst.data() + 4 * i, &f, 4);
    }
  }
}

}  // namespace

void load_optimizer_state(AdamW& opt, const model::Registry& reg, const std::string& path, bool convert_moments) {
  const io::SafetensorsReader r(path);
  const auto& meta = r.metadata();
  const auto prec = meta.find("moment_precision");
  const auto steps = meta.find("step_count");
  TS_CHECK(prec != meta.end() && steps != meta.end(), path << " lacks the step_count / moment_precision metadata",
           "the file was not written by tinyseek train");
  const bool same = prec->second == to_string(opt.moment_precision());
  TS_CHECK(same || convert_moments, path << " holds " << prec->second
           << " moments but this run keeps them in " << to_string(opt.moment_precision()),
           "resume with the same training.moment_precision / precision recipe");
  TS_CHECK(same || prec->second == "fp32" || prec->second == "bf16", path << " holds moments in unknown format '"
           << prec->second << "'", "the file was not written by this tinyseek version");
  const io::Dtype dt = opt.moment_precision() == MomentPrecision::kBf16 ? io::Dtype::BF16 : io::Dtype::F32;
  const io::Dtype saved = same ? dt : (dt == io::Dtype::BF16 ? io::Dtype::F32 : io::Dtype::BF16);
  size_t expected = 0;
  for (size_t id = 0; id < reg.size(); ++id) {
    const model::TensorInfo& t = reg.info(static_cast<int>(id));
    if (!model::trained_by_optimizer(t.role)) continue;
    expected += 2;
    for (const bool second : {false, true}) {
      const std::string name = (second ? "exp_avg_sq." : "exp_avg.") + t.name;
      TS_CHECK(r.find(name) != nullptr, path << " lacks '" << name << "'", "the checkpoint belongs to another config");
      const auto span = second ? opt.mutable_exp_avg_sq(static_cast<int>(id)) : opt.mutable_exp_avg(static_cast<int>(id));
      if (same) {
        r.read_into(name, dt, t.shape, span.data());
      } else {
        const io::TensorView& v = r.get(name);
        TS_CHECK(v.dtype == saved && v.shape == t.shape, path << ": '" << name << "' is " << io::to_string(v.dtype)
                 << " with another shape or dtype than expected", "the checkpoint belongs to another config");
        convert_moment(v, dt, span);
      }
    }
  }
  TS_CHECK(r.tensors().size() == expected, path << " has " << r.tensors().size() << " tensors, expected " << expected,
           "the checkpoint belongs to another config");
  int64_t t = -1;
  try {
    t = std::stoll(steps->second);
  } catch (const std::exception&) {
  }
  opt.set_step_count(t);
}

// ---- scaling.safetensors

namespace {
constexpr const char* kScalingFormat = "tinyseek-scaling";
}  // namespace

void write_scaling_state(const model::Registry& reg, const std::string& path) {
  const json state = model::linear_scaling_state(reg);
  io::SafetensorsWriter w;
  // The writer keeps pointers until write(): the entries live here until then (moving the
  // outer vector keeps every inner buffer where it is).
  std::vector<std::vector<float>> entries;
  entries.reserve(state.size() * ops::kLinearOperands);
  for (const auto& [weight, per] : state.items()) {
    for (const auto& [operand, h] : per.items()) {
      const int length = h.at("length").get<int>(), head = h.at("head").get<int>(), filled = h.at("filled").get<int>();
      const int64_t slots = h.at("slots").get<int64_t>();
      const json& ring = h.at("ring");
      TS_ASSERT(static_cast<int64_t>(ring.size()) == length * slots && filled <= length && head < length);
      if (filled == 0) continue;  // nothing recorded yet: a fresh history behaves the same
      // The filled rows oldest first: they end just before `head`.
      std::vector<float>& e = entries.emplace_back();
      e.reserve(static_cast<size_t>(filled * slots));
      for (int k = filled; k >= 1; --k) {
        const int64_t row = (head - k + length) % length;
        for (int64_t s = 0; s < slots; ++s) e.push_back(static_cast<float>(ring[size_t(row * slots + s)].get<double>()));
      }
      const std::string name = weight + "/" + operand;
      w.add_f32(name, {filled, slots}, e.data());
      w.set_metadata(name, std::to_string(length));
    }
  }
  w.set_metadata("format", kScalingFormat);
  const model::PrecisionMap& m = reg.config().precision;
  w.set_metadata("scaling", m.scaling == model::Scaling::kDelayed ? "delayed" : "online");
  w.write(path);
}

void load_scaling_state(const model::Registry& reg, const std::string& path) {
  const bool delayed = reg.config().precision.scaling == model::Scaling::kDelayed;
  if (!std::filesystem::exists(path)) {
    TS_CHECK(!delayed, "the checkpoint lacks " << path << " but this run uses delayed scaling, whose amax histories "
             "it would hold", "resume with the checkpoint's precision map, or pass --allow-precision-change to start "
             "the histories afresh");
    return;
  }
  const io::SafetensorsReader r(path);
  const auto& meta = r.metadata();
  const auto fmt = meta.find("format");
  TS_CHECK(fmt != meta.end() && fmt->second == kScalingFormat, path << " is not a tinyseek scaling state",
           "the checkpoint's files are mixed up; restore a consistent checkpoint");
  TS_CHECK(delayed || r.tensors().empty(), path << " holds " << r.tensors().size()
           << " amax histories but this run scales online", "resume with the checkpoint's precision map");
  json state = json::object();
  for (const io::TensorView& v : r.tensors()) {
    const size_t slash = v.name.rfind('/');
    const auto len = meta.find(v.name);
    int length = 0;
    if (len != meta.end()) std::istringstream(len->second) >> length;
    TS_CHECK(slash != std::string::npos && v.shape.size() == 2 && v.shape[0] >= 1 && length >= v.shape[0],
             path << ": tensor '" << v.name << "' is not an amax history (<weight>/<operand>, [filled, slots] with "
             "its history length in the metadata)", "the file is corrupt; restore a consistent checkpoint");
    const int filled = static_cast<int>(v.shape[0]);
    const int64_t slots = v.shape[1];
    // Rows 0..filled-1 oldest first, the next push at `filled` (or overwriting the oldest,
    // row 0, when full): the same history as the saved ring, rotated.
    const std::vector<float> rows = r.read_f32(v.name);
    json ring = json::array();
    for (int64_t i = 0; i < int64_t(length) * slots; ++i)
      ring.push_back(i < int64_t(filled) * slots ? static_cast<double>(rows[size_t(i)]) : 0.0);
    state[v.name.substr(0, slash)][v.name.substr(slash + 1)] = {
        {"length", length}, {"slots", slots}, {"head", filled % length}, {"filled", filled}, {"ring", std::move(ring)}};
  }
  model::restore_linear_scaling_state(reg, state);
}

}  // namespace tinyseek::train
