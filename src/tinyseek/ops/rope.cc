#include "tinyseek/ops/rope.h"

#include <algorithm>
#include <cmath>

#include "tinyseek/base/check.h"
#include "tinyseek/base/parallel.h"

namespace tinyseek::ops {

template <class T>
RopeTable<T> make_rope_table(int64_t dr, int64_t max_pos, double rope_theta) {
  TS_CHECK(dr > 0 && dr % 2 == 0, "RoPE needs a positive even head dim, got qk_rope_head_dim = " << dr,
           "set qk_rope_head_dim to an even number");
  TS_CHECK(max_pos >= 1, "RoPE table needs at least one position, got " << max_pos,
           "check max_position_embeddings and the sequence length");
  TS_CHECK(rope_theta > 0, "rope_theta must be positive, got " << rope_theta, "the usual value is 10000");
  RopeTable<T> t;
  t.dr = dr;
  t.max_pos = max_pos;
  const int64_t half = dr / 2;
  t.cos.resize(static_cast<size_t>(max_pos * half));
  t.sin.resize(static_cast<size_t>(max_pos * half));
  for (int64_t i = 0; i < half; ++i) {
    const double theta_i = std::pow(rope_theta, -2.0 * static_cast<double>(i) / static_cast<double>(dr));
    for (int64_t p = 0; p < max_pos; ++p) {
      const double angle = static_cast<double>(p) * theta_i;
      t.cos[p * half + i] = static_cast<T>(std::cos(angle));
      t.sin[p * half + i] = static_cast<T>(std::sin(angle));
    }
  }
  return t;
}

namespace {

// Rotates every vector by +angle (sign = 1) or −angle (sign = −1, the transpose).
template <class T>
void rotate(T* y, const T* x, const RopeTable<T>& table, int64_t N, int64_t H, int64_t T_seq,
            int64_t pos_offset, int64_t ldy, int64_t ldx, T sign) {
  TS_CHECK(T_seq > 0, "RoPE needs a positive sequence length, got " << T_seq, "this is a caller bug");
  TS_CHECK(N == 0 || (pos_offset >= 0 && pos_offset + std::min(N, T_seq) - 1 < table.max_pos),
           "RoPE position " << pos_offset + std::min(N, T_seq) - 1 << " is beyond the table ("
                            << table.max_pos << " positions)",
           "raise max_position_embeddings or shorten the sequence");
  const int64_t half = table.dr / 2;
  parallel_ranges(N, 16, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const int64_t pos = pos_offset + n % T_seq;
      const T* c = table.cos.data() + pos * half;
      const T* s = table.sin.data() + pos * half;
      for (int64_t h = 0; h < H; ++h) {
        const T* xv = x + (n * H + h) * ldx;
        T* yv = y + (n * H + h) * ldy;
        for (int64_t i = 0; i < half; ++i) {
          const T a = xv[2 * i], b = xv[2 * i + 1];
          const T si = sign * s[i];
          yv[2 * i] = a * c[i] - b * si;
          yv[2 * i + 1] = a * si + b * c[i];
        }
      }
    }
  });
}

}  // namespace

template <class T>
void rope_forward(T* y, const T* x, const RopeTable<T>& table, int64_t N, int64_t H, int64_t T_seq,
                  int64_t pos_offset, int64_t ldy, int64_t ldx) {
  rotate(y, x, table, N, H, T_seq, pos_offset, ldy, ldx, T(1));
}

template <class T>
void rope_backward(T* dx, const T* dy, const RopeTable<T>& table, int64_t N, int64_t H,
                   int64_t T_seq, int64_t pos_offset, int64_t lddx, int64_t lddy) {
  rotate(dx, dy, table, N, H, T_seq, pos_offset, lddx, lddy, T(-1));
}

template struct RopeTable<float>;
template struct RopeTable<double>;
template RopeTable<float> make_rope_table<float>(int64_t, int64_t, double);
template RopeTable<double> make_rope_table<double>(int64_t, int64_t, double);
template void rope_forward<float>(float*, const float*, const RopeTable<float>&, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t);
template void rope_forward<double>(double*, const double*, const RopeTable<double>&, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t);
template void rope_backward<float>(float*, const float*, const RopeTable<float>&, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t);
template void rope_backward<double>(double*, const double*, const RopeTable<double>&, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t);

}  // namespace tinyseek::ops
