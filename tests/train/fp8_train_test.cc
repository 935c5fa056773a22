// FP8 training in the trainer: evaluation and telemetry change no training bit, telemetry
// records sane numbers per GEMM role, and a resume under another precision map is refused
// unless allowed (then moments are converted). Bit-identical resume of the fp8 recipes is
// in trainer_test.cc (ResumeTest).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tinyseek/base/check.h"
#include "tinyseek/io/checkpoint.h"
#include "tinyseek/io/safetensors.h"
#include "tinyseek/numerics/bf16.h"
#include "tinyseek/train/trainer.h"
#include "trainer_test_util.h"

namespace tinyseek::train {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;
using testing::fresh_dir;
using testing::memory_data;
using testing::quiet;
using testing::tiny_run_config;
using testing::train_lines;

// Floats of the two runs' parameters that differ bitwise.
size_t differing_params(Trainer& a, Trainer& b) {
  const auto& pa = a.model().registry().params();
  const auto& pb = b.model().registry().params();
  EXPECT_EQ(pa.size(), pb.size());
  size_t n = 0;
  for (size_t i = 0; i < pa.size() && i < pb.size(); ++i) n += std::memcmp(&pa[i], &pb[i], sizeof(float)) != 0;
  return n;
}

const std::vector<std::string> kDelayed = {"precision.recipe=fp8", "precision.scaling=delayed",
                                           "precision.amax_history=4"};

std::vector<std::string> with(std::vector<std::string> base, const std::vector<std::string>& more) {
  base.insert(base.end(), more.begin(), more.end());
  return base;
}

TEST(Fp8Train, EvaluationChangesNoTrainingBit) {
  // Delayed scaling: an evaluation forward quantizes with the histories but must record no
  // amax, or the next training step would scale differently.
  const RunConfig with_eval = tiny_run_config(with(kDelayed, {"steps=6", "eval_every=2", "eval_batches=2", "save_every=0"}));
  const RunConfig no_eval = tiny_run_config(with(kDelayed, {"steps=6", "eval_every=0", "eval_batches=2", "save_every=0"}));
  Trainer a(with_eval.model, with_eval.hyper, memory_data(with_eval.model.vocab_size), quiet());
  Trainer b(no_eval.model, no_eval.hyper, memory_data(no_eval.model.vocab_size), quiet());
  a.init_fresh();
  b.init_fresh();
  a.run(6);
  b.run(6);
  const std::vector<CurvePoint>& va = a.metrics().val_curve();
  std::printf("  evaluations in the eval_every=2 run: %zu (val loss at step %lld: %.4f); without: %zu\n", va.size(),
              static_cast<long long>(va.empty() ? 0 : va.front().step), va.empty() ? 0.0 : va.front().value,
              b.metrics().val_curve().size());
  EXPECT_EQ(va.size(), 3u);  // steps 2, 4, 6
  const auto& ta = a.metrics().train_curve();
  const auto& tb = b.metrics().train_curve();
  ASSERT_EQ(ta.size(), tb.size());
  for (size_t i = 0; i < ta.size(); ++i) EXPECT_EQ(ta[i].value, tb[i].value) << "step " << ta[i].step;
  const size_t diff = differing_params(a, b);
  std::printf("  weights after 6 steps: %zu floats differ bitwise (expected 0)\n", diff);
  EXPECT_EQ(diff, 0u);
}

struct TelemetryCase {
  const char* name;
  std::vector<std::string> overrides;
  bool fp8;
  // Online max-abs scaling never clips and E4M3 keeps 3 mantissa bits (~30 dB per operand,
  // mid-20s to mid-30s for a product of two quantized operands). Delayed scaling clips
  // whenever an amax outgrows its history (early in training, while the gradients grow),
  // which costs SQNR on those GEMMs.
  double fp8_min_db;
  bool may_saturate;
};
// ctest shows the case name instead of the struct's bytes.
inline void PrintTo(const TelemetryCase& c, std::ostream* os) { *os << c.name; }
class TelemetryTest : public ::testing::TestWithParam<TelemetryCase> {};

TEST_P(TelemetryTest, RecordsSaneNumbersAndChangesNoBit) {
  const RunConfig rc = tiny_run_config(with(GetParam().overrides, {"steps=4", "eval_every=0", "save_every=0"}));
  const std::string da = fresh_dir(std::string("telemetry_on_") + GetParam().name);
  const std::string db = fresh_dir(std::string("telemetry_off_") + GetParam().name);
  TrainerOptions on = quiet(da);
  on.telemetry_every = 2;
  Trainer a(rc.model, rc.hyper, memory_data(rc.model.vocab_size), on);
  Trainer b(rc.model, rc.hyper, memory_data(rc.model.vocab_size), quiet(db));
  a.init_fresh();
  b.init_fresh();
  a.run(4);
  b.run(4);
  const size_t diff = differing_params(a, b);
  std::printf("  %s: weights with telemetry every 2 steps vs none: %zu floats differ bitwise\n", GetParam().name, diff);
  EXPECT_EQ(diff, 0u);

  const std::vector<json> lines = train_lines(da);
  ASSERT_EQ(lines.size(), 4u);
  for (const json& l : lines) {
    const bool expected = l["step"].get<int64_t>() % 2 == 0;
    ASSERT_EQ(l.contains("numerics"), expected) << "step " << l["step"];
    if (!expected) continue;
    const json& linears = l["numerics"]["linears"];
    ASSERT_FALSE(linears.empty());
    double fp8_min = 1e9, fp8_max = 0, bf16_min = 1e9;
    for (const json& lin : linears) {
      for (const char* role : {"fprop", "dgrad", "wgrad"}) {
        const json& g = lin[role];
        if (g["calls"].get<int64_t>() == 0) continue;
        ASSERT_TRUE(g["sqnr_db"].is_number()) << lin["name"] << " " << role;
        const double db = g["sqnr_db"].get<double>(), rel = g["rel_err"].get<double>();
        // rel err and SQNR are two views of one ratio: SQNR = -20 log10(rel).
        EXPECT_NEAR(db, -20 * std::log10(rel), 1e-6) << lin["name"] << " " << role;
        const bool fp8_operands = g["a"].contains("scale_min") || g["b"].contains("scale_min");
        if (fp8_operands) {
          fp8_min = std::min(fp8_min, db), fp8_max = std::max(fp8_max, db);
          if (!GetParam().may_saturate) {
            EXPECT_EQ(g["a"]["saturated"].get<int64_t>() + g["b"]["saturated"].get<int64_t>(), 0)
                << "online max-abs scaling never clips: " << lin["name"] << " " << role;
          }
        } else {
          bf16_min = std::min(bf16_min, db);
        }
      }
    }
    if (fp8_max > 0)
      std::printf("  step %lld: %zu Linears; fp8 GEMM SQNR %.1f..%.1f dB, bf16 GEMM SQNR >= %.1f dB\n",
                  static_cast<long long>(l["step"].get<int64_t>()), linears.size(), fp8_min, fp8_max, bf16_min);
    else
      std::printf("  step %lld: %zu Linears; no fp8 GEMM, bf16 GEMM SQNR >= %.1f dB\n",
                  static_cast<long long>(l["step"].get<int64_t>()), linears.size(), bf16_min);
    if (GetParam().fp8) {
      EXPECT_GT(fp8_min, GetParam().fp8_min_db);
      EXPECT_LT(fp8_max, 40.0);
    } else {
      EXPECT_EQ(fp8_max, 0.0) << "the bf16 recipe has no FP8 GEMM";
    }
    EXPECT_GT(bf16_min, 45.0) << "BF16 keeps 8 mantissa bits: ~50 dB";
  }
  // The end-of-run totals: two telemetry steps, one row per role and operand class.
  EXPECT_EQ(a.telemetry().steps(), 2);
  const std::vector<RoleTelemetry> rows = a.telemetry().summary();
  std::printf("%s", a.telemetry().table().c_str());
  ASSERT_EQ(rows.size(), GetParam().fp8 ? 6u : 3u);  // fp8: block Linears fp8 + head bf16
  for (const RoleTelemetry& r : rows) {
    EXPECT_GT(r.gemms, 0);
    EXPECT_FALSE(r.worst_linear.empty());
    if (r.operands == "fp8") EXPECT_TRUE(r.sqnr_db > GetParam().fp8_min_db && r.sqnr_db < 40) << r.role << " " << r.sqnr_db;
    else EXPECT_GT(r.sqnr_db, 45) << r.role;
  }
  EXPECT_TRUE(b.telemetry().empty());
}

INSTANTIATE_TEST_SUITE_P(Recipes, TelemetryTest,
                         ::testing::Values(TelemetryCase{"fp8", {"precision.recipe=fp8"}, true, 22.0, false},
                                           TelemetryCase{"fp8_delayed", kDelayed, true, 8.0, true},
                                           TelemetryCase{"bf16", {"precision.recipe=bf16"}, false, 0.0, false}),
                         [](const ::testing::TestParamInfo<TelemetryCase>& i) { return std::string(i.param.name); });

TEST(Fp8Train, ResumeUnderAnotherPrecisionMapIsRefusedUnlessAllowed) {
  const RunConfig fp8 = tiny_run_config(with(kDelayed, {"steps=4", "eval_every=0", "save_every=0"}));
  const std::string dir = fresh_dir("precision_change");
  {
    Trainer t(fp8.model, fp8.hyper, memory_data(fp8.model.vocab_size), quiet(dir));
    t.init_fresh();
    t.run(2);
  }
  const std::string ckpt = io::resolve_checkpoint_dir(dir);
  const RunConfig bf16 = tiny_run_config({"steps=4", "eval_every=0", "save_every=0", "precision.recipe=bf16"});
  {
    Trainer t(bf16.model, bf16.hyper, memory_data(bf16.model.vocab_size), quiet(dir));
    try {
      t.resume(dir);
      ADD_FAILURE() << "resumed an fp8 checkpoint under the bf16 map";
    } catch (const Error& e) {
      std::printf("  refused: %s\n  hint: %s\n", e.message().c_str(), e.hint().c_str());
      EXPECT_NE(e.message().find("another precision map"), std::string::npos);
      EXPECT_NE(e.message().find("precision.format: \"e4m3\" vs \"bf16\""), std::string::npos);
      EXPECT_NE(e.hint().find("--allow-precision-change"), std::string::npos);
    }
  }
  // Allowed: the fp8 recipe's BF16 moments become the bf16 recipe's FP32 moments exactly.
  TrainerOptions o = quiet(dir);
  o.allow_precision_change = true;
  Trainer t(bf16.model, bf16.hyper, memory_data(bf16.model.vocab_size), o);
  t.resume(dir);
  EXPECT_EQ(t.step(), 2);
  ASSERT_EQ(t.optimizer().moment_precision(), MomentPrecision::kFp32);
  const io::SafetensorsReader saved(ckpt + "/optimizer.safetensors");
  const model::Registry& reg = t.model().registry();
  size_t checked = 0, mismatched = 0;
  for (size_t id = 0; id < reg.size(); ++id) {
    const model::TensorInfo& info = reg.info(int(id));
    if (!model::trained_by_optimizer(info.role)) continue;
    const io::TensorView& v = saved.get("exp_avg_sq." + info.name);
    ASSERT_EQ(v.dtype, io::Dtype::BF16);
    const auto now = t.optimizer().exp_avg_sq(int(id));
    for (size_t i = 0; i < info.numel; ++i, ++checked) {
      uint16_t h;
      float f;
      std::memcpy(&h, v.data + 2 * i, 2);
      std::memcpy(&f, now.data() + 4 * i, 4);
      mismatched += numerics::bf16_decode(h) != f;
    }
  }
  std::printf("  converted moments: %zu of %zu exp_avg_sq values differ from the saved BF16 (expected 0)\n", mismatched,
              checked);
  EXPECT_GT(checked, 0u);
  EXPECT_EQ(mismatched, 0u);
  const StepRecord r = t.train_step();
  EXPECT_TRUE(std::isfinite(r.losses.loss));

  // Delayed scaling needs its histories: a checkpoint without scaling.safetensors is refused.
  fs::remove(ckpt + "/scaling.safetensors");
  Trainer t2(fp8.model, fp8.hyper, memory_data(fp8.model.vocab_size), quiet(dir));
  try {
    t2.resume(dir);
    ADD_FAILURE() << "resumed delayed scaling without its histories";
  } catch (const Error& e) {
    std::printf("  refused: %s\n", e.message().c_str());
    EXPECT_NE(e.message().find("lacks"), std::string::npos);
  }
}

}  // namespace
}  // namespace tinyseek::train
