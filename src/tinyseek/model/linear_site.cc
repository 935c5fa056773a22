#include "tinyseek/model/linear_site.h"

#include <cmath>

#include <nlohmann/json.hpp>

#include "tinyseek/base/check.h"
#include "tinyseek/model/precision.h"

namespace tinyseek::model {

// ---- Registry's per-Linear state table (declared in registry.h; defined here, where
// ops::LinearState is complete).

std::shared_ptr<ops::LinearState> Registry::linear_state(int id) const {
  TS_ASSERT(id >= 0 && static_cast<size_t>(id) < tensors_.size());
  if (linear_states_.size() < tensors_.size()) linear_states_.resize(tensors_.size());
  auto& s = linear_states_[static_cast<size_t>(id)];
  if (!s) s = std::make_shared<ops::LinearState>();
  return s;
}

std::shared_ptr<ops::LinearState> Registry::find_linear_state(int id) const {
  if (id < 0 || static_cast<size_t>(id) >= linear_states_.size()) return nullptr;
  return linear_states_[static_cast<size_t>(id)];
}

namespace {

LinearClass linear_class(const TensorInfo& t) {
  switch (t.role) {
    case Role::kLinear:
    case Role::kMtpProj: return LinearClass::kBlock;
    case Role::kHead: return LinearClass::kHead;
    case Role::kRouter: return LinearClass::kRouter;
    default: break;
  }
  TS_FAIL("tensor " << t.name << " (role " << to_string(t.role) << ") is not a Linear weight",
          "this is a bug in the model wiring");
}

}  // namespace

LinearSite::LinearSite(const Registry& r, int weight_id) : weight(weight_id) {
  const TensorInfo& t = r.info(weight_id);
  TS_ASSERT(t.shape.size() == 2);
  out = t.shape[0];
  in = t.shape[1];
  const ModelConfig& c = r.config();
  precision = linear_precision(c.precision, linear_class(t), t.layer, c.num_hidden_layers);
  precision.validate();
  state = r.linear_state(weight_id);
}

ops::LinearPrecision LinearSite::call_precision(bool x_dropped) const {
  ops::LinearPrecision p = precision;
  if (!x_dropped && p.saved_x == p.wgrad_x) p.saved_x = gemm::DType::F32;  // the copy would change no bit
  return p;
}

namespace {

// Switches amax recording and telemetry off for one recomputed forward, and back to what
// they were (record_amax may already be off around an evaluation).
class RepeatGuard {
 public:
  RepeatGuard(ops::LinearState& s, bool active)
      : s_(s), active_(active), record_(s.record_amax), telemetry_(s.telemetry_enabled) {
    if (!active_) return;
    s_.record_amax = false;
    s_.telemetry_enabled = false;
  }
  ~RepeatGuard() {
    if (!active_) return;
    s_.record_amax = record_;
    s_.telemetry_enabled = telemetry_;
  }
  RepeatGuard(const RepeatGuard&) = delete;
  RepeatGuard& operator=(const RepeatGuard&) = delete;

 private:
  ops::LinearState& s_;
  bool active_, record_, telemetry_;
};

}  // namespace

void LinearSite::forward(const Registry& r, float* y, const float* x, int64_t n, const LinearCall& call) const {
  TS_ASSERT(!call.x_dropped || can_drop_input());
  const RepeatGuard guard(*state, call.repeat);
  ops::linear_forward(y, x, r.param(weight), r.params_version(), n, in, out, call.accumulate,
                      call_precision(call.x_dropped), *state, call.share);
}

void LinearSite::backward(Registry& r, float* dx, const float* dy, const float* x, int64_t n,
                          ops::InputShare share, bool overwrite_dx) const {
  ops::linear_backward(dx, r.grad(weight), dy, x, r.param(weight), r.params_version(), n, in, out,
                       call_precision(x == nullptr), *state, share, overwrite_dx);
}

int64_t linear_cache_bytes(const Registry& r) {
  int64_t bytes = 0;
  for (size_t id = 0; id < r.size(); ++id)
    if (auto s = r.find_linear_state(static_cast<int>(id)))
      bytes += static_cast<int64_t>(s->x_bf16.size() * sizeof(uint16_t) + s->x_q.codes.size() +
                                    s->x_q.scales.size() * sizeof(float));
  return bytes;
}

LinearMemory linear_memory(const Registry& r) {
  LinearMemory m;
  const auto q_bytes = [](const numerics::QTensor& q) {
    return static_cast<int64_t>(q.codes.size() + q.scales.size() * sizeof(float));
  };
  for (size_t id = 0; id < r.size(); ++id)
    if (auto s = r.find_linear_state(static_cast<int>(id))) {
      m.weight_copies += q_bytes(s->w_q) + q_bytes(s->w_q_dgrad) + static_cast<int64_t>(s->w_bf16.size() * 2);
      m.packed_weights += static_cast<int64_t>(s->fprop_b.bytes() + s->dgrad_b.bytes());
    }
  m.activation_cache = linear_cache_bytes(r);
  return m;
}

// ---- Trainer API

namespace {

// Calls f(id, state) for every Linear state the model created, in registry order.
template <class F>
void for_each_state(const Registry& r, F&& f) {
  for (size_t id = 0; id < r.size(); ++id)
    if (auto s = r.find_linear_state(static_cast<int>(id))) f(static_cast<int>(id), *s);
}

nlohmann::json finite_or_null(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

nlohmann::json operand_json(const ops::OperandStats& s) {
  nlohmann::json j = {{"count", s.count}, {"sqnr_db", finite_or_null(s.sqnr_db())}, {"saturated", s.saturated},
                      {"underflow", s.underflow}};
  if (s.scales > 0) {
    j["scale_min"] = s.scale_min;
    j["scale_max"] = s.scale_max;
    j["scale_mean_log2"] = s.mean_log2_scale();
  }
  return j;
}

nlohmann::json gemm_json(const ops::GemmStats& g) {
  return {{"calls", g.calls},
          {"sqnr_db", finite_or_null(g.sqnr_db())},
          {"rel_err", finite_or_null(g.rel_err())},
          {"max_abs_err", g.max_abs_err},
          {"a", operand_json(g.a)},
          {"b", operand_json(g.b)}};
}

bool quantized(const ops::LinearPrecision& p) { return !p.plain_fp32(); }

}  // namespace

void set_linear_telemetry(const Registry& r, bool enabled) {
  const PrecisionMap& m = r.config().precision;
  for_each_state(r, [&](int id, ops::LinearState& s) {
    const TensorInfo& t = r.info(id);
    s.telemetry_enabled = enabled && quantized(linear_precision(m, linear_class(t), t.layer, r.config().num_hidden_layers));
  });
}

std::vector<LinearTelemetryRecord> collect_linear_telemetry(const Registry& r, bool reset) {
  std::vector<LinearTelemetryRecord> out;
  for_each_state(r, [&](int id, ops::LinearState& s) {
    const ops::LinearTelemetry& t = s.telemetry;
    if (t.fprop.calls + t.dgrad.calls + t.wgrad.calls > 0)
      out.push_back({id, r.info(id).name, r.info(id).layer, t});
    if (reset) s.telemetry.reset();
  });
  return out;
}

nlohmann::json linear_telemetry_json(const std::vector<LinearTelemetryRecord>& records) {
  nlohmann::json linears = nlohmann::json::array();
  ops::LinearTelemetry sum;
  for (const LinearTelemetryRecord& rec : records) {
    linears.push_back({{"name", rec.name},
                       {"layer", rec.layer},
                       {"fprop", gemm_json(rec.telemetry.fprop)},
                       {"dgrad", gemm_json(rec.telemetry.dgrad)},
                       {"wgrad", gemm_json(rec.telemetry.wgrad)}});
    sum.fprop.add(rec.telemetry.fprop);
    sum.dgrad.add(rec.telemetry.dgrad);
    sum.wgrad.add(rec.telemetry.wgrad);
  }
  return {{"linears", linears},
          {"summary", {{"fprop", gemm_json(sum.fprop)}, {"dgrad", gemm_json(sum.dgrad)}, {"wgrad", gemm_json(sum.wgrad)}}}};
}

void set_linear_amax_recording(const Registry& r, bool enabled) {
  for_each_state(r, [&](int, ops::LinearState& s) {
    // A weight copy made while recording was off (an evaluation right after an update) left
    // no amax for its step: drop it, so the next training forward rebuilds it and records.
    if (enabled && !s.record_amax) s.fprop_version = s.dgrad_version = ops::LinearState::kNoVersion;
    s.record_amax = enabled;
  });
}

nlohmann::json linear_scaling_state(const Registry& r) {
  nlohmann::json j = nlohmann::json::object();
  for_each_state(r, [&](int id, ops::LinearState& s) {
    ops::linear_commit_scaling(s);
    nlohmann::json per = nlohmann::json::object();
    for (int k = 0; k < ops::kLinearOperands; ++k) {
      const numerics::AmaxHistory& h = s.history[static_cast<size_t>(k)];
      if (h.length() == 0) continue;
      // float -> double is exact and JSON keeps 17 significant digits: the ring round-trips.
      nlohmann::json ring = nlohmann::json::array();
      for (float v : h.ring()) ring.push_back(static_cast<double>(v));
      per[ops::to_string(static_cast<ops::LinearOperand>(k))] = {
          {"length", h.length()}, {"slots", h.slots()}, {"head", h.head()}, {"filled", h.filled()}, {"ring", ring}};
    }
    if (!per.empty()) j[r.info(id).name] = per;
  });
  return j;
}

void restore_linear_scaling_state(const Registry& r, const nlohmann::json& state) {
  TS_CHECK(state.is_object(), "scaling state must be a JSON object, got " << state.type_name(),
           "pass what linear_scaling_state() returned");
  for (const auto& [name, per] : state.items()) {
    const int id = r.find(name);
    TS_CHECK(id >= 0, "scaling state names tensor '" << name << "', which this model does not have",
             "restore into a model built from the checkpoint's config");
    auto s = r.linear_state(id);
    for (const auto& [operand, h] : per.items()) {
      int k = 0;
      while (k < ops::kLinearOperands && operand != ops::to_string(static_cast<ops::LinearOperand>(k))) ++k;
      TS_CHECK(k < ops::kLinearOperands, "scaling state of " << name << " has unknown operand '" << operand << "'",
               "valid operands: fprop.x, fprop.w, dgrad.w, dgrad.dy, wgrad.dy, wgrad.x");
      std::vector<float> ring;
      for (const auto& v : h.at("ring")) ring.push_back(static_cast<float>(v.get<double>()));
      numerics::AmaxHistory hist(h.at("length").get<int>(), h.at("slots").get<int64_t>());
      hist.restore(std::move(ring), h.at("head").get<int>(), h.at("filled").get<int>());
      s->history[static_cast<size_t>(k)] = std::move(hist);
      s->step_amax[static_cast<size_t>(k)].clear();
    }
  }
}

}  // namespace tinyseek::model
