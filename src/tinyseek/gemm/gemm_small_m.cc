// Small-M GEMM (gemm_small_m.h): A's rows to k-step units, then the portable kernel here or
// the AVX-512 one (gemm_small_m_avx512.cc), whichever backend B was packed for.
#include "tinyseek/gemm/gemm_small_m.h"

#include <algorithm>
#include <bit>

#include "tinyseek/base/check.h"
#include "tinyseek/base/parallel.h"
#include "tinyseek/gemm/gemm_blocked.h"
#include "tinyseek/numerics/fp8.h"

namespace tinyseek::gemm {
namespace detail {

namespace {

// Products of at least this many multiply-adds split their panels over the threads (the
// output head: 1 x 128 x 2048 = 2^18); smaller ones stay in the calling thread, where a
// parallel region would cost more than the arithmetic.
constexpr int64_t kParallelMacs = int64_t{1} << 18;

// The portable kernel's panel width (gemm_portable.cc).
constexpr int kPortableNR = 8;

// Element (m, k) of A (not transposed) as FP32 bits, FP8 codes decoded without their scale.
struct RowReader {
  const uint8_t* data;
  int64_t ld;
  DType dtype;
  const float* table;
  explicit RowReader(const Matrix& A)
      : data(static_cast<const uint8_t*>(A.data)), ld(A.ld), dtype(A.dtype),
        table(A.dtype == DType::E4M3   ? numerics::fp8_decode_table(numerics::Fp8Format::E4M3)
              : A.dtype == DType::E5M2 ? numerics::fp8_decode_table(numerics::Fp8Format::E5M2)
                                       : nullptr) {}
  uint32_t operator()(int64_t m, int64_t k) const {
    const int64_t at = m * ld + k;
    switch (dtype) {
      case DType::F32: return std::bit_cast<uint32_t>(reinterpret_cast<const float*>(data)[at]);
      case DType::BF16: return static_cast<uint32_t>(reinterpret_cast<const uint16_t*>(data)[at]) << 16;
      default: return std::bit_cast<uint32_t>(table[data[at]]);
    }
  }
};

// A's rows in the packed row layout [M][S] (what pack_a writes): one FP32 value per unit,
// or a BF16 pair (smaller k in the low half, a group of odd length ending in a zero half).
// FP8 and BF16 values are exact in BF16 and FP32, so this is the blocked packers' widening.
void rows_to_units(uint32_t* units, const Matrix& A, const KLayout& kl) {
  const RowReader rd(A);
  const int64_t S = kl.steps_total(), M = A.rows;
  for (int64_t m = 0; m < M; ++m) {
    uint32_t* row = units + m * S;
    for (int64_t g = 0; g < kl.groups; ++g) {
      const int64_t len = kl.group_len(g), k0 = g * kl.G;
      uint32_t* d = row + g * kl.steps_full;
      if (kl.width == 1) {
        for (int64_t s = 0; s < len; ++s) d[s] = rd(m, k0 + s);
        continue;
      }
      for (int64_t s = 0; s < kl.group_steps(g); ++s) {
        const uint32_t lo = rd(m, k0 + 2 * s) >> 16;
        const uint32_t hi = 2 * s + 1 < len ? rd(m, k0 + 2 * s + 1) >> 16 : 0u;
        d[s] = lo | (hi << 16);
      }
    }
  }
}

// The portable micro-kernel's arithmetic (gemm_portable.cc micro) on panels [p0, p1).
void small_m_portable(float* C, int64_t ldc, int64_t M, const uint32_t* units, const float* sa, const PackedB& B,
                      const GemmOptions& opt, int64_t p0, int64_t p1) {
  constexpr int NR = kPortableNR;
  const KLayout kl = make_klayout(B.K, B.G, 1);
  const int64_t S = kl.steps_total();
  const float* sb_all = B.scales.empty() ? nullptr : B.scales.data();
  const bool scaled = sa != nullptr;
  static const float ones[NR] = {1, 1, 1, 1, 1, 1, 1, 1};
  for (int64_t j = p0; j < p1; ++j) {
    const uint32_t* panel = B.panels.data() + j * S * NR;
    float acc[kSmallMaxM][NR];
    for (int64_t g = 0; g < kl.groups; ++g) {
      const int64_t steps = kl.group_steps(g);
      const uint32_t* b = panel + g * kl.steps_full * NR;
      float P[kSmallMaxM][NR] = {};
      for (int64_t s = 0; s < steps; ++s) {
        float bs[NR];
        for (int n = 0; n < NR; ++n) bs[n] = std::bit_cast<float>(b[s * NR + n]);
        for (int64_t m = 0; m < M; ++m) {
          const float am = std::bit_cast<float>(units[m * S + g * kl.steps_full + s]);
#pragma omp simd
          for (int n = 0; n < NR; ++n) P[m][n] += am * bs[n];
        }
      }
      const float* sb = sb_all ? sb_all + (j * kl.groups + g) * NR : ones;
      for (int64_t m = 0; m < M; ++m)
        for (int n = 0; n < NR; ++n) {
          float v = P[m][n];
          if (scaled) v = (sa[m * kl.groups + g] * sb[n]) * v;
          if (g > 0) v = acc[m][n] + v;
          acc[m][n] = v;
        }
    }
    const int cols = static_cast<int>(std::min<int64_t>(NR, B.N - j * NR));
    for (int64_t m = 0; m < M; ++m)
      for (int n = 0; n < cols; ++n) {
        float& c = C[m * ldc + j * NR + n];
        c = opt.beta == 0.0f ? opt.alpha * acc[m][n] : opt.alpha * acc[m][n] + opt.beta * c;
      }
  }
}

}  // namespace

bool small_m_applies(const Matrix& A, const PackedB& B, const GemmOptions& opt) {
  const int64_t M = A.op_rows();
  return M >= 1 && M <= kSmallMaxM && !A.trans && !B.fp8_codes && B.K > 0 && B.N > 0 &&
         opt.accumulation == Accumulation::kFp32 &&
         (B.backend == Backend::kAvx512 || B.backend == Backend::kPortable);
}

void small_m_run(float* C, int64_t ldc, const Matrix& A, const PackedB& B, const GemmOptions& opt) {
  const int64_t M = A.rows;
  const KLayout kl = make_klayout(B.K, B.G, B.bf16_pairs ? 2 : 1);
  const int64_t S = kl.steps_total();
  // Per-thread scratch: A's units and scales (the calls of one thread never overlap).
  thread_local Scratch<uint32_t> unit_scratch;
  thread_local Scratch<float> scale_scratch;
  uint32_t* units = unit_scratch.get(static_cast<size_t>(M * S));
  rows_to_units(units, A, kl);
  // Scaled kernels when either operand carries scales (as the blocked driver decides): sA
  // of an unscaled A is 1, sB of an unscaled B is 1.
  const bool scaled = is_fp8(A.dtype) || !B.scales.empty();
  float* sa = nullptr;
  if (scaled) {
    sa = scale_scratch.get(static_cast<size_t>(M * kl.groups));
    for (int64_t m = 0; m < M; ++m)
      for (int64_t g = 0; g < kl.groups; ++g)
        sa[m * kl.groups + g] = is_fp8(A.dtype) ? A.scales[A.grid.index(m, g * kl.G)] : 1.0f;
  }
  const bool avx = B.backend == Backend::kAvx512;
  const int nr = avx ? avx512_nr(B.bf16_pairs) : kPortableNR;
  const int64_t panels = (B.N + nr - 1) / nr;
  auto run = [&](int64_t p0, int64_t p1) {
    if (avx) small_m_avx512(C, ldc, M, units, sa, B, opt, p0, p1);
    else small_m_portable(C, ldc, M, units, sa, B, opt, p0, p1);
  };
  const int threads = max_threads();
  if (threads == 1 || M * B.N * B.K < kParallelMacs || panels < 2) return run(0, panels);
  // Contiguous panel ranges per thread: each output element is computed by one thread with
  // the same instructions, so the split changes no bit.
#pragma omp parallel num_threads(threads)
  {
    const int t = thread_id(), T = omp_get_num_threads();
    run(panels * t / T, panels * (t + 1) / T);
  }
}

}  // namespace detail

void gemm_small_m(float* C, int64_t ldc, const Matrix& A, const PackedB& B, const GemmOptions& opt) {
  if (B.empty() || !detail::small_m_applies(A, B, opt)) return gemm(C, ldc, A, B, opt);
  // The checks of gemm(C, A, PackedB) that can fail for operands small_m_applies accepts.
  detail::validate_operand(A, "A");
  TS_CHECK(A.op_cols() == B.K, "inner dimensions differ: op(A) is [" << A.op_rows() << ", " << A.op_cols()
           << "] but the packed B is [" << B.K << ", " << B.N << "]", "op(A) must be [M, K] and op(B) [K, N]");
  TS_CHECK(opt.backend == Backend::kAuto || opt.backend == B.backend,
           "gemm: B was packed for backend '" << to_string(B.backend) << "' but '" << to_string(opt.backend)
           << "' was requested", "use Backend::kAuto with a packed B, or pack B for the backend you want");
  TS_CHECK(!(B.bf16_pairs && A.dtype == DType::F32),
           "gemm: A is f32 but B (" << to_string(B.source.dtype) << ") was packed for the BF16 kernel",
           "quantize A to BF16/FP8, or call gemm() with the unpacked B (the FP32 kernel handles mixed operands)");
  detail::validate_output(C, ldc, A.op_rows(), B.N, opt);
  Matrix b = B.source;
  const float dummy = 0.0f;
  b.data = &dummy;
  b.scales = is_fp8(b.dtype) ? &dummy : nullptr;
  const int64_t G = detail::checked_promotion_interval(A, b, opt.promote_every);
  TS_CHECK(G == B.G, "gemm: A and B need promotion groups of " << G << " elements but B was packed for groups of "
           << B.G, "pack B with pack_b(B, opt, /*group=*/" << G << ")");
  detail::small_m_run(C, ldc, A, B, opt);
}

}  // namespace tinyseek::gemm
