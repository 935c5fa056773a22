// AVX-512 kernel of the engine's absorbed attention for one (token, head) pair
// (engine.cc attend_scalar is the portable twin). The same operations per output value as
// the scalar loops, in the same order — each sum runs over its index from +0, each step a
// rounded multiply then a rounded add — but vectorised across independent outputs: the
// scores across 16 positions (ckv / kpe rows transposed in registers), q_c and o_c across
// c, the output across v (W_UV stored transposed). So both give the same bits.
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "tinyseek/gemm/kernel_avx512_inl.h"
#include "tinyseek/infer/attention_kernel.h"

namespace tinyseek::infer::detail {

namespace {

inline __mmask16 mask16(int64_t n) {
  return n >= 16 ? __mmask16(0xFFFF) : (n <= 0 ? __mmask16(0) : static_cast<__mmask16>((1u << n) - 1u));
}

// In-register transpose of 16 x 16 floats.
[[gnu::always_inline]] inline void transpose16(__m512 rf[16]) {
  __m512i r[16];
  for (int i = 0; i < 16; ++i) r[i] = _mm512_castps_si512(rf[i]);
  gemm::avx512::transpose16(r);
  for (int i = 0; i < 16; ++i) rf[i] = _mm512_castsi512_ps(r[i]);
}

// acc[lane i] = Σ_{c < d} q[c] · x[(s0 + i) · d + c] for the `rows` rows from s0, in c
// order from +0 (rows >= rows give 0).
inline __m512 row_dots(const float* q, const float* x, int64_t s0, int64_t rows, int64_t d) {
  __m512 acc = _mm512_setzero_ps();
  for (int64_t c0 = 0; c0 < d; c0 += 16) {
    const __mmask16 m = mask16(d - c0);
    __m512 r[16];
    for (int i = 0; i < 16; ++i)
      r[i] = i < rows ? _mm512_maskz_loadu_ps(m, x + (s0 + i) * d + c0) : _mm512_setzero_ps();
    transpose16(r);
    const int64_t n = std::min<int64_t>(16, d - c0);
    for (int64_t c = 0; c < n; ++c) acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_set1_ps(q[c0 + c]), r[c]));
  }
  return acc;
}

// y[0..d) = Σ_j a[j] · w[j·d ..] over j < J, from +0 in j order (vectorised across d).
inline void axpy_rows(float* y, const float* a, const float* w, int64_t J, int64_t d) {
  for (int64_t c0 = 0; c0 < d; c0 += 16) {
    const __mmask16 m = mask16(d - c0);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t j = 0; j < J; ++j)
      acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_set1_ps(a[j]), _mm512_maskz_loadu_ps(m, w + j * d + c0)));
    _mm512_mask_storeu_ps(y + c0, m, acc);
  }
}

}  // namespace

void attend_avx512(const AttendArgs& x) {
  float* p = x.work;           // [S] scores, then probabilities
  float* qc = p + x.p_len;     // [dc]
  float* oc = qc + x.dc;       // [dc]
  // q_c[c] = Σ_j q_nope[j] · W_UK[j][c]   (the scalar loop: qc[c] += qj * wr[c], j order)
  axpy_rows(qc, x.qn, x.wuk, x.dn, x.dc);
  float mx = -INFINITY;
  for (int64_t s0 = 0; s0 < x.S; s0 += 16) {
    const int64_t rows = std::min<int64_t>(16, x.S - s0);
    const __m512 dot = row_dots(qc, x.ckv, s0, rows, x.dc);
    const __m512 dot_pe = row_dots(x.qpe, x.kpe, s0, rows, x.dr);
    const __m512 sc = _mm512_mul_ps(_mm512_add_ps(dot, dot_pe), _mm512_set1_ps(x.scale));
    _mm512_mask_storeu_ps(p + s0, mask16(rows), sc);
  }
  for (int64_t s = 0; s < x.S; ++s) mx = std::max(mx, p[s]);
  float sum = 0.0f;
  for (int64_t s = 0; s < x.S; ++s) sum += p[s] = std::exp(p[s] - mx);
  // o_c[c] = Σ_s p_s · c_kv[s][c]
  axpy_rows(oc, p, x.ckv, x.S, x.dc);
  const float inv = 1.0f / sum;
  // o[v] = (Σ_c W_UV[v][c] · o_c[c]) · inv, W_UV stored transposed [dc][dv]
  for (int64_t v0 = 0; v0 < x.dv; v0 += 16) {
    const __mmask16 m = mask16(x.dv - v0);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t c = 0; c < x.dc; ++c)
      acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x.wuv_t + c * x.dv + v0), _mm512_set1_ps(oc[c])));
    _mm512_mask_storeu_ps(x.out + v0, m, _mm512_mul_ps(acc, _mm512_set1_ps(inv)));
  }
}

}  // namespace tinyseek::infer::detail
