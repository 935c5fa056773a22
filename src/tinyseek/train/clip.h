// Global-norm gradient clipping (DeepSeek-V3 §4.2 clips at 1.0).
//
// The norm is taken over the gradients of every tensor the optimizer trains (the router
// bias has no gradient), summed in double over the fixed chunks of optimizer_chunks()
// and combined in chunk order: the same bits for any thread count. The clip factor is
// not applied here: pass it to AdamW::step as grad_scale, which multiplies each gradient
// as it is read (one pass over memory fewer than scaling in place).
#pragma once
#include <vector>

#include "tinyseek/model/registry.h"
#include "tinyseek/train/adamw.h"

namespace tinyseek::train {

struct ClipResult {
  double norm = 0;     // the pre-clip global L2 norm
  float scale = 1.0f;  // min(1, max_norm / (norm + 1e-6)); 1 when clipping is off
  bool finite = true;  // false if any gradient is NaN/Inf: the trainer must skip the step
};

// Σ g² over all optimizer-trained gradients, in double, sqrt'ed.
double global_grad_norm(const model::Registry& reg);

// The pieces of global_grad_norm, for a norm over gradients sharded across ranks
// (dist/data_parallel.h): Σ g² of each chunk in chunks[first, last) (optimizer_chunks
// indices), and the fold of all chunks' values in chunk order, then sqrt. The fold is
// global_grad_norm's own, so sharded and unsharded norms of equal gradients are equal bits.
std::vector<double> chunk_sum_squares(const model::Registry& reg, const std::vector<OptimizerChunk>& chunks,
                                      size_t first, size_t last);
double norm_from_chunk_sums(const std::vector<double>& sums);

// min(1, max_norm / (norm + 1e-6)) as torch.nn.utils.clip_grad_norm_; max_norm <= 0 means
// no clipping (factor 1).
float clip_factor(double norm, double max_norm);

// The norm, its finiteness and the factor for `max_norm` (training.grad_clip). A
// non-finite norm gives scale 1 and finite = false.
ClipResult clip_gradients(const model::Registry& reg, double max_norm);

}  // namespace tinyseek::train
