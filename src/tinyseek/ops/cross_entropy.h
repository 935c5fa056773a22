// Softmax cross-entropy fused with the softmax, numerically stable (max-subtracted
// logsumexp), over rows of logits. Rows whose target is negative are masked out (ignored):
//
//   loss = 1/n_valid Σ_{n : target[n] ≥ 0} (lse[n] − logits[n, target[n]])
//
// No [N, V] softmax is stored: backward recomputes it from the saved lse.
#pragma once
#include <cstdint>

#include "tinyseek/ops/dims.h"

namespace tinyseek::ops {

// Returns the mean loss over valid rows (0 if none), summed in double in ascending row order.
//   lse     [N]      logsumexp of each row, saved for backward (also for masked rows)
//   logits  [N, V]
//   targets [N]      in [0, V), or negative = masked; throws if ≥ V
template <class T>
double cross_entropy_forward(T* lse, const T* logits, const Index* targets, int64_t N, int64_t V);

// dlogits[n, :] = dloss / n_valid · (softmax(logits[n, :]) − onehot(target[n])), 0 for masked
// rows. OVERWRITES (=) dlogits (the convention's exception: the logits have no other consumer,
// and dlogits may alias logits to save an [N, V] buffer).
//   dlogits [N, V]   logits [N, V]   lse [N]   targets [N]
template <class T>
void cross_entropy_backward(T* dlogits, double dloss, const T* logits, const T* lse,
                            const Index* targets, int64_t N, int64_t V);

// Row chunks of one cross-entropy (the output head never holds all [N, V] logits): the
// same lse and, over all chunks in ascending row order, the same loss bits as one call.
//   cross_entropy_forward_rows: lse[n] for the chunk's rows; adds each valid row's
//     (lse − logit[target]) to `total` (in ascending row order) and counts it in `n_valid`.
//     Loss = total / n_valid after the last chunk.
//   cross_entropy_backward_rows: as cross_entropy_backward for the chunk's rows, with the
//     valid-row count of the whole batch (count_valid_targets) instead of the chunk's.
template <class T>
void cross_entropy_forward_rows(T* lse, const T* logits, const Index* targets, int64_t N, int64_t V, double& total,
                                int64_t& n_valid);
template <class T>
void cross_entropy_backward_rows(T* dlogits, double dloss, int64_t n_valid_total, const T* logits, const T* lse,
                                 const Index* targets, int64_t N, int64_t V);
int64_t count_valid_targets(const Index* targets, int64_t N);

}  // namespace tinyseek::ops
