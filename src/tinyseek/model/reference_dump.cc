#include "tinyseek/model/reference_dump.h"

#include <filesystem>
#include <fstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "tinyseek/base/check.h"
#include "tinyseek/io/safetensors.h"

namespace tinyseek::model {

void save_parameters_f32(const std::string& path, const Registry& reg) {
  io::SafetensorsWriter w;
  for (size_t i = 0; i < reg.size(); ++i) {
    const TensorInfo& t = reg.info(static_cast<int>(i));
    w.add_f32(t.name, t.shape, reg.param(static_cast<int>(i)));
  }
  w.set_metadata("format", "pt");
  w.write(path);
}

Losses write_reference_dump(const std::string& dir, Model& model, const ops::Index* tokens, int64_t B, int64_t T) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  TS_CHECK(!ec, "cannot create dump directory " << dir << ": " << ec.message(), "check the path");
  const ModelConfig& c = model.config();
  const int64_t V = c.vocab_size, Dmtp = c.num_nextn_predict_layers;

  {
    std::ofstream out(dir + "/config.json");
    out << to_json(c).dump(2) << "\n";
    TS_CHECK(out.good(), "cannot write " << dir << "/config.json", "check free disk space");
  }
  save_parameters_f32(dir + "/model.safetensors", model.registry());
  {
    io::SafetensorsWriter w;
    w.add_i32("tokens", {B, T + 1}, tokens);
    w.write(dir + "/inputs.safetensors");
  }

  // Logits from the forward-only pass (forward_backward turns its logits into gradients).
  model.forward(tokens, B, T);
  std::vector<std::vector<float>> logits(static_cast<size_t>(Dmtp + 1));
  for (int64_t k = 0; k <= Dmtp; ++k) {
    const float* p = model.logits(k);
    logits[size_t(k)].assign(p, p + B * (T - k) * V);
  }
  model.registry().zero_grad();
  const Losses losses = model.forward_backward(tokens, B, T);

  io::SafetensorsWriter w;
  w.add_f32("logits", {B, T, V}, logits[0].data());
  for (int64_t k = 1; k <= Dmtp; ++k)
    w.add_f32("logits_mtp." + std::to_string(k), {B, T - k, V}, logits[size_t(k)].data());
  // Scalars as F32 [1]; the storage must outlive w.write().
  std::vector<float> scalars;
  scalars.reserve(static_cast<size_t>(3 + Dmtp));
  auto scalar = [&](const std::string& name, double v) {
    scalars.push_back(static_cast<float>(v));
    w.add_f32(name, {1}, &scalars.back());
  };
  scalar("loss", losses.loss);
  scalar("loss_main", losses.loss_main);
  for (int64_t k = 1; k <= Dmtp; ++k) scalar("loss_mtp." + std::to_string(k), losses.loss_mtp[size_t(k - 1)]);
  scalar("loss_balance", losses.loss_balance);
  for (int64_t layer : model.moe_layers())
    w.add_i32("load_counts." + std::to_string(layer), {c.n_routed_experts}, model.load_counts(layer));
  const Registry& reg = model.registry();
  for (size_t i = 0; i < reg.size(); ++i) {
    const TensorInfo& t = reg.info(static_cast<int>(i));
    w.add_f32("grad." + t.name, t.shape, reg.grad(static_cast<int>(i)));
  }
  w.write(dir + "/outputs.safetensors");
  return losses;
}

}  // namespace tinyseek::model
