// AVX-512 kernels of the small-M GEMM (gemm_small_m.h): all M <= 8 rows of C against one
// 32-column panel of B at a time, the panel's k-steps streamed once. The arithmetic of
// every element is the blocked micro-kernel's (gemm_avx512.cc micro): vdpbf16ps (BF16
// pairs) or vfmadd231ps (FP32 units) from +0 per promotion group, then acc = s·P (first
// group) or fma(P, s, acc) with s = sA·sB, or acc + P unscaled; C = alpha·acc (+ beta·C).
#include <immintrin.h>

#include <algorithm>

#include "tinyseek/gemm/gemm_blocked.h"
#include "tinyseek/gemm/kernel_avx512_inl.h"
#include "tinyseek/gemm/gemm_small_m.h"

namespace tinyseek::gemm::detail {

using avx512::step_fma;

namespace {

constexpr int kNV = 2, kNR = 16 * kNV;  // the blocked AVX-512 kernels' panel width

inline __mmask16 mask16(int64_t n) {
  return n >= 16 ? __mmask16(0xFFFF) : (n <= 0 ? __mmask16(0) : static_cast<__mmask16>((1u << n) - 1u));
}


// PB panels at a time: M·2·PB independent accumulation chains hide the latency of
// vdpbf16ps / vfmadd231ps (a row's chain within a group is sequential, as in the blocked
// kernel; with M = 1 and one panel only 2 chains would run).
template <int M, int PB, bool kPairs, bool kScaled>
void panels_kernel(float* C, int64_t ldc, const uint32_t* units, const float* sa, const PackedB& B,
                   const GemmOptions& opt, int64_t j0) {
  const KLayout kl = make_klayout(B.K, B.G, kPairs ? 2 : 1);
  const int64_t S = kl.steps_total(), groups = kl.groups;
  const float* sb_all = kScaled && !B.scales.empty() ? B.scales.data() : nullptr;
  const __m512 ones = _mm512_set1_ps(1.0f);
  const uint32_t* panel = B.panels.data() + j0 * S * kNR;  // PB consecutive panels, S * kNR units apart
  __m512 acc[PB][M][kNV];
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t steps = kl.group_steps(g), off = g * kl.steps_full;
    const uint32_t* b = panel + off * kNR;
    const uint32_t* a = units + off;
    __m512 P[PB][M][kNV];
#pragma GCC unroll 4
    for (int q = 0; q < PB; ++q)
#pragma GCC unroll 8
      for (int m = 0; m < M; ++m)
#pragma GCC unroll 2
        for (int v = 0; v < kNV; ++v) P[q][m][v] = _mm512_setzero_ps();
#pragma GCC unroll 2
    for (int64_t s = 0; s < steps; ++s) {
      __m512i bv[PB][kNV];
#pragma GCC unroll 4
      for (int q = 0; q < PB; ++q)
#pragma GCC unroll 2
        for (int v = 0; v < kNV; ++v) bv[q][v] = _mm512_load_si512(b + q * S * kNR + s * kNR + v * 16);
#pragma GCC unroll 8
      for (int m = 0; m < M; ++m) {
        const uint32_t au = a[m * S + s];
#pragma GCC unroll 4
        for (int q = 0; q < PB; ++q)
#pragma GCC unroll 2
          for (int v = 0; v < kNV; ++v) P[q][m][v] = step_fma<kPairs>(P[q][m][v], au, bv[q][v]);
      }
    }
#pragma GCC unroll 4
    for (int q = 0; q < PB; ++q) {
      if constexpr (kScaled) {
        __m512 sb[kNV];
#pragma GCC unroll 2
        for (int v = 0; v < kNV; ++v)
          sb[v] = sb_all ? _mm512_loadu_ps(sb_all + ((j0 + q) * groups + g) * kNR + v * 16) : ones;
#pragma GCC unroll 8
        for (int m = 0; m < M; ++m) {
          const __m512 sam = _mm512_set1_ps(sa[m * groups + g]);
#pragma GCC unroll 2
          for (int v = 0; v < kNV; ++v) {
            const __m512 sc = _mm512_mul_ps(sam, sb[v]);
            acc[q][m][v] = g == 0 ? _mm512_mul_ps(P[q][m][v], sc) : _mm512_fmadd_ps(P[q][m][v], sc, acc[q][m][v]);
          }
        }
      } else {
#pragma GCC unroll 8
        for (int m = 0; m < M; ++m)
#pragma GCC unroll 2
          for (int v = 0; v < kNV; ++v) acc[q][m][v] = g == 0 ? P[q][m][v] : _mm512_add_ps(P[q][m][v], acc[q][m][v]);
      }
    }
  }
  const __m512 alpha = _mm512_set1_ps(opt.alpha), beta = _mm512_set1_ps(opt.beta);
#pragma GCC unroll 4
  for (int q = 0; q < PB; ++q) {
    __mmask16 cm[kNV];
    const int64_t cols = std::min<int64_t>(kNR, B.N - (j0 + q) * kNR);
#pragma GCC unroll 2
    for (int v = 0; v < kNV; ++v) cm[v] = mask16(cols - v * 16);
#pragma GCC unroll 8
    for (int m = 0; m < M; ++m) {
      float* c = C + m * ldc + (j0 + q) * kNR;
#pragma GCC unroll 2
      for (int v = 0; v < kNV; ++v) {
        __m512 r = opt.alpha == 1.0f ? acc[q][m][v] : _mm512_mul_ps(alpha, acc[q][m][v]);
        if (opt.beta != 0.0f) r = _mm512_add_ps(r, _mm512_mul_ps(beta, _mm512_maskz_loadu_ps(cm[v], c + v * 16)));
        _mm512_mask_storeu_ps(c + v * 16, cm[v], r);
      }
    }
  }
}

template <int M, bool kPairs, bool kScaled>
void panel_range(float* C, int64_t ldc, const uint32_t* units, const float* sa, const PackedB& B,
                 const GemmOptions& opt, int64_t p0, int64_t p1) {
  constexpr int PB = M == 1 ? 4 : (M == 2 ? 2 : 1);
  int64_t j = p0;
  for (; j + PB <= p1; j += PB) panels_kernel<M, PB, kPairs, kScaled>(C, ldc, units, sa, B, opt, j);
  // One row: the 1-3 panels left (N = 48, 96: expert and kv_a widths) together as well.
  if constexpr (M == 1) {
    if (p1 - j == 3) return panels_kernel<1, 3, kPairs, kScaled>(C, ldc, units, sa, B, opt, j);
    if (p1 - j == 2) return panels_kernel<1, 2, kPairs, kScaled>(C, ldc, units, sa, B, opt, j);
  }
  for (; j < p1; ++j) panels_kernel<M, 1, kPairs, kScaled>(C, ldc, units, sa, B, opt, j);
}

template <int M>
void dispatch(float* C, int64_t ldc, const uint32_t* units, const float* sa, const PackedB& B, const GemmOptions& opt,
              int64_t p0, int64_t p1) {
  const bool scaled = sa != nullptr;
  if (B.bf16_pairs) {
    if (scaled) panel_range<M, true, true>(C, ldc, units, sa, B, opt, p0, p1);
    else panel_range<M, true, false>(C, ldc, units, sa, B, opt, p0, p1);
  } else {
    if (scaled) panel_range<M, false, true>(C, ldc, units, sa, B, opt, p0, p1);
    else panel_range<M, false, false>(C, ldc, units, sa, B, opt, p0, p1);
  }
}

}  // namespace

void small_m_avx512(float* C, int64_t ldc, int64_t M, const uint32_t* units, const float* sa, const PackedB& B,
                    const GemmOptions& opt, int64_t panel0, int64_t panel1) {
  static_assert(kSmallMaxM == 8, "one kernel per row count below");
  switch (M) {
    case 1: return dispatch<1>(C, ldc, units, sa, B, opt, panel0, panel1);
    case 2: return dispatch<2>(C, ldc, units, sa, B, opt, panel0, panel1);
    case 3: return dispatch<3>(C, ldc, units, sa, B, opt, panel0, panel1);
    case 4: return dispatch<4>(C, ldc, units, sa, B, opt, panel0, panel1);
    case 5: return dispatch<5>(C, ldc, units, sa, B, opt, panel0, panel1);
    case 6: return dispatch<6>(C, ldc, units, sa, B, opt, panel0, panel1);
    case 7: return dispatch<7>(C, ldc, units, sa, B, opt, panel0, panel1);
    default: return dispatch<8>(C, ldc, units, sa, B, opt, panel0, panel1);
  }
}

}  // namespace tinyseek::gemm::detail
