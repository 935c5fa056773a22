// Token embedding: a row gather forward, a deterministic scatter-add backward.
#pragma once
#include <cstdint>

#include "tinyseek/ops/dims.h"

namespace tinyseek::ops {

// out[n, :] = table[tokens[n], :]. Throws tinyseek::Error if a token id is outside [0, V).
//   out    [N, D]
//   tokens [N]      token ids (contiguous; gather a strided view into a contiguous array first)
//   table  [V, D]
template <class T>
void embedding_forward(T* out, const Index* tokens, const T* table, int64_t N, int64_t D,
                       int64_t V);

// dtable[v, :] += Σ_{n : tokens[n] = v} dout[n, :], summed in ascending n for every element
// (threads split the D columns, so no two threads touch the same element and no atomics).
//   dtable [V, D]   (accumulated)
//   dout   [N, D]
//   tokens [N]      (already validated by forward)
template <class T>
void embedding_backward(T* dtable, const T* dout, const Index* tokens, int64_t N, int64_t D,
                        int64_t V);

}  // namespace tinyseek::ops
