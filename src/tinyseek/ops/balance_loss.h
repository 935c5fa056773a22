// Sequence-wise auxiliary balance loss of DeepSeek-V3 (docs/model.md "Losses"), for one MoE
// layer over B sequences of length T (N = B·T tokens, token n = b·T + t):
//
//   f_{b,i} = E/(K·T) Σ_t 1[i ∈ selected(t)]      (constant: no gradient)
//   P_{b,i} = 1/T Σ_t s_{i,t} / Σ_j s_{j,t}
//   L       = 1/B Σ_b Σ_i f_{b,i} P_{b,i}
//
// The coefficient α is the caller's (pass dloss = α · upstream gradient to backward).
#pragma once
#include <cstdint>

#include "tinyseek/ops/dims.h"

namespace tinyseek::ops {

// Returns L (accumulated in double in a fixed order).
//   f       [B, E]   saved for backward
//   scores  [N, E]   s from router_forward
//   indices [N, K]   selected experts from router_forward
template <class T>
double balance_loss_forward(T* f, const T* scores, const Index* indices, int64_t B, int64_t T_seq,
                            int64_t E, int64_t K);

// dscores[n, j] += dloss/(B·T) · (f_{b,j} − Σ_i f_{b,i} s_{i,t} / S_t) / S_t,  S_t = Σ_i s_{i,t}
//   dscores [N, E] accumulated (then pass it to router_backward)
template <class T>
void balance_loss_backward(T* dscores, double dloss, const T* f, const T* scores, int64_t B,
                           int64_t T_seq, int64_t E);

}  // namespace tinyseek::ops
