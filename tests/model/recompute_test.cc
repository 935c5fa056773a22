// Recomputation policies (model/recompute.h): none, selective and full must give
// bit-identical losses, gradients and load counts (recomputation repeats deterministic kernels
// on identical inputs), and each step down must hold fewer saved activations.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "tinyseek/base/check.h"
#include "tinyseek/base/rng.h"
#include "tinyseek/model/config.h"
#include "tinyseek/model/deepseek.h"

namespace tinyseek::model {
namespace {

std::string config_path(const std::string& name) {
  return std::string(TINYSEEK_SOURCE_DIR) + "/tests/reference/configs/" + name + ".json";
}

struct PolicyRun {
  std::vector<double> losses;          // loss, main, balance, mtp... of each step
  std::vector<float> grads;            // the whole gradient buffer after the last step
  std::vector<int32_t> loads;          // load counts of every MoE layer
  int64_t saved = 0, transient = 0;    // floats
};

// Two forward_backward calls (gradients accumulate) on different tokens, so a stale
// transient buffer from the previous step would show.
PolicyRun run_policy(const ModelConfig& cfg, Recompute policy, int64_t B, int64_t T) {
  Model m(cfg);
  m.init(cfg.training.seed + 5);
  // Non-trivial norm weights and router biases so that every recomputed norm matters.
  Registry& r = m.registry();
  const Philox rng(77, 3);
  uint64_t c = 0;
  for (size_t i = 0; i < r.size(); ++i) {
    const TensorInfo& t = r.info(int(i));
    if (t.role != Role::kNorm && t.role != Role::kRouterBias) continue;
    for (size_t j = 0; j < t.numel; ++j)
      r.param(int(i))[j] = (t.role == Role::kNorm ? 1.0f : 0.0f) + static_cast<float>(0.1 * rng.normal(c++));
  }
  m.set_recompute(policy);
  m.registry().zero_grad();
  PolicyRun out;
  for (int step = 0; step < 2; ++step) {
    const Philox trng(100 + uint64_t(step), 9);
    std::vector<ops::Index> tokens(static_cast<size_t>(B * (T + 1)));
    for (size_t i = 0; i < tokens.size(); ++i)
      tokens[i] = static_cast<ops::Index>(trng.uniform(i) * static_cast<float>(cfg.vocab_size)) % cfg.vocab_size;
    const Losses l = m.forward_backward(tokens.data(), B, T);
    out.losses.insert(out.losses.end(), {l.loss, l.loss_main, l.loss_balance});
    out.losses.insert(out.losses.end(), l.loss_mtp.begin(), l.loss_mtp.end());
  }
  out.grads.assign(r.grads().data(), r.grads().data() + r.grads().size());
  for (int64_t layer : m.moe_layers()) {
    const int32_t* lc = m.load_counts(layer);
    out.loads.insert(out.loads.end(), lc, lc + cfg.n_routed_experts);
  }
  out.saved = m.saved_activation_floats();
  out.transient = m.transient_activation_floats();
  return out;
}

class RecomputePolicies : public ::testing::TestWithParam<const char*> {};

TEST_P(RecomputePolicies, IdenticalBitsLessMemory) {
  const ModelConfig cfg = load_config(config_path(GetParam()));
  const int64_t B = 2, T = 40;
  const PolicyRun none = run_policy(cfg, Recompute::kNone, B, T);
  const PolicyRun selective = run_policy(cfg, Recompute::kSelective, B, T);
  const PolicyRun full = run_policy(cfg, Recompute::kFull, B, T);
  for (const auto& [name, x] : {std::pair<const char*, const PolicyRun*>{"selective", &selective}, {"full", &full}}) {
    size_t differing = 0;
    for (size_t i = 0; i < none.grads.size(); ++i)
      differing += std::memcmp(&none.grads[i], &x->grads[i], sizeof(float)) != 0;
    std::printf("[%s] %-9s vs none: loss %.9g vs %.9g, %zu of %zu gradient floats differ in bits, load counts %s\n",
                GetParam(), name, x->losses[0], none.losses[0], differing, none.grads.size(),
                x->loads == none.loads ? "equal" : "DIFFER");
    EXPECT_EQ(0, std::memcmp(x->losses.data(), none.losses.data(), sizeof(double) * none.losses.size())) << name;
    EXPECT_EQ(differing, 0u) << name;
    EXPECT_EQ(x->loads, none.loads) << name;
  }
  const auto mib = [](int64_t floats) { return double(floats) * 4.0 / (1 << 20); };
  std::printf("[%s] saved activations (B %lld, T %lld): none %.3f MiB, selective %.3f MiB (+%.3f transient), full "
              "%.3f MiB (+%.3f transient)\n",
              GetParam(), (long long)B, (long long)T, mib(none.saved), mib(selective.saved), mib(selective.transient),
              mib(full.saved), mib(full.transient));
  EXPECT_LT(selective.saved, none.saved);
  EXPECT_LT(full.saved, selective.saved);
  // Full keeps the residual stream plus small routing/MTP state: well under half of selective.
  EXPECT_LT(2 * full.saved, selective.saved);
}

INSTANTIATE_TEST_SUITE_P(Configs, RecomputePolicies, ::testing::Values("dense", "moe_group", "q_direct", "mtp2"));

TEST(Recompute, ParsesNamesAndRejectsOthers) {
  EXPECT_EQ(parse_recompute("none"), Recompute::kNone);
  EXPECT_EQ(parse_recompute("selective"), Recompute::kSelective);
  EXPECT_EQ(parse_recompute("full"), Recompute::kFull);
  EXPECT_STREQ(to_string(Recompute::kSelective), "selective");
  try {
    parse_recompute("some");
    ADD_FAILURE() << "accepted 'some'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    std::printf("error for 'some': %s\n", msg.c_str());
    EXPECT_NE(msg.find("none, selective, full"), std::string::npos);
  }
}

}  // namespace
}  // namespace tinyseek::model
