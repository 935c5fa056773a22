// DeepSeek-V3 MoE router (docs/model.md "FFN and DeepSeekMoE"), on logits = u W_gateᵀ
// (that GEMM goes through ops/linear in FP32):
//
//   s      = sigmoid(logits)                                   [N, E]
//   choice = s + bias                  (bias = e_score_correction_bias; selection only)
//   n_group > 1: group score = sum of the top-2 choice in each group of E/n_group consecutive
//           experts; the topk_group best groups are kept, the other experts get −inf
//   top-K  = the K largest choice among kept experts, ties broken by the lower index;
//            indices are listed in selection order (descending choice)
//   gates  g_k = s_{i_k} / (Σ_k' s_{i_k'} + 1e-20) · routed_scaling_factor   (norm_topk_prob)
//            g_k = s_{i_k} · routed_scaling_factor                              (otherwise)
//
// Gradients flow into s through the gates (and, via the balance loss, through s directly);
// never through the selection and never into the bias.
#pragma once
#include <cstdint>

#include "tinyseek/ops/dims.h"

namespace tinyseek::ops {

struct RouterConfig {
  int64_t E = 0;                      // n_routed_experts
  int64_t K = 0;                      // num_experts_per_tok
  int64_t n_group = 1;                // groups of E/n_group consecutive experts (1 = no groups)
  int64_t topk_group = 1;             // groups kept per token when n_group > 1
  bool norm_topk_prob = true;
  double routed_scaling_factor = 1.0;
};

// Throws tinyseek::Error naming the rule if the config is inconsistent (K > E, n_group not
// dividing E, E/n_group < 2 with groups, topk_group outside [1, n_group], kept experts < K).
void validate(const RouterConfig& cfg);

//   indices [N, K]   selected experts, selection order
//   gates   [N, K]   gate values g_k (the bias never enters them)
//   scores  [N, E]   s = sigmoid(logits), saved for backward and the balance loss
//   load    [E]      OVERWRITTEN with the number of tokens selecting each expert
//   logits  [N, E]
//   bias    [E]      e_score_correction_bias, or null for none
template <class T>
void router_forward(Index* indices, T* gates, T* scores, int32_t* load, const T* logits,
                    const T* bias, int64_t N, const RouterConfig& cfg);

// dlogits[n, i] += s(1 − s) · (dscores[n, i] + Σ_k dgates[n, k] ∂g_k/∂s_i)
//   dlogits [N, E]   accumulated
//   dgates  [N, K]   gradient of the gate values
//   dscores [N, E]   extra gradient into s (the balance loss), or null
//   indices [N, K], scores [N, E] from forward
template <class T>
void router_backward(T* dlogits, const T* dgates, const T* dscores, const Index* indices,
                     const T* scores, int64_t N, const RouterConfig& cfg);

}  // namespace tinyseek::ops
