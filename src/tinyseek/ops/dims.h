// The dimension vocabulary of tinyseek (DESIGN.md §3, docs/model.md), declared once here and
// used in every shape comment of ops/, model/ and the PyTorch reference (tests/reference/):
//
//   B     batch size (sequences per micro-batch)
//   T     sequence length (time); MTP depth k runs over T−k positions per sequence
//   N     tokens in a call, N = B·T (activations are row-major [N, width], token-major)
//   D     hidden_size (model width)
//   H     num_attention_heads
//   dn    qk_nope_head_dim   (per-head query/key part without RoPE)
//   dr    qk_rope_head_dim   (decoupled RoPE part; the key's rope part is ONE head shared by all)
//   dv    v_head_dim
//   dq    q_lora_rank        (0 = direct q_proj)
//   dc    kv_lora_rank       (latent c_kv width)
//   F     intermediate_size (dense SwiGLU FFN width)
//   Fe    moe_intermediate_size (width of one routed / shared expert)
//   E     n_routed_experts
//   Es    n_shared_experts
//   K     num_experts_per_tok (top-K)
//   V     vocab_size
//   Dmtp  num_nextn_predict_layers (MTP depth)
//
// Linear weights are [out, in] (y = x Wᵀ, the Hugging Face convention).
//
// Op conventions (every header in this folder):
//  - Free functions `<op>_forward` / `<op>_backward`. Arguments: outputs first, then inputs,
//    weights, saved state, then integer dims (and options last). Shapes in comments.
//  - Backward ACCUMULATES (+=) into gradients; zeroing is the caller's job. The documented
//    exceptions (they say so in their header) are the ops whose backward may run in place on
//    its own input gradient: rope_backward and cross_entropy_backward overwrite (=).
//  - Everything backward needs is an explicit output of forward (rstd, lse, indices, gates...).
//  - Element type T is a template parameter, instantiated for float (training) and double (the
//    finite-difference tests); linear is float-only because it goes through gemm::gemm.
//  - Deterministic: no atomics; every reduction uses thread-count-independent chunks combined
//    in a fixed order, so results are bit-identical for any number of threads.
#pragma once
#include <cstdint>

namespace tinyseek::ops {

// Token ids, expert indices and target ids are int32 (vocab and expert counts fit easily).
using Index = int32_t;

}  // namespace tinyseek::ops
