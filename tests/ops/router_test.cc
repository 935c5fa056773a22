// Router hand-computed cases (docs/model.md): the bias changes the selection but never the
// gate values; group-limited routing drops a group that contains the single best expert;
// ties go to the lower index (experts and groups); load counts; unnormalised gates; and the
// config rules with their messages.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "tinyseek/base/check.h"
#include "tinyseek/ops/router.h"

namespace tinyseek::ops {
namespace {

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

struct Routed {
  std::vector<Index> idx;
  std::vector<float> gates, scores;
  std::vector<int32_t> load;
};

Routed route(const std::vector<float>& logits, const std::vector<float>& bias, const RouterConfig& cfg) {
  const int64_t N = static_cast<int64_t>(logits.size()) / cfg.E;
  Routed r{std::vector<Index>(N * cfg.K), std::vector<float>(N * cfg.K), std::vector<float>(N * cfg.E),
           std::vector<int32_t>(cfg.E, -7)};
  router_forward(r.idx.data(), r.gates.data(), r.scores.data(), r.load.data(), logits.data(),
                 bias.empty() ? nullptr : bias.data(), N, cfg);
  return r;
}

TEST(Router, BiasChangesSelectionButNotGates) {
  const RouterConfig cfg{.E = 4, .K = 2, .norm_topk_prob = true, .routed_scaling_factor = 2.5};
  const std::vector<float> logits = {2.f, 1.f, 0.f, -1.f};
  const double s0 = sigmoid(2), s1 = sigmoid(1), s2 = sigmoid(0);
  const Routed plain = route(logits, {}, cfg);
  EXPECT_EQ(plain.idx, (std::vector<Index>{0, 1}));
  EXPECT_NEAR(plain.gates[0], s0 / (s0 + s1) * 2.5, 1e-6);
  EXPECT_NEAR(plain.gates[1], s1 / (s0 + s1) * 2.5, 1e-6);
  // bias +1 on expert 2: choice 0.5 + 1 = 1.5 beats σ(2) = 0.88, so expert 2 is picked first,
  // but its gate is built from s2 = 0.5 alone (no bias inside).
  const Routed biased = route(logits, {0.f, 0.f, 1.f, 0.f}, cfg);
  EXPECT_EQ(biased.idx, (std::vector<Index>{2, 0}));
  std::printf("[router] biased gates %.7f %.7f want %.7f %.7f\n", biased.gates[0], biased.gates[1],
              s2 / (s2 + s0) * 2.5, s0 / (s2 + s0) * 2.5);
  EXPECT_NEAR(biased.gates[0], s2 / (s2 + s0) * 2.5, 1e-6);
  EXPECT_NEAR(biased.gates[1], s0 / (s2 + s0) * 2.5, 1e-6);
  EXPECT_EQ(biased.scores, plain.scores);  // s never sees the bias
  // A bias that only reorders within the already-selected set leaves the gates unchanged.
  const Routed reordered = route(logits, {0.f, 0.5f, 0.f, 0.f}, cfg);
  EXPECT_EQ(reordered.idx, (std::vector<Index>{1, 0}));
  EXPECT_FLOAT_EQ(reordered.gates[0], plain.gates[1]);
  EXPECT_FLOAT_EQ(reordered.gates[1], plain.gates[0]);
}

TEST(Router, GroupLimitedSelectionDropsGroupWithBestExpert) {
  // Groups of 2: {0,1} {2,3} {4,5} {6,7}. Expert 0 is the single best (σ(3) = 0.953) but its
  // partner is poor (σ(−5) = 0.007): group score 0.959 < group {2,3} (2·σ(1.5) = 1.635) and
  // group {4,5} (2·σ(1) = 1.462); group {6,7} scores 0.538. Keep 2 groups: {2,3}, {4,5}.
  const std::vector<float> logits = {3.f, -5.f, 1.5f, 1.5f, 1.f, 1.f, -1.f, -1.f};
  RouterConfig cfg{.E = 8, .K = 2, .n_group = 4, .topk_group = 2, .norm_topk_prob = true, .routed_scaling_factor = 1.0};
  const Routed grouped = route(logits, {}, cfg);
  EXPECT_EQ(grouped.idx, (std::vector<Index>{2, 3}));  // tie σ(1.5) = σ(1.5): lower index first
  EXPECT_NEAR(grouped.gates[0], 0.5, 1e-7);
  EXPECT_EQ(grouped.load, (std::vector<int32_t>{0, 0, 1, 1, 0, 0, 0, 0}));
  cfg.n_group = 1;
  const Routed flat = route(logits, {}, cfg);
  EXPECT_EQ(flat.idx, (std::vector<Index>{0, 2}));
  // Only one group kept: K must come from {2,3}; with K = 3 the config is rejected.
  cfg = {.E = 8, .K = 2, .n_group = 4, .topk_group = 1};
  EXPECT_EQ(route(logits, {}, cfg).idx, (std::vector<Index>{2, 3}));
  // The bias enters the group scores too: +1 on expert 7 lifts group {6,7} to
  // 0.269 + 1.269 = 1.538 > 1.462, so group {6,7} replaces {4,5}; expert 7 (choice 1.269)
  // then outranks experts 2, 3 (0.818).
  cfg = {.E = 8, .K = 2, .n_group = 4, .topk_group = 2};
  EXPECT_EQ(route(logits, {0, 0, 0, 0, 0, 0, 0, 1.f}, cfg).idx, (std::vector<Index>{7, 2}));
}

TEST(Router, TiesGoToLowerIndex) {
  const RouterConfig flat{.E = 6, .K = 3};
  EXPECT_EQ(route(std::vector<float>(6, 0.f), {}, flat).idx, (std::vector<Index>{0, 1, 2}));
  // Equal group scores: the lower group wins, then the lower experts inside it.
  const RouterConfig grouped{.E = 6, .K = 2, .n_group = 3, .topk_group = 1};
  EXPECT_EQ(route(std::vector<float>(6, 0.f), {}, grouped).idx, (std::vector<Index>{0, 1}));
  // Tie between a later larger value and an earlier equal one inside the top-2 of a group.
  const std::vector<float> l = {0.f, 1.f, 1.f, 0.f, 2.f, -3.f};
  EXPECT_EQ(route(l, {}, flat).idx, (std::vector<Index>{4, 1, 2}));
}

TEST(Router, LoadCountsAndUnnormalisedGates) {
  // Four tokens whose top-2 are, by construction, {0,1} {1,2} {1,0} {3,2}.
  const std::vector<float> logits = {3, 2, 0, -1,   //
                                     -1, 3, 2, 0,   //
                                     2, 3, 0, -1,   //
                                     -1, 0, 2, 3};
  const RouterConfig cfg{.E = 4, .K = 2, .norm_topk_prob = false, .routed_scaling_factor = 1.5};
  const Routed r = route(logits, {}, cfg);
  EXPECT_EQ(r.idx, (std::vector<Index>{0, 1, 1, 2, 1, 0, 3, 2}));
  EXPECT_EQ(r.load, (std::vector<int32_t>{2, 3, 2, 1}));  // overwritten (was −7)
  for (int k = 0; k < 8; ++k) {
    const int n = k / 2;
    EXPECT_NEAR(r.gates[k], sigmoid(logits[n * 4 + r.idx[k]]) * 1.5, 1e-6) << "unnormalised gate " << k;
  }
}

void expect_invalid(const RouterConfig& cfg, const std::string& needle) {
  try {
    validate(cfg);
    FAIL() << "accepted an invalid router config; expected: " << needle;
  } catch (const Error& e) {
    std::printf("[router] rejected: %s\n", e.message().c_str());
    EXPECT_NE(e.message().find(needle), std::string::npos) << e.message();
  }
}

TEST(Router, ConfigRules) {
  EXPECT_NO_THROW(validate({.E = 256, .K = 8, .n_group = 8, .topk_group = 4, .routed_scaling_factor = 2.5}));
  expect_invalid({.E = 4, .K = 5}, "num_experts_per_tok");
  expect_invalid({.E = 6, .K = 2, .n_group = 4}, "divide");
  expect_invalid({.E = 4, .K = 1, .n_group = 4, .topk_group = 1}, "top-2");
  expect_invalid({.E = 8, .K = 2, .n_group = 4, .topk_group = 5}, "topk_group");
  expect_invalid({.E = 8, .K = 3, .n_group = 4, .topk_group = 1}, "kept groups");
  expect_invalid({.E = 8, .K = 2, .routed_scaling_factor = 0}, "routed_scaling_factor");
}

}  // namespace
}  // namespace tinyseek::ops
