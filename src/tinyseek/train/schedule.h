// Per-step schedules of the training run: the learning rate, the MTP loss weight λ and
// the aux-loss-free balancing speed γ (DeepSeek-V3 §4.2).
//
// `step` everywhere is the 0-based index of the optimizer update: the first update uses
// step 0, and after N updates the run is "at global step N". All values are computed in
// double from the integers, so they depend only on (schedule, step): a resumed run gets
// exactly the values of an uninterrupted one.
#pragma once
#include <cstdint>
#include <limits>

namespace tinyseek::train {

enum class LrShape : uint8_t {
  kDeepSeek,  // warmup, constant until decay_start, cosine to the floor, floor (DeepSeek-V3)
  kCosine,    // warmup, then cosine straight to the floor (decay_start = warmup_steps)
};
const char* to_string(LrShape s);  // "deepseek" / "cosine"

// A resolved learning-rate schedule (every phase length known). With W = warmup_steps,
// S = decay_start (>= W), Dd = decay_steps:
//   step <  W          peak · (step+1)/W        lr(0) = peak/W, lr(W−1) = peak exactly
//   W <= step < S      peak                     (empty for kCosine, where S = W)
//   S <= step < S+Dd   peak·w + floor·(1−w),  w = ½(1 + cos(π (step−S)/Dd))
//                                               lr(S) = peak exactly, then strictly down
//   step >= S+Dd       floor exactly
// The warmup starts at peak/W rather than 0 so that the first update is not wasted.
struct LrSchedule {
  LrShape shape = LrShape::kCosine;
  double peak = 0;
  double floor = 0;
  int64_t warmup_steps = 0;
  int64_t decay_start = 0;
  int64_t decay_steps = 0;

  double at(int64_t step) const;
  int64_t decay_end() const { return decay_start + decay_steps; }  // first step at the floor
};

// A value that changes once: `before` for step < switch_step, `after` from switch_step on.
// kNever keeps `before` forever. Used for λ (0.3 → 0.1 in DeepSeek-V3) and for γ
// (0.001 → 0 for the last 500B tokens).
struct StepSwitch {
  static constexpr int64_t kNever = std::numeric_limits<int64_t>::max();
  double before = 0;
  double after = 0;
  int64_t switch_step = kNever;

  double at(int64_t step) const { return step < switch_step ? before : after; }
};

}  // namespace tinyseek::train
