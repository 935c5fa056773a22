// AVX-512 attention core (attention.h semantics), blocked: every product is a small
// "broadcast A × vector rows of B" matrix product on packed, zero-padded operands, and the
// softmax uses a vectorised exp. Compiled with AVX-512 flags; called only when
// simd_path() says the CPU has them.
//
// Forward, per task (sequence b, head h, block of kBlock queries [t0, t1)):
//   KT [dqk][Tk]  keys k = [k_nope | k_pe] transposed, Tk = t1 rounded up to 16 (zeros)
//   S  = Q KT · scale, masked s > t, softmax with the row max, O = (P V) / l, lse = m + log l
// Backward, per task (b, h), query blocks in order (dK, dV accumulate over blocks):
//   P = exp(S − lse), dP = dO Vᵀ, dS = P (dP − Δ) scale,
//   dQ += dS K,  dK += dSᵀ Q,  dV += Pᵀ dO     (dK's rope part: a per-head partial)
// Each task runs on one thread in a fixed order: identical bits for any thread count.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "tinyseek/base/parallel.h"
#include "tinyseek/ops/attention.h"
#include "tinyseek/ops/kernels.h"
#include "tinyseek/ops/vexp_avx512.h"

namespace tinyseek::ops::detail {

namespace {

constexpr int64_t kBlock = 64;  // queries per block (the S / P / dS tiles are kBlock × Tk)
constexpr int kW = 16;          // floats per zmm

int64_t pad16(int64_t n) { return (n + kW - 1) / kW * kW; }

// C[r][0:16·NV] (= or +=) Σ_k A[r·lda + k] · B[k·ldb + 0:16·NV] for r < R, k < K.
// A is read as broadcast scalars, B as aligned vector rows. R ≤ 4, NV ≤ 4: 16 accumulators.
template <int R, int NV>
inline void micro(float* C, int64_t ldc, const float* A, int64_t lda, const float* B, int64_t ldb, int64_t K,
                  bool accumulate) {
  __m512 acc[R][NV];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v)
      acc[r][v] = accumulate ? _mm512_load_ps(C + r * ldc + v * kW) : _mm512_setzero_ps();
  for (int64_t k = 0; k < K; ++k) {
    __m512 b[NV];
    for (int v = 0; v < NV; ++v) b[v] = _mm512_load_ps(B + k * ldb + v * kW);
    for (int r = 0; r < R; ++r) {
      const __m512 a = _mm512_set1_ps(A[r * lda + k]);
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_fmadd_ps(a, b[v], acc[r][v]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NV; ++v) _mm512_store_ps(C + r * ldc + v * kW, acc[r][v]);
}

template <int R>
inline void micro_rows(float* C, int64_t ldc, const float* A, int64_t lda, const float* B, int64_t ldb, int64_t K,
                       int64_t nv, bool accumulate) {
  switch (nv) {
    case 1: micro<R, 1>(C, ldc, A, lda, B, ldb, K, accumulate); break;
    case 2: micro<R, 2>(C, ldc, A, lda, B, ldb, K, accumulate); break;
    case 3: micro<R, 3>(C, ldc, A, lda, B, ldb, K, accumulate); break;
    default: micro<R, 4>(C, ldc, A, lda, B, ldb, K, accumulate); break;
  }
}

// C [M, Ncols] (= or +=) A [M, K] · B [K, Ncols]; Ncols a multiple of 16, B and C 64-byte
// aligned with ldb, ldc multiples of 16. Each element is one FMA chain over k in order.
void small_gemm(float* C, int64_t ldc, const float* A, int64_t lda, const float* B, int64_t ldb, int64_t M,
                int64_t K, int64_t Ncols, bool accumulate) {
  for (int64_t c0 = 0; c0 < Ncols; c0 += 4 * kW) {
    const int64_t nv = std::min<int64_t>(4, (Ncols - c0) / kW);
    int64_t m = 0;
    for (; m + 4 <= M; m += 4) micro_rows<4>(C + m * ldc + c0, ldc, A + m * lda, lda, B + c0, ldb, K, nv, accumulate);
    const float* a = A + m * lda;
    float* c = C + m * ldc + c0;
    switch (M - m) {
      case 3: micro_rows<3>(c, ldc, a, lda, B + c0, ldb, K, nv, accumulate); break;
      case 2: micro_rows<2>(c, ldc, a, lda, B + c0, ldb, K, nv, accumulate); break;
      case 1: micro_rows<1>(c, ldc, a, lda, B + c0, ldb, K, nv, accumulate); break;
      default: break;
    }
  }
}

struct Dims {
  int64_t T, H, dn, dr, dv, dqk;
  int64_t q_row() const { return H * dqk; }
  int64_t kv_row() const { return H * (dn + dv); }
  int64_t o_row() const { return H * dv; }
};

// KT [dqk][ld] = [k_nope | k_pe] of keys [0, n) of (b, h), transposed; columns n..ld zero.
void pack_keys_t(float* kt, int64_t ld, const float* kv, const float* k_pe, const Dims& d, int64_t base, int64_t h,
                 int64_t n) {
  std::memset(kt, 0, sizeof(float) * static_cast<size_t>(d.dqk * ld));
  for (int64_t s = 0; s < n; ++s) {
    const float* kn = kv + (base + s) * d.kv_row() + h * (d.dn + d.dv);
    const float* kp = k_pe + (base + s) * d.dr;
    for (int64_t j = 0; j < d.dn; ++j) kt[j * ld + s] = kn[j];
    for (int64_t j = 0; j < d.dr; ++j) kt[(d.dn + j) * ld + s] = kp[j];
  }
}

// Rows [0, n) of `width` floats from src (row stride `stride`) into dst [n][ld], zero padded.
void pack_rows(float* dst, int64_t ld, const float* src, int64_t stride, int64_t width, int64_t n) {
  for (int64_t s = 0; s < n; ++s) {
    std::memcpy(dst + s * ld, src + s * stride, sizeof(float) * static_cast<size_t>(width));
    std::memset(dst + s * ld + width, 0, sizeof(float) * static_cast<size_t>(ld - width));
  }
}

// dst [cols][ldd] = srcᵀ for src [rows][lds], rows ≤ ldd (the rest of each dst row zero).
void transpose(float* dst, int64_t ldd, const float* src, int64_t lds, int64_t rows, int64_t cols) {
  for (int64_t c = 0; c < cols; ++c) {
    float* out = dst + c * ldd;
    for (int64_t r = 0; r < rows; ++r) out[r] = src[r * lds + c];
    for (int64_t r = rows; r < ldd; ++r) out[r] = 0.0f;
  }
}

// Scales row `t` (local row i) of S by `scale`, masks keys s > t to exact zeros after the
// exp; returns the row max over s <= t (for the forward softmax).
inline float scaled_row_max(float* s_row, int64_t valid, int64_t ld, float scale) {
  const __m512 vs = _mm512_set1_ps(scale);
  __m512 m = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (int64_t s = 0; s < ld; s += kW) {
    const __mmask16 k = valid - s >= kW ? __mmask16(0xFFFF) : valid > s ? __mmask16((1u << (valid - s)) - 1) : 0;
    const __m512 x = _mm512_mul_ps(_mm512_load_ps(s_row + s), vs);
    _mm512_store_ps(s_row + s, x);
    m = _mm512_mask_max_ps(m, k, m, x);
  }
  return _mm512_reduce_max_ps(m);
}

// row[s] = exp(row[s] − sub) for s < valid, 0 beyond (up to ld); returns Σ in a fixed
// lane order (16 lane sums, then a fixed tree).
inline float exp_row(float* row, int64_t valid, int64_t ld, float sub) {
  const __m512 vsub = _mm512_set1_ps(sub);
  __m512 sum = _mm512_setzero_ps();
  for (int64_t s = 0; s < ld; s += kW) {
    const __mmask16 k = valid - s >= kW ? __mmask16(0xFFFF) : valid > s ? __mmask16((1u << (valid - s)) - 1) : 0;
    const __m512 p = _mm512_maskz_mov_ps(k, exp_ps(_mm512_sub_ps(_mm512_load_ps(row + s), vsub)));
    _mm512_store_ps(row + s, p);
    sum = _mm512_add_ps(sum, p);
  }
  alignas(64) float lanes[kW];
  _mm512_store_ps(lanes, sum);
  return combine_lanes(lanes);
}

}  // namespace

void attention_forward_avx512(float* o, float* lse, const float* q, const float* kv, const float* k_pe, int64_t B,
                              int64_t T_seq, int64_t H, int64_t dn, int64_t dr, int64_t dv) {
  const Dims d{T_seq, H, dn, dr, dv, dn + dr};
  const float scale = 1.0f / std::sqrt(static_cast<float>(d.dqk));
  const int64_t blocks = (T_seq + kBlock - 1) / kBlock;
  const int64_t Tmax = pad16(T_seq), dvp = pad16(dv);
  // Per thread: KT [dqk][Tmax], V [Tmax][dvp], S/P [kBlock][Tmax], O [kBlock][dvp].
  const size_t per_thread = static_cast<size_t>(d.dqk * Tmax + Tmax * dvp + kBlock * Tmax + kBlock * dvp);
  ThreadSlices<float> slices(2, per_thread);
  // Later blocks have more keys: interleave so both threads get a similar share.
  parallel_for(B * H * blocks, [&](int64_t task) {
    const int64_t blk = task % blocks, bh = task / blocks, h = bh % H, b = bh / H;
    const int64_t base = b * T_seq, t0 = blk * kBlock, t1 = std::min(T_seq, t0 + kBlock), rows = t1 - t0;
    const int64_t Tk = pad16(t1);  // keys [0, t1), padded
    float* kt = slices.slice();
    float* vp = kt + d.dqk * Tmax;
    float* sp = vp + Tmax * dvp;
    float* op = sp + kBlock * Tmax;
    pack_keys_t(kt, Tk, kv, k_pe, d, base, h, t1);
    pack_rows(vp, dvp, kv + base * d.kv_row() + h * (dn + dv) + dn, d.kv_row(), dv, t1);
    std::memset(vp + t1 * dvp, 0, sizeof(float) * static_cast<size_t>((Tk - t1) * dvp));
    // S [rows][Tk] = Q_blk KT
    small_gemm(sp, Tk, q + (base + t0) * d.q_row() + h * d.dqk, d.q_row(), kt, Tk, rows, d.dqk, Tk, false);
    float inv_l[kBlock];
    for (int64_t i = 0; i < rows; ++i) {
      const int64_t t = t0 + i;
      float* row = sp + i * Tk;
      const float m = scaled_row_max(row, t + 1, Tk, scale);
      const float l = exp_row(row, t + 1, Tk, m);
      inv_l[i] = 1.0f / l;
      lse[(base + t) * H + h] = m + std::log(l);
    }
    // O_blk = P V / l
    small_gemm(op, dvp, sp, Tk, vp, dvp, rows, t1, dvp, false);
    for (int64_t i = 0; i < rows; ++i) {
      float* out = o + (base + t0 + i) * d.o_row() + h * dv;
      const float* acc = op + i * dvp;
      for (int64_t j = 0; j < dv; ++j) out[j] = acc[j] * inv_l[i];
    }
  });
}

void attention_backward_avx512(float* dq, float* dkv, float* dk_pe_part, const float* do_, const float* q,
                               const float* kv, const float* k_pe, const float* o, const float* lse, int64_t B,
                               int64_t T_seq, int64_t H, int64_t dn, int64_t dr, int64_t dv) {
  const Dims d{T_seq, H, dn, dr, dv, dn + dr};
  const float scale = 1.0f / std::sqrt(static_cast<float>(d.dqk));
  const int64_t Tp = pad16(T_seq), dvp = pad16(dv), dqkp = pad16(d.dqk);
  // Per thread: KT [dqk][Tp], VT [dv][Tp], K [Tp][dqkp], dK [Tp][dqkp], dV [Tp][dvp],
  // P, dS [kBlock][Tp], Pᵀ, dSᵀ [Tp][kBlock], Q_blk [kBlock][dqkp], dO_blk [kBlock][dvp],
  // dQ_blk [kBlock][dqkp].
  const size_t per_thread = static_cast<size_t>(d.dqk * Tp + dv * Tp + 2 * Tp * dqkp + Tp * dvp + 4 * kBlock * Tp +
                                                2 * kBlock * dqkp + kBlock * dvp);
  ThreadSlices<float> slices(2, per_thread);
  parallel_for(B * H, [&](int64_t task) {
    const int64_t h = task % H, b = task / H, base = b * T_seq;
    float* kt = slices.slice();
    float* vt = kt + d.dqk * Tp;
    float* kp = vt + dv * Tp;
    float* dkp = kp + Tp * dqkp;
    float* dvacc = dkp + Tp * dqkp;
    float* p = dvacc + Tp * dvp;
    float* ds = p + kBlock * Tp;
    float* pt = ds + kBlock * Tp;
    float* dst = pt + Tp * kBlock;
    float* qb = dst + Tp * kBlock;
    float* dob = qb + kBlock * dqkp;
    float* dqb = dob + kBlock * dvp;
    const float* v0 = kv + base * d.kv_row() + h * (dn + dv) + dn;
    pack_keys_t(kt, Tp, kv, k_pe, d, base, h, T_seq);
    std::memset(vt, 0, sizeof(float) * static_cast<size_t>(dv * Tp));
    for (int64_t s = 0; s < T_seq; ++s)
      for (int64_t j = 0; j < dv; ++j) vt[j * Tp + s] = v0[s * d.kv_row() + j];
    for (int64_t s = 0; s < T_seq; ++s) {
      float* row = kp + s * dqkp;
      std::memcpy(row, kv + (base + s) * d.kv_row() + h * (dn + dv), sizeof(float) * static_cast<size_t>(dn));
      std::memcpy(row + dn, k_pe + (base + s) * dr, sizeof(float) * static_cast<size_t>(dr));
      std::memset(row + d.dqk, 0, sizeof(float) * static_cast<size_t>(dqkp - d.dqk));
    }
    std::memset(dkp, 0, sizeof(float) * static_cast<size_t>(Tp * dqkp));
    std::memset(dvacc, 0, sizeof(float) * static_cast<size_t>(Tp * dvp));

    for (int64_t t0 = 0; t0 < T_seq; t0 += kBlock) {
      const int64_t t1 = std::min(T_seq, t0 + kBlock), rows = t1 - t0, Tk = pad16(t1);
      pack_rows(qb, dqkp, q + (base + t0) * d.q_row() + h * d.dqk, d.q_row(), d.dqk, rows);
      pack_rows(dob, dvp, do_ + (base + t0) * d.o_row() + h * dv, d.o_row(), dv, rows);
      // P = exp(S·scale − lse), S = Q_blk Kᵀ over keys [0, t1)
      small_gemm(p, Tk, qb, dqkp, kt, Tp, rows, d.dqk, Tk, false);
      // dP = dO_blk Vᵀ
      small_gemm(ds, Tk, dob, dvp, vt, Tp, rows, dv, Tk, false);
      for (int64_t i = 0; i < rows; ++i) {
        const int64_t t = t0 + i, nt = base + t;
        float* prow = p + i * Tk;
        float* drow = ds + i * Tk;
        const float delta = dot(dob + i * dvp, o + nt * d.o_row() + h * dv, dv);
        const __m512 vs = _mm512_set1_ps(scale), vl = _mm512_set1_ps(lse[nt * H + h]),
                     vd = _mm512_set1_ps(delta);
        for (int64_t s = 0; s < Tk; s += kW) {
          const __mmask16 k = t + 1 - s >= kW ? __mmask16(0xFFFF) : t + 1 > s ? __mmask16((1u << (t + 1 - s)) - 1) : 0;
          const __m512 pv =
              _mm512_maskz_mov_ps(k, exp_ps(_mm512_sub_ps(_mm512_mul_ps(_mm512_load_ps(prow + s), vs), vl)));
          _mm512_store_ps(prow + s, pv);
          const __m512 dsv = _mm512_mul_ps(_mm512_mul_ps(pv, _mm512_sub_ps(_mm512_load_ps(drow + s), vd)), vs);
          _mm512_store_ps(drow + s, dsv);
        }
      }
      // dQ_blk = dS K  (keys [0, t1))
      small_gemm(dqb, dqkp, ds, Tk, kp, dqkp, rows, t1, dqkp, false);
      for (int64_t i = 0; i < rows; ++i) {
        float* out = dq + (base + t0 + i) * d.q_row() + h * d.dqk;
        for (int64_t j = 0; j < d.dqk; ++j) out[j] += dqb[i * dqkp + j];
      }
      // dK[0:t1] += dSᵀ Q_blk,  dV[0:t1] += Pᵀ dO_blk
      transpose(dst, kBlock, ds, Tk, rows, t1);
      transpose(pt, kBlock, p, Tk, rows, t1);
      small_gemm(dkp, dqkp, dst, kBlock, qb, dqkp, t1, rows, dqkp, true);
      small_gemm(dvacc, dvp, pt, kBlock, dob, dvp, t1, rows, dvp, true);
    }
    float* kpe_part = dk_pe_part + task * T_seq * dr;
    for (int64_t s = 0; s < T_seq; ++s) {
      float* dk = dkv + (base + s) * d.kv_row() + h * (dn + dv);
      const float* src = dkp + s * dqkp;
      for (int64_t j = 0; j < dn; ++j) dk[j] += src[j];
      for (int64_t j = 0; j < dr; ++j) kpe_part[s * dr + j] = src[dn + j];
      const float* sv = dvacc + s * dvp;
      for (int64_t j = 0; j < dv; ++j) dk[dn + j] += sv[j];
    }
  });
}

}  // namespace tinyseek::ops::detail
