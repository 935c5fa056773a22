// Memory cuts of the training step that must keep every training bit (2026-12-08):
//  * MLA under `none` recomputes its up-projections q, kv (and the latent norms) in backward,
//    and the block its norm outputs that no Linear copy replaces (Model::
//    set_norm_up_recompute, training.recompute_norm_up), for the fp32, bf16 and fp8 recipes:
//    the same losses and gradients as keeping them, and exactly the stated bytes kept.
//  * The output head streams its backward in chunks of one promotion group (Model::
//    head_chunked): the same losses and gradients as the unchunked head and as the
//    [N, V]-BF16-gradient chunking, with no [N, V] buffer left.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "tiny_model.h"

namespace tinyseek::model {
namespace {

using namespace tiny;

struct StepRun {
  std::vector<double> losses;
  std::vector<float> grads;
  Model::SavedBytes saved;
  int64_t head_bytes = 0, linear_cache = 0;
};

// Two forward_backward calls on different tokens (gradients accumulate), as the trainer's
// micro-batches; the caller's setup is applied to the model first.
template <class Setup>
StepRun run(const nlohmann::json& j, int64_t B, int64_t T, Setup&& setup) {
  Model m(config_from_json(j));
  prepare(m, 11);
  setup(m);
  Registry& r = m.registry();
  r.zero_grad();
  StepRun out;
  for (int s = 0; s < 2; ++s) {
    const auto tok = tokens(B, T, m.config().vocab_size, 70 + uint64_t(s));
    const Losses l = m.forward_backward(tok.data(), B, T);
    out.losses.insert(out.losses.end(), {l.loss, l.loss_main, l.loss_balance});
    out.losses.insert(out.losses.end(), l.loss_mtp.begin(), l.loss_mtp.end());
  }
  out.grads.assign(r.grads().data(), r.grads().data() + r.grads().size());
  out.saved = m.saved_bytes_by_kind();
  out.head_bytes = m.head_bytes();
  out.linear_cache = m.saved_linear_cache_bytes();
  return out;
}

int64_t total(const Model::SavedBytes& s) {
  return s.residual + s.attention + s.ffn_dense + s.moe + s.block_norms + s.mtp_other + s.linear_cache;
}

size_t differing_losses(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) return a.size() + b.size();
  size_t n = 0;
  for (size_t i = 0; i < a.size(); ++i) n += std::memcmp(&a[i], &b[i], sizeof(double)) != 0;
  return n;
}

TEST(MlaUpRecompute, SameBitsAndOnlyTheLatentInputsKept) {
  // Every recipe alike (training.recompute_norm_up): FP32 Linears read the recomputed FP32
  // c_q, c_kv in Wgrad, bf16 / fp8 Linears keep no copies of them.
  const int64_t B = 2, T = 48, N = B * T;
  for (const char* recipe : {"fp8", "bf16", "fp32"}) {
    const nlohmann::json j = tiny_config(recipe, 2);
    const ModelConfig c = config_from_json(j);
    const bool fp32 = std::string(recipe) == "fp32";
    const StepRun on = run(j, B, T, [](Model& m) { m.set_norm_up_recompute(true); });
    const StepRun off = run(j, B, T, [](Model& m) { m.set_norm_up_recompute(false); });
    const size_t dg = differing(on.grads, off.grads), dl = differing_losses(on.losses, off.losses);
    // Per layer (main blocks and the MTP block, the main blocks' T and the MTP block's T-1):
    // c_q_raw, kv_a = [c_kv_raw | k_pe_raw], k_pe, o and lse in FP32 (rstd_q / rstd_kv
    // and c_q / c_kv recomputed with q, kv).
    const int64_t H = c.num_attention_heads, dq = c.q_lora_rank, dc = c.kv_lora_rank, dr = c.qk_rope_head_dim,
                  dv = c.v_head_dim, dqk = c.qk_nope_head_dim + dr, dkv = c.qk_nope_head_dim + dv;
    const int64_t per_row = dq + (dc + dr) + dr + H * dv + H;
    const int64_t rows = c.num_hidden_layers * N + B * (T - 1);
    const int64_t expected_on = 4 * rows * per_row;
    // off keeps q, kv and rstd_q, rstd_kv on top, and c_q, c_kv in FP32 where the Linears
    // read them in FP32 (else they go to the Linears' copies).
    const int64_t expected_more = 4 * rows * (H * (dqk + dkv) + 2 + (fp32 ? dq + dc : 0));
    std::printf("[%s] attention saved: recompute_norm_up on %lld B (expected %lld), off %lld B (expected +%lld); "
                "Linear caches %lld vs %lld B; %zu of %zu gradient floats and %zu of %zu losses differ\n",
                recipe, (long long)on.saved.attention, (long long)expected_on, (long long)off.saved.attention,
                (long long)expected_more, (long long)on.linear_cache, (long long)off.linear_cache, dg,
                on.grads.size(), dl, on.losses.size());
    EXPECT_EQ(dg, 0u) << recipe;
    EXPECT_EQ(dl, 0u) << recipe;
    EXPECT_EQ(on.saved.attention, expected_on) << recipe;
    EXPECT_EQ(off.saved.attention - on.saved.attention, expected_more) << recipe;
    if (fp32) {
      EXPECT_EQ(on.linear_cache, 0) << recipe;  // FP32 Linears keep no copies either way
      EXPECT_EQ(off.linear_cache, 0) << recipe;
    } else {
      EXPECT_LT(on.linear_cache, off.linear_cache) << recipe;  // no copies of c_q, c_kv either
    }
    // Block norms: mid and both rstd only (h1 and h2 go to the Linears' copies or are
    // recomputed from x / mid). off keeps h2 [rows, D] of every MoE layer (its FP32 router
    // reads it) and, with FP32 Linears, h1 and every h2.
    int64_t moe_rows = 0;
    for (int64_t l = 0; l <= c.num_hidden_layers; ++l)
      if (c.is_moe_layer(l)) moe_rows += l < c.num_hidden_layers ? N : B * (T - 1);
    const int64_t D = c.hidden_size;
    const int64_t norms_more = 4 * D * (fp32 ? 2 * rows : moe_rows);
    std::printf("[%s] block norms saved: on %lld B (expected %lld), off %lld B (expected +%lld); total activations "
                "on %lld B, off %lld B\n",
                recipe, (long long)on.saved.block_norms, (long long)(4 * rows * (D + 2)),
                (long long)off.saved.block_norms, (long long)norms_more, (long long)total(on.saved),
                (long long)total(off.saved));
    EXPECT_EQ(on.saved.block_norms, 4 * rows * (D + 2)) << recipe;
    EXPECT_EQ(off.saved.block_norms - on.saved.block_norms, norms_more) << recipe;
  }
}

TEST(HeadStreaming, SameBitsAsUnchunkedAndNoFullGradientBuffer) {
  // N = 192 main rows (one full and one partial 128-row group), 189 MTP rows; V = 320.
  const int64_t B = 3, T = 64, N = B * T;
  for (const char* recipe : {"bf16", "fp8"}) {
    nlohmann::json j = tiny_config(recipe, 2);
    j["vocab_size"] = 320;
    const ModelConfig c = config_from_json(j);
    const int64_t V = c.vocab_size, D = c.hidden_size;
    const StepRun streamed = run(j, B, T, [](Model& m) { m.set_head_chunk_rows(0); });
    const StepRun whole = run(j, B, T, [](Model& m) { m.set_head_chunk_rows(-1); });
    const StepRun bf16_grad = run(j, B, T, [](Model& m) { m.set_head_chunk_rows(64); });
    const size_t d_whole = differing(streamed.grads, whole.grads), d_chunk = differing(streamed.grads, bf16_grad.grads);
    const size_t l_whole = differing_losses(streamed.losses, whole.losses);
    // Streamed: [N, D] normed, rstd, lse, and G = 128 rows of FP32 logits and BF16 gradient,
    // whatever N (the [N, V] BF16 gradient layout grows with N: 2 N V bytes).
    const int64_t G = c.precision.promote_every;
    const int64_t expected = 4 * (N * D + 2 * N) + G * V * (4 + 2);
    std::printf("[%s] head bytes: streamed %lld (expected %lld), [N,V] BF16 gradient %lld, unchunked %lld; "
                "%zu / %zu of %zu gradient floats differ (vs unchunked / vs BF16-gradient chunks), %zu losses\n",
                recipe, (long long)streamed.head_bytes, (long long)expected, (long long)bf16_grad.head_bytes,
                (long long)whole.head_bytes, d_whole, d_chunk, streamed.grads.size(), l_whole);
    EXPECT_EQ(d_whole, 0u) << recipe;
    EXPECT_EQ(d_chunk, 0u) << recipe;
    EXPECT_EQ(l_whole, 0u) << recipe;
    EXPECT_EQ(streamed.head_bytes, expected) << recipe;
  }
}

}  // namespace
}  // namespace tinyseek::model
