// The decode engine against the training forward: logits from the MLA latent KV cache
// (absorbed attention), decoded one token at a time and prefilled in one batch, equal
// Model::forward's logits at every position, for the main head and both MTP heads.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>

#include "infer_test_util.h"
#include "tinyseek/infer/engine.h"
#include "tinyseek/infer/kv_cache.h"

namespace tinyseek::infer {
namespace {
using namespace testing;

struct Case {
  Arch arch;
  const char* recipe;
  double tol;  // normwise relative, on logits
};
// ctest shows the case instead of the struct's bytes.
inline void PrintTo(const Case& c, std::ostream* os) { *os << to_string(c.arch) << " " << c.recipe; }

// FP32: only the summation order of the absorbed attention differs (expect ~1e-6).
// FP8: every Linear sees bit-identical inputs per row, and FP8/BF16 rounding mostly absorbs the
// attention's FP32-order differences (measured ~1e-5); where one does move a 1x128 tile's
// rounding by one E4M3 step (2^-4 relative on one of >= 128 inputs), the logits move by
// about 2^-4 / sqrt(128) ≈ 5e-3 of that input's share: bound 1e-3.
class EngineVsForward : public ::testing::TestWithParam<Case> {};

TEST_P(EngineVsForward, LogitsEqualFullSequenceForwardAtEveryPosition) {
  const Case c = GetParam();
  auto m = random_model(infer_config(c.arch, c.recipe, /*mtp=*/2), 7);
  const model::ModelConfig& cfg = m->config();
  const int64_t T = 40, V = cfg.vocab_size, D = cfg.hidden_size;
  const std::vector<int32_t> tokens = random_tokens(T + 1, V, 3);
  m->forward(tokens.data(), 1, T);
  const float* ref0 = m->logits(0);  // [T, V]
  const float* ref1 = m->logits(1);  // [T-1, V]
  const float* ref2 = m->logits(2);  // [T-2, V]

  Engine e(*m);
  // Prefill all T positions in one batch.
  KvCache batch = e.main_cache();
  std::vector<float> h0(size_t(T * D)), lg(size_t(T * V));
  e.forward_main(batch, tokens.data(), T, h0.data());
  e.logits_main(lg.data(), h0.data(), T);
  const double prefill = rel_diff(lg.data(), ref0, size_t(T * V));
  // One token at a time (each step attends to the cache).
  KvCache step = e.main_cache();
  std::vector<float> h0s(size_t(T * D)), lgs(size_t(T * V));
  double worst_row = 0;
  for (int64_t t = 0; t < T; ++t) {
    e.forward_main(step, &tokens[size_t(t)], 1, h0s.data() + t * D);
    e.logits_main(lgs.data() + t * V, h0s.data() + t * D, 1);
    worst_row = std::max(worst_row, rel_diff(lgs.data() + t * V, ref0 + t * V, size_t(V)));
  }
  const double decode = rel_diff(lgs.data(), ref0, size_t(T * V));
  const bool same_bits = std::memcmp(lg.data(), lgs.data(), lg.size() * sizeof(float)) == 0;
  // MTP module 1 at position j: h^0_j with Emb(t_{j+1}); module 2: h^1_j with Emb(t_{j+2}).
  KvCache c1 = e.mtp_cache(1), c2 = e.mtp_cache(2);
  std::vector<float> h1(size_t((T - 1) * D)), h2(size_t((T - 2) * D)), lg1(size_t((T - 1) * V)), lg2(size_t((T - 2) * V));
  e.forward_mtp(1, c1, h0s.data(), tokens.data() + 1, T - 1, h1.data());
  e.logits_mtp(1, lg1.data(), h1.data(), T - 1);
  e.forward_mtp(2, c2, h1.data(), tokens.data() + 2, T - 2, h2.data());
  e.logits_mtp(2, lg2.data(), h2.data(), T - 2);
  const double mtp1 = rel_diff(lg1.data(), ref1, lg1.size()), mtp2 = rel_diff(lg2.data(), ref2, lg2.size());

  std::printf("[%s, %s] max rel diff vs Model::forward over %lld positions: prefill %.3g, decode %.3g (worst row "
              "%.3g), MTP-1 %.3g, MTP-2 %.3g; tolerance %.1g; prefill and decode bit-identical: %s\n",
              to_string(c.arch), c.recipe, static_cast<long long>(T), prefill, decode, worst_row, mtp1, mtp2, c.tol,
              same_bits ? "yes" : "no");
  EXPECT_LE(prefill, c.tol);
  EXPECT_LE(decode, c.tol);
  EXPECT_LE(worst_row, 10 * c.tol);
  EXPECT_LE(mtp1, c.tol);
  EXPECT_LE(mtp2, c.tol);
  // Batching never changes a row (greedy speculative decoding relies on it).
  EXPECT_TRUE(same_bits);
  EXPECT_EQ(step.length(), T);
}

INSTANTIATE_TEST_SUITE_P(Configs, EngineVsForward,
                         ::testing::Values(Case{Arch::kDense, "fp32", 2e-5}, Case{Arch::kMoe, "fp32", 2e-5},
                                           Case{Arch::kNoQLora, "fp32", 2e-5}, Case{Arch::kDense, "fp8", 1e-3},
                                           Case{Arch::kMoe, "fp8", 1e-3}, Case{Arch::kNoQLora, "fp8", 1e-3}),
                         [](const auto& info) {
                           std::string s = std::string(to_string(info.param.arch)) + "_" + info.param.recipe;
                           for (char& ch : s)
                             if (ch == ' ') ch = '_';
                           return s;
                         });

TEST(KvCache, BytesPerTokenAndRollback) {
  auto m = random_model(infer_config(Arch::kMoe, "fp32"), 1);
  const model::ModelConfig& c = m->config();
  // L · (dc + dr) · 4 = 2 · (32 + 8) · 4; MHA: L · H · (dn + dr + dv) · 4 = 2 · 2 · 40 · 4.
  EXPECT_EQ(latent_kv_bytes_per_token(c), 320);
  EXPECT_EQ(mha_kv_bytes_per_token(c), 640);
  Engine e(*m);
  KvCache cache = e.main_cache();
  EXPECT_EQ(cache.bytes_per_token(), 320);
  // Rolled-back positions are recomputed bit for bit when decoded again.
  const std::vector<int32_t> t = random_tokens(12, c.vocab_size, 5);
  std::vector<float> h(size_t(12 * c.hidden_size)), a(size_t(c.vocab_size)), b(size_t(c.vocab_size));
  e.forward_main(cache, t.data(), 12, h.data());
  e.logits_main(a.data(), h.data() + 11 * c.hidden_size, 1);
  cache.truncate(8);
  std::vector<int32_t> other = t;
  other[8] = (other[8] + 1) % int32_t(c.vocab_size);  // a different token at position 8 first
  e.forward_main(cache, other.data() + 8, 1, h.data());
  cache.truncate(8);
  e.forward_main(cache, t.data() + 8, 4, h.data());
  e.logits_main(b.data(), h.data() + 3 * c.hidden_size, 1);
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
  EXPECT_THROW(cache.truncate(13), Error);
  // Past max_position_embeddings: a clear error.
  KvCache full = e.main_cache();
  const std::vector<int32_t> many = random_tokens(c.max_position_embeddings + 1, c.vocab_size, 6);
  std::vector<float> hh(size_t(many.size() * size_t(c.hidden_size)));
  EXPECT_THROW(e.forward_main(full, many.data(), int64_t(many.size()), hh.data()), Error);
}

}  // namespace
}  // namespace tinyseek::infer
