// Small-M GEMM: C = alpha A · B + beta C for a few rows of A (M <= kSmallMaxM: one decode
// step, or a speculative verification of a few tokens) against a B packed by pack_b.
//
// Why: decoding runs ~50 Linear GEMMs of 1-8 rows per token. The blocked driver costs a
// fixed few microseconds per call (an OpenMP region, a block plan, packing A, scratch
// slicing, widening compact FP8 panels per 128-row block) that dwarfs the arithmetic of a
// 1 x 128 x 128 product. This path has none of it: A's M rows are converted to the kernel's
// k-step units once (a few hundred elements), then each NR-wide panel of B is streamed once
// with all M rows kept in registers, in the calling thread (large products split their
// panels over the threads: panels are independent outputs).
//
// Bits: exactly the blocked kernels' (gemm.h "Blocked kernels"). Per output element the
// operations are the same instructions in the same order — per promotion group P = Σ a·b
// over the same k-steps from +0 (vdpbf16ps on BF16 pairs, vfmadd231ps on FP32 units, or
// the portable multiply-then-add), then the same promotion (acc = s·P, then fma(P, s, acc)
// on AVX-512 / acc + s·P portable; s = sA·sB in FP32) and the same alpha/beta epilogue —
// because the blocked kernels' per-element order depends only on K and G. The engine
// relies on it: a row's result never depends on how many rows share its call.
//
// Supported: op(A) = A (not transposed), any dtype and scale grid gemm() accepts; B packed
// with panels (PackedB::panels: BF16 pairs or FP32 units), not compact FP8 codes (those
// need widening per call: pack with GemmOptions::compact_fp8 = false to keep weights
// widened, as the decode engine does); FP32 accumulation. Other cases go to gemm().
#pragma once
#include <cstdint>

#include "tinyseek/gemm/gemm.h"

namespace tinyseek::gemm {

constexpr int64_t kSmallMaxM = 8;

// C = alpha A · B + beta C, B packed by pack_b: the small-M path when it applies (see
// above), else gemm(C, ldc, A, B, opt). Checks operands as gemm() does; same bits as gemm().
void gemm_small_m(float* C, int64_t ldc, const Matrix& A, const PackedB& B, const GemmOptions& opt = {});

namespace detail {

// Whether gemm_small_m handles these operands (see above). A must already be validated.
bool small_m_applies(const Matrix& A, const PackedB& B, const GemmOptions& opt);

// The small-M product (validated operands, G = B.G checked, small_m_applies).
void small_m_run(float* C, int64_t ldc, const Matrix& A, const PackedB& B, const GemmOptions& opt);

// The AVX-512 kernels (gemm_small_m_avx512.cc). `units`: A's rows as the packed row layout
// (row m at units + m·S, S = B's k-steps); sa: [M][groups] sA (null: A unscaled).
void small_m_avx512(float* C, int64_t ldc, int64_t M, const uint32_t* units, const float* sa, const PackedB& B,
                    const GemmOptions& opt, int64_t panel0, int64_t panel1);

}  // namespace detail
}  // namespace tinyseek::gemm
