// Portable kernels of the blocked GEMM (Backend::kPortable): plain C++ compiled for the
// baseline ISA, written so the compiler vectorises the micro-kernel's column loop. Every
// operand is decoded exactly to FP32 while packing (FP8 and BF16 values are exact in FP32,
// and so are products of two of them); sums are FP32 multiply-then-add (no FMA: the
// project builds with -ffp-contract=off). Same layouts and driver as the AVX-512 kernels
// (gemm_blocked.h) with 4 x 8 tiles: 8 accumulator registers of 4 floats on SSE2, which has 16
// (39 GFLOP/s per core in the micro-kernel alone on Zen 5 with SSE2; 2 x 16 and 8 x 8 were
// no faster).
#include <algorithm>
#include <bit>

#include "tinyseek/gemm/gemm_blocked.h"
#include "tinyseek/numerics/bf16.h"
#include "tinyseek/numerics/fp8.h"

namespace tinyseek::gemm::detail {

namespace {

constexpr int kMR = 4, kNR = 8;

// Stored element (r, c) of X as FP32 bits.
struct Decoder {
  const void* data;
  int64_t ld;
  DType dtype;
  const float* table;

  explicit Decoder(const Matrix& X)
      : data(X.data), ld(X.ld), dtype(X.dtype),
        table(X.dtype == DType::E4M3   ? numerics::fp8_decode_table(numerics::Fp8Format::E4M3)
              : X.dtype == DType::E5M2 ? numerics::fp8_decode_table(numerics::Fp8Format::E5M2)
                                       : nullptr) {}
  uint32_t operator()(int64_t r, int64_t c) const {
    const int64_t at = r * ld + c;
    switch (dtype) {
      case DType::F32: return std::bit_cast<uint32_t>(static_cast<const float*>(data)[at]);
      case DType::BF16: return static_cast<uint32_t>(static_cast<const uint16_t*>(data)[at]) << 16;
      default: return std::bit_cast<uint32_t>(table[static_cast<const uint8_t*>(data)[at]]);
    }
  }
};

void pack_a_block(uint32_t* dst, const Matrix& A, int64_t m0, int64_t rows, int64_t g0, int64_t ng, const KLayout& kl,
                  int64_t S) {
  const Decoder dec(A);
  const int64_t panels = (rows + kMR - 1) / kMR;
  for (int64_t p = 0; p < panels; ++p) {
    uint32_t* pd = dst + p * kMR * S;
    for (int i = 0; i < kMR; ++i) {
      const int64_t r = p * kMR + i;
      for (int64_t g = g0; g < g0 + ng; ++g) {
        const int64_t len = kl.group_len(g), steps = kl.group_steps(g);
        for (int64_t s = 0; s < steps; ++s) {
          const int64_t k = g * kl.G + s;
          const uint32_t u = r < rows && s < len ? (A.trans ? dec(k, m0 + r) : dec(m0 + r, k)) : 0u;
          const int64_t step = (g - g0) * kl.steps_full + s;
          // Row layout for op(A) = A, step layout for op(A) = Aᵀ (see gemm_blocked.h).
          pd[A.trans ? step * kMR + i : i * S + step] = u;
        }
      }
    }
  }
}

// out = the group's sums P over `steps` k-steps. A function of its own so that P lives in
// registers (in micro() the epilogue's variable bounds kept it in memory: 2.5x slower).
template <bool kStepA>
void group_sums(float (&out)[kMR][kNR], const uint32_t* a, int64_t a_stride, const uint32_t* b, int64_t steps) {
  float P[kMR][kNR] = {};
  for (int64_t s = 0; s < steps; ++s) {
    float bs[kNR];
    for (int n = 0; n < kNR; ++n) bs[n] = std::bit_cast<float>(b[s * kNR + n]);
    for (int m = 0; m < kMR; ++m) {
      const float am = std::bit_cast<float>(kStepA ? a[s * kMR + m] : a[m * a_stride + s]);
      // omp simd: without it GCC 12 vectorises across m with shuffles, 4x slower (measured).
#pragma omp simd
      for (int n = 0; n < kNR; ++n) P[m][n] += am * bs[n];
    }
  }
  for (int m = 0; m < kMR; ++m)
    for (int n = 0; n < kNR; ++n) out[m][n] = P[m][n];
}

template <bool kStepA, bool kScaled>
void micro(const MicroArgs& x) {
  float tile[kMR * kNR];
  for (int64_t g = 0; g < x.groups; ++g) {
    const int64_t steps = g == x.groups - 1 ? x.steps_last : x.steps_full;
    const uint32_t* a = kStepA ? x.a + g * x.steps_full * kMR : x.a + g * x.steps_full;
    const uint32_t* b = x.b + g * x.steps_full * kNR;
    float P[kMR][kNR];
    group_sums<kStepA>(P, a, x.a_stride, b, steps);
    const bool from_nothing = x.first && g == 0;
    const float* src = g == 0 ? x.acc : tile;
    const int64_t lds = g == 0 ? x.ldacc : kNR;
    for (int m = 0; m < kMR; ++m)
      for (int n = 0; n < kNR; ++n) {
        float v = P[m][n];
        if (kScaled) v = (x.sa[g * kMR + m] * x.sb[g * x.sb_gstride + n]) * v;
        if (!from_nothing) v = src[m * lds + n] + v;
        P[m][n] = v;
      }
    if (g < x.groups - 1 || !x.last) {
      float* dst = g < x.groups - 1 ? tile : x.acc;
      const int64_t ldd = g < x.groups - 1 ? kNR : x.ldacc;
      for (int m = 0; m < kMR; ++m)
        for (int n = 0; n < kNR; ++n) dst[m * ldd + n] = P[m][n];
      continue;
    }
    for (int m = 0; m < x.rows; ++m)
      for (int n = 0; n < x.cols; ++n) {
        float& c = x.c[m * x.ldc + n];
        c = x.beta == 0.0f ? x.alpha * P[m][n] : x.alpha * P[m][n] + x.beta * c;
      }
  }
}

// Panel j of op(B): k-steps down, NR columns across.
void pack_b_panel_portable(uint32_t* dst, const Matrix& B, const KLayout& kl, int64_t j) {
  const Decoder dec(B);
  const int64_t N = B.op_cols();
  for (int64_t g = 0; g < kl.groups; ++g) {
    const int64_t len = kl.group_len(g);
    for (int64_t s = 0; s < kl.group_steps(g); ++s) {
      const int64_t k = g * kl.G + s;
      for (int i = 0; i < kNR; ++i) {
        const int64_t n = j * kNR + i;
        dst[(g * kl.steps_full + s) * kNR + i] = n < N && s < len ? (B.trans ? dec(n, k) : dec(k, n)) : 0u;
      }
    }
  }
}

struct Kernel {
  static constexpr int MR = kMR, NR = kNR;
  // Fixed limits (its B micro-panel is 32 bytes per k-step, far below any L1; the portable
  // path's speed is not a target). Overrides (TINYSEEK_GEMM_BLOCKS, tests) still apply.
  static BlockLimits limits() { return {256, 128, 1024, 256, 0}; }
  static int64_t pack_b_scratch_units(const KLayout&) { return 0; }
  static void pack_b_panel(uint32_t* dst, const Matrix& B, const KLayout& kl, int64_t j, uint32_t*) {
    pack_b_panel_portable(dst, B, kl, j);
  }
  static void pack_a(uint32_t* dst, const Matrix& A, int64_t m0, int64_t rows, int64_t g0, int64_t ng,
                     const KLayout& kl, int64_t S) {
    pack_a_block(dst, A, m0, rows, g0, ng, kl, S);
  }
  // The portable kernel always packs A (decoding is most of its packing).
  static bool reads_a_directly(const Matrix&, const KLayout&) { return false; }
  // Packing cost per element in multiply-adds (scalar decoding vs a scalar-ish kernel).
  static double pack_a_cost(DType) { return 2; }
  static double pack_b_cost(DType) { return 2; }
  static constexpr double remote_cost_per_byte = 1;
  static MicroKernel select(bool scaled, bool step_layout) {
    if (scaled) return step_layout ? micro<true, true> : micro<false, true>;
    return step_layout ? micro<true, false> : micro<false, false>;
  }
};

}  // namespace

int portable_nr() { return kNR; }

void pack_b_portable(uint32_t* units, float* scales, const Matrix& B, const KLayout& kl) {
  pack_b_blocked<Kernel>(units, scales, B, kl);
}

void run_portable(float* C, int64_t ldc, const Matrix& A, const PanelsView& B, const GemmOptions& opt,
                  const PackJob& job) {
  run_blocked<Kernel>(C, ldc, A, B, opt, job);
}

}  // namespace tinyseek::gemm::detail
