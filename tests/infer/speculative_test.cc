// Speculative decoding with the MTP modules: greedy speculative decoding emits exactly the
// tokens of greedy plain decoding; sampled speculative decoding draws the next token from
// exactly the main model's distribution (chi-square over seeded trials, with a check that the
// test would catch a wrong rule); sampler filters.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <map>

#include "infer_test_util.h"
#include "tinyseek/base/rng.h"
#include "tinyseek/infer/engine.h"
#include "tinyseek/infer/generate.h"
#include "tinyseek/infer/sampler.h"
#include "tinyseek/train/adamw.h"

namespace tinyseek::infer {
namespace {
using namespace testing;

// A model trained for a few AdamW steps on a noisy rule (t_{i+1} = 5 t_i + 3 mod V, every
// fifth token random), so its main and MTP heads mostly agree: greedy speculative decoding
// then accepts most drafts, while the random models reject most (both branches exercised).
model::Model& trained_model() {
  static std::unique_ptr<model::Model> m = [] {
    auto mm = random_model(infer_config(Arch::kMoe, "fp32", /*mtp=*/2, /*vocab=*/32), 11, 1.0f);
    const int64_t B = 8, T = 24, V = 32;
    train::AdamW opt(mm->registry(), train::AdamWConfig{});
    const Philox rng(99, 5);
    uint64_t c = 0;
    std::vector<int32_t> tokens(size_t(B * (T + 1)));
    for (int step = 0; step < 60; ++step) {
      for (int64_t b = 0; b < B; ++b) {
        int32_t t = static_cast<int32_t>(rng.uniform(c++) * V) % V;
        for (int64_t i = 0; i <= T; ++i) {
          tokens[size_t(b * (T + 1) + i)] = t;
          t = rng.uniform(c++) < 0.2f ? static_cast<int32_t>(rng.uniform(c++) * V) % V : (5 * t + 3) % int32_t(V);
        }
      }
      mm->registry().zero_grad();
      mm->forward_backward(tokens.data(), B, T);
      opt.step(mm->registry(), 3e-3);
      mm->registry().params_changed();
    }
    return mm;
  }();
  return *m;
}

struct GreedyTally {
  int64_t runs = 0, tokens = 0, drafted = 0, accepted = 0;
};

void compare_greedy(model::Model& m, const char* label, int64_t draft, GreedyTally& tally) {
  Engine e(m);
  const int64_t V = m.config().vocab_size;
  for (int64_t len : {1, 2, 3, 5, 8, 13, 21, 40}) {
    for (uint64_t seed : {1, 2}) {
      const std::vector<int32_t> prompt = random_tokens(len, V, seed * 100 + uint64_t(len));
      GenerateOptions o;
      o.max_new_tokens = 30;  // the 40-token prompt runs into max_position_embeddings (64)
      const GenerateResult plain = generate(e, prompt, o);
      o.speculative = true;
      o.draft = draft;
      const GenerateResult spec = generate(e, prompt, o);
      ASSERT_EQ(plain.tokens, spec.tokens) << label << ": prompt length " << len << ", seed " << seed << ", D " << draft;
      ASSERT_EQ(static_cast<int64_t>(plain.tokens.size()), std::min<int64_t>(30, 64 + 1 - len));
      ++tally.runs;
      tally.tokens += static_cast<int64_t>(spec.tokens.size());
      tally.drafted += spec.drafted[0];
      tally.accepted += spec.accepted[0];
      EXPECT_LE(spec.steps, plain.steps);
    }
  }
}

TEST(Speculative, GreedyEqualsPlainGreedy) {
  for (int64_t draft : {1, 2}) {
    GreedyTally random_tally, trained_tally;
    for (Arch arch : {Arch::kDense, Arch::kMoe, Arch::kNoQLora}) {
      auto m = random_model(infer_config(arch, "fp32"), 21);
      compare_greedy(*m, to_string(arch), draft, random_tally);
    }
    auto fp8 = random_model(infer_config(Arch::kMoe, "fp8"), 22);
    compare_greedy(*fp8, "moe fp8", draft, random_tally);
    compare_greedy(trained_model(), "trained", draft, trained_tally);
    for (const auto& [name, t] : {std::pair{"random models", random_tally}, std::pair{"trained model", trained_tally}})
      std::printf("D=%lld %s: %lld runs, %lld tokens identical to plain greedy; first draft accepted %lld of %lld\n",
                  static_cast<long long>(draft), name, static_cast<long long>(t.runs), static_cast<long long>(t.tokens),
                  static_cast<long long>(t.accepted), static_cast<long long>(t.drafted));
    // Both branches ran: rejections (and corrections) and acceptances (and bonus tokens).
    EXPECT_GT(random_tally.drafted - random_tally.accepted, 50);
    EXPECT_GT(trained_tally.accepted, trained_tally.drafted / 2);
  }
}

// Upper 0.1% point of chi-square with df degrees of freedom (Wilson-Hilferty; z = 3.090).
double chi2_critical(int64_t df) {
  const double d = static_cast<double>(df), k = 2.0 / (9.0 * d);
  return d * std::pow(1.0 - k + 3.090 * std::sqrt(k), 3.0);
}

// Pearson's statistic of `counts` (n draws) against probabilities p, bins with expected
// count < 5 pooled into one. Returns {statistic, df}.
std::pair<double, int64_t> chi2(const std::vector<int64_t>& counts, const std::vector<double>& p, int64_t n) {
  double stat = 0, pooled_e = 0, pooled_o = 0;
  int64_t bins = 0;
  for (size_t v = 0; v < p.size(); ++v) {
    const double e = p[v] * double(n);
    if (e < 5) {
      pooled_e += e;
      pooled_o += double(counts[v]);
      continue;
    }
    stat += (double(counts[v]) - e) * (double(counts[v]) - e) / e;
    ++bins;
  }
  if (pooled_e > 0) {
    stat += (pooled_o - pooled_e) * (pooled_o - pooled_e) / std::max(pooled_e, 1e-9);
    ++bins;
  }
  return {stat, bins - 1};
}

struct SampledCase {
  int64_t draft;
  SamplingOptions s;
};
// ctest shows the case instead of the struct's bytes.
inline void PrintTo(const SampledCase& c, std::ostream* os) {
  *os << "draft " << c.draft << ", temperature " << c.s.temperature << ", top-k " << c.s.top_k << ", top-p " << c.s.top_p;
}

// The first generated token after a fixed prompt, over many seeds, is distributed as the
// main model's (filtered) softmax at that position. It is drafted by MTP module 1 and then
// accepted or replaced by the residual, so a wrong acceptance rule or residual changes it;
// the test would reject "always accept the draft" (tokens ~ q) by a wide margin.
class SampledSpeculative : public ::testing::TestWithParam<SampledCase> {};

TEST_P(SampledSpeculative, NextTokenFollowsMainModelDistribution) {
  const SampledCase c = GetParam();
  auto m = random_model(infer_config(Arch::kMoe, "fp32"), 31, 2.0f);
  const int64_t V = m->config().vocab_size, P = 6, trials = 3000;
  const std::vector<int32_t> prompt = random_tokens(P, V, 77);
  // Target p: Model::forward's logits at the last prompt position; draft q: MTP module 1.
  std::vector<int32_t> padded = prompt;
  padded.push_back(0);
  m->forward(padded.data(), 1, P);
  std::vector<double> p, q;
  distribution(p, m->logits(0) + (P - 1) * V, V, c.s);
  distribution(q, m->logits(1) + (P - 2) * V, V, c.s);  // module 1 at position P-2 sees t_{P-1}
  double overlap = 0, tv = 0;
  for (int64_t v = 0; v < V; ++v) {
    overlap += std::min(p[size_t(v)], q[size_t(v)]);
    tv += 0.5 * std::fabs(p[size_t(v)] - q[size_t(v)]);
  }

  Engine e(*m);
  GenerateOptions o;
  o.max_new_tokens = 1;
  o.sampling = c.s;
  o.speculative = true;
  o.draft = c.draft;
  std::vector<int64_t> counts(size_t(V), 0), naive(size_t(V), 0);
  int64_t accepted = 0;
  for (int64_t t = 0; t < trials; ++t) {
    o.seed = 1000 + uint64_t(t);
    const GenerateResult r = generate(e, prompt, o);
    ASSERT_EQ(r.tokens.size(), 1u);
    ++counts[size_t(r.tokens[0])];
    accepted += r.accepted[0];
    ASSERT_EQ(r.drafted[0], 1);
  }
  // The naive rule "always accept": the draft itself, i.e. draws from q.
  const Philox rng(5, 6);
  for (int64_t t = 0; t < trials; ++t) ++naive[size_t(sample(q, 1.0 - rng.uniform_open(uint64_t(t))))];
  const auto [stat, df] = chi2(counts, p, trials);
  const auto [naive_stat, naive_df] = chi2(naive, p, trials);
  const double crit = chi2_critical(df), naive_crit = chi2_critical(naive_df);
  // The first draft is accepted with probability Σ_v min(p, q) (= 1 − TV(p, q)).
  const double rate = double(accepted) / double(trials);
  const double sigma = std::sqrt(overlap * (1 - overlap) / double(trials));
  std::printf("D=%lld T=%.2f top-k %lld top-p %.2f: chi2 %.1f (df %lld, 0.1%% critical %.1f); naive always-accept "
              "chi2 %.1f (critical %.1f); acceptance %.4f vs expected sum min(p,q) = %.4f (+-%.4f), TV(p,q) %.3f\n",
              static_cast<long long>(c.draft), c.s.temperature, static_cast<long long>(c.s.top_k), c.s.top_p, stat,
              static_cast<long long>(df), crit, naive_stat, naive_crit, rate, overlap, sigma, tv);
  EXPECT_GE(df, 5);
  EXPECT_LT(stat, crit);
  EXPECT_GT(naive_stat, naive_crit);  // the test has the power to catch a wrong rule
  EXPECT_NEAR(rate, overlap, 4 * sigma + 1e-3);
}

INSTANTIATE_TEST_SUITE_P(Rules, SampledSpeculative,
                         ::testing::Values(SampledCase{1, {.temperature = 1.0}}, SampledCase{2, {.temperature = 1.0}},
                                           SampledCase{1, {.temperature = 0.8, .top_k = 12, .top_p = 0.9}}));

TEST(Sampler, FiltersAndDraws) {
  const float logits[6] = {1.0f, 3.0f, 2.0f, 3.0f, -1.0f, 0.5f};
  EXPECT_EQ(argmax(logits, 6), 1);  // ties: lower index
  std::vector<double> p;
  distribution(p, logits, 6, {.temperature = 1.0});
  double z = 0;
  for (float l : logits) z += std::exp(double(l));
  for (int v = 0; v < 6; ++v) EXPECT_NEAR(p[size_t(v)], std::exp(double(logits[v])) / z, 1e-12);
  // top-k 3 keeps tokens 1, 3 (tie, both) and 2.
  distribution(p, logits, 6, {.temperature = 1.0, .top_k = 3});
  const double z3 = 2 * std::exp(3.0) + std::exp(2.0);
  EXPECT_NEAR(p[1], std::exp(3.0) / z3, 1e-12);
  EXPECT_NEAR(p[2], std::exp(2.0) / z3, 1e-12);
  EXPECT_EQ(p[0] + p[4] + p[5], 0.0);
  // top-p: tokens 1 and 3 hold 2e^3 / z ≈ 0.768 of the mass; top_p 0.75 stops there.
  distribution(p, logits, 6, {.temperature = 1.0, .top_p = 0.75});
  EXPECT_NEAR(p[1], 0.5, 1e-12);
  EXPECT_NEAR(p[3], 0.5, 1e-12);
  EXPECT_EQ(p[2], 0.0);
  // Temperature sharpens.
  distribution(p, logits, 6, {.temperature = 0.5});
  EXPECT_NEAR(p[1] / p[2], std::exp(2.0), 1e-9);
  // Inverse CDF never lands on a zero-probability token.
  const std::vector<double> w = {0.0, 0.25, 0.0, 0.75};
  EXPECT_EQ(sample(w, 0.0), 1);
  EXPECT_EQ(sample(w, 0.2499), 1);
  EXPECT_EQ(sample(w, 0.25), 3);
  EXPECT_EQ(sample(w, 0.999999), 3);
  std::vector<double> r;
  EXPECT_NEAR(residual(r, {0.5, 0.5, 0.0}, {0.25, 0.25, 0.5}), 0.5, 1e-15);
  EXPECT_EQ(r, (std::vector<double>{0.25, 0.25, 0.0}));
  EXPECT_THROW(validate(SamplingOptions{.temperature = 1, .top_p = 0}), Error);
  EXPECT_THROW(validate(SamplingOptions{.temperature = 1, .top_k = -1}), Error);
}

TEST(Generate, BadInputs) {
  auto m = random_model(infer_config(Arch::kMoe, "fp32", /*mtp=*/1), 3);
  Engine e(*m);
  GenerateOptions o;
  EXPECT_THROW(generate(e, {}, o), Error);
  EXPECT_THROW(generate(e, std::vector<int32_t>(65, 1), o), Error);  // > max_position_embeddings
  o.speculative = true;
  o.draft = 2;  // only one MTP module
  EXPECT_THROW(generate(e, {1, 2}, o), Error);
  auto plain = random_model(infer_config(Arch::kMoe, "fp32", /*mtp=*/0), 3);
  Engine pe(*plain);
  o.draft = 0;
  try {
    generate(pe, {1, 2}, o);
    ADD_FAILURE() << "speculative decoding without MTP modules must fail";
  } catch (const Error& err) {
    std::printf("no MTP modules: %s\n", err.what());
    EXPECT_NE(std::string(err.what()).find("--allow-no-mtp"), std::string::npos);
  }
}

// Sampling is a function of the seed: the same seed repeats, plain and speculative alike.
TEST(Generate, SeededSamplingIsDeterministic) {
  auto m = random_model(infer_config(Arch::kMoe, "fp32"), 4, 2.0f);
  Engine e(*m);
  GenerateOptions o;
  o.max_new_tokens = 20;
  o.sampling.temperature = 1.0;
  o.seed = 9;
  for (bool spec : {false, true}) {
    o.speculative = spec;
    const GenerateResult a = generate(e, {1, 2, 3}, o), b = generate(e, {1, 2, 3}, o);
    EXPECT_EQ(a.tokens, b.tokens);
    o.seed = 10;
    EXPECT_NE(generate(e, {1, 2, 3}, o).tokens, a.tokens);
    o.seed = 9;
  }
}

}  // namespace
}  // namespace tinyseek::infer
