// Whole-model checks: the reference dump compared against the independent PyTorch
// reference (tests/reference/compare.py), determinism (1 vs 2 threads, repeated runs),
// gradient accumulation, load counts, and a finite-difference spot check of the total loss.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "tinyseek/base/rng.h"
#include "tinyseek/io/safetensors.h"
#include "tinyseek/model/config.h"
#include "tinyseek/model/deepseek.h"
#include "tinyseek/model/reference_dump.h"

namespace tinyseek::model {
namespace {

namespace fs = std::filesystem;

const char* const kConfigs[] = {"dense", "moe_group", "q_direct", "mtp2"};

std::string config_path(const std::string& name) {
  return std::string(TINYSEEK_SOURCE_DIR) + "/tests/reference/configs/" + name + ".json";
}

// Parameters as the test wants them: init from the config's seed and std, then RMSNorm
// weights 1 + N(0, 0.1²) (a forgotten norm weight would show) and router biases N(0, 0.1²)
// (the bias must change the selection, not only be zero).
void prepare(Model& m, uint64_t seed) {
  m.init(seed);
  Registry& r = m.registry();
  const Philox rng(seed ^ 0x5eedull, 991);
  uint64_t counter = 0;
  for (size_t i = 0; i < r.size(); ++i) {
    const TensorInfo& t = r.info(int(i));
    if (t.role != Role::kNorm && t.role != Role::kRouterBias) continue;
    float* p = r.param(int(i));
    for (size_t j = 0; j < t.numel; ++j)
      p[j] = (t.role == Role::kNorm ? 1.0f : 0.0f) + static_cast<float>(0.1 * rng.normal(counter++));
  }
}

std::vector<ops::Index> random_tokens(int64_t B, int64_t T, int64_t V, uint64_t seed) {
  const Philox rng(seed, 17);
  std::vector<ops::Index> t(static_cast<size_t>(B * (T + 1)));
  for (size_t i = 0; i < t.size(); ++i) t[i] = static_cast<ops::Index>(rng.uniform(i) * static_cast<float>(V));
  return t;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void set_threads(int n) {
#ifdef _OPENMP
  omp_set_num_threads(n);
#else
  (void)n;
#endif
}
int get_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

class ReferenceCompare : public ::testing::TestWithParam<const char*> {};

TEST_P(ReferenceCompare, MatchesPyTorchReference) {
  const std::string name = GetParam();
  const std::string compare = std::string(TINYSEEK_SOURCE_DIR) + "/tests/reference/compare.py";
  if (!fs::exists(compare)) GTEST_SKIP() << compare << " does not exist yet (the reference helper writes it)";
  const ModelConfig cfg = load_config(config_path(name));
  Model m(cfg);
  prepare(m, cfg.training.seed + 1);
  const int64_t B = 2, T = 12;
  const auto tokens = random_tokens(B, T, cfg.vocab_size, 3);
  const std::string dir = ::testing::TempDir() + "/tinyseek_dump_" + name;
  fs::remove_all(dir);
  const Losses l = write_reference_dump(dir, m, tokens.data(), B, T);
  std::printf("[%s] loss %.6f main %.6f balance %.6f", name.c_str(), l.loss, l.loss_main, l.loss_balance);
  for (double x : l.loss_mtp) std::printf(" mtp %.6f", x);
  std::printf("\n");

  const std::string log = dir + "/compare.log";
  const std::string cmd = std::string(TINYSEEK_PYTHON) + " " + compare + " " + dir + " > " + log + " 2>&1";
  const int status = std::system(cmd.c_str());
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  const std::string text = read_text(log);
  // Print the summary (and any failing rows) rather than all ~100 rows.
  std::istringstream lines(text);
  std::vector<std::string> all;
  for (std::string s; std::getline(lines, s);) all.push_back(s);
  bool in_summary = false;
  for (const std::string& s : all) {
    in_summary = in_summary || s.rfind("thresholds:", 0) == 0;
    if (in_summary || s.rfind("FAIL", 0) == 0) std::printf("  | %s\n", s.c_str());
  }
  if (!in_summary)  // unexpected output (e.g. a Python error): show its end
    for (size_t i = all.size() > 20 ? all.size() - 20 : 0; i < all.size(); ++i) std::printf("  | %s\n", all[i].c_str());
  EXPECT_EQ(code, 0) << "compare.py failed for " << name << " (exit " << code << "); full log in " << log;
  if (code == 0) fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Configs, ReferenceCompare, ::testing::ValuesIn(kConfigs),
                         [](const auto& info) { return std::string(info.param); });

// Gradients and losses of one forward_backward with `threads` threads.
struct RunResult {
  Losses losses;
  std::vector<float> grads;
  std::vector<std::vector<int32_t>> loads;
};
RunResult run_once(const ModelConfig& cfg, int threads, const std::vector<ops::Index>& tokens, int64_t B, int64_t T) {
  const int saved = get_threads();
  set_threads(threads);
  Model m(cfg);
  prepare(m, 11);
  m.registry().zero_grad();
  RunResult r;
  r.losses = m.forward_backward(tokens.data(), B, T);
  r.grads.assign(m.registry().grads().begin(), m.registry().grads().end());
  for (int64_t layer : m.moe_layers())
    r.loads.emplace_back(m.load_counts(layer), m.load_counts(layer) + cfg.n_routed_experts);
  set_threads(saved);
  return r;
}

TEST(ModelDeterminism, BitIdenticalAcrossThreadCountsAndRuns) {
  const ModelConfig cfg = load_config(config_path("mtp2"));
  // Large enough that the ops split rows, heads and columns over several chunks.
  const int64_t B = 4, T = 48;
  const auto tokens = random_tokens(B, T, cfg.vocab_size, 5);
  const RunResult a = run_once(cfg, 1, tokens, B, T);
  const RunResult b = run_once(cfg, 2, tokens, B, T);
  const RunResult c = run_once(cfg, 2, tokens, B, T);
  size_t diff_ab = 0, diff_bc = 0;
  for (size_t i = 0; i < a.grads.size(); ++i) {
    diff_ab += std::memcmp(&a.grads[i], &b.grads[i], 4) != 0;
    diff_bc += std::memcmp(&b.grads[i], &c.grads[i], 4) != 0;
  }
  std::printf("loss 1 thread %.17g, 2 threads %.17g, again %.17g; differing gradient floats: 1v2 %zu, run1v2 %zu of %zu\n",
              a.losses.loss, b.losses.loss, c.losses.loss, diff_ab, diff_bc, a.grads.size());
  EXPECT_EQ(diff_ab, 0u);
  EXPECT_EQ(diff_bc, 0u);
  EXPECT_EQ(std::memcmp(&a.losses.loss, &b.losses.loss, sizeof(double)), 0);
  EXPECT_EQ(std::memcmp(&b.losses.loss, &c.losses.loss, sizeof(double)), 0);
  EXPECT_EQ(a.losses.loss_mtp, b.losses.loss_mtp);
  EXPECT_EQ(a.loads, b.loads);
}

TEST(Model, ForwardMatchesForwardBackwardAndGradientsAccumulate) {
  const ModelConfig cfg = load_config(config_path("mtp2"));
  Model m(cfg);
  prepare(m, 4);
  const int64_t B = 2, T = 10;
  const auto tokens = random_tokens(B, T, cfg.vocab_size, 9);
  const Losses f = m.forward(tokens.data(), B, T);
  m.registry().zero_grad();
  const Losses fb = m.forward_backward(tokens.data(), B, T);
  EXPECT_EQ(f.loss, fb.loss);
  EXPECT_EQ(f.loss_main, fb.loss_main);
  EXPECT_EQ(f.loss_mtp, fb.loss_mtp);
  EXPECT_EQ(f.loss_balance, fb.loss_balance);
  // The total is assembled from its terms per docs/model.md.
  const double lambda = cfg.training.mtp_lambda, alpha = cfg.training.balance_alpha;
  double expect = fb.loss_main + alpha * fb.loss_balance;
  for (double x : fb.loss_mtp) expect += lambda / double(fb.loss_mtp.size()) * x;
  EXPECT_NEAR(fb.loss, expect, 1e-12);
  // Accumulation: gradients of batch A then batch B without zeroing = gA + gB (up to the
  // rounding of adding in a different order: lm_head and embed_tokens receive several
  // contributions per batch, so fl(fl(a+b)+c) orders differ; bound 1e-6 of the tensor's max).
  const std::vector<float> gA(m.registry().grads().begin(), m.registry().grads().end());
  const auto tokens_b = random_tokens(B, T, cfg.vocab_size, 10);
  m.registry().zero_grad();
  m.forward_backward(tokens_b.data(), B, T);
  const std::vector<float> gB(m.registry().grads().begin(), m.registry().grads().end());
  m.registry().zero_grad();
  m.forward_backward(tokens.data(), B, T);
  m.forward_backward(tokens_b.data(), B, T);
  double worst = 0, gnorm = 0;
  size_t exact = 0;
  for (const TensorInfo& t : m.registry().tensors()) {
    double gmax = 0;
    for (size_t j = t.offset; j < t.offset + t.numel; ++j) gmax = std::max(gmax, double(std::fabs(gA[j] + gB[j])));
    for (size_t j = t.offset; j < t.offset + t.numel; ++j) {
      const float sum = gA[j] + gB[j];
      exact += m.registry().grads()[j] == sum;
      if (gmax > 0) worst = std::max(worst, std::fabs(double(m.registry().grads()[j]) - sum) / gmax);
      gnorm += double(gA[j]) * gA[j];
    }
  }
  std::printf("losses: total %.6f main %.6f mtp1 %.6f mtp2 %.6f balance %.6f; |grad A| %.4f\n", fb.loss, fb.loss_main,
              fb.loss_mtp[0], fb.loss_mtp[1], fb.loss_balance, std::sqrt(gnorm));
  std::printf("accumulate A then B vs gA + gB: %zu of %ld floats bit-identical, max |diff| / max|g| per tensor %.2e (tolerance 1e-6)\n",
              exact, long(m.registry().num_parameters()), worst);
  EXPECT_LT(worst, 1e-6);
  EXPECT_GT(gnorm, 0.0);
  // Load counts: every token selects K experts in every MoE layer (main: B·T tokens, MTP
  // layer L+k-1: B·(T−k) tokens).
  for (int64_t layer : m.moe_layers()) {
    const int64_t tokens_in_layer = B * (T - std::max<int64_t>(0, layer - cfg.num_hidden_layers + 1));
    int64_t total = 0;
    for (int64_t e = 0; e < cfg.n_routed_experts; ++e) total += m.load_counts(layer)[e];
    EXPECT_EQ(total, tokens_in_layer * cfg.num_experts_per_tok) << "layer " << layer;
  }
  EXPECT_EQ(m.moe_layers(), (std::vector<int64_t>{1, 2, 3}));
  // Bad batches are rejected with a message.
  EXPECT_THROW(m.forward(tokens.data(), B, 2), Error);                           // T <= Dmtp
  EXPECT_THROW(m.forward(tokens.data(), 1, cfg.max_position_embeddings + 1), Error);  // T > max positions
  auto bad = tokens;
  bad[3] = static_cast<ops::Index>(cfg.vocab_size);
  EXPECT_THROW(m.forward(bad.data(), B, T), Error);
}

// Central differences of the total loss for a few parameters: an end-to-end check of the
// backward (the per-op checks live in tests/ops; the PyTorch comparison is the precise one).
// FP32 forward: the loss is accurate to ~1e-7 relative, so with h = 2e-3 the difference
// quotient carries ~1e-4 absolute noise; we test the largest-gradient elements of several
// tensors, where that noise is small relative to the gradient.
TEST(Model, FiniteDifferenceSpotCheck) {
  for (const char* name : {"moe_group", "mtp2", "q_direct"}) {
    const ModelConfig cfg = load_config(config_path(name));
    Model m(cfg);
    prepare(m, 21);
    const int64_t B = 2, T = 8;
    const auto tokens = random_tokens(B, T, cfg.vocab_size, 13);
    Registry& r = m.registry();
    r.zero_grad();
    m.forward_backward(tokens.data(), B, T);
    const std::vector<float> grads(r.grads().begin(), r.grads().end());
    const Philox pick(77, 0);
    double worst = 0;
    int checked = 0;
    for (int s = 0; s < 12; ++s) {
      const int id = static_cast<int>(pick.u64(s) % r.size());
      const TensorInfo& t = r.info(id);
      if (t.role == Role::kRouterBias) continue;
      size_t best = 0;
      for (size_t j = 0; j < t.numel; ++j)
        if (std::fabs(grads[t.offset + j]) > std::fabs(grads[t.offset + best])) best = j;
      const double g = grads[t.offset + best];
      if (std::fabs(g) < 1e-3) continue;  // too small to resolve in FP32 differences
      float* p = r.param(id) + best;
      const float saved = *p;
      const float h = 2e-3f;
      *p = saved + h;
      const double lp = m.forward(tokens.data(), B, T).loss;
      *p = saved - h;
      const double lm = m.forward(tokens.data(), B, T).loss;
      *p = saved;
      const double fd = (lp - lm) / (double(saved + h) - double(saved - h));
      const double rel = std::fabs(fd - g) / std::max(std::fabs(fd), std::fabs(g));
      std::printf("[%s] %-52s [%6zu] grad % .6e  fd % .6e  rel %.2e\n", name, t.name.c_str(), best, g, fd, rel);
      worst = std::max(worst, rel);
      ++checked;
    }
    std::printf("[%s] %d parameters checked, worst rel error %.2e (tolerance 5e-3)\n", name, checked, worst);
    EXPECT_GE(checked, 4);
    EXPECT_LT(worst, 5e-3);
  }
}

}  // namespace
}  // namespace tinyseek::model
