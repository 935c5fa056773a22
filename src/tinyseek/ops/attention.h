// The attention core of MLA (multi-head latent attention), causal within each sequence:
//
//   score_h(t, s) = (q_nope(t,h)·k_nope(s,h) + q_pe(t,h)·k_pe(s)) / sqrt(dn + dr),   s ≤ t
//   p_h(t, ·)     = softmax_s score_h(t, ·)
//   o(t, h)       = Σ_s p_h(t, s) v(s, h)
//
// Inputs use the layouts the projections produce, so no copies are needed:
//   q   [N, H, dn+dr]  = q_b_proj (or q_proj) output, RoPE already applied to q[:, :, dn:]
//   kv  [N, H, dn+dv]  = kv_b_proj output, per head [k_nope (dn) | v (dv)]
//   k_pe [N, dr]       = RoPE(k_pe_raw), ONE key head shared (broadcast) by all H heads
// N = B·T; token n = b·T + t attends to tokens b·T + s, s ≤ t, of the same sequence.
//
// Flash-style: forward saves only the per-row logsumexp; backward recomputes the
// probabilities p = exp(score − lse) from it (no [T, T] matrix is ever stored).
//
// Implementations: float on CPUs with AVX-512 (simd_path() == Avx512Bf16) runs the blocked
// kernels of attention_avx512.cc (packed tiles, FMA micro-kernels, vectorised exp); double,
// and float on other CPUs, run the reference (one row at a time, std::exp), which is also
// the tests' oracle. Both are deterministic (identical bits for any thread count); they
// differ from each other by rounding only.
#pragma once
#include <cstdint>

namespace tinyseek::ops {

// o   [N, H·dv]   output, overwritten (= o_proj input)
// lse [N, H]      logsumexp of each (token, head) score row, saved for backward
// Parallel over (b, h, block of queries); every row is computed by one thread in a fixed order.
template <class T>
void attention_forward(T* o, T* lse, const T* q, const T* kv, const T* k_pe, int64_t B,
                       int64_t T_seq, int64_t H, int64_t dn, int64_t dr, int64_t dv);

// With dP = do·vᵀ, Δ(t,h) = do(t,h)·o(t,h), dS = p ⊙ (dP − Δ) / sqrt(dn+dr):
//   dq    [N, H, dn+dr]  += dS k      (nope part from k_nope, rope part from k_pe)
//   dkv   [N, H, dn+dv]  += [dSᵀ q_nope | pᵀ do]
//   dk_pe [N, dr]        += Σ_h dSᵀ q_pe   (per-head partials summed in head order 0..H−1)
//   do_   [N, H·dv]   q, kv, k_pe as in forward;   o [N, H·dv], lse [N, H] from forward
// Parallel over (b, h); each task owns its slices of dq and dkv.
template <class T>
void attention_backward(T* dq, T* dkv, T* dk_pe, const T* do_, const T* q, const T* kv,
                        const T* k_pe, const T* o, const T* lse, int64_t B, int64_t T_seq,
                        int64_t H, int64_t dn, int64_t dr, int64_t dv);

// The straightforward implementations (the oracle of the fast path; same contracts).
template <class T>
void attention_forward_reference(T* o, T* lse, const T* q, const T* kv, const T* k_pe, int64_t B,
                                 int64_t T_seq, int64_t H, int64_t dn, int64_t dr, int64_t dv);
template <class T>
void attention_backward_reference(T* dq, T* dkv, T* dk_pe, const T* do_, const T* q, const T* kv,
                                  const T* k_pe, const T* o, const T* lse, int64_t B, int64_t T_seq,
                                  int64_t H, int64_t dn, int64_t dr, int64_t dv);

namespace detail {
// AVX-512 kernels (attention_avx512.cc); call only when simd_path() == Avx512Bf16.
// Backward writes the per-head k_pe gradients to dk_pe_part [B, H, T, dr] (overwritten);
// the caller sums them over heads in order.
void attention_forward_avx512(float* o, float* lse, const float* q, const float* kv, const float* k_pe, int64_t B,
                              int64_t T_seq, int64_t H, int64_t dn, int64_t dr, int64_t dv);
void attention_backward_avx512(float* dq, float* dkv, float* dk_pe_part, const float* do_, const float* q,
                               const float* kv, const float* k_pe, const float* o, const float* lse, int64_t B,
                               int64_t T_seq, int64_t H, int64_t dn, int64_t dr, int64_t dv);
}  // namespace detail

}  // namespace tinyseek::ops
