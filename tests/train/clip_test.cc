// Global-norm clipping: the norm against a direct long-double sum, the factor, thread-count
// independence, the router bias left out, and non-finite detection.
#include <gtest/gtest.h>

#include <omp.h>

#include <bit>
#include <cmath>
#include <cstdio>
#include <limits>

#include "tinyseek/train/clip.h"
#include "train_test_util.h"

namespace tinyseek::train {
namespace {

using model::Registry;
using testing::fill_grads;
using testing::ids_with_role;
using testing::small_config;

double norm_with_threads(const Registry& reg, int threads) {
  const int saved = omp_get_max_threads();
  omp_set_num_threads(threads);
  const double n = global_grad_norm(reg);
  omp_set_num_threads(saved);
  return n;
}

TEST(Clip, NormMatchesDirectSumAndIsThreadCountIndependent) {
  Registry reg(small_config());
  fill_grads(reg, 11, 0.7);
  // A "gradient" on the router bias must not count (the optimizer does not train it).
  for (int id : ids_with_role(reg, model::Role::kRouterBias)) reg.grad(id)[0] = 1e3f;
  long double direct = 0;
  for (const model::TensorInfo& t : reg.tensors()) {
    if (t.role == model::Role::kRouterBias) continue;
    for (size_t i = 0; i < t.numel; ++i) direct += static_cast<long double>(reg.grads()[t.offset + i]) * reg.grads()[t.offset + i];
  }
  const double want = static_cast<double>(std::sqrt(direct));
  const double n1 = norm_with_threads(reg, 1), n2 = norm_with_threads(reg, 2);
  std::printf("global grad norm over %lld params: %.17g, direct long-double sum %.17g, rel diff %.3g "
              "(tolerance 1e-13); 1 vs 2 threads bitwise equal: %s\n",
              static_cast<long long>(reg.num_parameters()), n1, want, std::abs(n1 - want) / want,
              std::bit_cast<uint64_t>(n1) == std::bit_cast<uint64_t>(n2) ? "yes" : "NO");
  EXPECT_LT(std::abs(n1 - want) / want, 1e-13);
  EXPECT_EQ(std::bit_cast<uint64_t>(n1), std::bit_cast<uint64_t>(n2));
}

TEST(Clip, FactorFollowsTorchRule) {
  EXPECT_EQ(clip_factor(0.5, 1.0), 1.0f);                       // below the threshold
  EXPECT_EQ(clip_factor(4.0, 1.0), static_cast<float>(1.0 / (4.0 + 1e-6)));
  EXPECT_EQ(clip_factor(1.0, 1.0), static_cast<float>(1.0 / (1.0 + 1e-6)));  // +1e-6: just below 1
  EXPECT_LT(clip_factor(1.0, 1.0), 1.0f);
  EXPECT_EQ(clip_factor(1e9, 0.0), 1.0f);                       // max_norm 0 disables
  Registry reg(small_config());
  fill_grads(reg, 5, 1.0);
  const ClipResult r = clip_gradients(reg, 2.0);
  EXPECT_TRUE(r.finite);
  EXPECT_EQ(r.norm, global_grad_norm(reg));
  std::printf("clip at 2.0: norm %.6g -> factor %.9g, clipped norm %.9g\n", r.norm, r.scale, r.norm * r.scale);
  EXPECT_NEAR(r.norm * r.scale, 2.0, 1e-5);
}

TEST(Clip, NonFiniteGradientsAreFlagged) {
  Registry reg(small_config());
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()}) {
    fill_grads(reg, 5, 1.0);
    reg.grad(reg.id("model.norm.weight"))[3] = bad;
    const ClipResult r = clip_gradients(reg, 1.0);
    EXPECT_FALSE(r.finite) << bad;
    EXPECT_EQ(r.scale, 1.0f);
  }
  fill_grads(reg, 5, 1.0);
  reg.grad(reg.id("model.norm.weight"))[3] = std::numeric_limits<float>::max();  // huge but finite
  EXPECT_TRUE(clip_gradients(reg, 1.0).finite);
}

}  // namespace
}  // namespace tinyseek::train
