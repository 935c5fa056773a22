// The precision map (model/precision.h): recipes, overrides, JSON section, validation
// errors, the printed table, resolution per Linear; and the model running it: the fp32
// recipe resolves every Linear to the plain FP32 path, the fp8 recipe quantizes exactly
// the Linears of blocks and MTP modules (telemetry shows which), FP8 gradients of a tiny
// MoE+MTP model agree with FP32 gradients (cosine >= 0.99 for every tensor, table printed),
// and delayed-scaling histories round-trip through a checkpoint for a bit-identical resume.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tinyseek/base/check.h"
#include "tinyseek/base/rng.h"
#include "tinyseek/model/config.h"
#include "tinyseek/model/deepseek.h"
#include "tinyseek/model/linear_site.h"
#include "tinyseek/model/precision.h"
#include "tiny_model.h"

namespace tinyseek::model {
namespace {

using nlohmann::json;
using namespace tiny;

// Expects f() to throw a tinyseek::Error whose message + hint contains every fragment.
template <class F>
void expect_error(F&& f, std::initializer_list<const char*> fragments) {
  try {
    f();
    ADD_FAILURE() << "expected an error containing " << *fragments.begin();
  } catch (const Error& e) {
    const std::string text = e.message() + " | hint: " + e.hint();
    std::printf("[precision] error: %s\n", text.c_str());
    for (const char* frag : fragments) EXPECT_NE(text.find(frag), std::string::npos) << "missing '" << frag << "'";
  }
}

TEST(PrecisionMap, RecipesHaveThePapersSettings) {
  const PrecisionMap f = precision_recipe("fp8");
  EXPECT_EQ(f.format, GemmFormat::kE4M3);
  EXPECT_EQ(f.granularity, ops::LinearGranularity::kTile128);
  EXPECT_EQ(f.scaling, Scaling::kOnline);
  EXPECT_EQ(f.scale_type, numerics::ScaleType::Fp32);
  EXPECT_EQ(f.promote_every, 128);
  EXPECT_EQ(f.wgrad, StoreFormat::kFp8);
  EXPECT_EQ(f.head, StoreFormat::kBf16);
  EXPECT_EQ(f.router, StoreFormat::kFp32);
  const ops::LinearPrecision p = linear_precision(f, LinearClass::kBlock, 0, 2);
  EXPECT_EQ(p.fprop_x, gemm::DType::E4M3);
  EXPECT_EQ(p.weight, gemm::DType::E4M3);
  EXPECT_EQ(p.dgrad_dy, gemm::DType::E4M3);
  EXPECT_EQ(p.wgrad_dy, gemm::DType::E4M3);
  EXPECT_EQ(p.wgrad_x, gemm::DType::E4M3);
  EXPECT_EQ(p.saved_x, gemm::DType::E4M3);  // cached on the Wgrad grid (changes no bit: activation_cache_test)
  EXPECT_EQ(p.amax_history, 0);
  EXPECT_EQ(f.swiglu_cache, StoreFormat::kFp8);  // §3.3.3
  EXPECT_EQ(f.moe_combine, StoreFormat::kBf16);
  const ActStore sc = swiglu_cache(f, 0, 2);
  EXPECT_EQ(sc.spec.granularity, numerics::Granularity::Tile1x128);
  EXPECT_EQ(sc.spec.format, numerics::Fp8Format::E4M3);
  PrecisionMap fb = f;
  apply_precision_override(fb, "first_blocks_bf16=1");
  EXPECT_EQ(swiglu_cache(fb, 0, 2).format, StoreFormat::kBf16);  // a BF16 block caches BF16
  EXPECT_EQ(swiglu_cache(fb, 1, 2).format, StoreFormat::kFp8);
  EXPECT_EQ(precision_recipe("bf16").swiglu_cache, StoreFormat::kFp32);
  EXPECT_EQ(precision_recipe("fp32").moe_combine, StoreFormat::kFp32);
  const ops::LinearPrecision b = linear_precision(precision_recipe("bf16"), LinearClass::kBlock, 0, 2);
  EXPECT_EQ(b.fprop_x, gemm::DType::BF16);
  EXPECT_EQ(b.wgrad_x, gemm::DType::BF16);
  EXPECT_EQ(b.accumulation, gemm::Accumulation::kFp32);
  for (LinearClass c : {LinearClass::kBlock, LinearClass::kHead, LinearClass::kRouter})
    EXPECT_TRUE(linear_precision(precision_recipe("fp32"), c, 0, 2).plain_fp32());
  // Hybrid: E5M2 only for the gradients dY.
  PrecisionMap h = f;
  apply_precision_override(h, "precision.format=hybrid");
  const ops::LinearPrecision hp = linear_precision(h, LinearClass::kBlock, 0, 2);
  EXPECT_EQ(hp.fprop_x, gemm::DType::E4M3);
  EXPECT_EQ(hp.dgrad_dy, gemm::DType::E5M2);
  EXPECT_EQ(hp.wgrad_dy, gemm::DType::E5M2);
  EXPECT_EQ(hp.wgrad_x, gemm::DType::E4M3);
}

TEST(PrecisionMap, OverridesSpecsAndJsonRoundTrip) {
  PrecisionMap m = precision_from_spec("fp8:precision.scale_type=pow2:granularity=row:precision.scaling=delayed:"
                                       "amax_history=8:wgrad=bf16:activation_cache=fp8:first_blocks_bf16=1");
  EXPECT_EQ(m.recipe, "fp8");
  EXPECT_EQ(m.scale_type, numerics::ScaleType::Pow2);
  EXPECT_EQ(m.granularity, ops::LinearGranularity::kRow);
  EXPECT_EQ(m.scaling, Scaling::kDelayed);
  EXPECT_EQ(m.amax_history, 8);
  EXPECT_EQ(get_precision_field(m, "wgrad"), "bf16");
  // The FP8 activation cache is the Wgrad X operand even with a BF16 Wgrad.
  const ops::LinearPrecision p = linear_precision(m, LinearClass::kBlock, 1, 2);
  EXPECT_EQ(p.saved_x, gemm::DType::E4M3);
  EXPECT_EQ(p.wgrad_x, gemm::DType::E4M3);
  EXPECT_EQ(p.wgrad_dy, gemm::DType::BF16);
  EXPECT_EQ(p.amax_history, 8);
  // Block 0 is a BF16 block; MTP layer 2 (>= L) follows the map.
  EXPECT_EQ(linear_precision(m, LinearClass::kBlock, 0, 2).fprop_x, gemm::DType::BF16);
  EXPECT_EQ(linear_precision(m, LinearClass::kBlock, 0, 2).saved_x, gemm::DType::BF16);
  EXPECT_EQ(linear_precision(m, LinearClass::kBlock, 2, 2).fprop_x, gemm::DType::E4M3);

  const json j = precision_to_json(m);
  std::printf("[precision] JSON: %s\n", j.dump().c_str());
  EXPECT_EQ(j.size(), precision_field_names().size());
  EXPECT_EQ(precision_from_json(j), m);
  // "recipe" first whatever the key order; integers as numbers or strings.
  const PrecisionMap k = precision_from_json(json{{"promote_every", "64"}, {"recipe", "fp8"}, {"amax_history", 4}});
  EXPECT_EQ(k.promote_every, 64);
  EXPECT_EQ(k.amax_history, 4);
  EXPECT_EQ(k.format, GemmFormat::kE4M3);
  // Setting the recipe resets every field.
  apply_precision_override(m, "precision.recipe=bf16");
  EXPECT_EQ(m, precision_recipe("bf16"));
}

TEST(PrecisionMap, ErrorsNameTheFieldAndTheFix) {
  PrecisionMap m = precision_recipe("fp8");
  expect_error([&] { apply_precision_override(m, "precision.granularty=row"); }, {"granularty", "granularity"});
  expect_error([&] { apply_precision_override(m, "precision.granularity=block"); }, {"block", "tile128", "mx32"});
  expect_error([&] { apply_precision_override(m, "precision.promote_every=12x"); }, {"promote_every", "integer"});
  expect_error([&] { apply_precision_override(m, "scale_type"); }, {"<field>=<value>"});
  expect_error([] { precision_from_spec("fp16"); }, {"fp16", "fp32, bf16, fp8"});
  expect_error([] { precision_from_spec("bf16:wgrad=fp8"); }, {"wgrad=fp8", "format is bf16", "wgrad=bf16"});
  expect_error([] { precision_from_spec("bf16:activation_cache=fp8"); }, {"activation_cache=fp8", "bf16"});
  expect_error([] { precision_from_spec("fp8:granularity=mx32"); }, {"mx32", "scale_type=pow2"});
  expect_error([] { precision_from_spec("fp8:promote_every=96"); }, {"promote_every 96", "divisor of 128"});
  expect_error([] { precision_from_spec("fp8:master_weights=bf16"); }, {"master_weights must be fp32"});
  expect_error([] { precision_from_spec("fp8:head=fp8"); }, {"head must be fp32 or bf16"});
  expect_error([] { precision_from_spec("fp8:moe_combine=fp8"); }, {"moe_combine must be fp32 or bf16"});
  expect_error([] { precision_from_spec("fp8:swiglu_cache=fp16"); }, {"swiglu_cache", "fp32 | bf16 | fp8"});
  expect_error([] { precision_from_spec("fp8:scaling=delayed:amax_history=0"); }, {"amax_history", "1..4096"});
  expect_error([] { precision_from_spec("fp8:accumulation=tensorcore:accum_bits=30"); }, {"accum_bits", "1..23"});
  expect_error([] { precision_from_json(json{{"recipe", "fp8"}, {"amax_history", 2.5}}); },
               {"amax_history", "integer"});
  expect_error([] { precision_from_json(json::array()); }, {"JSON object"});
  // Valid corner cases.
  EXPECT_NO_THROW(precision_from_spec("fp8:granularity=mx32:scale_type=pow2"));
  EXPECT_NO_THROW(precision_from_spec("fp8:promote_every=32"));
  EXPECT_NO_THROW(precision_from_spec("fp8:promote_every=512"));
  EXPECT_NO_THROW(precision_from_spec("bf16:promote_every=96"));  // no FP8 tiles to split
}

TEST(PrecisionMap, ConfigSectionRoundTripsAndChecksBlockCounts) {
  const ModelConfig c = config_from_json(tiny_config("fp8:last_blocks_bf16=1"));
  EXPECT_EQ(c.precision.recipe, "fp8");
  EXPECT_EQ(c.precision.last_blocks_bf16, 1);
  EXPECT_EQ(config_from_json(to_json(c)).precision, c.precision);
  EXPECT_EQ(config_from_json(tiny_config("")).precision, precision_recipe("fp32"));  // absent: fp32
  json bad = tiny_config("fp8");
  bad["precision"]["first_blocks_bf16"] = 4;
  expect_error([&] { config_from_json(bad, "cfg.json"); }, {"cfg.json: precision", "num_hidden_layers (3)"});
  bad = tiny_config("fp8");
  bad["precision"]["formatt"] = "e4m3";
  expect_error([&] { config_from_json(bad); }, {"formatt", "valid fields"});
  const std::string table = precision_table(c.precision, c.num_hidden_layers);
  std::printf("%s", table.c_str());
  for (const char* frag : {"recipe fp8 with last_blocks_bf16=1", "Fprop", "X e4m3 tile1x128", "W e4m3 block128x128",
                           "dY e4m3 tile128x1", "X e4m3 tile128x1", "online", "promote every 128", "output head",
                           "bf16 inputs", "router", "activation cache fp8", "SwiGLU inputs fp8 (output recomputed)",
                           "MoE combine bf16", "optimizer moments bf16", "last 1"})
    EXPECT_NE(table.find(frag), std::string::npos) << "table lacks '" << frag << "'";
}

constexpr int64_t kB = 2, kT = 24;

TEST(PrecisionModel, Fp32RecipeRunsThePlainPathEverywhere) {
  Model m(config_from_json(tiny_config("fp32")));
  int linears = 0;
  for (size_t i = 0; i < m.registry().size(); ++i) {
    const TensorInfo& t = m.registry().info(int(i));
    if (t.role != Role::kLinear && t.role != Role::kMtpProj && t.role != Role::kHead && t.role != Role::kRouter)
      continue;
    ++linears;
    EXPECT_TRUE(LinearSite(m.registry(), int(i)).precision.plain_fp32()) << t.name;
  }
  std::printf("[precision] fp32 recipe: all %d Linears resolve to the plain FP32 path (bit-identical to it: "
              "linear_fp8_test)\n", linears);
}

TEST(PrecisionModel, Fp8RecipeQuantizesExactlyTheBlockAndMtpLinears) {
  Model m(config_from_json(tiny_config("fp8:first_blocks_bf16=1")));
  prepare(m, 3);
  const Registry& r = m.registry();
  set_linear_telemetry(r, true);
  const auto tok = tokens(kB, kT, 96, 5);
  m.registry().zero_grad();
  m.forward_backward(tok.data(), kB, kT);
  const auto recs = collect_linear_telemetry(r);
  int fp8 = 0, bf16 = 0, head = 0;
  for (const LinearTelemetryRecord& rec : recs) {
    const TensorInfo& t = r.info(rec.weight);
    EXPECT_NE(t.role, Role::kRouter) << "router must stay FP32: " << t.name;
    const bool scaled = rec.telemetry.fprop.a.scales > 0;
    if (t.role == Role::kHead) {
      ++head;
      EXPECT_FALSE(scaled);  // BF16 inputs
      EXPECT_EQ(rec.telemetry.fprop.calls, 2);  // main head and the MTP head
    } else if (t.layer == 0) {
      ++bf16;
      EXPECT_FALSE(scaled) << t.name << " is in a BF16 block";
    } else {
      ++fp8;
      EXPECT_TRUE(scaled) << t.name << " should be FP8";
      EXPECT_GT(rec.telemetry.fprop.sqnr_db(), 20.0) << t.name;
    }
  }
  int expected_block_linears = 0;
  for (const TensorInfo& t : r.tensors()) expected_block_linears += t.role == Role::kLinear || t.role == Role::kMtpProj;
  const json j = linear_telemetry_json(recs);
  std::printf("[precision] fp8 map on the model: %d FP8 Linears (blocks 1-2 and MTP), %d BF16 (block 0), %d head; "
              "block Linears in the registry %d; summary %s\n",
              fp8, bf16, head, expected_block_linears, j["summary"].dump().c_str());
  EXPECT_EQ(head, 1);
  EXPECT_GT(fp8, 0);
  EXPECT_GT(bf16, 0);
  EXPECT_EQ(fp8 + bf16, expected_block_linears);  // K = E: every expert has tokens
}

std::vector<float> grads_of(const std::string& spec, uint64_t seed, double* loss) {
  Model m(config_from_json(tiny_config(spec)));
  prepare(m, seed);
  m.registry().zero_grad();
  const auto tok = tokens(kB, kT, 96, seed + 1);
  *loss = m.forward_backward(tok.data(), kB, kT).loss;
  const AlignedBuffer<float>& g = m.registry().grads();
  return std::vector<float>(g.data(), g.data() + g.size());
}

TEST(PrecisionModel, Fp8GradientsAgreeWithFp32PerTensor) {
  const Model shape(config_from_json(tiny_config("")));
  const Registry& r = shape.registry();
  for (const char* spec : {"bf16", "fp8"}) {
    double l32 = 0, lq = 0;
    const std::vector<float> g32 = grads_of("fp32", 7, &l32), gq = grads_of(spec, 7, &lq);
    std::printf("[precision] %s vs fp32: loss %.6f vs %.6f (rel %.2e)\n", spec, lq, l32, std::fabs(lq - l32) / l32);
    std::printf("  %-52s %10s %10s\n", "tensor", "cosine", "norm ratio");
    double worst = 1;
    for (const TensorInfo& t : r.tensors()) {
      double dot = 0, a2 = 0, b2 = 0;
      for (size_t i = t.offset; i < t.offset + t.numel; ++i)
        dot += double(g32[i]) * gq[i], a2 += double(g32[i]) * g32[i], b2 += double(gq[i]) * gq[i];
      if (a2 == 0) {  // the router bias has no gradient: both must be zero
        EXPECT_EQ(b2, 0) << t.name;
        continue;
      }
      const double cos = dot / std::sqrt(a2 * b2);
      worst = std::min(worst, cos);
      std::printf("  %-52s %10.6f %10.4f\n", t.name.c_str(), cos, std::sqrt(b2 / a2));
      EXPECT_GE(cos, 0.99) << t.name;
    }
    std::printf("[precision] %s: min cosine over %zu tensors %.6f (must be >= 0.99)\n", spec, r.size(), worst);
  }
}

// A few "training steps" with plain SGD (the optimizer is not this test's subject).
std::vector<double> run_steps(Model& m, int first, int count) {
  std::vector<double> losses;
  Registry& r = m.registry();
  for (int s = first; s < first + count; ++s) {
    r.zero_grad();
    const auto tok = tokens(kB, kT, 96, 100 + uint64_t(s));
    losses.push_back(m.forward_backward(tok.data(), kB, kT).loss);
    float* p = r.params().data();
    const float* g = r.grads().data();
    for (size_t i = 0; i < r.params().size(); ++i) p[i] -= 0.5f * g[i];
    r.params_changed();
  }
  return losses;
}

TEST(PrecisionModel, DelayedScalingHistoryRoundTripsForBitIdenticalResume) {
  const ModelConfig cfg = config_from_json(tiny_config("fp8:scaling=delayed:amax_history=2"));
  Model a(cfg);
  prepare(a, 11);
  run_steps(a, 0, 3);
  // "Checkpoint": parameters and the scaling state, through text.
  const std::vector<float> params(a.registry().params().data(), a.registry().params().data() + a.registry().params().size());
  const std::string saved = linear_scaling_state(a.registry()).dump();
  const json state = json::parse(saved);
  size_t histories = 0;
  for (const auto& [name, per] : state.items())
    for (const auto& [op, h] : per.items()) {
      ++histories;
      EXPECT_EQ(h["filled"].get<int>(), 2) << name << " " << op;  // 3 steps into a ring of 2
    }
  const std::vector<double> cont = run_steps(a, 3, 2);

  auto resume = [&](bool restore) {
    Model b(cfg);
    std::memcpy(b.registry().params().data(), params.data(), params.size() * sizeof(float));
    b.registry().params_changed();
    if (restore) restore_linear_scaling_state(b.registry(), json::parse(saved));
    const std::vector<double> l = run_steps(b, 3, 2);
    const bool same_params = std::memcmp(b.registry().params().data(), a.registry().params().data(),
                                         params.size() * sizeof(float)) == 0;
    return std::make_pair(l, same_params);
  };
  const auto [resumed, same] = resume(true);
  const auto [fresh, same_fresh] = resume(false);
  std::printf("[precision] delayed scaling: %zu histories (%zu bytes of JSON); losses after resume %.9f %.9f vs "
              "continuing %.9f %.9f; params bit-identical: %s; without the histories: %.9f %.9f (params equal: %s)\n",
              histories, saved.size(), resumed[0], resumed[1], cont[0], cont[1], same ? "yes" : "NO", fresh[0],
              fresh[1], same_fresh ? "yes" : "no");
  EXPECT_GT(histories, 0u);
  EXPECT_EQ(resumed, cont);
  EXPECT_TRUE(same);
  EXPECT_FALSE(same_fresh);  // the state matters: dropping it changes the run
}

}  // namespace
}  // namespace tinyseek::model
