// SwiGLU activation: h = silu(g) ⊙ u, silu(g) = g · sigmoid(g), on the outputs of the gate and
// up projections (which are separate tensors: gate_proj, up_proj).
#pragma once
#include <cstdint>

namespace tinyseek::ops {

// h[i] = silu(g[i]) · u[i] for i in [0, n); n = N·F (or N·Fe for an expert's rows).
//   h [n]   g [n]   u [n]
template <class T>
void swiglu_forward(T* h, const T* g, const T* u, int64_t n);

// dg[i] += dh[i] · u[i] · silu'(g[i]),  silu'(g) = σ(g)(1 + g(1 − σ(g)));
// du[i] += dh[i] · silu(g[i]).
// overwrite: dg, du hold anything and get 0 + the terms (the bits of += into zeros), so a
// caller saves zero-filling them.
//   dg [n]   du [n]   dh [n]   g [n]   u [n]
template <class T>
void swiglu_backward(T* dg, T* du, const T* dh, const T* g, const T* u, int64_t n, bool overwrite = false);

}  // namespace tinyseek::ops
