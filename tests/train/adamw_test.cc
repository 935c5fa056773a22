// AdamW: against torch.optim.AdamW (FP32 moments) and against a numpy mirror of the
// documented update order (FP32 and BF16 moments, bit for bit), weight decay per role,
// the router bias left alone, thread-count independence and checkpoint state round trip.
#include <gtest/gtest.h>

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tinyseek/model/registry.h"
#include "tinyseek/numerics/simd.h"
#include "tinyseek/train/adamw.h"
#include "tinyseek/train/clip.h"
#include "tinyseek/train/hyper.h"
#include "train_test_util.h"

namespace tinyseek::train {
namespace {

using model::Registry;
using model::Role;
using testing::fill_grads;
using testing::ids_with_role;
using testing::small_config;

constexpr int kSteps = 6;
constexpr double kGradClip = 150.0;

template <class T>
void write_bin(const std::string& path, const T* data, size_t n) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(n * sizeof(T)));
  ASSERT_TRUE(out.good()) << path;
}

template <class T>
std::vector<T> read_bin(const std::string& path, size_t n) {
  std::vector<T> v(n);
  std::ifstream in(path, std::ios::binary);
  in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(n * sizeof(T)));
  EXPECT_TRUE(in.good()) << "cannot read " << n << " elements from " << path;
  return v;
}

// The whole moment buffer of one precision, tensor by tensor at the registry offsets.
template <class T>
std::vector<T> moments(const AdamW& opt, const Registry& reg, bool second) {
  std::vector<T> out(reg.params().size(), T{});
  for (size_t id = 0; id < reg.size(); ++id) {
    const auto bytes = second ? opt.exp_avg_sq(static_cast<int>(id)) : opt.exp_avg(static_cast<int>(id));
    EXPECT_EQ(bytes.size(), reg.info(static_cast<int>(id)).numel * sizeof(T));
    std::memcpy(out.data() + reg.info(static_cast<int>(id)).offset, bytes.data(), bytes.size());
  }
  return out;
}

// One training trajectory: per-step gradients, learning rates and clip factors.
struct Trajectory {
  std::vector<std::vector<float>> grads;  // [steps][n]
  std::vector<double> lrs;
  std::vector<float> scales;
  std::vector<double> norms;
};

Trajectory make_trajectory(Registry& reg) {
  TrainHyper h;
  h.lr = 1e-2;
  h.min_lr = 1e-3;
  h.warmup_steps = 2;
  const LrSchedule sched = lr_schedule(h, kSteps);
  Trajectory tr;
  const int zero_grad_tensor = reg.id("model.layers.0.self_attn.o_proj.weight");
  for (int k = 0; k < kSteps; ++k) {
    fill_grads(reg, 100 + k, 0.3 + 0.2 * k);
    // An all-zero gradient on one tensor at step 0 exercises m = v = 0 (the eps path).
    if (k == 0) std::fill_n(reg.grad(zero_grad_tensor), reg.info(zero_grad_tensor).numel, 0.0f);
    const ClipResult clip = clip_gradients(reg, kGradClip);
    tr.grads.emplace_back(reg.grads().begin(), reg.grads().end());
    tr.lrs.push_back(sched.at(k));
    tr.scales.push_back(clip.scale);
    tr.norms.push_back(clip.norm);
  }
  return tr;
}

void run(Registry& reg, AdamW& opt, const Trajectory& tr, int from, int to) {
  for (int k = from; k < to; ++k) {
    std::copy(tr.grads[k].begin(), tr.grads[k].end(), reg.grads().begin());
    opt.step(reg, tr.lrs[k], tr.scales[k]);
  }
}

struct Diff {
  double max_abs = 0, max_rel = 0;
  size_t mismatches = 0;
};
// rel = |a − b| / max(|b|, floor): the floor keeps elements that are ~0 from dominating.
Diff compare(const std::vector<float>& a, const std::vector<float>& b, double floor) {
  Diff d;
  for (size_t i = 0; i < a.size(); ++i) {
    const double e = std::abs(static_cast<double>(a[i]) - b[i]);
    d.max_abs = std::max(d.max_abs, e);
    d.max_rel = std::max(d.max_rel, e / std::max<double>(std::abs(b[i]), floor));
    d.mismatches += std::bit_cast<uint32_t>(a[i]) != std::bit_cast<uint32_t>(b[i]);
  }
  return d;
}

double rms(const std::vector<float>& x) {
  double s = 0;
  for (float v : x) s += static_cast<double>(v) * v;
  return std::sqrt(s / static_cast<double>(x.size()));
}

class AdamWReference : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(std::filesystem::temp_directory_path() /
                           ("tinyseek_adamw_ref_" + std::to_string(::getpid())));
    std::filesystem::create_directories(*dir_);
    reg_ = new Registry(small_config());
    reg_->init(7);
    p0_ = new std::vector<float>(reg_->params().begin(), reg_->params().end());
    tr_ = new Trajectory(make_trajectory(*reg_));

    const size_t n = reg_->params().size();
    nlohmann::json meta;
    meta["n"] = n;
    meta["steps"] = kSteps;
    meta["lrs"] = tr_->lrs;
    meta["scales"] = tr_->scales;
    const AdamWConfig cfg;
    meta["beta1"] = cfg.beta1;
    meta["beta2"] = cfg.beta2;
    meta["eps"] = cfg.eps;
    meta["weight_decay"] = cfg.weight_decay;
    for (const model::TensorInfo& t : reg_->tensors())
      meta["tensors"].push_back({{"name", t.name}, {"offset", t.offset}, {"numel", t.numel}, {"role", to_string(t.role)}});
    std::ofstream(*dir_ + "/meta.json") << meta.dump();
    write_bin(*dir_ + "/params0.bin", p0_->data(), n);
    std::ofstream g(*dir_ + "/grads.bin", std::ios::binary);
    for (const auto& step : tr_->grads) g.write(reinterpret_cast<const char*>(step.data()), n * sizeof(float));
    g.close();
    const std::string cmd = std::string(TINYSEEK_PYTHON) + " " + TINYSEEK_SOURCE_DIR +
                            "/tests/train/adamw_reference.py " + *dir_;
    python_status_ = std::system(cmd.c_str());
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(*dir_);
    delete dir_;
    delete reg_;
    delete p0_;
    delete tr_;
  }

  // Runs all steps from the initial parameters with `precision` moments and `threads`.
  static std::vector<float> run_all(Registry& reg, AdamW& opt, int threads) {
    std::copy(p0_->begin(), p0_->end(), reg.params().begin());
    const int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    run(reg, opt, *tr_, 0, kSteps);
    omp_set_num_threads(saved);
    return {reg.params().begin(), reg.params().end()};
  }

  static std::string* dir_;
  static Registry* reg_;
  static std::vector<float>* p0_;
  static Trajectory* tr_;
  static int python_status_;
};
std::string* AdamWReference::dir_ = nullptr;
Registry* AdamWReference::reg_ = nullptr;
std::vector<float>* AdamWReference::p0_ = nullptr;
Trajectory* AdamWReference::tr_ = nullptr;
int AdamWReference::python_status_ = -1;

TEST_F(AdamWReference, Fp32MomentsMatchTorchAdamW) {
  ASSERT_EQ(python_status_, 0) << "tests/train/adamw_reference.py failed";
  const size_t n = reg_->params().size();
  AdamW opt(*reg_, AdamWConfig{});
  const std::vector<float> p = run_all(*reg_, opt, 2);
  ASSERT_EQ(opt.step_count(), kSteps);
  int clipped = 0;
  for (float s : tr_->scales) clipped += s < 1.0f;
  EXPECT_GE(clipped, 2) << "the trajectory should exercise clipping";
  EXPECT_LT(clipped, kSteps) << "and unclipped steps";

  // Relative to |x| floored at the RMS of x: torch fuses m·β1 + (1−β1)·g into an FMA, so
  // where the two terms cancel the moments differ by an ulp of the *terms*, not of m.
  const std::vector<float> tp = read_bin<float>(*dir_ + "/torch_params.bin", n);
  const std::vector<float> tm = read_bin<float>(*dir_ + "/torch_m.bin", n);
  const std::vector<float> tv = read_bin<float>(*dir_ + "/torch_v.bin", n);
  const Diff dp = compare(p, tp, rms(tp));
  const Diff dm = compare(moments<float>(opt, *reg_, false), tm, rms(tm));
  const Diff dv = compare(moments<float>(opt, *reg_, true), tv, rms(tv));
  std::printf("AdamW FP32 vs torch.optim.AdamW, %d steps, %zu floats: params max abs %.3g max rel %.3g; "
              "exp_avg max rel %.3g; exp_avg_sq max rel %.3g (tolerance 1e-6; %zu/%zu params bitwise equal)\n",
              kSteps, n, dp.max_abs, dp.max_rel, dm.max_rel, dv.max_rel, n - dp.mismatches, n);
  EXPECT_LT(dp.max_rel, 1e-6);
  EXPECT_LT(dm.max_rel, 1e-6);
  EXPECT_LT(dv.max_rel, 1e-6);
  // The updates must be real: the parameters moved by ~lr.
  const Diff moved = compare(p, *p0_, 1e-2);
  EXPECT_GT(moved.max_abs, 1e-2);
}

TEST_F(AdamWReference, Fp32MomentsMatchNumpyMirrorBitwise) {
  ASSERT_EQ(python_status_, 0);
  const size_t n = reg_->params().size();
  AdamW opt(*reg_, AdamWConfig{});
  const std::vector<float> p = run_all(*reg_, opt, 1);
  const Diff dp = compare(p, read_bin<float>(*dir_ + "/np32_params.bin", n), 1e-2);
  const Diff dm = compare(moments<float>(opt, *reg_, false), read_bin<float>(*dir_ + "/np32_m.bin", n), 1e-3);
  const Diff dv = compare(moments<float>(opt, *reg_, true), read_bin<float>(*dir_ + "/np32_v.bin", n), 1e-6);
  std::printf("AdamW FP32 vs numpy float32 mirror: mismatching bits params %zu, exp_avg %zu, exp_avg_sq %zu "
              "of %zu (max abs %.3g)\n", dp.mismatches, dm.mismatches, dv.mismatches, n, dp.max_abs);
  EXPECT_EQ(dp.mismatches, 0u);
  EXPECT_EQ(dm.mismatches, 0u);
  EXPECT_EQ(dv.mismatches, 0u);
}

TEST_F(AdamWReference, Bf16MomentsMatchReferenceBitwise) {
  ASSERT_EQ(python_status_, 0);
  const size_t n = reg_->params().size();
  AdamWConfig cfg;
  cfg.moments = MomentPrecision::kBf16;
  AdamW opt(*reg_, cfg);
  EXPECT_EQ(opt.moment_bytes(), 2u);
  const std::vector<float> p = run_all(*reg_, opt, 2);
  const Diff dp = compare(p, read_bin<float>(*dir_ + "/bf16_params.bin", n), 1e-2);
  const std::vector<uint16_t> m = moments<uint16_t>(opt, *reg_, false), v = moments<uint16_t>(opt, *reg_, true);
  const std::vector<uint16_t> rm = read_bin<uint16_t>(*dir_ + "/bf16_m.bin", n);
  const std::vector<uint16_t> rv = read_bin<uint16_t>(*dir_ + "/bf16_v.bin", n);
  size_t mm = 0, mv = 0, nonzero = 0;
  for (size_t i = 0; i < n; ++i) {
    mm += m[i] != rm[i];
    mv += v[i] != rv[i];
    nonzero += v[i] != 0;
  }
  // The BF16 run must differ from the FP32 one (else the moments were not rounded).
  const Diff vs32 = compare(p, read_bin<float>(*dir_ + "/np32_params.bin", n), 1e-2);
  std::printf("AdamW BF16 moments vs reference (torch RNE rounding): mismatching bits params %zu, exp_avg %zu, "
              "exp_avg_sq %zu of %zu; BF16 vs FP32-moment run: %zu params differ, max rel %.3g\n",
              dp.mismatches, mm, mv, n, vs32.mismatches, vs32.max_rel);
  EXPECT_EQ(dp.mismatches, 0u);
  EXPECT_EQ(mm, 0u);
  EXPECT_EQ(mv, 0u);
  EXPECT_GT(nonzero, n / 2);
  EXPECT_GT(vs32.mismatches, n / 10);
}

TEST_F(AdamWReference, ClipNormMatchesTorch) {
  ASSERT_EQ(python_status_, 0);
  nlohmann::json out;
  std::ifstream(*dir_ + "/out.json") >> out;
  double worst = 0;
  for (int k = 0; k < kSteps; ++k) {
    const double t = out["torch_grad_norms"][k].get<double>();
    worst = std::max(worst, std::abs(tr_->norms[k] - t) / t);
  }
  std::printf("global grad norm (double) vs torch clip_grad_norm_ (float32), %d steps: max rel %.3g "
              "(tolerance 1e-5)\n", kSteps, worst);
  EXPECT_LT(worst, 1e-5);
}

TEST_F(AdamWReference, SameBitsForOneAndTwoThreads) {
  for (MomentPrecision mp : {MomentPrecision::kFp32, MomentPrecision::kBf16}) {
    AdamWConfig cfg;
    cfg.moments = mp;
    AdamW a(*reg_, cfg), b(*reg_, cfg);
    const std::vector<float> p1 = run_all(*reg_, a, 1);
    const std::vector<float> p2 = run_all(*reg_, b, 2);
    const Diff d = compare(p1, p2, 1e-2);
    size_t moment_diff = 0;
    for (size_t id = 0; id < reg_->size(); ++id) {
      moment_diff += !std::equal(a.exp_avg(id).begin(), a.exp_avg(id).end(), b.exp_avg(id).begin());
      moment_diff += !std::equal(a.exp_avg_sq(id).begin(), a.exp_avg_sq(id).end(), b.exp_avg_sq(id).begin());
    }
    std::printf("AdamW %s 1 vs 2 threads: %zu params differ, %zu moment tensors differ\n", to_string(mp),
                d.mismatches, moment_diff);
    EXPECT_EQ(d.mismatches, 0u);
    EXPECT_EQ(moment_diff, 0u);
  }
}

// The AVX-512 kernels and the portable loops must give the same bits (the numpy mirror
// tests above run whichever path this CPU selects).
TEST_F(AdamWReference, PortableAndAvx512PathsAgreeBitwise) {
  if (!cpu_has_avx512_bf16()) GTEST_SKIP() << "no AVX-512 BF16 on this CPU: only the portable path exists";
  for (MomentPrecision mp : {MomentPrecision::kFp32, MomentPrecision::kBf16}) {
    AdamWConfig cfg;
    cfg.moments = mp;
    AdamW fast(*reg_, cfg), portable(*reg_, cfg);
    set_simd_override(SimdPath::Avx512Bf16);
    const std::vector<float> pf = run_all(*reg_, fast, 2);
    set_simd_override(SimdPath::Portable);
    const std::vector<float> pp = run_all(*reg_, portable, 2);
    clear_simd_override();
    size_t moment_diff = 0;
    for (size_t id = 0; id < reg_->size(); ++id) {
      moment_diff += !std::equal(fast.exp_avg(id).begin(), fast.exp_avg(id).end(), portable.exp_avg(id).begin());
      moment_diff += !std::equal(fast.exp_avg_sq(id).begin(), fast.exp_avg_sq(id).end(), portable.exp_avg_sq(id).begin());
    }
    const Diff d = compare(pf, pp, 1e-2);
    std::printf("AdamW %s avx512 vs portable: %zu params differ, %zu moment tensors differ\n", to_string(mp),
                d.mismatches, moment_diff);
    EXPECT_EQ(d.mismatches, 0u);
    EXPECT_EQ(moment_diff, 0u);
  }
}

TEST_F(AdamWReference, StateRoundTripResumesBitIdentically) {
  for (MomentPrecision mp : {MomentPrecision::kFp32, MomentPrecision::kBf16}) {
    AdamWConfig cfg;
    cfg.moments = mp;
    AdamW straight(*reg_, cfg);
    const std::vector<float> want = run_all(*reg_, straight, 2);

    // Half the run, then "checkpoint": params, moment bytes and step count into fresh objects.
    Registry reg2(small_config());
    AdamW first(*reg_, cfg);
    std::copy(p0_->begin(), p0_->end(), reg_->params().begin());
    run(*reg_, first, *tr_, 0, kSteps / 2);
    std::copy(reg_->params().begin(), reg_->params().end(), reg2.params().begin());
    AdamW resumed(reg2, cfg);
    for (size_t id = 0; id < reg2.size(); ++id) {
      const int i = static_cast<int>(id);
      std::memcpy(resumed.mutable_exp_avg(i).data(), first.exp_avg(i).data(), first.exp_avg(i).size());
      std::memcpy(resumed.mutable_exp_avg_sq(i).data(), first.exp_avg_sq(i).data(), first.exp_avg_sq(i).size());
    }
    resumed.set_step_count(first.step_count());
    run(reg2, resumed, *tr_, kSteps / 2, kSteps);
    const Diff d = compare({reg2.params().begin(), reg2.params().end()}, want, 1e-2);
    std::printf("AdamW %s resume after %d of %d steps: %zu params differ from the uninterrupted run\n",
                to_string(mp), kSteps / 2, kSteps, d.mismatches);
    EXPECT_EQ(d.mismatches, 0u);
    EXPECT_EQ(resumed.step_count(), kSteps);

    // Without the step count the bias correction differs: the check above is sensitive to it.
    AdamW wrong(reg2, cfg);
    std::copy(reg_->params().begin(), reg_->params().end(), reg2.params().begin());
    run(reg2, wrong, *tr_, kSteps / 2, kSteps);
    EXPECT_GT(compare({reg2.params().begin(), reg2.params().end()}, want, 1e-2).mismatches, 0u);
  }
}

// Zero gradients isolate the weight decay: every decaying tensor is scaled by exactly
// (1 − lr·wd), norms are unchanged, and the router bias is not touched even though its
// "gradient" is NaN (AdamW must never read it).
TEST(AdamW, WeightDecayOnlyOnDecayingRolesAndRouterBiasUntouched) {
  Registry reg(small_config());
  reg.init(3);
  reg.zero_grad();
  const std::vector<int> biases = ids_with_role(reg, Role::kRouterBias);
  ASSERT_FALSE(biases.empty());
  for (int id : biases) {
    std::fill_n(reg.param(id), reg.info(id).numel, 0.25f);
    std::fill_n(reg.grad(id), reg.info(id).numel, std::numeric_limits<float>::quiet_NaN());
  }
  const std::vector<float> before(reg.params().begin(), reg.params().end());
  for (MomentPrecision mp : {MomentPrecision::kFp32, MomentPrecision::kBf16}) {
    std::copy(before.begin(), before.end(), reg.params().begin());
    AdamWConfig cfg;
    cfg.moments = mp;
    AdamW opt(reg, cfg);
    const double lr = 0.5;
    opt.step(reg, lr);
    const float factor = static_cast<float>(1.0 - lr * cfg.weight_decay);
    int checked[7] = {};
    size_t wrong = 0;
    for (size_t id = 0; id < reg.size(); ++id) {
      const model::TensorInfo& t = reg.info(static_cast<int>(id));
      for (size_t i = 0; i < t.numel; ++i) {
        const float b = before[t.offset + i], a = reg.params()[t.offset + i];
        const float want = decays(t.role) ? b * factor : b;
        wrong += std::bit_cast<uint32_t>(a) != std::bit_cast<uint32_t>(want);
      }
      ++checked[static_cast<int>(t.role)];
    }
    std::printf("weight decay (%s moments, lr %.2f, wd %.2f): %zu elements differ from p·%.3f (decaying roles) / "
                "p (norm, router bias)\n", to_string(mp), lr, cfg.weight_decay, wrong, factor);
    EXPECT_EQ(wrong, 0u);
    for (int r = 0; r < 7; ++r) EXPECT_GT(checked[r], 0) << "role " << to_string(static_cast<Role>(r)) << " absent";
    for (int id : biases) {
      for (std::byte x : opt.exp_avg(id)) EXPECT_EQ(x, std::byte{0});
      EXPECT_EQ(reg.param(id)[0], 0.25f);
    }
  }
  EXPECT_TRUE(decays(Role::kLinear) && decays(Role::kEmbedding) && decays(Role::kHead) && decays(Role::kRouter) &&
              decays(Role::kMtpProj));
  EXPECT_FALSE(decays(Role::kNorm) || decays(Role::kRouterBias));
}

TEST(AdamW, RejectsBadArguments) {
  Registry reg(small_config());
  AdamWConfig bad;
  bad.beta2 = 1.0;
  EXPECT_THROW(AdamW(reg, bad), Error);
  AdamW opt(reg, AdamWConfig{});
  EXPECT_THROW(opt.step(reg, std::nan("")), Error);
  EXPECT_THROW(opt.step(reg, 1e-3, std::numeric_limits<float>::infinity()), Error);
  model::ModelConfig other = small_config();
  other.vocab_size = 256;
  Registry reg2(other);
  EXPECT_THROW(opt.step(reg2, 1e-3), Error);
  EXPECT_EQ(opt.step_count(), 0);
}

}  // namespace
}  // namespace tinyseek::train
