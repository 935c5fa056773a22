// The training loop: gradient accumulation == one big batch, bit-identical resume, NaN
// steps skipped then fatal, the loss falls end to end, checkpoints validated against the
// config, metrics.jsonl keys and the SVG plot.
#include <gtest/gtest.h>

#include <cmath>
#include <csignal>
#include <iterator>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tinyseek/base/check.h"
#include "tinyseek/io/checkpoint.h"
#include "tinyseek/io/safetensors.h"
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

TEST(Trainer, GradAccumulationEqualsOneBigBatch) {
  // One step over 4 sequences: B=4 at once vs 2 micro-batches of B=2 (the loader serves the
  // same windows in the same order either way).
  const RunConfig big = tiny_run_config({"batch_size=4", "grad_accum=1", "grad_clip=0"});
  const RunConfig acc = tiny_run_config({"batch_size=2", "grad_accum=2", "grad_clip=0"});
  std::vector<float> g_big, g_acc;
  TrainerOptions ob = quiet(), oa = quiet();
  ob.after_backward = [&](int64_t step, model::Registry& r) {
    if (step == 0) g_big.assign(r.grads().data(), r.grads().data() + r.grads().size());
  };
  oa.after_backward = [&](int64_t step, model::Registry& r) {
    if (step == 0) g_acc.assign(r.grads().data(), r.grads().data() + r.grads().size());
  };
  Trainer tb(big.model, big.hyper, memory_data(big.model.vocab_size), ob);
  Trainer ta(acc.model, acc.hyper, memory_data(acc.model.vocab_size), oa);
  tb.init_fresh();
  ta.init_fresh();
  std::vector<StepRecord> rb, ra;
  for (int s = 0; s < 4; ++s) {
    rb.push_back(tb.train_step());
    ra.push_back(ta.train_step());
  }
  // The accumulated buffer holds Σ of 2 micro-batch gradients = 2 × the big batch's.
  ASSERT_EQ(g_big.size(), g_acc.size());
  double max_abs = 0, max_g = 0;
  for (size_t i = 0; i < g_big.size(); ++i) {
    max_abs = std::max(max_abs, std::abs(double(g_acc[i]) * 0.5 - double(g_big[i])));
    max_g = std::max(max_g, std::abs(double(g_big[i])));
  }
  std::printf("  step 1 gradient: max |Σ/k - big| = %.3g, max |g| = %.3g, rel %.3g (tol 1e-5)\n", max_abs, max_g,
              max_abs / max_g);
  EXPECT_LT(max_abs / max_g, 1e-5);
  for (int s = 0; s < 4; ++s) {
    const double dl = std::abs(ra[s].losses.loss - rb[s].losses.loss) / rb[s].losses.loss;
    const double dm = std::abs(ra[s].losses.loss_mtp[0] - rb[s].losses.loss_mtp[0]) / rb[s].losses.loss_mtp[0];
    const double dn = std::abs(ra[s].grad_norm - rb[s].grad_norm) / rb[s].grad_norm;
    std::printf("  step %d: loss %.7f vs %.7f (rel %.2g), mtp rel %.2g, grad norm %.6f vs %.6f (rel %.2g)\n", s + 1,
                ra[s].losses.loss, rb[s].losses.loss, dl, dm, ra[s].grad_norm, rb[s].grad_norm, dn);
    EXPECT_LT(dl, 1e-5);
    EXPECT_LT(dm, 1e-5);
    EXPECT_LT(dn, 1e-4);
    EXPECT_EQ(ra[s].tokens, rb[s].tokens);
  }
}

// One resume case: a name and the overrides that select the precision.
struct ResumeCase {
  const char* name;
  std::vector<std::string> overrides;
};
// ctest shows the case name instead of the struct's bytes.
inline void PrintTo(const ResumeCase& c, std::ostream* os) { *os << c.name; }
class ResumeTest : public ::testing::TestWithParam<ResumeCase> {};

TEST_P(ResumeTest, HalfThenResumeIsBitIdentical) {
  // MoE (router-bias updates), MTP, accumulation, warmup + cosine, evaluation in between.
  std::vector<std::string> overrides = {"steps=8", "grad_accum=2", "warmup_steps=2", "eval_every=3", "save_every=0"};
  for (const std::string& o : GetParam().overrides) overrides.push_back(o);
  const RunConfig rc = tiny_run_config(overrides);
  const std::string name = GetParam().name;
  std::printf("  case %s: precision recipe %s, scaling %s, moments %s\n", name.c_str(), rc.model.precision.recipe.c_str(),
              rc.model.precision.scaling == model::Scaling::kDelayed ? "delayed" : "online",
              rc.model.precision.optimizer_moments == model::StoreFormat::kBf16 ? "bf16" : to_string(rc.hyper.adamw.moments));
  const std::string a = fresh_dir("resume_a_" + name);
  const std::string b = fresh_dir("resume_b_" + name);
  Trainer ta(rc.model, rc.hyper, memory_data(rc.model.vocab_size), quiet(a));
  ta.init_fresh();
  ASSERT_EQ(ta.run(8), Trainer::Stop::kReachedStep);
  {
    Trainer t1(rc.model, rc.hyper, memory_data(rc.model.vocab_size), quiet(b));
    t1.init_fresh();
    t1.run(4);
  }
  Trainer tb(rc.model, rc.hyper, memory_data(rc.model.vocab_size), quiet(b));
  tb.resume(b);
  ASSERT_EQ(tb.step(), 4);
  tb.run(8);

  const std::vector<json> la = train_lines(a), lb = train_lines(b);
  ASSERT_EQ(la.size(), 8u);
  ASSERT_EQ(lb.size(), 8u);
  for (size_t i = 0; i < la.size(); ++i) {
    for (const char* key : {"step", "loss", "loss_main", "loss_mtp", "loss_balance", "grad_norm", "lr", "imbalance"})
      EXPECT_EQ(la[i][key], lb[i][key]) << "step " << i + 1 << " key " << key;
    std::printf("  step %zu: loss %s | %s\n", i + 1, la[i]["loss"].dump().c_str(), lb[i]["loss"].dump().c_str());
  }
  const auto& pa = ta.model().registry().params();
  const auto& pb = tb.model().registry().params();
  ASSERT_EQ(pa.size(), pb.size());
  size_t differing = 0;
  for (size_t i = 0; i < pa.size(); ++i) differing += std::memcmp(&pa[i], &pb[i], sizeof(float)) != 0;
  std::printf("  final weights: %zu of %zu floats differ bitwise\n", differing, pa.size());
  EXPECT_EQ(differing, 0u);
  const auto& reg = ta.model().registry();
  for (size_t id = 0; id < reg.size(); ++id) {
    const auto ma = ta.optimizer().exp_avg(int(id)), mb = tb.optimizer().exp_avg(int(id));
    const auto va = ta.optimizer().exp_avg_sq(int(id)), vb = tb.optimizer().exp_avg_sq(int(id));
    ASSERT_EQ(std::memcmp(ma.data(), mb.data(), ma.size()), 0) << reg.info(int(id)).name;
    ASSERT_EQ(std::memcmp(va.data(), vb.data(), va.size()), 0) << reg.info(int(id)).name;
  }
  EXPECT_EQ(ta.optimizer().step_count(), tb.optimizer().step_count());
  EXPECT_EQ(ta.loader_state(), tb.loader_state());
  // The amax histories at step 8 (written oldest first, so the bytes compare directly).
  const std::string sa = testing::slurp_file(a + "/checkpoint/scaling.safetensors");
  const std::string sb = testing::slurp_file(b + "/checkpoint/scaling.safetensors");
  const size_t histories = io::SafetensorsReader(a + "/checkpoint/scaling.safetensors").tensors().size();
  std::printf("  scaling.safetensors: %zu bytes, %zu amax histories, identical: %s\n", sa.size(), histories,
              sa == sb ? "yes" : "NO");
  EXPECT_EQ(sa, sb);
  EXPECT_EQ(histories > 0, rc.model.precision.scaling == model::Scaling::kDelayed);
}

INSTANTIATE_TEST_SUITE_P(Precision, ResumeTest,
                         ::testing::Values(ResumeCase{"fp32", {"moment_precision=fp32"}},
                                           ResumeCase{"bf16_moments", {"moment_precision=bf16"}},
                                           ResumeCase{"fp8", {"precision.recipe=fp8"}},
                                           ResumeCase{"fp8_delayed", {"precision.recipe=fp8", "precision.scaling=delayed",
                                                                      "precision.amax_history=4"}}),
                         [](const ::testing::TestParamInfo<ResumeCase>& i) { return std::string(i.param.name); });

TEST(Trainer, NonFiniteStepIsSkippedThenAborts) {
  const RunConfig rc = tiny_run_config({"max_bad_steps=3"});
  int64_t poison_from = 2, poison_to = 2;  // steps (0-based) whose gradient gets a NaN
  TrainerOptions o = quiet();
  o.after_backward = [&](int64_t step, model::Registry& r) {
    if (step >= poison_from && step <= poison_to) r.grad(0)[5] = std::numeric_limits<float>::quiet_NaN();
  };
  Trainer t(rc.model, rc.hyper, memory_data(rc.model.vocab_size), o);
  t.init_fresh();
  t.train_step();
  t.train_step();
  const std::vector<float> before(t.model().registry().params().data(),
                                  t.model().registry().params().data() + t.model().registry().params().size());
  const int64_t adam_steps = t.optimizer().step_count();
  const StepRecord bad = t.train_step();
  EXPECT_TRUE(bad.skipped);
  EXPECT_FALSE(std::isfinite(bad.grad_norm));
  EXPECT_EQ(t.step(), 3);
  EXPECT_EQ(t.optimizer().step_count(), adam_steps) << "a skipped step must not advance AdamW";
  EXPECT_EQ(std::memcmp(before.data(), t.model().registry().params().data(), before.size() * sizeof(float)), 0)
      << "a skipped step changed the parameters";
  const StepRecord good = t.train_step();
  EXPECT_FALSE(good.skipped);
  EXPECT_TRUE(std::isfinite(good.losses.loss));
  std::printf("  step 3 skipped (grad norm %g), step 4 fine (loss %.4f)\n", bad.grad_norm, good.losses.loss);

  poison_from = 4, poison_to = 1000;
  t.train_step();
  t.train_step();
  try {
    t.train_step();
    ADD_FAILURE() << "no abort after 3 non-finite steps in a row";
  } catch (const Error& e) {
    std::printf("  aborted: %s\n", e.message().c_str());
    EXPECT_NE(e.message().find("3 steps in a row"), std::string::npos) << e.message();
  }
}

TEST(Trainer, MtpLambdaScheduleReachesTheLoss) {
  // λ = 0.3 for steps 0, 1 and 0.1 from step 2 on (DeepSeek-V3's 0.3 -> 0.1), visible in the
  // total loss the model computes: L = CE_main + λ·CE_1 + α·L_bal (Dmtp = 1).
  const RunConfig rc = tiny_run_config({"mtp_lambda=0.3", "mtp_lambda_late=0.1", "mtp_lambda_switch_step=2"});
  Trainer t(rc.model, rc.hyper, memory_data(rc.model.vocab_size), quiet());
  t.init_fresh();
  for (int s = 0; s < 4; ++s) {
    const StepRecord r = t.train_step();
    const double lambda = s < 2 ? 0.3 : 0.1;
    const double expect = r.losses.loss_main + lambda * r.losses.loss_mtp[0] + rc.model.training.balance_alpha * r.losses.loss_balance;
    std::printf("  step %d: lambda %.2f, loss %.9f, main + lambda*mtp + alpha*bal %.9f\n", s + 1, r.mtp_lambda,
                r.losses.loss, expect);
    EXPECT_EQ(r.mtp_lambda, lambda);
    EXPECT_NEAR(r.losses.loss, expect, 1e-9);
  }
}

TEST(Trainer, RecomputeNormUpKeyReachesTheModel) {
  // training.recompute_norm_up (default true) under recompute "none": the model keeps fewer
  // activation bytes and trains to the same bits, for FP32 and FP8 Linears alike.
  for (const char* recipe : {"fp32", "fp8"}) {
    struct Run {
      std::vector<float> grads;
      std::vector<double> losses;
      int64_t saved = 0;
    };
    const auto run = [&](const char* flag) {
      const RunConfig rc = tiny_run_config({std::string("precision.recipe=") + recipe, "recompute=none",
                                            std::string("recompute_norm_up=") + flag, "batch_size=2"});
      Run out;
      TrainerOptions o = quiet();
      o.after_backward = [&](int64_t step, model::Registry& r) {
        if (step == 1) out.grads.assign(r.grads().data(), r.grads().data() + r.grads().size());
      };
      Trainer t(rc.model, rc.hyper, memory_data(rc.model.vocab_size), o);
      EXPECT_EQ(t.model().norm_up_recompute(), std::string(flag) == "true");
      t.init_fresh();
      for (int s = 0; s < 2; ++s) out.losses.push_back(t.train_step().losses.loss);
      out.saved = t.model().saved_activation_bytes();
      return out;
    };
    const Run on = run("true"), off = run("false");
    ASSERT_EQ(on.grads.size(), off.grads.size());
    size_t differ = 0;
    for (size_t i = 0; i < on.grads.size(); ++i)
      differ += std::memcmp(&on.grads[i], &off.grads[i], sizeof(float)) != 0;
    std::printf("  %s: recompute_norm_up true keeps %lld activation bytes, false %lld; %zu of %zu step-2 gradient "
                "floats differ; losses %.9f %.9f vs %.9f %.9f\n",
                recipe, (long long)on.saved, (long long)off.saved, differ, on.grads.size(), on.losses[0],
                on.losses[1], off.losses[0], off.losses[1]);
    EXPECT_LT(on.saved, off.saved) << recipe;
    EXPECT_EQ(differ, 0u) << recipe;
    EXPECT_EQ(on.losses, off.losses) << recipe;
  }
}

TEST(Trainer, PresetsParseAndMatchTheirRoles) {
  for (const char* name : {"tiny", "small", "base"}) {
    const std::string path = testing::source_path(std::string("configs/") + name + ".json");
    const RunConfig rc = parse_run_config(read_config_file(path), {}, path);
    std::printf("  %s: %s | B %lld T %lld steps %lld\n", name, model::summary(rc.model).c_str(),
                (long long)rc.hyper.run.batch_size, (long long)rc.hyper.run.seq_len, (long long)rc.hyper.run.steps);
    EXPECT_TRUE(rc.model.has_moe_layers()) << name;
    EXPECT_GT(rc.model.n_shared_experts, 0) << name;
    EXPECT_EQ(rc.model.num_nextn_predict_layers, 1) << name;
    EXPECT_LE(rc.hyper.run.seq_len, rc.model.max_position_embeddings) << name;
    EXPECT_GT(rc.hyper.run.steps, 0) << name;
  }
}

TEST(Trainer, LossFallsEndToEnd) {
  const RunConfig rc = tiny_run_config({"steps=60", "lr=3e-3", "warmup_steps=5"});
  const std::string dir = fresh_dir("e2e");
  Trainer t(rc.model, rc.hyper, memory_data(rc.model.vocab_size), quiet(dir));
  t.init_fresh();
  const EvalResult before = t.evaluate(0);
  t.run(60);
  const EvalResult after = t.evaluate(0);
  std::printf("  val loss %.4f -> %.4f after 60 steps (ln V = %.4f; the stream's entropy is ~1.0 nats)\n",
              before.val_loss, after.val_loss, std::log(double(rc.model.vocab_size)));
  EXPECT_NEAR(before.val_loss, std::log(double(rc.model.vocab_size)), 0.1);
  EXPECT_LT(after.val_loss, before.val_loss - 2.0);
  EXPECT_NEAR(after.perplexity, std::exp(after.val_loss), 1e-9 * after.perplexity);

  // The run directory: metrics with the documented keys, the plot, a complete checkpoint.
  std::ifstream in(dir + "/metrics.jsonl");
  std::string line;
  int train = 0, eval = 0;
  while (std::getline(in, line)) {
    const json j = json::parse(line);
    if (j.contains("val_loss")) {
      ++eval;
      EXPECT_FALSE(j.contains("loss"));
      for (const char* k : {"step", "val_perplexity", "val_bits_per_byte", "val_tokens"}) EXPECT_TRUE(j.contains(k)) << k;
    } else {
      ++train;
      for (const char* k : {"step", "loss", "loss_main", "loss_mtp", "lr", "grad_norm", "tokens_per_s"})
        EXPECT_TRUE(j.contains(k)) << k;
      EXPECT_EQ(j["loss_mtp"].size(), 1u);
    }
  }
  EXPECT_EQ(train, 60);
  EXPECT_GE(eval, 3);  // every 20 steps (tiny.json) incl. the end
  std::ifstream svg(dir + "/loss.svg");
  const std::string s((std::istreambuf_iterator<char>(svg)), std::istreambuf_iterator<char>());
  EXPECT_NE(s.find("<svg"), std::string::npos);
  EXPECT_NE(s.find("<polyline"), std::string::npos);
  EXPECT_NE(s.find("validation"), std::string::npos);
  for (const std::string& f : io::checkpoint_files()) {
    if (f != "tokenizer.json") {
      EXPECT_TRUE(fs::exists(dir + "/" + f)) << f;  // via the top-level links
    }
  }
  int step_dirs = 0;
  for (const auto& e : fs::directory_iterator(dir)) step_dirs += e.path().filename().string().rfind("step-", 0) == 0;
  EXPECT_EQ(step_dirs, 1) << "old checkpoints must be removed after a successful save";
  EXPECT_EQ(fs::read_symlink(dir + "/checkpoint").string(), "step-00000060");
}

TEST(Trainer, CheckpointFromAnotherConfigIsRejected) {
  const RunConfig rc = tiny_run_config({"steps=2"});
  const std::string dir = fresh_dir("other_config");
  {
    Trainer t(rc.model, rc.hyper, memory_data(rc.model.vocab_size), quiet(dir));
    t.init_fresh();
    t.run(2);
  }
  const RunConfig other = tiny_run_config({"steps=2", "hidden_size=48"});
  Trainer t(other.model, other.hyper, memory_data(other.model.vocab_size), quiet(dir));
  try {
    t.resume(dir);
    ADD_FAILURE() << "resumed a checkpoint of another config";
  } catch (const Error& e) {
    std::printf("  rejected: %s\n", e.message().c_str());
    EXPECT_NE(e.message().find("another model config"), std::string::npos);
    EXPECT_NE(e.message().find("hidden_size: 32 vs 48"), std::string::npos);
  }
  // Bypassing the config check, the weights themselves are checked tensor by tensor.
  model::Registry reg(other.model);
  EXPECT_THROW(io::load_model_safetensors(reg, io::resolve_checkpoint_dir(dir) + "/model.safetensors"), Error);
  EXPECT_THROW(io::resolve_checkpoint_dir(fresh_dir("empty_run")), Error);
}

TEST(Trainer, SignalFlagSavesAndStops) {
  const RunConfig rc = tiny_run_config({"steps=50", "save_every=0", "eval_every=0"});
  const std::string dir = fresh_dir("signal");
  volatile std::sig_atomic_t flag = 0;
  TrainerOptions o = quiet(dir);
  o.stop_flag = &flag;
  o.after_backward = [&](int64_t step, model::Registry&) {
    if (step == 6) flag = 1;  // as the SIGINT handler would, mid-step
  };
  Trainer t(rc.model, rc.hyper, memory_data(rc.model.vocab_size), o);
  t.init_fresh();
  EXPECT_EQ(t.run(50), Trainer::Stop::kSignal);
  EXPECT_EQ(t.step(), 7);
  EXPECT_EQ(fs::read_symlink(dir + "/checkpoint").string(), "step-00000007");
}

}  // namespace
}  // namespace tinyseek::train
