// Token ↔ expert routing for DeepSeekMoE. Each token n has K (expert, gate) pairs from the
// router. The pair (n, k) becomes one row of an expert-grouped buffer of N·K rows: expert e
// owns rows [offsets[e], offsets[e+1]), holding its tokens in ascending token order, so
// expert e runs its SwiGLU on one contiguous block of rows. Everything is deterministic:
// the plan is a stable counting sort; each output row is combined over k = 0..K−1 in order.
//
// Forward:   moe_plan → moe_gather_forward (x → xe) → experts (xe → ye) →
//            moe_combine_forward (y += Σ_k g_k ye)
// Backward:  moe_combine_backward (dy → dye, dgates) → experts backward (dye → dxe) →
//            moe_gather_backward (dxe → dx)
#pragma once
#include <cstdint>

#include "tinyseek/ops/dims.h"

namespace tinyseek::ops {

//   offsets   [E+1]   rows of expert e are [offsets[e], offsets[e+1]); offsets[E] = N·K
//   row_token [N·K]   token of each expert-grouped row
//   row_of    [N, K]  expert-grouped row of pair (n, k)
//   indices   [N, K]  from router_forward (distinct experts per token; checked)
void moe_plan(int64_t* offsets, Index* row_token, int64_t* row_of, const Index* indices,
              int64_t N, int64_t K, int64_t E);

// xe[r, :] = x[row_token[r], :]
//   xe [N·K, D]   x [N, D]   row_token [N·K]
template <class T>
void moe_gather_forward(T* xe, const T* x, const Index* row_token, int64_t N, int64_t K,
                        int64_t D);

// dx[n, :] += Σ_{k=0..K−1} dxe[row_of[n, k], :]   (in k order)
//   dx [N, D]   dxe [N·K, D]   row_of [N, K]
template <class T>
void moe_gather_backward(T* dx, const T* dxe, const int64_t* row_of, int64_t N, int64_t K,
                         int64_t D);

// y[n, :] += Σ_{k=0..K−1} gates[n, k] · ye[row_of[n, k], :]   (ACCUMULATES: y holds the
// shared-expert output, or zeros)
//   y [N, D]   ye [N·K, D]   gates [N, K]   row_of [N, K]
template <class T>
void moe_combine_forward(T* y, const T* ye, const T* gates, const int64_t* row_of, int64_t N,
                         int64_t K, int64_t D);

// dye[row_of[n, k], :] += gates[n, k] · dy[n, :]
// dgates[n, k]         += dy[n, :] · ye[row_of[n, k], :]
// overwrite_dye: dye holds anything and gets 0 + the term (the bits of += into zeros; every
// row is written once, row_of being a permutation of the N·K rows), saving the zero fill.
//   dye [N·K, D]   dgates [N, K]   dy [N, D]   ye [N·K, D]   gates [N, K]   row_of [N, K]
template <class T>
void moe_combine_backward(T* dye, T* dgates, const T* dy, const T* ye, const T* gates,
                          const int64_t* row_of, int64_t N, int64_t K, int64_t D, bool overwrite_dye = false);

}  // namespace tinyseek::ops
