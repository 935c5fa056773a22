// Aux-loss-free bias update: direction per expert, exact ties, γ = 0, and the imbalance
// metric.
#include <gtest/gtest.h>

#include <cstdio>
#include <vector>

#include "tinyseek/base/check.h"
#include "tinyseek/train/balance.h"

namespace tinyseek::train {
namespace {

TEST(Balance, BiasMovesTowardTheMeanLoad) {
  // E = 4, total 24, mean 6: expert 0 over, 1 under, 2 exactly at the mean (tie), 3 under.
  const std::vector<int64_t> load = {12, 2, 6, 4};
  std::vector<float> bias = {0.5f, -0.25f, 0.125f, 0.0f};
  bias_update(bias.data(), load.data(), 4, 0.001);
  std::printf("bias after update (loads 12 2 6 4, gamma 1e-3): %.9g %.9g %.9g %.9g\n", bias[0], bias[1], bias[2],
              bias[3]);
  EXPECT_EQ(bias[0], static_cast<float>(0.5 - 0.001));
  EXPECT_EQ(bias[1], static_cast<float>(-0.25 + 0.001));
  EXPECT_EQ(bias[2], 0.125f);  // sign(0) = 0
  EXPECT_EQ(bias[3], static_cast<float>(0.001));
}

TEST(Balance, TiesAreExactEvenWhenTheMeanIsNotAnInteger) {
  // total 10 over E = 3: mean 3.333..., nobody ties; loads equal to each other move together.
  const std::vector<int32_t> load = {3, 3, 4};
  std::vector<float> bias(3, 0.0f);
  bias_update(bias.data(), load.data(), 3, 0.5);
  EXPECT_EQ(bias[0], 0.5f);
  EXPECT_EQ(bias[1], 0.5f);
  EXPECT_EQ(bias[2], -0.5f);
  // Perfect balance: nothing moves; γ = 0: nothing moves.
  const std::vector<int32_t> flat = {5, 5, 5};
  bias_update(bias.data(), flat.data(), 3, 0.5);
  EXPECT_EQ(bias, (std::vector<float>{0.5f, 0.5f, -0.5f}));
  bias_update(bias.data(), load.data(), 3, 0.0);
  EXPECT_EQ(bias, (std::vector<float>{0.5f, 0.5f, -0.5f}));
  // No tokens at all: every load equals the mean.
  const std::vector<int32_t> none = {0, 0, 0};
  bias_update(bias.data(), none.data(), 3, 0.5);
  EXPECT_EQ(bias, (std::vector<float>{0.5f, 0.5f, -0.5f}));
}

TEST(Balance, RejectsBadInput) {
  std::vector<float> bias(2, 0.0f);
  const std::vector<int64_t> neg = {-1, 3};
  EXPECT_THROW(bias_update(bias.data(), neg.data(), 2, 0.1), Error);
  const std::vector<int64_t> ok = {1, 3};
  EXPECT_THROW(bias_update(bias.data(), ok.data(), 2, -0.1), Error);
  EXPECT_THROW(bias_update(bias.data(), ok.data(), 0, 0.1), Error);
}

TEST(Balance, Imbalance) {
  const std::vector<int64_t> flat = {5, 5, 5, 5}, skew = {10, 10, 0, 0}, none = {0, 0, 0, 0};
  EXPECT_EQ(load_imbalance(flat.data(), 4), 1.0);
  EXPECT_EQ(load_imbalance(skew.data(), 4), 2.0);  // K = 2 of E = 4 always chosen: E/K
  EXPECT_EQ(load_imbalance(none.data(), 4), 0.0);
}

}  // namespace
}  // namespace tinyseek::train
