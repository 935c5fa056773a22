// AVX-512 kernels of the blocked GEMM (Backend::kAvx512): packing with exact FP8/BF16
// widening, and two micro-kernels over 8 x 32 tiles of C (16 zmm accumulators):
//   BF16  vdpbf16ps, one BF16 k-pair per unit (both operands BF16 or FP8)
//   FP32  vfmadd231ps, one FP32 value per unit (either operand F32)
// Why 8 x 32: measured on Zen 5, vdpbf16ps has ~8 cycles latency at 2 per cycle, so 16
// independent accumulators saturate it (12 reach 92%); 8 x 32 needs 2 B loads and 8
// broadcasts per step (1.25 loads per cycle) and leaves 16 registers free, and its B panel
// of 256 k-steps is 32 KiB (L1 is 48 KiB). 6 x 64, 8 x 48 and 12 x 32 measured no faster.
// Zen 4 runs each 512-bit vdpbf16ps as two 256-bit halves, one per cycle per core (the
// measured 467 GFLOP/s on 2 cores): 16 independent accumulators cover its latency and 10
// loads per 16 dots stay under one per cycle, so the tile is kept (single-thread CPU time
// at 1024^3 is 0.93-0.97 of oneDNN's); its 32 KiB L1d is met by the block sizes instead
// (Kernel::limits).
// Layouts and the driver: gemm_blocked.h. Only called after simd_path() / the backend
// check said the CPU has AVX-512 with BF16.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "tinyseek/gemm/gemm_blocked.h"
#include "tinyseek/gemm/kernel_avx512_inl.h"
#include "tinyseek/numerics/fp8.h"

namespace tinyseek::gemm::detail {

using avx512::step_fma;
using avx512::transpose16;

namespace {

constexpr int kMR = 8, kNV = 2, kNR = 16 * kNV;

// ---------------------------------------------------------------------------------------
// Element conversion. FP8 -> BF16 is a lookup of the code's 7-bit magnitude in a
// 128-entry table (two vpermi2w over 64 entries each) with the sign bit OR-ed back in:
// exact, since every FP8 value (and NaN) has a BF16 representation.

struct Fp8Table {
  __m512i t[4];          // BF16 bits of the magnitudes 0..127, 32 per register
  __m512i lo[2], hi[2];  // their low and high bytes, 64 per register (VBMI widening)
  __m512i mix0, mix1;    // byte 2i = lo byte of code i (resp. 32 + i), byte 2i+1 = its hi byte
};

Fp8Table make_table(numerics::Fp8Format f) {
  alignas(64) uint16_t w[128];
  const float* dec = numerics::fp8_decode_table(f);
  for (int i = 0; i < 128; ++i) {
    uint32_t bits;
    std::memcpy(&bits, &dec[i], 4);
    w[i] = static_cast<uint16_t>(bits >> 16);  // exact: FP8 values have <= 3 mantissa bits
  }
  alignas(64) uint8_t lo[128], hi[128];
  for (int i = 0; i < 128; ++i) lo[i] = static_cast<uint8_t>(w[i] & 0xFF), hi[i] = static_cast<uint8_t>(w[i] >> 8);
  Fp8Table t;
  for (int r = 0; r < 4; ++r) t.t[r] = _mm512_load_si512(w + 32 * r);
  for (int r = 0; r < 2; ++r) t.lo[r] = _mm512_load_si512(lo + 64 * r), t.hi[r] = _mm512_load_si512(hi + 64 * r);
  // vpermt2b indices into (lo bytes, hi bytes): table a = operand 1 (0..63), b = operand 2.
  alignas(64) uint8_t mix[2][64];
  for (int h = 0; h < 2; ++h)
    for (int i = 0; i < 32; ++i)
      mix[h][2 * i] = static_cast<uint8_t>(32 * h + i), mix[h][2 * i + 1] = static_cast<uint8_t>(64 + 32 * h + i);
  t.mix0 = _mm512_load_si512(mix[0]), t.mix1 = _mm512_load_si512(mix[1]);
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

// With AVX512-VBMI (Zen 4/5, Ice Lake and later; not Cooper Lake) 64 codes at a time:
// vpermi2b looks up the low and the high byte of each BF16 word in 128-byte tables
// (indexed by the code's 7 magnitude bits; the sign bit is ignored by the lookup and
// OR-ed into the high byte), two vpermt2b interleave the bytes into words. 5 instructions
// per 64 codes instead of 9 per 32. w0 = words of codes 0..31, w1 = of codes 32..63.
// -1: VBMI where the CPU has it; 0 / 1: set by avx512_set_vbmi (tests).
int g_vbmi_setting = -1;
inline bool use_vbmi() {
  static const bool has = __builtin_cpu_supports("avx512vbmi");
  return has && g_vbmi_setting != 0;
}

[[gnu::target("avx512vbmi")]] inline void fp8x64_to_bf16_vbmi(__m512i codes, const Fp8Table& T, __m512i& w0,
                                                              __m512i& w1) {
  const __m512i lo = _mm512_permutex2var_epi8(T.lo[0], codes, T.lo[1]);
  // hi | (codes & 0x80): ternary-logic truth table 0xF8 for a | (b & c).
  const __m512i hi = _mm512_ternarylogic_epi32(_mm512_permutex2var_epi8(T.hi[0], codes, T.hi[1]), codes,
                                               _mm512_set1_epi8(static_cast<char>(0x80)), 0xF8);
  w0 = _mm512_permutex2var_epi8(lo, T.mix0, hi);
  w1 = _mm512_permutex2var_epi8(lo, T.mix1, hi);
}

// d[0 .. n) = BF16 of the FP8 codes p[0 .. n), n a multiple of 64.
[[gnu::target("avx512vbmi")]] void fp8_run_to_bf16_vbmi(uint16_t* d, const uint8_t* p, int64_t n, const Fp8Table& T) {
  for (int64_t i = 0; i < n; i += 64) {
    __m512i w0, w1;
    fp8x64_to_bf16_vbmi(_mm512_loadu_si512(p + i), T, w0, w1);
    _mm512_storeu_si512(d + i, w0);
    _mm512_storeu_si512(d + i + 32, w1);
  }
}

// Compact FP8 panels store each 64-code chunk lane-interleaved: 128-bit lane L holds the
// codes of positions 8L..8L+7 then 32+8L..32+8L+7. Widening then interleaves the looked-up
// low and high bytes with in-lane unpacks instead of two cross-lane vpermt2b: a panel
// block widens ~2x faster, which is most of what compact panels cost per call.
inline int64_t compact_slot(int64_t p) {  // the stored index of position p (0..63) of a chunk
  return p < 32 ? 16 * (p / 8) + p % 8 : 16 * ((p - 32) / 8) + 8 + p % 8;
}

// d[0 .. n) = BF16 of the FP8 codes of n positions stored lane-interleaved at p, n a
// multiple of 64.
[[gnu::target("avx512vbmi")]] void compact_to_bf16_vbmi(uint16_t* d, const uint8_t* p, int64_t n, const Fp8Table& T) {
  const __m512i sign = _mm512_set1_epi8(static_cast<char>(0x80));
  for (int64_t i = 0; i < n; i += 64) {
    const __m512i codes = _mm512_loadu_si512(p + i);
    const __m512i lo = _mm512_permutex2var_epi8(T.lo[0], codes, T.lo[1]);
    const __m512i hi = _mm512_ternarylogic_epi32(_mm512_permutex2var_epi8(T.hi[0], codes, T.hi[1]), codes, sign, 0xF8);
    _mm512_storeu_si512(d + i, _mm512_unpacklo_epi8(lo, hi));
    _mm512_storeu_si512(d + i + 32, _mm512_unpackhi_epi8(lo, hi));
  }
}

void compact_to_bf16(uint16_t* d, const uint8_t* p, int64_t n, DType type) {
  const Fp8Table& T = *fp8_table(type);
  if (use_vbmi()) return compact_to_bf16_vbmi(d, p, n, T);
  const __m512i natural = _mm512_setr_epi64(0, 2, 4, 6, 1, 3, 5, 7);  // qwords back in position order
  for (int64_t i = 0; i < n; i += 64) {
    const __m512i codes = _mm512_permutexvar_epi64(natural, _mm512_loadu_si512(p + i));
    _mm512_storeu_si512(d + i, fp8x32_to_bf16(_mm512_castsi512_si256(codes), T));
    _mm512_storeu_si512(d + i + 32, fp8x32_to_bf16(_mm512_extracti64x4_epi64(codes, 1), T));
  }
}

// FP8 code of every BF16 word the widening produces (the inverse of fp8x32_to_bf16 on its
// image): pack_b narrows BF16-pair panels back to code pairs with it (compact FP8 panels).
// Codes with the same BF16 word (E5M2 NaNs, if they decode alike) widen back to that word.
struct Fp8Narrow {
  uint8_t code[65536];
};
Fp8Narrow make_narrow(DType d) {
  const float* dec = numerics::fp8_decode_table(d == DType::E4M3 ? numerics::Fp8Format::E4M3 : numerics::Fp8Format::E5M2);
  Fp8Narrow t{};
  for (int c = 255; c >= 0; --c) {  // descending: the smallest code wins a shared word
    uint32_t bits;
    std::memcpy(&bits, &dec[c & 0x7F], 4);
    const uint16_t w = static_cast<uint16_t>((bits >> 16) | (c & 0x80 ? 0x8000u : 0u));
    t.code[w] = static_cast<uint8_t>(c);
  }
  return t;
}
const Fp8Narrow& fp8_narrow(DType d) {
  static const Fp8Narrow e4m3 = make_narrow(DType::E4M3);
  static const Fp8Narrow e5m2 = make_narrow(DType::E5M2);
  return d == DType::E4M3 ? e4m3 : e5m2;
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
// 2: BF16 pairs), zero-padded. Whole vectors first, masked ones only for the tail: the
// packers call this once per row of a block, so the tail masks were most of the cost.
void run_to_units(uint32_t* dst, const Src& src, const uint8_t* p, int64_t len, int64_t units, int width) {
  if (width == 2) {
    uint16_t* d = reinterpret_cast<uint16_t*>(dst);
    const int64_t words = 2 * units;
    int64_t i = 0;
    if (src.dtype == DType::BF16) {
      for (; i + 32 <= len; i += 32) _mm512_storeu_si512(d + i, _mm512_loadu_si512(p + 2 * i));
    } else if (use_vbmi()) {
      i = len / 64 * 64;
      fp8_run_to_bf16_vbmi(d, p, i, *src.table);
    } else {
      for (; i + 64 <= len; i += 64) {
        const __m512i codes = _mm512_loadu_si512(p + i);
        _mm512_storeu_si512(d + i, fp8x32_to_bf16(_mm512_castsi512_si256(codes), *src.table));
        _mm512_storeu_si512(d + i + 32, fp8x32_to_bf16(_mm512_extracti64x4_epi64(codes, 1), *src.table));
      }
    }
    for (; i < words; i += 32)
      _mm512_mask_storeu_epi16(d + i, mask32(words - i), src.bf16x32(p + i * src.esize, len - i));
  } else {
    int64_t i = 0;
    if (src.dtype == DType::F32)
      for (; i + 16 <= len; i += 16) _mm512_storeu_si512(dst + i, _mm512_loadu_si512(p + 4 * i));
    for (; i < units; i += 16)
      _mm512_mask_storeu_epi32(dst + i, mask16(units - i), src.f32x16(p + i * src.esize, len - i));
  }
}

// 16 units of op(X)'s K run from p (n elements left, may be <= 0): zero beyond the run.
inline __m512i units16(const Src& src, const uint8_t* p, int64_t n, int width) {
  if (width == 1) return src.f32x16(p, n);
  if (n >= 32) {
    if (src.dtype == DType::BF16) return _mm512_loadu_si512(p);
    return fp8x32_to_bf16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)), *src.table);
  }
  return src.bf16x32(p, n);
}

// The k-steps of groups g0.. g0+ng are consecutive elements of K, `width` per unit, with
// no padding between groups (FP32 units, even groups, or one group): a block's K run
// packs as one run.
inline bool steps_contiguous(const KLayout& kl, int64_t ng) { return kl.width == 1 || kl.G % 2 == 0 || ng == 1; }

// 16 units across stored columns c0.. c0+n (n <= 16) from stored row r (and r+1 for pairs,
// if `second`): the unit for a k-step of op(X) when k runs down the stored rows.
inline __m512i units_across(const Src& src, int64_t r, int64_t c0, int64_t n, int width, bool second) {
  if (width == 1) return src.f32x16(src.at(r, c0), n);
  const __m512i lo = _mm512_cvtepu16_epi32(src.bf16x16(src.at(r, c0), n));
  if (!second) return lo;
  const __m512i hi = _mm512_cvtepu16_epi32(src.bf16x16(src.at(r + 1, c0), n));
  return _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16));
}


// ---------------------------------------------------------------------------------------
// Packing B: panels [N/NR][steps_total][NR].

// op(B) = B stored [K, N]: each k-step reads one (FP32) or two (pairs) stored rows.
void pack_b_rows(uint32_t* dst, const Src& src, const KLayout& kl, int64_t N, int64_t j) {
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

// The first `count` of 16 transposed rows into consecutive k-steps of a panel. Unrolled
// with constant indices: a loop to `count` would force r[] out of registers.
[[gnu::always_inline]] inline void store_steps(uint32_t* d, const __m512i r[16], int64_t count) {
#pragma GCC unroll 16
  for (int s = 0; s < 16; ++s)
    if (s < count) _mm512_store_si512(d + s * kNR, r[s]);
}

// op(B) = Bᵀ, B stored [N, K], k-steps contiguous: 16 x 16 unit blocks loaded (and
// widened) straight from 16 stored rows and transposed into the panel, the two halves of
// each 16-step chunk in turn so the panel is written in whole lines. 4x faster than
// widening into scratch first at 256x256 (packing was 7% of a 512x256x256 GEMM).
void pack_b_transposed_direct(uint32_t* dst, const Src& src, const KLayout& kl, int64_t N, int64_t j) {
  const int64_t steps = kl.steps_total();
  const int width = static_cast<int>(kl.width);
  // Each row's run 4 chunks (of 32 BF16 or FP8, or 16 FP32 elements) ahead is prefetched
  // once per 64-byte line.
  const int64_t ahead = 4 * 16 * width;
  for (int64_t s0 = 0; s0 < steps; s0 += 16) {
    const int64_t k0 = s0 * width;
    const bool new_line = (k0 * src.esize) % 64 == 0 && k0 + ahead < kl.K;
    const int64_t count = std::min<int64_t>(16, steps - s0);
    for (int h = 0; h < kNV; ++h) {
      const int64_t n0 = j * kNR + h * 16;
      if (new_line)
        for (int i = 0; i < 16 && n0 + i < N; ++i)
          _mm_prefetch(reinterpret_cast<const char*>(src.at(n0 + i, k0 + ahead)), _MM_HINT_T0);
      __m512i r[16];
      if (n0 + 16 <= N) {
#pragma GCC unroll 16
        for (int i = 0; i < 16; ++i) r[i] = units16(src, src.at(n0 + i, k0), kl.K - k0, width);
      } else {
        for (int i = 0; i < 16; ++i)
          r[i] = n0 + i < N ? units16(src, src.at(n0 + i, k0), kl.K - k0, width) : _mm512_setzero_si512();
      }
      transpose16(r);
      store_steps(dst + s0 * kNR + h * 16, r, count);
    }
  }
}

// pack_b_transposed_direct for FP8 with VBMI: two rows' 32 codes widened per lookup.
[[gnu::target("avx512vbmi")]] void pack_b_transposed_fp8_vbmi(uint32_t* dst, const Src& src, const KLayout& kl,
                                                               int64_t N, int64_t j) {
  const int64_t steps = kl.steps_total();
  const int64_t ahead = 4 * 32;
  const __m256i zero = _mm256_setzero_si256();
  for (int64_t s0 = 0; s0 < steps; s0 += 16) {
    const int64_t k0 = s0 * 2;
    const __mmask32 m = mask32(kl.K - k0);
    const bool new_line = k0 % 64 == 0 && k0 + ahead < kl.K;
    const int64_t count = std::min<int64_t>(16, steps - s0);
    for (int h = 0; h < kNV; ++h) {
      const int64_t n0 = j * kNR + h * 16;
      if (new_line)
        for (int i = 0; i < 16 && n0 + i < N; ++i)
          _mm_prefetch(reinterpret_cast<const char*>(src.at(n0 + i, k0 + ahead)), _MM_HINT_T0);
      __m512i r[16];
      const int64_t valid = std::min<int64_t>(16, N - n0);
#pragma GCC unroll 8
      for (int i = 0; i < 16; i += 2) {
        const __m256i c0 = i < valid ? _mm256_maskz_loadu_epi8(m, src.at(n0 + i, k0)) : zero;
        const __m256i c1 = i + 1 < valid ? _mm256_maskz_loadu_epi8(m, src.at(n0 + i + 1, k0)) : zero;
        fp8x64_to_bf16_vbmi(_mm512_inserti64x4(_mm512_castsi256_si512(c0), c1, 1), *src.table, r[i], r[i + 1]);
      }
      transpose16(r);
      store_steps(dst + s0 * kNR + h * 16, r, count);
    }
  }
}

// op(B) = Bᵀ, B stored [N, K]: each panel row's K run is widened into a 16-row scratch,
// then 16 x 16 unit blocks are transposed into the panel.
void pack_b_transposed(uint32_t* dst, const Src& src, const KLayout& kl, int64_t N, int64_t j, uint32_t* scratch,
                       int64_t chunk_groups) {
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
    const bool contiguous = steps_contiguous(kl, ng);
    const int64_t block_len = std::min(kl.K - g0 * kl.G, ng * kl.G);
    if (contiguous && block_len == A.ld && S * width == block_len) {
      // The block's rows are one run of the stored matrix (dense rows, the whole of K, no
      // padding): one conversion instead of one per row (per-row overhead was half the
      // cost of packing 256-long rows), then zero rows up to whole panels.
      run_to_units(dst, src, src.at(m0, 0), rows * block_len, rows * S, width);
      std::fill(dst + rows * S, dst + panels * kMR * S, 0u);
      return;
    }
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
        if (contiguous) {
          run_to_units(row, src, src.at(m0 + r, g0 * kl.G), block_len, S, width);
          continue;
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
  static void pack_b_panel(uint32_t* dst, const Matrix& B, const KLayout& kl, int64_t j, uint32_t* scratch) {
    const Src src(B);
    if (B.trans && steps_contiguous(kl, kl.groups) && is_fp8(B.dtype) && kl.width == 2 && use_vbmi()) {
      pack_b_transposed_fp8_vbmi(dst, src, kl, B.op_cols(), j);
    } else if (B.trans && steps_contiguous(kl, kl.groups)) {
      pack_b_transposed_direct(dst, src, kl, B.op_cols(), j);
    } else if (B.trans) {
      pack_b_transposed(dst, src, kl, B.op_cols(), j, scratch, transpose_chunk_groups(kl));
    } else {
      pack_b_rows(dst, src, kl, B.op_cols(), j);
    }
  }
  // Block limits from this CPU's L1d / L2 (derive_block_limits, gemm_blocked.h), computed
  // once. Zen 5 (48 KiB L1d, 1 MiB L2): kc 256 steps (a 32 KiB B micro-panel while 8 KiB A
  // panels stream past it), mc 128, as tuned there on 1024^3 (kc 128 or 192, mc 64 or 256,
  // nc 256 were each 2-7% slower). Zen 4 (32 KiB L1d): kc 160 unless K fits in 256 steps.
  // Unknown caches: the Zen 5 values.
  static BlockLimits limits() {
    static const BlockLimits derived = derive_block_limits(detected_cache_sizes(), MR, NR, {256, 128, 1024, 256, 0});
    return derived;
  }
  static void pack_a(uint32_t* dst, const Matrix& A, int64_t m0, int64_t rows, int64_t g0, int64_t ng,
                     const KLayout& kl, int64_t S) {
    pack_a_block(dst, A, m0, rows, g0, ng, kl, S);
  }
  // op(A) = A whose stored rows are already the packed row layout: FP32 beside the FP32
  // kernel; BF16 beside the BF16 kernel when every group starts on a pair (G even), no
  // group ends in half a pair (K even) and rows start on 4-byte boundaries.
  static bool reads_a_directly(const Matrix& A, const KLayout& kl) {
    if (A.trans) return false;
    if (!kPairs) return A.dtype == DType::F32;
    return A.dtype == DType::BF16 && kl.G % 2 == 0 && kl.K % 2 == 0 && A.ld % 2 == 0 &&
           reinterpret_cast<uintptr_t>(A.data) % 4 == 0;
  }
  // Packing cost per element in multiply-adds of this kernel (~4.8 ps each on one Zen 5
  // core), measured at 512x256x256: A widened ~0.05 ns (FP8) or copied, B transposed.
  static double pack_a_cost(DType) { return 10; }
  static double pack_b_cost(DType) { return 20; }
  // ~20 GB/s per core from another core's cache, i.e. ~10 multiply-adds per byte.
  static constexpr double remote_cost_per_byte = 10;
  // A compact FP8 panel block (`units` k-step units of NR, as code pairs in the BF16
  // words' order, lane-interleaved per 64 codes) widened into BF16 pairs. The block
  // (<= 32 KiB) is written just before the micro-kernels read it from L1.
  static void widen_codes(uint32_t* dst, const uint8_t* codes, int64_t units, DType type) {
    compact_to_bf16(reinterpret_cast<uint16_t*>(dst), codes, 2 * units, type);
  }
  static MicroKernel select(bool scaled, bool step_layout) {
    if (scaled) return step_layout ? micro<kPairs, true, true> : micro<kPairs, false, true>;
    return step_layout ? micro<kPairs, true, false> : micro<kPairs, false, false>;
  }
};

}  // namespace

int avx512_nr(bool) { return kNR; }

bool avx512_set_vbmi(bool on) {
  const bool was = use_vbmi();
  g_vbmi_setting = on ? 1 : 0;
  return was;
}

void pack_b_avx512(uint32_t* units, float* scales, const Matrix& B, const KLayout& kl, bool pairs) {
  if (pairs) {
    pack_b_blocked<Kernel<true>>(units, scales, B, kl);
  } else {
    pack_b_blocked<Kernel<false>>(units, scales, B, kl);
  }
}

namespace {

// -1: direct packing where the CPU has VBMI; 0 / 1: set by avx512_set_direct_codes (tests).
int g_direct_codes_setting = -1;

// 64 codes with each magnitude replaced by the smallest code of the same BF16 word
// (canon[m] = fp8_narrow(widen(m))): what widening then narrowing gives. Identity except
// for E5M2's three NaN magnitudes 0x7D..0x7F (one BF16 NaN), so the direct packers give
// the old packer's bytes, not only its GEMM bits.
struct Fp8Canon {
  __m512i lo, hi;  // canon of magnitudes 0..63, 64..127
  bool identity = true;
};
Fp8Canon make_canon(DType d) {
  const Fp8Narrow& narrow = fp8_narrow(d);
  const float* dec = numerics::fp8_decode_table(d == DType::E4M3 ? numerics::Fp8Format::E4M3 : numerics::Fp8Format::E5M2);
  alignas(64) uint8_t t[128];
  Fp8Canon c;
  for (int m = 0; m < 128; ++m) {
    uint32_t bits;
    std::memcpy(&bits, &dec[m], 4);
    t[m] = narrow.code[bits >> 16];
    c.identity = c.identity && t[m] == m;
  }
  c.lo = _mm512_load_si512(t);
  c.hi = _mm512_load_si512(t + 64);
  return c;
}
const Fp8Canon& fp8_canon(DType d) {
  static const Fp8Canon e4m3 = make_canon(DType::E4M3);
  static const Fp8Canon e5m2 = make_canon(DType::E5M2);
  return d == DType::E4M3 ? e4m3 : e5m2;
}
[[gnu::target("avx512vbmi")]] inline __m512i canon64(__m512i codes, const Fp8Canon& c) {
  if (c.identity) return codes;
  // canon(magnitude) | sign: ternary-logic 0xF8 is a | (b & c), as in fp8x64_to_bf16_vbmi.
  return _mm512_ternarylogic_epi32(_mm512_permutex2var_epi8(c.lo, codes, c.hi), codes,
                                   _mm512_set1_epi8(static_cast<char>(0x80)), 0xF8);
}

inline __mmask64 mask64(int64_t n) {
  return n >= 64 ? ~__mmask64{0} : (n <= 0 ? __mmask64{0} : (__mmask64{1} << n) - 1);
}

// op(B) = B stored [K, N]: a k-step's chunk is two stored rows' 32 codes (the second zero
// past the group's end), interleaved into pairs in compact_slot order by one vpermb.
[[gnu::target("avx512vbmi")]] void pack_codes_rows(uint8_t* dst, const Src& src, const KLayout& kl, int64_t N,
                                                   int64_t j, const Fp8Canon& canon) {
  alignas(64) uint8_t idx[64];
  for (int p = 0; p < 64; ++p) idx[compact_slot(p)] = static_cast<uint8_t>((p % 2) * 32 + p / 2);
  const __m512i order = _mm512_load_si512(idx);
  const __mmask32 m = mask32(N - j * kNR);
  for (int64_t g = 0; g < kl.groups; ++g) {
    const int64_t len = kl.group_len(g), steps = kl.group_steps(g);
    for (int64_t s = 0; s < steps; ++s) {
      const int64_t k = g * kl.G + 2 * s;
      const __m256i r0 = _mm256_maskz_loadu_epi8(m, src.at(k, j * kNR));
      const __m256i r1 = s * 2 + 1 < len ? _mm256_maskz_loadu_epi8(m, src.at(k + 1, j * kNR)) : _mm256_setzero_si256();
      const __m512i both = canon64(_mm512_inserti64x4(_mm512_castsi256_si512(r0), r1, 1), canon);
      _mm512_storeu_si512(dst + (g * kl.steps_full + s) * 64, _mm512_permutexvar_epi8(order, both));
    }
  }
}

// op(B) = Bᵀ, B stored [N, K], k-steps contiguous: a k-step is one 16-bit code pair of
// each stored row, so the panel is a 16-bit transpose of its 32 rows. 16 rows x 64 codes
// are transposed as 16 x 16 dwords (a dword: two k-steps of one row); output lane L of
// dword row t then holds rows 4L..4L+3 (+16 for the panel's second half), which is what
// compact_slot puts in lane L: an in-lane byte shuffle gathers each half's first-step
// words, then its second-step words, and 64-bit unpacks join the halves into two chunks.
[[gnu::target("avx512vbmi")]] void pack_codes_transposed(uint8_t* dst, const Src& src, const KLayout& kl, int64_t N,
                                                         int64_t j, const Fp8Canon& canon) {
  const int64_t steps = kl.steps_total();
  // Per lane: words 0, 2, 4, 6 (first k-step of rows 4L..4L+3), then 1, 3, 5, 7.
  const __m512i split = _mm512_broadcast_i32x4(_mm_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15));
  const int64_t ahead = 4 * 64;
  alignas(64) uint8_t half0[16][64];
  for (int64_t s0 = 0; s0 < steps; s0 += 32) {
    const int64_t k0 = 2 * s0;
    const __mmask64 m = mask64(kl.K - k0);
    const bool prefetch = k0 + ahead < kl.K;
    for (int h = 0; h < kNV; ++h) {
      const int64_t n0 = j * kNR + h * 16, valid = std::min<int64_t>(16, N - n0);
      __m512i r[16];
#pragma GCC unroll 16
      for (int i = 0; i < 16; ++i) {
        if (i < valid) {
          if (prefetch) _mm_prefetch(reinterpret_cast<const char*>(src.at(n0 + i, k0 + ahead)), _MM_HINT_T0);
          r[i] = canon64(_mm512_maskz_loadu_epi8(m, src.at(n0 + i, k0)), canon);
        } else {
          r[i] = _mm512_setzero_si512();
        }
      }
      transpose16(r);
      if (h == 0) {
#pragma GCC unroll 16
        for (int t = 0; t < 16; ++t) _mm512_store_si512(half0[t], _mm512_shuffle_epi8(r[t], split));
        continue;
      }
#pragma GCC unroll 16
      for (int t = 0; t < 16; ++t) {
        const int64_t s = s0 + 2 * t;
        if (s >= steps) break;
        const __m512i a = _mm512_load_si512(half0[t]), b = _mm512_shuffle_epi8(r[t], split);
        _mm512_storeu_si512(dst + s * 64, _mm512_unpacklo_epi64(a, b));
        if (s + 1 < steps) _mm512_storeu_si512(dst + (s + 1) * 64, _mm512_unpackhi_epi64(a, b));
      }
    }
  }
}

}  // namespace

bool avx512_set_direct_codes(bool on) {
  const bool was = g_direct_codes_setting != 0 && use_vbmi();
  g_direct_codes_setting = on ? 1 : 0;
  return was;
}

void pack_b_codes_avx512(uint8_t* codes, float* scales, const Matrix& B, const KLayout& kl) {
  using K = Kernel<true>;
  const int threads = max_threads();
  const int64_t panels = (B.op_cols() + kNR - 1) / kNR, panel_units = kl.steps_total() * kNR;
  // The code bytes moved straight into the panels (VBMI for the byte permutes; the
  // transposed case only when its k-steps are contiguous, i.e. no odd group inside K):
  // 64-byte chunks per k-step, no widening. Else each panel packed as BF16 pairs by the
  // usual packers, then narrowed word by word.
  const bool direct = g_direct_codes_setting != 0 && use_vbmi() && (!B.trans || steps_contiguous(kl, kl.groups));
  if (direct) {
    const Src src(B);
    const Fp8Canon& canon = fp8_canon(B.dtype);
#pragma omp parallel for num_threads(threads) schedule(dynamic, 2)
    for (int64_t j = 0; j < panels; ++j) {
      uint8_t* d = codes + j * panel_units * 2;
      if (B.trans) {
        pack_codes_transposed(d, src, kl, B.op_cols(), j, canon);
      } else {
        pack_codes_rows(d, src, kl, B.op_cols(), j, canon);
      }
      pack_b_scales(scales + j * kl.groups * kNR, B, kl, kNR, j, j + 1);
    }
    return;
  }
  const int64_t per_thread = (panel_units + 15) / 16 * 16 + K::pack_b_scratch_units(kl);
  thread_local Scratch<uint32_t> scratch;
  uint32_t* all = scratch.get(static_cast<size_t>(per_thread * threads));
  const Fp8Narrow& narrow = fp8_narrow(B.dtype);
#pragma omp parallel num_threads(threads)
  {
    uint32_t* wide = all + thread_id() * per_thread;
#pragma omp for schedule(dynamic, 2)
    for (int64_t j = 0; j < panels; ++j) {
      K::pack_b_panel(wide, B, kl, j, wide + (panel_units + 15) / 16 * 16);
      const uint16_t* w = reinterpret_cast<const uint16_t*>(wide);
      uint8_t* d = codes + j * panel_units * 2;
      for (int64_t c = 0; c < 2 * panel_units; c += 64)  // panel_units: a multiple of NR = 32
        for (int64_t i = 0; i < 64; ++i) d[c + compact_slot(i)] = narrow.code[w[c + i]];
      pack_b_scales(scales + j * kl.groups * kNR, B, kl, kNR, j, j + 1);
    }
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
