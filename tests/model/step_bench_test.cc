// `tinyseek bench step` internals: the model-FLOP count behind MFU (checked against a hand
// count), and a tiny end-to-end run per recompute policy (sane numbers, same losses, saved
// activations shrinking).
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "tinyseek/base/check.h"
#include "tinyseek/bench/step_bench.h"

namespace tinyseek::bench {
namespace {

std::string config_path(const std::string& name) {
  return std::string(TINYSEEK_SOURCE_DIR) + "/tests/reference/configs/" + name + ".json";
}

TEST(StepBench, FlopCountMatchesHandCount) {
  // dense.json: D 32, L 2 (both dense), H 2, dq 24, dc 16, dn 8, dr 4, dv 8, F 48, V 64, no MTP.
  // Per layer: q_a 32·24 + q_b 24·2·12 + kv_a 32·20 + kv_b 16·2·16 + o 2·8·32 = 3008 (MLA)
  //            + 3·32·48 = 4608 (SwiGLU) = 7616;  2 layers + head 64·32 = 17280 active params.
  const model::ModelConfig c = model::load_config(config_path("dense"));
  const StepFlops f = step_flops(c, /*B=*/2, /*T=*/10);
  // 6 · 17280 · 20 tokens;  attention 2 layers · 3 · B 2 · H 2 · (8+4+8) · 10 · 11
  std::printf("dense.json B 2 T 10: params_active %lld (hand 17280), linear %.0f (hand 2073600), attention %.0f "
              "(hand 52800)\n",
              (long long)f.params_active, f.linear, f.attention);
  EXPECT_EQ(f.params_active, 17280);
  EXPECT_DOUBLE_EQ(f.linear, 2073600.0);
  EXPECT_DOUBLE_EQ(f.attention, 52800.0);
  EXPECT_DOUBLE_EQ(f.total(), 2126400.0);
}

TEST(StepBench, MtpAndMoeTermsCount) {
  // mtp2.json has MoE layers and two MTP depths: each depth adds eh_proj, a block and the head
  // for B·(T−k) tokens, and its causal attention over T−k positions.
  const model::ModelConfig c = model::load_config(config_path("mtp2"));
  model::ModelConfig no_mtp = c;
  no_mtp.num_nextn_predict_layers = 0;
  const int64_t B = 2, T = 12;
  const StepFlops with = step_flops(c, B, T), without = step_flops(no_mtp, B, T);
  const double attn_layer = [&](int64_t t) {
    return 3.0 * double(B * c.num_attention_heads) * double(c.qk_head_dim() + c.v_head_dim) * double(t) * double(t + 1);
  }(T - 1);
  std::printf("mtp2.json: linear %.0f vs %.0f without MTP, attention %.0f vs %.0f\n", with.linear, without.linear,
              with.attention, without.attention);
  EXPECT_GT(with.linear, without.linear);
  // Depth 1 runs over T−1 positions, depth 2 over T−2.
  const double attn_d2 = 3.0 * double(B * c.num_attention_heads) * double(c.qk_head_dim() + c.v_head_dim) *
                         double(T - 2) * double(T - 1);
  EXPECT_DOUBLE_EQ(with.attention - without.attention, attn_layer + attn_d2);
  EXPECT_EQ(with.params_active, without.params_active);  // per main-model token
}

TEST(StepBench, TinyRunPerPolicy) {
  double loss_none = 0, saved_none = 0;
  for (model::Recompute p : {model::Recompute::kNone, model::Recompute::kSelective, model::Recompute::kFull}) {
    StepBenchOptions o;
    o.config_path = config_path("mtp2");
    o.batch = 2;
    o.seq = 16;
    o.steps = 2;
    o.warmup = 1;
    o.recompute = p;
    const StepBenchResult r = run_step_bench(o);
    std::printf("[%s] %.0f tokens/s, %.2f ms/step (fwd+bwd %.2f, optimizer %.2f), MFU %.4f, saved %.4f MiB, peak "
                "RSS %.1f MiB, loss %.6f -> %.6f\n",
                model::to_string(p), r.tokens_per_s, r.ms_per_step, r.ms_forward_backward, r.ms_optimizer, r.mfu,
                r.saved_activation_mb, r.peak_rss_mb, r.first_loss, r.last_loss);
    EXPECT_GT(r.tokens_per_s, 0);
    EXPECT_NEAR(r.tokens_per_s, 32.0 / (r.ms_per_step * 1e-3), 1e-6 * r.tokens_per_s);
    if (r.peak_gflops > 0) {
      EXPECT_GT(r.mfu, 0);
      EXPECT_LT(r.mfu, 1);
    }
    EXPECT_GT(r.peak_rss_mb, 1);
    EXPECT_NE(r.first_loss, r.last_loss);  // AdamW steps happened
    if (p == model::Recompute::kNone) {
      loss_none = r.last_loss;
      saved_none = r.saved_activation_mb;
    } else {
      EXPECT_EQ(r.last_loss, loss_none);  // same bits under every policy, optimizer included
      EXPECT_LT(r.saved_activation_mb, saved_none);
    }
  }
  StepBenchOptions bad;
  bad.config_path = config_path("mtp2");
  bad.recipe = "fp7";  // not a recipe
  EXPECT_THROW(run_step_bench(bad), Error);
}

// The memory breakdown: the static categories equal the registry's sizes, the categories
// add up to "accounted", and with the fp8 recipe the output head no longer holds [N, V]
// FP32 logits (chunked) and the Linears no longer hold their unpacked FP8 weight copies.
TEST(StepBench, MemoryBreakdownPerRecipe) {
  int64_t head_fp32 = 0;
  for (const char* recipe : {"fp32", "fp8"}) {
    StepBenchOptions o;
    o.config_path = config_path("mtp2");
    o.recipe = recipe;
    o.batch = 2;
    o.seq = 16;
    o.steps = 1;
    o.head_chunk_rows = 8;  // 4 chunks of the main head's 32 rows
    const StepBenchResult r = run_step_bench(o);
    const model::ModelConfig& c = r.config;
    int64_t sum = 0, accounted = -1, master = -1, grads = -1, moments = -1, copies = -1, head = -1;
    for (const auto& [name, bytes] : r.memory) {
      std::printf("[%s] %-18s %10.3f MiB\n", recipe, name.c_str(), static_cast<double>(bytes) / 1048576.0);
      if (name == "accounted") accounted = bytes;
      if (name == "master_weights") master = bytes;
      if (name == "grads") grads = bytes;
      if (name == "optimizer_moments") moments = bytes;
      if (name == "weight_copies") copies = bytes;
      if (name == "head") head = bytes;
      if (name == "accounted" || name == "peak_rss" || name == "unaccounted") continue;
      EXPECT_GE(bytes, 0) << name;
      sum += bytes;
    }
    EXPECT_EQ(sum, accounted);
    // The registry's buffers: every parameter, each tensor starting on a cache line.
    EXPECT_GE(master, r.params_total * 4);
    EXPECT_LT(master, r.params_total * 4 + 64 * 64);
    EXPECT_EQ(grads, master);
    EXPECT_EQ(moments, std::string(recipe) == "fp8" ? master : 2 * master);  // two BF16 or FP32 moments
    const int64_t N = o.batch * o.seq, NV = N * c.vocab_size;
    EXPECT_EQ(copies, 0);  // fp32: none; fp8: transient (the packed panels only)
    if (std::string(recipe) == "fp32") {
      EXPECT_GE(head, NV * 4);  // all FP32 logits at once (the FP32 head's Wgrad needs them)
      head_fp32 = head;
    } else {
      // A BF16 [N, V] gradient and 8 rows of FP32 logits instead of [N, V] FP32 logits.
      EXPECT_EQ(head_fp32 - head, NV * 4 - NV * 2 - 8 * c.vocab_size * 4);
    }
  }
}

}  // namespace
}  // namespace tinyseek::bench
