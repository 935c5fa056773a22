// Auxiliary-loss-free load balancing (DeepSeek-V3 §2.1.2): after each optimizer step, for
// each MoE layer, every expert's routing bias moves by γ toward balance:
//   b_i += γ · sign(mean_load − load_i),  sign(0) = 0
// so overloaded experts become less attractive and underloaded ones more. The bias only
// affects expert *selection* (model/router), never the gate values, and has no gradient;
// AdamW does not touch it.
#pragma once
#include <cstdint>

namespace tinyseek::train {

// bias [E] (the layer's e_score_correction_bias, in place); load [E] = tokens that
// selected each expert over the whole step (summed over micro-batches). The comparison
// with the mean is exact (integers: sign(Σload − E·load_i)), so ties give 0.
void bias_update(float* bias, const int64_t* load, int64_t E, double gamma);
// The same for one forward's int32 counts (Model::load_counts).
void bias_update(float* bias, const int32_t* load, int64_t E, double gamma);

// max_i load_i / mean load: 1 = perfectly balanced, E/K when every token picks the same K
// experts; 0 if no tokens were routed.
double load_imbalance(const int64_t* load, int64_t E);

}  // namespace tinyseek::train
