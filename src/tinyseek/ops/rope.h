// Rotary position embedding, the interleaved ("complex multiplication") form of docs/model.md:
// consecutive pairs (x[2i], x[2i+1]) of each dr-vector rotate by angle pos·θ_i,
// θ_i = rope_theta^(−2i/dr), i = 0..dr/2−1.
//
//   y[2i]   = x[2i] cos − x[2i+1] sin
//   y[2i+1] = x[2i] sin + x[2i+1] cos
//
// Vectors are addressed as N tokens × H vectors per token: vector (n, h) starts at
// x + (n·H + h)·ldx. The query's rope part q[:, h, dn:dn+dr] is (x = q + dn, H = H,
// ldx = dn + dr); the shared key k_pe_raw = kv_a[:, dc:dc+dr] is (x = kv_a + dc, H = 1,
// ldx = dc + dr). Position of token n: pos_offset + (n mod T) — its place in its sequence
// of length T (MTP depth k passes its shortened length T − k; decoding passes T = 1 and
// pos_offset = the absolute position).
#pragma once
#include <cstdint>

#include "tinyseek/base/aligned.h"

namespace tinyseek::ops {

// cos/sin of pos·θ_i for pos in [0, max_pos), i in [0, dr/2): [max_pos, dr/2] each.
// Angles are computed in double and rounded once to T.
template <class T>
struct RopeTable {
  int64_t dr = 0, max_pos = 0;
  AlignedBuffer<T> cos, sin;  // [max_pos, dr/2]
};

// Throws if dr is odd or not positive, max_pos < 1 or theta <= 0.
template <class T>
RopeTable<T> make_rope_table(int64_t dr, int64_t max_pos, double rope_theta);

// y = R(pos) x for every vector. Overwrites y; y may alias x (in place, same ld).
//   y [N·H vectors of dr] row stride ldy      x [N·H vectors of dr] row stride ldx
// Throws if a position reaches table.max_pos.
template <class T>
void rope_forward(T* y, const T* x, const RopeTable<T>& table, int64_t N, int64_t H, int64_t T_seq,
                  int64_t pos_offset, int64_t ldy, int64_t ldx);

// dx = R(pos)ᵀ dy (the inverse rotation). OVERWRITES dx (the convention's exception: the
// rope slice of a gradient has no other contributor, and in-place use on dq needs it);
// dx may alias dy.
//   dx [N·H vectors of dr] row stride lddx     dy [N·H vectors of dr] row stride lddy
template <class T>
void rope_backward(T* dx, const T* dy, const RopeTable<T>& table, int64_t N, int64_t H,
                   int64_t T_seq, int64_t pos_offset, int64_t lddx, int64_t lddy);

}  // namespace tinyseek::ops
