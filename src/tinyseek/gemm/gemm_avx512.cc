// AVX-512 kernels of the blocked GEMM (Backend::kAvx512): packing with exact FP8/BF16
// widening, and two micro-kernels over 8 x 32 tiles of C (16 zmm accumulators):
//   BF16  vdpbf16ps, one BF16 k-pair per unit (both operands BF16 or FP8)
//   FP32  vfmadd231ps, one FP32 value per unit (either operand F32)
// Why 8 x 32: measured on Zen 5, vdpbf16ps has ~8 cycles latency at 2 per cycle, so 16
// independent accumulators saturate it (12 reach 92%); 8 x 32 needs 2 B loads and 8
// broadcasts per step (1.25 loads per cycle) and leaves 16 registers free, and its B panel
// of 256 k-steps is 32 KiB (L1 is 48 KiB). 6 x 64, 8 x 48 and 12 x 32 measured no faster.
// Layouts and the driver: gemm_blocked.h. Only called after simd_path() / the backend
// check said the CPU has AVX-512 with BF16.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "tinyseek/gemm/gemm_blocked.h"
#include "tinyseek/numerics/fp8.h"

namespace tinyseek::gemm::detail {

namespace {

constexpr int kMR = 8, kNV = 2, kNR = 16 * kNV;

// ---------------------------------------------------------------------------------------
// Element conversion. FP8 -> BF16 is a lookup of the code's 7-bit magnitude in a
// 128-entry table (two vpermi2w over 64 entries each) with the sign bit OR-ed back in:
// exact, since every FP8 value (and NaN) has a BF16 representation.

struct Fp8Table {
  __m512i t[4];  // BF16 bits of the magnitudes 0..127, 32 per register
};

Fp8Table make_table(numerics::Fp8Format f) {
  alignas(64) uint16_t w[128];
  const float* dec = numerics::fp8_decode_table(f);
  for (int i = 0; i < 128; ++i) {
    uint32_t bits;
    std::memcpy(&bits, &dec[i], 4);
    w[i] = static_cast<uint16_t>(bits >> 16);  // exact: FP8 values have <= 3 mantissa bits
  }
  Fp8Table t;
  for (int r = 0; r < 4; ++r) t.t[r] = _mm512_load_si512(w + 32 * r);
  return t;
}

const Fp8Table* fp8_table(DType d) {
  static const Fp8Table e4m3 = make_table(numerics::Fp8Format::E4M3);
  static const Fp8Table e5m2 = make_table(numerics::Fp8Format::E5M2);
  if (d == DType::E4M3) return &e4m3;
  if (d == DType::E5M2) return &e5m2;
  return nullptr;
}

inline __m512i fp8x32_to_bf16(__m256i codes, const Fp8Table& T) {
  const __m512i w = _mm512_cvtepu8_epi16(codes);
  const __m512i mag = _mm512_and_si512(w, _mm512_set1_epi16(0x7F));
  const __m512i lo = _mm512_permutex2var_epi16(T.t[0], mag, T.t[1]);
  const __m512i hi = _mm512_permutex2var_epi16(T.t[2], mag, T.t[3]);
  const __m512i v = _mm512_mask_mov_epi16(lo, _mm512_test_epi16_mask(mag, _mm512_set1_epi16(0x40)), hi);
  return _mm512_or_si512(v, _mm512_slli_epi16(_mm512_and_si512(w, _mm512_set1_epi16(0x80)), 8));
}

inline __mmask32 mask32(int64_t n) {
  return n >= 32 ? ~__mmask32{0} : (n <= 0 ? __mmask32{0} : static_cast<__mmask32>((1u << n) - 1u));
}
inline __mmask16 mask16(int64_t n) {
  return n >= 16 ? __mmask16(0xFFFF) : (n <= 0 ? __mmask16(0) : static_cast<__mmask16>((1u << n) - 1u));
}

// Software prefetch of a run of bytes (packing reads short runs of long rows: +9% BF16 and
// +14% FP8 on 4096x512x2048 over relying on the hardware prefetcher).
inline void prefetch_bytes(const uint8_t* p, int64_t bytes) {
  for (int64_t o = 0; o < bytes; o += 64) _mm_prefetch(reinterpret_cast<const char*>(p + o), _MM_HINT_T0);
}

// A stored operand's rows, as raw bytes.
struct Src {
  const uint8_t* data;
  int64_t ld;  // elements
  int esize;
  DType dtype;
  const Fp8Table* table;

  explicit Src(const Matrix& X)
      : data(static_cast<const uint8_t*>(X.data)), ld(X.ld),
        esize(X.dtype == DType::F32 ? 4 : (X.dtype == DType::BF16 ? 2 : 1)), dtype(X.dtype), table(fp8_table(X.dtype)) {}
  const uint8_t* at(int64_t r, int64_t c) const { return data + (r * ld + c) * esize; }

  // n (<= 32, may be <= 0) consecutive elements from p as 32 BF16 words, zero beyond n.
  // BF16 or FP8 only.
  __m512i bf16x32(const uint8_t* p, int64_t n) const {
    if (dtype == DType::BF16) return _mm512_maskz_loadu_epi16(mask32(n), p);
    return fp8x32_to_bf16(_mm256_maskz_loadu_epi8(mask32(n), p), *table);
  }
  // n (<= 16) consecutive elements from p as 16 BF16 words, zero beyond n.
  __m256i bf16x16(const uint8_t* p, int64_t n) const {
    if (dtype == DType::BF16) return _mm256_maskz_loadu_epi16(mask16(n), p);
    return _mm512_castsi512_si256(fp8x32_to_bf16(_mm256_castsi128_si256(_mm_maskz_loadu_epi8(mask16(n), p)), *table));
  }
  // n (<= 16) consecutive elements from p as 16 FP32 values (their bits), zero beyond n.
  __m512i f32x16(const uint8_t* p, int64_t n) const {
    if (dtype == DType::F32) return _mm512_maskz_loadu_epi32(mask16(n), p);
    return _mm512_slli_epi32(_mm512_cvtepu16_epi32(bf16x16(p, n)), 16);
  }
};

// dst[0 .. units) = a run of `len` consecutive elements from p, `width` per unit (1: FP32,
// 2: BF16 pairs), zero-padded.
void run_to_units(uint32_t* dst, const Src& src, const uint8_t* p, int64_t len, int64_t units, int width) {
  if (width == 2) {
    uint16_t* d = reinterpret_cast<uint16_t*>(dst);
    const int64_t words = 2 * units;
    for (int64_t i = 0; i < words; i += 32)
      _mm512_mask_storeu_epi16(d + i, mask32(words - i), src.bf16x32(p + i * src.esize, len - i));
  } else {
    for (int64_t i = 0; i < units; i += 16)
      _mm512_mask_storeu_epi32(dst + i, mask16(units - i), src.f32x16(p + i * src.esize, len - i));
  }
}

// 16 units across stored columns c0.. c0+n (n <= 16) from stored row r (and r+1 for pairs,
// if `second`): the unit for a k-step of op(X) when k runs down the stored rows.
inline __m512i units_across(const Src& src, int64_t r, int64_t c0, int64_t n, int width, bool second) {
  if (width == 1) return src.f32x16(src.at(r, c0), n);
  const __m512i lo = _mm512_cvtepu16_epi32(src.bf16x16(src.at(r, c0), n));
  if (!second) return lo;
  const __m512i hi = _mm512_cvtepu16_epi32(src.bf16x16(src.at(r + 1, c0), n));
  return _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16));
}

// In-register transpose of a 16 x 16 block of 32-bit units.
inline void transpose16(__m512i r[16]) {
  __m512i t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  __m512i u[16];  // u[4q + e]: rows 4q..4q+3, element e of each 128-bit lane
  for (int q = 0; q < 4; ++q) {
    u[4 * q + 0] = _mm512_unpacklo_epi64(t[4 * q], t[4 * q + 2]);
    u[4 * q + 1] = _mm512_unpackhi_epi64(t[4 * q], t[4 * q + 2]);
    u[4 * q + 2] = _mm512_unpacklo_epi64(t[4 * q + 1], t[4 * q + 3]);
    u[4 * q + 3] = _mm512_unpackhi_epi64(t[4 * q + 1], t[4 * q + 3]);
  }
  for (int e = 0; e < 4; ++e) {
    const __m512i v_lo = _mm512_shuffle_i32x4(u[e], u[4 + e], 0x88), v_hi = _mm512_shuffle_i32x4(u[e], u[4 + e], 0xDD);
    const __m512i w_lo = _mm512_shuffle_i32x4(u[8 + e], u[12 + e], 0x88);
    const __m512i w_hi = _mm512_shuffle_i32x4(u[8 + e], u[12 + e], 0xDD);
    r[e] = _mm512_shuffle_i32x4(v_lo, w_lo, 0x88);
    r[8 + e] = _mm512_shuffle_i32x4(v_lo, w_lo, 0xDD);
    r[4 + e] = _mm512_shuffle_i32x4(v_hi, w_hi, 0x88);
    r[12 + e] = _mm512_shuffle_i32x4(v_hi, w_hi, 0xDD);
  }
}

// ---------------------------------------------------------------------------------------
// Packing B: panels [N/NR][steps_total][NR].

// op(B) = B stored [K, N]: each k-step reads one (FP32) or two (pairs) stored rows.
void pack_b_rows(uint32_t* units, const Src& src, const KLayout& kl, int64_t N, int64_t j) {
  uint32_t* dst = units + j * kl.steps_total() * kNR;
  for (int64_t g = 0; g < kl.groups; ++g) {
    const int64_t len = kl.group_len(g), steps = kl.group_steps(g);
    for (int64_t s = 0; s < steps; ++s) {
      const int64_t k = g * kl.G + s * kl.width;
      const bool second = kl.width == 2 && s * 2 + 1 < len;
      uint32_t* d = dst + (g * kl.steps_full + s) * kNR;
      for (int h = 0; h < kNV; ++h) {
        const int64_t n0 = j * kNR + h * 16;
        _mm512_store_si512(d + h * 16, units_across(src, k, n0, N - n0, static_cast<int>(kl.width), second));
      }
    }
  }
}

// op(B) = Bᵀ, B stored [N, K]: each panel row's K run is widened into a 16-row scratch,
// then 16 x 16 unit blocks are transposed into the panel.
void pack_b_transposed(uint32_t* units, const Src& src, const KLayout& kl, int64_t N, int64_t j, uint32_t* scratch,
                       int64_t chunk_groups) {
  const int64_t steps_total = kl.steps_total();
  uint32_t* dst = units + j * steps_total * kNR;
  for (int64_t g0 = 0; g0 < kl.groups; g0 += chunk_groups) {
    const int64_t ng = std::min(chunk_groups, kl.groups - g0);
    const int64_t S = (ng - 1) * kl.steps_full + kl.group_steps(g0 + ng - 1);
    const int64_t S16 = (S + 15) / 16 * 16;
    for (int h = 0; h < kNV; ++h) {
      for (int i = 0; i < 16; ++i) {
        const int64_t n = j * kNR + h * 16 + i;
        uint32_t* row = scratch + i * S16;
        if (n >= N) {
          std::fill(row, row + S16, 0u);
          continue;
        }
        if (i + 4 < 16 && n + 4 < N)
          prefetch_bytes(src.at(n + 4, g0 * kl.G), std::min(kl.K - g0 * kl.G, ng * kl.G) * src.esize);
        for (int64_t g = g0; g < g0 + ng; ++g)
          run_to_units(row + (g - g0) * kl.steps_full, src, src.at(n, g * kl.G), kl.group_len(g), kl.group_steps(g),
                       static_cast<int>(kl.width));
        std::fill(row + S, row + S16, 0u);
      }
      for (int64_t s0 = 0; s0 < S; s0 += 16) {
        __m512i r[16];
        for (int i = 0; i < 16; ++i) r[i] = _mm512_load_si512(scratch + i * S16 + s0);
        transpose16(r);
        const int64_t count = std::min<int64_t>(16, S - s0);
        uint32_t* d = dst + (g0 * kl.steps_full + s0) * kNR + h * 16;
        for (int64_t s = 0; s < count; ++s) _mm512_store_si512(d + s * kNR, r[s]);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------
// Packing an A block (rows m0 .. m0+rows of op(A), groups g0 .. g0+ng).

void pack_a_block(uint32_t* dst, const Matrix& A, int64_t m0, int64_t rows, int64_t g0, int64_t ng, const KLayout& kl,
                  int64_t S) {
  const Src src(A);
  const int width = static_cast<int>(kl.width);
  const int64_t panels = (rows + kMR - 1) / kMR;
  if (!A.trans) {
    // Row layout: row i of the panel is op(A)'s row, K runs along the stored row.
    for (int64_t p = 0; p < panels; ++p)
      for (int i = 0; i < kMR; ++i) {
        uint32_t* row = dst + (p * kMR + i) * S;
        const int64_t r = p * kMR + i;
        if (r >= rows) {
          std::fill(row, row + S, 0u);
          continue;
        }
        // A's rows are short runs far apart (one kc block of a long row): the hardware
        // prefetcher does not follow, so fetch the run 4 rows ahead while converting this one.
        if (r + 4 < rows) {
          const uint8_t* ahead = src.at(m0 + r + 4, g0 * kl.G);
          const int64_t bytes = std::min(kl.K - g0 * kl.G, ng * kl.G) * src.esize;
          prefetch_bytes(ahead, bytes);
        }
        for (int64_t g = g0; g < g0 + ng; ++g)
          run_to_units(row + (g - g0) * kl.steps_full, src, src.at(m0 + r, g * kl.G), kl.group_len(g),
                       kl.group_steps(g), width);
      }
    return;
  }
  // Step layout: A stored [K, M]; one k-step of the panel is MR consecutive stored columns
  // of one (FP32) or two (pairs) stored rows. Two panels (16 columns) per load.
  for (int64_t g = g0; g < g0 + ng; ++g) {
    const int64_t len = kl.group_len(g), steps = kl.group_steps(g);
    for (int64_t s = 0; s < steps; ++s) {
      const int64_t k = g * kl.G + s * width;
      const bool second = width == 2 && s * 2 + 1 < len;
      const int64_t step = (g - g0) * kl.steps_full + s;
      // The stored rows 4 steps ahead (the same prefetch as the row layout's).
      for (int64_t ahead = k + 4 * width; ahead < std::min(kl.K, k + 5 * width); ++ahead)
        prefetch_bytes(src.at(ahead, m0), rows * src.esize);
      int64_t p = 0;
      if (width == 2) {
        // Four panels (32 columns) per pass: two rows of 32 BF16 values interleaved into
        // 32 pairs. unpacklo/hi_epi16 pair up columns 8L..8L+3 / 8L+4..8L+7 within each
        // 128-bit lane L; the permutes put each panel's 8 units together.
        const __m512i idx01 = _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11);
        const __m512i idx23 = _mm512_setr_epi64(4, 5, 12, 13, 6, 7, 14, 15);
        for (; p + 4 <= panels; p += 4) {
          const int64_t c0 = m0 + p * kMR, n = rows - p * kMR;
          const __m512i r0 = src.bf16x32(src.at(k, c0), n);
          const __m512i r1 = second ? src.bf16x32(src.at(k + 1, c0), n) : _mm512_setzero_si512();
          const __m512i lo = _mm512_unpacklo_epi16(r0, r1), hi = _mm512_unpackhi_epi16(r0, r1);
          const __m512i u01 = _mm512_permutex2var_epi64(lo, idx01, hi), u23 = _mm512_permutex2var_epi64(lo, idx23, hi);
          uint32_t* d = dst + p * kMR * S + step * kMR;
          _mm256_store_si256(reinterpret_cast<__m256i*>(d), _mm512_castsi512_si256(u01));
          _mm256_store_si256(reinterpret_cast<__m256i*>(d + kMR * S), _mm512_extracti64x4_epi64(u01, 1));
          _mm256_store_si256(reinterpret_cast<__m256i*>(d + 2 * kMR * S), _mm512_castsi512_si256(u23));
          _mm256_store_si256(reinterpret_cast<__m256i*>(d + 3 * kMR * S), _mm512_extracti64x4_epi64(u23, 1));
        }
      }
      for (; p < panels; p += 2) {
        const int64_t c0 = m0 + p * kMR;
        const __m512i u = units_across(src, k, c0, rows - p * kMR, width, second);
        _mm256_store_si256(reinterpret_cast<__m256i*>(dst + p * kMR * S + step * kMR), _mm512_castsi512_si256(u));
        if (p + 1 < panels)
          _mm256_store_si256(reinterpret_cast<__m256i*>(dst + (p + 1) * kMR * S + step * kMR),
                             _mm512_extracti64x4_epi64(u, 1));
      }
    }
  }
}

// ---------------------------------------------------------------------------------------
// Micro-kernel: the 8 x 32 tile over the groups of one kc block (formula in gemm.h).

template <bool kPairs>
inline __m512 step_fma(__m512 acc, uint32_t a, __m512i b) {
  if constexpr (kPairs) {
    return _mm512_dpbf16_ps(acc, (__m512bh)_mm512_set1_epi32(static_cast<int>(a)), (__m512bh)b);
  } else {
    return _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_set1_epi32(static_cast<int>(a))), _mm512_castsi512_ps(b), acc);
  }
}

template <bool kPairs, bool kStepA, bool kScaled>
void micro(const MicroArgs& x) {
  alignas(64) float tile[kMR * kNR];  // the running sums between groups of this call (L1)
  // The tiles this call and the next one read or write at their ends (C may be in DRAM;
  // a beta != 0 read of C stalled Wgrad by 15% before this prefetch).
  if (x.last) {
#pragma GCC unroll 8
    for (int m = 0; m < kMR; ++m)
#pragma GCC unroll 2
      for (int v = 0; v < kNV; ++v) {
        _mm_prefetch(reinterpret_cast<const char*>(x.c + m * x.ldc + v * 16), _MM_HINT_ET0);
        _mm_prefetch(reinterpret_cast<const char*>(x.c_next + m * x.ldc + v * 16), _MM_HINT_ET0);
      }
  } else {
#pragma GCC unroll 8
    for (int m = 0; m < kMR; ++m)
#pragma GCC unroll 2
      for (int v = 0; v < kNV; ++v)
        _mm_prefetch(reinterpret_cast<const char*>(x.acc_next + m * x.ldacc + v * 16), _MM_HINT_ET0);
  }
  const int64_t sa_stride = x.a_stride;
  for (int64_t g = 0; g < x.groups; ++g) {
    const int64_t steps = g == x.groups - 1 ? x.steps_last : x.steps_full;
    const uint32_t* a = kStepA ? x.a + g * x.steps_full * kMR : x.a + g * x.steps_full;
    const uint32_t* b = x.b + g * x.steps_full * kNR;
    __m512 P[kMR][kNV];
#pragma GCC unroll 8
    for (int m = 0; m < kMR; ++m)
#pragma GCC unroll 2
      for (int v = 0; v < kNV; ++v) P[m][v] = _mm512_setzero_ps();
    // This call's share of the next B panel's block, a slice per group, into L2: when B
    // outgrows L2 (N >= 2048) the panel would otherwise come from L3 on its first use
    // (2048^3, 1 thread: 0.85 -> 0.89 of oneDNN BF16; _MM_HINT_T0 gained less).
    {
      const int64_t per = (x.b_pf_lines + x.groups - 1) / x.groups;
      const int64_t l0 = g * per, l1 = std::min(x.b_pf_lines, l0 + per);
      for (int64_t l = l0; l < l1; ++l) _mm_prefetch(x.b_pf + l * 64, _MM_HINT_T1);
    }
    // Unrolled by 4: +5% over no unrolling (GCC keeps the 8 row addresses in registers
    // and folds the step offsets into the broadcasts' displacements).
#pragma GCC unroll 4
    for (int64_t s = 0; s < steps; ++s) {
      __m512i bv[kNV];
#pragma GCC unroll 2
      for (int v = 0; v < kNV; ++v) bv[v] = _mm512_load_si512(b + s * kNR + v * 16);
#pragma GCC unroll 8
      for (int m = 0; m < kMR; ++m) {
        const uint32_t au = kStepA ? a[s * kMR + m] : a[m * sa_stride + s];
#pragma GCC unroll 2
        for (int v = 0; v < kNV; ++v) P[m][v] = step_fma<kPairs>(P[m][v], au, bv[v]);
      }
    }
    // Promotion: running sum (+)= s·P, from the previous call's sums (acc), this call's
    // (tile), or nothing (K's first group).
    const bool from_nothing = x.first && g == 0;
    const float* src = g == 0 ? x.acc : tile;
    const int64_t lds = g == 0 ? x.ldacc : kNR;
    if (kScaled && x.sb_uniform) {
      // One sB for the whole panel (128x128 weight blocks, per-tensor): s = sA·sB per row,
      // the same FP32 products as below with 8 multiplies instead of 16.
      alignas(32) float s_row[kMR];
      _mm256_store_ps(s_row, _mm256_mul_ps(_mm256_loadu_ps(x.sa + g * kMR), _mm256_set1_ps(x.sb[g * x.sb_gstride])));
#pragma GCC unroll 8
      for (int m = 0; m < kMR; ++m) {
        const __m512 sm = _mm512_set1_ps(s_row[m]);
#pragma GCC unroll 2
        for (int v = 0; v < kNV; ++v)
          P[m][v] = from_nothing ? _mm512_mul_ps(P[m][v], sm)
                                 : _mm512_fmadd_ps(P[m][v], sm, _mm512_loadu_ps(src + m * lds + v * 16));
      }
    } else if constexpr (kScaled) {
      __m512 sb[kNV];
#pragma GCC unroll 2
      for (int v = 0; v < kNV; ++v) sb[v] = _mm512_loadu_ps(x.sb + g * x.sb_gstride + v * 16);
#pragma GCC unroll 8
      for (int m = 0; m < kMR; ++m) {
        const __m512 sa = _mm512_set1_ps(x.sa[g * kMR + m]);
#pragma GCC unroll 2
        for (int v = 0; v < kNV; ++v) {
          const __m512 s = _mm512_mul_ps(sa, sb[v]);
          P[m][v] = from_nothing ? _mm512_mul_ps(P[m][v], s)
                                 : _mm512_fmadd_ps(P[m][v], s, _mm512_loadu_ps(src + m * lds + v * 16));
        }
      }
    } else if (!from_nothing) {
#pragma GCC unroll 8
      for (int m = 0; m < kMR; ++m)
#pragma GCC unroll 2
        for (int v = 0; v < kNV; ++v) P[m][v] = _mm512_add_ps(P[m][v], _mm512_loadu_ps(src + m * lds + v * 16));
    }
    if (g < x.groups - 1 || !x.last) {
      float* dst = g < x.groups - 1 ? tile : x.acc;
      const int64_t ldd = g < x.groups - 1 ? kNR : x.ldacc;
#pragma GCC unroll 8
      for (int m = 0; m < kMR; ++m)
#pragma GCC unroll 2
        for (int v = 0; v < kNV; ++v) _mm512_storeu_ps(dst + m * ldd + v * 16, P[m][v]);
      continue;
    }
    // K's last group: C = alpha·acc (+ beta·C), each product rounded, then the sum.
    __mmask16 cm[kNV];
#pragma GCC unroll 2
    for (int v = 0; v < kNV; ++v) cm[v] = mask16(x.cols - v * 16);
    const __m512 alpha = _mm512_set1_ps(x.alpha), beta = _mm512_set1_ps(x.beta);
#pragma GCC unroll 8
    for (int m = 0; m < kMR; ++m) {
      if (m < x.rows) {
        float* c = x.c + m * x.ldc;
#pragma GCC unroll 2
        for (int v = 0; v < kNV; ++v) {
          __m512 r = x.alpha == 1.0f ? P[m][v] : _mm512_mul_ps(alpha, P[m][v]);
          if (x.beta != 0.0f) r = _mm512_add_ps(r, _mm512_mul_ps(beta, _mm512_maskz_loadu_ps(cm[v], c + v * 16)));
          _mm512_mask_storeu_ps(c + v * 16, cm[v], r);
        }
      }
    }
  }
}

// Transposed B is widened a chunk of groups (~256 k-steps) at a time into 16 scratch rows.
int64_t transpose_chunk_groups(const KLayout& kl) { return std::max<int64_t>(1, 256 / kl.steps_full); }

template <bool kPairs>
struct Kernel {
  static constexpr int MR = kMR, NR = kNR;
  static int64_t pack_b_scratch_units(const KLayout& kl) {
    return 16 * ((std::min(transpose_chunk_groups(kl), kl.groups) * kl.steps_full + 15) / 16 * 16);
  }
  static void pack_b_panel(uint32_t* units, const Matrix& B, const KLayout& kl, int64_t j, uint32_t* scratch) {
    const Src src(B);
    if (B.trans) {
      pack_b_transposed(units, src, kl, B.op_cols(), j, scratch, transpose_chunk_groups(kl));
    } else {
      pack_b_rows(units, src, kl, B.op_cols(), j);
    }
  }
  // k-steps per kc block: a 32 KiB B micro-panel (256 steps x 32 units x 4 bytes) stays in
  // the 48 KiB L1 while 8 KiB A panels stream past it; mc rows of A (128 KiB) stay in the
  // 1 MiB L2. Measured on 1024^3 (1 thread, vs oneDNN BF16 in the same run): kc 128 or
  // 192, mc 64 or 256, nc 256 were each 2-7% slower.
  static constexpr int64_t kc_steps = 256, mc_max = 128, nc_max = 1024;
  static void pack_a(uint32_t* dst, const Matrix& A, int64_t m0, int64_t rows, int64_t g0, int64_t ng,
                     const KLayout& kl, int64_t S) {
    pack_a_block(dst, A, m0, rows, g0, ng, kl, S);
  }
  static MicroKernel select(bool scaled, bool step_layout) {
    if (scaled) return step_layout ? micro<kPairs, true, true> : micro<kPairs, false, true>;
    return step_layout ? micro<kPairs, true, false> : micro<kPairs, false, false>;
  }
};

}  // namespace

int avx512_nr(bool) { return kNR; }

void pack_b_avx512(uint32_t* units, float* scales, const Matrix& B, const KLayout& kl, bool pairs) {
  if (pairs) {
    pack_b_blocked<Kernel<true>>(units, scales, B, kl);
  } else {
    pack_b_blocked<Kernel<false>>(units, scales, B, kl);
  }
}

void run_avx512(float* C, int64_t ldc, const Matrix& A, const PanelsView& B, const GemmOptions& opt,
                const PackJob& job) {
  if (B.pairs) {
    run_blocked<Kernel<true>>(C, ldc, A, B, opt, job);
  } else {
    run_blocked<Kernel<false>>(C, ldc, A, B, opt, job);
  }
}

}  // namespace tinyseek::gemm::detail
