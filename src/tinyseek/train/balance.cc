#include "tinyseek/train/balance.h"

#include <algorithm>
#include <cmath>

#include "tinyseek/base/check.h"

namespace tinyseek::train {
namespace {

template <class Count>
void update(float* bias, const Count* load, int64_t E, double gamma) {
  TS_CHECK(E > 0, "bias update over " << E << " experts", "call it only for MoE layers");
  TS_CHECK(std::isfinite(gamma) && gamma >= 0, "bias update speed must be a finite number >= 0, got " << gamma,
           "set training.bias_update_speed (paper: 0.001; 0 disables)");
  if (gamma == 0) return;
  int64_t total = 0;
  for (int64_t i = 0; i < E; ++i) {
    TS_CHECK(load[i] >= 0, "expert " << i << " has a negative load count " << load[i],
             "pass the number of tokens routed to each expert");
    total += static_cast<int64_t>(load[i]);
  }
  for (int64_t i = 0; i < E; ++i) {
    // sign(mean − load_i) = sign(Σload − E·load_i), exact in integers.
    const int64_t diff = total - E * static_cast<int64_t>(load[i]);
    const double s = diff > 0 ? 1.0 : diff < 0 ? -1.0 : 0.0;
    bias[i] = static_cast<float>(static_cast<double>(bias[i]) + gamma * s);
  }
}

}  // namespace

void bias_update(float* bias, const int64_t* load, int64_t E, double gamma) { update(bias, load, E, gamma); }
void bias_update(float* bias, const int32_t* load, int64_t E, double gamma) { update(bias, load, E, gamma); }

double load_imbalance(const int64_t* load, int64_t E) {
  if (E <= 0) return 0;
  int64_t total = 0, peak = 0;
  for (int64_t i = 0; i < E; ++i) {
    total += load[i];
    peak = std::max(peak, load[i]);
  }
  if (total == 0) return 0;
  return static_cast<double>(peak) * static_cast<double>(E) / static_cast<double>(total);
}

}  // namespace tinyseek::train
