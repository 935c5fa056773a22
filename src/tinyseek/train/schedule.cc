#include "tinyseek/train/schedule.h"

#include <cmath>
#include <numbers>

#include "tinyseek/base/check.h"

namespace tinyseek::train {

const char* to_string(LrShape s) {
  switch (s) {
    case LrShape::kDeepSeek: return "deepseek";
    case LrShape::kCosine: return "cosine";
  }
  return "?";
}

double LrSchedule::at(int64_t step) const {
  TS_CHECK(step >= 0, "learning-rate schedule asked for step " << step, "steps start at 0");
  if (step < warmup_steps) {
    // The ratio first, so that (W/W) = 1 makes the last warmup step exactly `peak`.
    return peak * (static_cast<double>(step + 1) / static_cast<double>(warmup_steps));
  }
  if (step < decay_start) return peak;
  if (step >= decay_end()) return floor;
  const double t = static_cast<double>(step - decay_start) / static_cast<double>(decay_steps);
  const double w = 0.5 * (1.0 + std::cos(std::numbers::pi * t));
  // peak·w + floor·(1−w) rather than floor + (peak−floor)·w: exact `peak` at w = 1.
  return peak * w + floor * (1.0 - w);
}

}  // namespace tinyseek::train
