// Learning-rate, λ and γ schedules: exact values at every phase boundary for both shapes,
// monotonicity inside the cosine, and the resolution of decay_steps from the run length.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <numbers>

#include "tinyseek/train/hyper.h"
#include "tinyseek/train/schedule.h"

namespace tinyseek::train {
namespace {

TEST(Schedule, DeepSeekShapeBoundaries) {
  TrainHyper h;
  h.schedule = LrShape::kDeepSeek;
  h.lr = 2.2e-4;
  h.min_lr = 2.2e-5;
  h.warmup_steps = 7;  // 7: peak·7/7 must still be exactly peak
  h.decay_start = 20;
  h.decay_steps = 30;
  const LrSchedule s = lr_schedule(h, 1000);
  EXPECT_EQ(s.decay_end(), 50);
  std::printf("deepseek: lr(0) %.6g lr(6) %.6g lr(7) %.6g lr(19) %.6g lr(20) %.6g lr(35) %.6g lr(49) %.6g "
              "lr(50) %.6g lr(999) %.6g\n", s.at(0), s.at(6), s.at(7), s.at(19), s.at(20), s.at(35), s.at(49),
              s.at(50), s.at(999));
  EXPECT_EQ(s.at(0), 2.2e-4 * (1.0 / 7.0));  // warmup start: peak/W
  EXPECT_EQ(s.at(3), 2.2e-4 * (4.0 / 7.0));
  EXPECT_EQ(s.at(6), 2.2e-4);               // last warmup step: exactly peak
  EXPECT_EQ(s.at(7), 2.2e-4);               // constant phase
  EXPECT_EQ(s.at(19), 2.2e-4);
  EXPECT_EQ(s.at(20), 2.2e-4);              // decay start: cos(0) = 1, exactly peak
  EXPECT_LT(s.at(21), 2.2e-4);
  // Midpoint of the cosine: w = ½ exactly, so (peak + floor)/2.
  EXPECT_DOUBLE_EQ(s.at(35), (2.2e-4 + 2.2e-5) / 2);
  const double w49 = 0.5 * (1 + std::cos(std::numbers::pi * 29.0 / 30.0));
  EXPECT_DOUBLE_EQ(s.at(49), 2.2e-4 * w49 + 2.2e-5 * (1 - w49));
  EXPECT_GT(s.at(49), 2.2e-5);
  EXPECT_EQ(s.at(50), 2.2e-5);              // decay end: exactly the floor
  EXPECT_EQ(s.at(999), 2.2e-5);
  for (int64_t k = 20; k < 50; ++k) EXPECT_GT(s.at(k), s.at(k + 1)) << k;
  for (int64_t k = 0; k < 6; ++k) EXPECT_LT(s.at(k), s.at(k + 1)) << k;
  EXPECT_THROW(s.at(-1), Error);
}

TEST(Schedule, CosineShapeDecaysToFloorAtTheLastStep) {
  TrainHyper h;  // default schedule: cosine
  h.lr = 1e-3;
  h.min_lr = 1e-4;
  h.warmup_steps = 10;
  const LrSchedule s = lr_schedule(h, 110);  // steps 0..109
  EXPECT_EQ(s.decay_start, 10);
  EXPECT_EQ(s.decay_steps, 99);
  std::printf("cosine (110 steps): lr(0) %.6g lr(9) %.6g lr(10) %.6g lr(11) %.6g lr(108) %.6g lr(109) %.6g\n",
              s.at(0), s.at(9), s.at(10), s.at(11), s.at(108), s.at(109));
  EXPECT_EQ(s.at(0), 1e-4);   // 1e-3 · 1/10
  EXPECT_EQ(s.at(9), 1e-3);
  EXPECT_EQ(s.at(10), 1e-3);  // no constant phase: the decay starts right away
  EXPECT_LT(s.at(11), 1e-3);
  EXPECT_GT(s.at(108), 1e-4);
  EXPECT_EQ(s.at(109), 1e-4);  // the last step of the run is at the floor
  // An explicit decay_steps does not depend on the run length (resume-safe).
  h.decay_steps = 50;
  EXPECT_EQ(lr_schedule(h, 110).at(60), 1e-4);
  EXPECT_EQ(lr_schedule(h, 5000).at(59), lr_schedule(h, 110).at(59));
  // No warmup: step 0 is the peak.
  h.warmup_steps = 0;
  EXPECT_EQ(lr_schedule(h, 110).at(0), 1e-3);
  // A run shorter than the warmup never decays (decay_steps resolved to 0).
  h.warmup_steps = 10;
  h.decay_steps = TrainHyper::kUnset;
  EXPECT_EQ(lr_schedule(h, 5).at(4), 1e-3 * 0.5);
  EXPECT_THROW(lr_schedule(h, 0), Error);
}

TEST(Schedule, MtpLambdaAndBiasSpeedSwitch) {
  TrainHyper h;
  h.mtp_lambda = 0.3;
  h.mtp_lambda_late = 0.1;
  h.mtp_lambda_switch_step = 100;
  h.bias_update_speed = 0.001;
  h.bias_update_stop_step = 200;
  const StepSwitch lambda = mtp_lambda_schedule(h), gamma = bias_speed_schedule(h);
  std::printf("lambda(0) %g lambda(99) %g lambda(100) %g; gamma(199) %g gamma(200) %g\n", lambda.at(0),
              lambda.at(99), lambda.at(100), gamma.at(199), gamma.at(200));
  EXPECT_EQ(lambda.at(0), 0.3);
  EXPECT_EQ(lambda.at(99), 0.3);
  EXPECT_EQ(lambda.at(100), 0.1);
  EXPECT_EQ(lambda.at(1000000), 0.1);
  EXPECT_EQ(gamma.at(0), 0.001);
  EXPECT_EQ(gamma.at(199), 0.001);
  EXPECT_EQ(gamma.at(200), 0.0);
  // Unset switch steps: the first value forever.
  TrainHyper d;
  EXPECT_EQ(mtp_lambda_schedule(d).at(INT64_MAX - 1), 0.3);
  EXPECT_EQ(bias_speed_schedule(d).at(INT64_MAX - 1), 0.001);
}

}  // namespace
}  // namespace tinyseek::train
