// Activation memory under the precision map (model/linear_site.h, activations.h,
// precision.h "The two cache fields"):
//  * Linear caches: with activation_cache fp8 (bf16 with a BF16 Wgrad) the modules drop the
//    FP32 inputs that only Linears read, and the Linears keep their own copies on the Wgrad
//    grid. Losses and gradients are bit-identical to activation_cache fp32 (which quantizes
//    the kept FP32 x in backward), also with delayed scaling; the saved bytes drop by exactly
//    the FP32 inputs dropped minus the FP8 copies (computed here from the dims); a bf16
//    cache under an FP8 Wgrad does change bits (the comparison can see a difference).
//  * SwiGLU cache: swiglu_cache fp8 keeps g, u as FP8 1x128 tiles and backward recomputes
//    a from the decoded values: the dense FFN's output and all gradients are bit-identical
//    to an explicit composition of the ops (quantize → dequantize → SwiGLU → Linears), and
//    differ from using the exact g, u.
//  * Recomputation keeps FP8 state: none / selective / full with the fp8 recipe (online and
//    delayed scaling) give identical losses, gradients, amax histories and telemetry (a
//    recomputed forward records no amax and no telemetry).
//  * Concurrent experts: fp8 recipe gradients, telemetry and histories are bit-identical
//    with 1 and 2 threads (per-weight LinearState, per-thread LinearScratch).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "tiny_model.h"
#include "tinyseek/model/ffn.h"
#include "tinyseek/model/linear_site.h"
#include "tinyseek/numerics/quant.h"
#include "tinyseek/ops/linear.h"
#include "tinyseek/ops/swiglu.h"

namespace tinyseek::model {
namespace {

using namespace tiny;

constexpr int64_t kB = 3, kT = 64;  // N = 192 rows: two 128-row Wgrad tiles, one partial

struct TrainRun {
  std::vector<double> losses;  // every step's loss
  std::vector<float> grads;    // after the last step
  std::vector<std::vector<int32_t>> loads;
  int64_t saved = 0, cache = 0;  // bytes after the last step without telemetry
  std::string scaling, telemetry;
};

// `steps` steps of forward_backward with plain SGD between them (a new weight version per
// step, so delayed scaling fills its histories); telemetry on for the last step if asked.
TrainRun run(const std::string& spec, Recompute policy, int steps, int experts_per_token = 4, bool telemetry = false,
             bool norm_up_recompute = true) {
  Model m(config_from_json(tiny_config(spec, experts_per_token)));
  prepare(m, 21);
  m.set_recompute(policy);
  m.set_norm_up_recompute(norm_up_recompute);
  Registry& r = m.registry();
  TrainRun out;
  for (int s = 0; s < steps; ++s) {
    const bool tel = telemetry && s == steps - 1;
    set_linear_telemetry(r, tel);
    r.zero_grad();
    const auto tok = tokens(kB, kT, 96, 300 + uint64_t(s));
    out.losses.push_back(m.forward_backward(tok.data(), kB, kT).loss);
    if (!tel) {
      out.saved = m.saved_activation_bytes();
      out.cache = m.saved_linear_cache_bytes();
    }
    if (s + 1 == steps) break;
    float* p = r.params().data();
    const float* g = r.grads().data();
    for (size_t i = 0; i < r.params().size(); ++i) p[i] -= 0.05f * g[i];
    r.params_changed();
  }
  out.grads = grads_of(m);
  for (int64_t layer : m.moe_layers())
    out.loads.emplace_back(m.load_counts(layer), m.load_counts(layer) + m.config().n_routed_experts);
  if (telemetry) out.telemetry = linear_telemetry_json(collect_linear_telemetry(r)).dump();
  out.scaling = linear_scaling_state(r).dump();
  return out;
}

// Bytes of an FP8 copy [rows, in] on the 128x1 Wgrad grid: codes + FP32 scales.
int64_t fp8_copy(int64_t rows, int64_t in) { return rows * in + (rows + 127) / 128 * in * 4; }

// What activation_cache fp8 saves under `none` (swiglu_cache fp32, K = E so every expert has
// all n rows). With the default norm/up recompute (Model::set_norm_up_recompute) no norm
// output, latent norm or up-projection is kept under either cache (recomputed in backward,
// no Linear copies of them), so only the SwiGLU outputs a differ: the experts', shared
// experts' and a dense FFN's a go for the down copies; and in the MTP module the
// concatenation goes for eh_proj's copy. Without it (norm_up false, the layout before
// 2026-12-08) per block also the FP32 h1, c_q, c_kv (and a dense FFN's h2) go for their
// Linears' FP8 copies (q_a and kv_a each keep one of h1).
int64_t expected_saving(const ModelConfig& c, bool norm_up) {
  const int64_t D = c.hidden_size, dq = c.q_lora_rank, dc = c.kv_lora_rank, F = c.intermediate_size;
  const int64_t Fe = c.moe_intermediate_size, Es = c.n_shared_experts, E = c.n_routed_experts;
  const auto block = [&](int64_t n, bool moe) {
    int64_t s = 0;
    if (!norm_up) s += 4 * n * (D + dq + dc) - 2 * fp8_copy(n, D) - fp8_copy(n, dq) - fp8_copy(n, dc);
    if (moe)
      s += 4 * n * E * Fe - E * fp8_copy(n, Fe) + 4 * n * Fe * Es - fp8_copy(n, Fe * Es);
    else
      s += 4 * n * F - fp8_copy(n, F) + (norm_up ? 0 : 4 * n * D - 2 * fp8_copy(n, D));
    return s;
  };
  const int64_t N = kB * kT, Nk = kB * (kT - 1), L = c.num_hidden_layers;
  int64_t s = 0;
  for (int64_t l = 0; l < L; ++l) s += block(N, c.is_moe_layer(l));
  return s + block(Nk, c.is_moe_layer(L)) + 4 * Nk * 2 * D - fp8_copy(Nk, 2 * D);
}

TEST(LinearCache, Fp8CopiesChangeNoBitAndSaveTheExpectedBytes) {
  // Only the Linear cache varies: SwiGLU inputs and the combine stay exact.
  const std::string exact = ":swiglu_cache=fp32:moe_combine=fp32";
  for (const bool norm_up : {true, false}) {
    for (const std::string scaling : {"", ":scaling=delayed:amax_history=4"}) {
      const std::string base = "fp8" + exact + scaling;
      const TrainRun f32 = run(base + ":activation_cache=fp32", Recompute::kNone, 3, 4, false, norm_up);
      const TrainRun f8 = run(base + ":activation_cache=fp8", Recompute::kNone, 3, 4, false, norm_up);
      const size_t diff = differing(f32.grads, f8.grads);
      const int64_t expected = expected_saving(config_from_json(tiny_config("")), norm_up);
      std::printf("[cache] %s, norm/up recompute %s: activation_cache fp8 vs fp32: losses %.9f %.9f %.9f vs %.9f "
                  "%.9f %.9f, %zu of %zu gradient floats differ, histories %s; saved %lld vs %lld bytes (Linear copies "
                  "%lld): saving %lld, expected %lld\n",
                  base.c_str(), norm_up ? "on" : "off", f8.losses[0], f8.losses[1], f8.losses[2], f32.losses[0],
                  f32.losses[1], f32.losses[2],
                  diff, f8.grads.size(), f8.scaling == f32.scaling ? "equal" : "DIFFER", (long long)f8.saved,
                  (long long)f32.saved, (long long)f8.cache, (long long)(f32.saved - f8.saved), (long long)expected);
      EXPECT_EQ(diff, 0u);
      EXPECT_EQ(f8.losses, f32.losses);
      EXPECT_EQ(f8.scaling, f32.scaling);
      EXPECT_EQ(f32.cache, 0);
      EXPECT_EQ(f32.saved - f8.saved, expected);
    }
  }
  // BF16 copies under a BF16 Wgrad are exact too (without norm/up recompute, so that the
  // norm outputs and latent norms go to copies as well).
  const TrainRun b32 = run("bf16:activation_cache=fp32", Recompute::kNone, 2, 4, false, false);
  const TrainRun b16 = run("bf16", Recompute::kNone, 2, 4, false, false);
  const size_t bdiff = differing(b32.grads, b16.grads);
  std::printf("[cache] bf16: activation_cache bf16 vs fp32: %zu gradient floats differ; saved %lld vs %lld bytes\n",
              bdiff, (long long)b16.saved, (long long)b32.saved);
  EXPECT_EQ(bdiff, 0u);
  EXPECT_EQ(b16.losses, b32.losses);
  EXPECT_GT(b16.cache, 0);
  // Control: a BF16 copy under an FP8 Wgrad rounds X twice, and the comparison sees it.
  const TrainRun f16 = run("fp8" + exact + ":activation_cache=bf16", Recompute::kNone, 1);
  const TrainRun f32 = run("fp8" + exact + ":activation_cache=fp32", Recompute::kNone, 1);
  const size_t cdiff = differing(f16.grads, f32.grads);
  std::printf("[cache] control: fp8 Wgrad with a bf16 cache vs fp32: %zu gradient floats differ (must be > 0)\n", cdiff);
  EXPECT_GT(cdiff, 0u);
}

std::vector<float> normal_vector(size_t n, uint64_t seed) {
  const Philox rng(seed, 5);
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<float>(rng.normal(i));
  return v;
}

TEST(SwigluCache, Fp8KeepsRoundedInputsAndRecomputesTheOutput) {
  const ModelConfig cfg = config_from_json(tiny_config("fp8"));
  Model m(cfg);
  prepare(m, 5);
  Registry& r = m.registry();
  const FfnIds& ids = r.ids().layers[0].dense;  // layer 0 is dense
  const ActStore cache = swiglu_cache(cfg.precision, 0, cfg.num_hidden_layers);
  ASSERT_EQ(cache.format, StoreFormat::kFp8);
  const int64_t n = kB * kT, D = cfg.hidden_size, F = cfg.intermediate_size;
  const std::vector<float> x = normal_vector(size_t(n * D), 1), dy = normal_vector(size_t(n * D), 2);

  // The module.
  ActivationArena arena;
  Workspace ws;
  const ActContext ctx{KeepPolicy::of(Recompute::kNone), arena};
  DenseFfn ffn(r, ids, cache);
  std::vector<float> y(size_t(n * D), 0.0f), dx(size_t(n * D), 0.0f);
  r.zero_grad();
  ffn.forward(r, ctx, y.data(), x.data(), n, /*x_dropped=*/false);
  ffn.backward(r, ws, ctx, dx.data(), dy.data(), x.data());
  const auto grad = [&](int id) { return std::vector<float>(r.grad(id), r.grad(id) + r.info(id).numel); };
  const std::vector<float> dwg = grad(ids.gate_proj), dwu = grad(ids.up_proj), dwd = grad(ids.down_proj);

  // The ops composed by hand: exact g, u forward; FP8-rounded g, u in backward, a recomputed.
  ops::LinearPrecision p = linear_precision(cfg.precision, LinearClass::kBlock, 0, cfg.num_hidden_layers);
  p.saved_x = gemm::DType::F32;  // pass every x explicitly
  ops::LinearState sg, su, sd;
  const uint64_t v = r.params_version();
  const float *wg = r.param(ids.gate_proj), *wu = r.param(ids.up_proj), *wd = r.param(ids.down_proj);
  std::vector<float> g(size_t(n * F)), u(size_t(n * F)), a(size_t(n * F)), y_ref(size_t(n * D), 0.0f);
  ops::linear_forward(g.data(), x.data(), wg, v, n, D, F, false, p, sg);
  ops::linear_forward(u.data(), x.data(), wu, v, n, D, F, false, p, su);
  ops::swiglu_forward(a.data(), g.data(), u.data(), n * F);
  ops::linear_forward(y_ref.data(), a.data(), wd, v, n, F, D, true, p, sd);
  numerics::QTensor qg, qu;
  numerics::quantize(qg, g.data(), n, F, F, cache.spec);
  numerics::quantize(qu, u.data(), n, F, F, cache.spec);
  const int64_t expected_bytes = 2 * (n * F + n * ((F + 127) / 128) * 4);  // codes + 1x128 scales, nothing else
  std::vector<float> gh(size_t(n * F)), uh(size_t(n * F)), ah(size_t(n * F));
  numerics::dequantize(gh.data(), F, qg);
  numerics::dequantize(uh.data(), F, qu);
  ops::swiglu_forward(ah.data(), gh.data(), uh.data(), n * F);
  const auto backward = [&](const std::vector<float>& gb, const std::vector<float>& ub, const std::vector<float>& ab,
                            std::vector<float>& dx_o, std::vector<float>& dwg_o, std::vector<float>& dwu_o,
                            std::vector<float>& dwd_o) {
    std::vector<float> da(size_t(n * F), 0.0f), dg(size_t(n * F), 0.0f), du(size_t(n * F), 0.0f);
    dx_o.assign(size_t(n * D), 0.0f);
    dwg_o.assign(size_t(F * D), 0.0f);
    dwu_o.assign(size_t(F * D), 0.0f);
    dwd_o.assign(size_t(D * F), 0.0f);
    ops::linear_backward(da.data(), dwd_o.data(), dy.data(), ab.data(), wd, v, n, F, D, p, sd);
    ops::swiglu_backward(dg.data(), du.data(), da.data(), gb.data(), ub.data(), n * F);
    ops::linear_backward(dx_o.data(), dwg_o.data(), dg.data(), x.data(), wg, v, n, D, F, p, sg);
    ops::linear_backward(dx_o.data(), dwu_o.data(), du.data(), x.data(), wu, v, n, D, F, p, su);
  };
  std::vector<float> dx_ref, dwg_ref, dwu_ref, dwd_ref, dx_exact, dwg_exact, dwu_exact, dwd_exact;
  backward(gh, uh, ah, dx_ref, dwg_ref, dwu_ref, dwd_ref);
  backward(g, u, a, dx_exact, dwg_exact, dwu_exact, dwd_exact);

  double max_rel = 0;
  for (size_t i = 0; i < dx.size(); ++i)
    max_rel = std::max(max_rel, std::fabs(double(dx_exact[i]) - dx_ref[i]) / (std::fabs(double(dx_exact[i])) + 1e-3));
  const size_t d_y = differing(y, y_ref), d_dx = differing(dx, dx_ref), d_g = differing(dwg, dwg_ref),
               d_u = differing(dwu, dwu_ref), d_d = differing(dwd, dwd_ref), d_exact = differing(dx_ref, dx_exact);
  std::printf("[swiglu] fp8 cache vs the ops composed by hand: differing floats y %zu, dx %zu, dW gate %zu, up %zu, "
              "down %zu; saved %lld bytes (expected %lld: FP8 g, u only); rounded vs exact g, u: %zu of %zu dx "
              "floats differ, max rel diff %.3g\n",
              d_y, d_dx, d_g, d_u, d_d, (long long)ffn.saved_bytes(), (long long)expected_bytes, d_exact, dx.size(),
              max_rel);
  EXPECT_EQ(d_y + d_dx + d_g + d_u + d_d, 0u);
  EXPECT_EQ(ffn.saved_bytes(), expected_bytes);
  EXPECT_GT(d_exact, dx.size() / 2);  // backward really reads the rounded values
  EXPECT_LT(max_rel, 0.5);            // ...which stay close (E4M3: 2^-4 relative per element)
}

class Fp8Recompute : public ::testing::TestWithParam<const char*> {};

TEST_P(Fp8Recompute, PoliciesGiveIdenticalGradientsHistoriesAndTelemetry) {
  const std::string spec = std::string("fp8") + GetParam();
  const TrainRun none = run(spec, Recompute::kNone, 3, 2, true);
  const TrainRun sel = run(spec, Recompute::kSelective, 3, 2, true);
  const TrainRun full = run(spec, Recompute::kFull, 3, 2, true);
  for (const auto& [name, x] : {std::pair<const char*, const TrainRun*>{"selective", &sel}, {"full", &full}}) {
    const size_t diff = differing(none.grads, x->grads);
    std::printf("[recompute] %s %-9s vs none: losses %.9f %.9f %.9f vs %.9f %.9f %.9f; %zu of %zu gradient floats "
                "differ; histories %s (%zu bytes); telemetry %s (%zu bytes); saved %lld vs %lld bytes\n",
                spec.c_str(), name, x->losses[0], x->losses[1], x->losses[2], none.losses[0], none.losses[1],
                none.losses[2], diff, none.grads.size(), x->scaling == none.scaling ? "equal" : "DIFFER",
                none.scaling.size(), x->telemetry == none.telemetry ? "equal" : "DIFFER", none.telemetry.size(),
                (long long)x->saved, (long long)none.saved);
    EXPECT_EQ(diff, 0u) << name;
    EXPECT_EQ(x->losses, none.losses) << name;
    EXPECT_EQ(x->loads, none.loads) << name;
    EXPECT_EQ(x->scaling, none.scaling) << name;
    EXPECT_EQ(x->telemetry, none.telemetry) << name;
  }
  const nlohmann::json t = nlohmann::json::parse(none.telemetry);
  // One telemetry step: every Linear's Fprop counted once per call (the head twice: main + MTP).
  for (const auto& l : t["linears"]) {
    if (l["name"].get<std::string>() == "lm_head.weight") continue;
    EXPECT_EQ(l["fprop"]["calls"].get<int64_t>(), 1) << l["name"];
  }
  EXPECT_GT(none.cache, 0);  // the fp8 recipe does use Linear copies under `none`
  EXPECT_LT(sel.saved, none.saved);
  EXPECT_LT(full.saved, sel.saved);
  if (std::string(GetParam()).find("delayed") != std::string::npos) {
    EXPECT_GT(none.scaling.size(), 100u);
  }
}

INSTANTIATE_TEST_SUITE_P(Scaling, Fp8Recompute, ::testing::Values("", ":scaling=delayed:amax_history=3"));

TEST(ConcurrentExperts, Fp8BitIdenticalWithOneAndTwoThreads) {
  const int saved = get_threads();
  for (const std::string spec : {"fp8", "fp8:scaling=delayed:amax_history=3"}) {
    set_threads(1);
    const TrainRun one = run(spec, Recompute::kNone, 2, 2, true);
    set_threads(2);
    const TrainRun two = run(spec, Recompute::kNone, 2, 2, true);
    const size_t diff = differing(one.grads, two.grads);
    std::printf("[threads] %s: 1 vs 2 threads: losses %.9f %.9f vs %.9f %.9f; %zu of %zu gradient floats differ; "
                "loads %s, histories %s, telemetry %s\n",
                spec.c_str(), one.losses[0], one.losses[1], two.losses[0], two.losses[1], diff, one.grads.size(),
                one.loads == two.loads ? "equal" : "DIFFER", one.scaling == two.scaling ? "equal" : "DIFFER",
                one.telemetry == two.telemetry ? "equal" : "DIFFER");
    EXPECT_EQ(diff, 0u);
    EXPECT_EQ(one.losses, two.losses);
    EXPECT_EQ(one.loads, two.loads);
    EXPECT_EQ(one.scaling, two.scaling);
    EXPECT_EQ(one.telemetry, two.telemetry);
  }
  set_threads(saved);
}

}  // namespace
}  // namespace tinyseek::model
