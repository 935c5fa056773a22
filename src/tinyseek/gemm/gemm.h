// One GEMM entry point for every precision tinyseek trains with:
//
//   C[M,N] = alpha * op(A)[M,K] · op(B)[K,N] + beta * C          (C is FP32, row-major, ldc)
//
// Operands are stored row-major [rows, cols] with leading dimension ld; op(X) = X or Xᵀ.
// The three products of a Linear layer with weight W stored [N_out, K_in]:
//   Fprop  Y  = X · Wᵀ      A = X  [M,K]           B = W [N,K]  trans
//   Dgrad  dX = dY · W      A = dY [M,N]           B = W [N,K]
//   Wgrad  dW += dYᵀ · X    A = dY [M,N] trans     B = X [M,K]       beta = 1
//
// Each operand is F32, BF16, or FP8 (E4M3/E5M2) with FP32 scales on a ScaleGrid of its
// stored layout (see numerics/quant.h). Semantics (what the oracle computes in FP64 and
// every implementation approximates):
//
//   C[m,n] = alpha * Σ_g sA(m,g) · sB(g,n) · P_g(m,n) + beta * C[m,n]
//   P_g(m,n) = Σ_{k in group g} a(m,k) · b(k,n)        a, b = stored values (FP8 codes decoded)
//
// K is cut into groups of G elements, G = the promotion interval: the smallest extent
// along K of the operands' scale tiles, capped at `promote_every` (default 128). Within a
// group P_g is accumulated in FP32 (or through the tensor-core model, Accumulation::
// kTensorCore), then multiplied by the two scales and added to an FP32 accumulator:
// DeepSeek-V3's "promotion to CUDA cores every N_C = 128". Scales must be constant within
// a group: the K-extents of A's and B's scale tiles must be multiples of G (checked).
// F32/BF16 operands have an implicit scale of 1. Products of FP8 (and BF16) values are
// exact in FP32, so P_g differs from the exact sum only by FP32 addition rounding.
//
// Determinism: every implementation gives identical bits for every run and every thread
// count (threads split output tiles, never K).
//
// Backends. kReference: the formula written out (gemm_reference.cc). kPortable and
// kAvx512: the blocked kernels below. kAuto: kAvx512 when simd_path() is Avx512Bf16 (CPU
// has AVX512-BF16 and TINYSEEK_SIMD / set_simd_override do not force portable), else
// kPortable. Accumulation::kTensorCore is a numerical model, not a kernel: it always runs
// the reference implementation, whatever the backend.
//
// Blocked kernels (gemm_blocked.h, gemm_avx512.cc, gemm_portable.cc), BLIS-style:
//   op(B) [K,N] is packed into NR-wide panels, [panel][k-step][NR]; op(A) into MR-tall
//   panels per (mc x kc) block. A micro-kernel keeps an MR x NR tile of P_g in registers.
//   Kernels (MR x NR, element of a packed k-step):
//     avx512 BF16   8 x 32   BF16 k-pair (vdpbf16ps), used when both operands are BF16/FP8
//                            (FP8 codes are widened to BF16 while packing: exact)
//     avx512 FP32   8 x 32   FP32 (vfmadd231ps), used when either operand is F32
//     portable      4 x 8    FP32 (plain C++; FP8/BF16 decoded exactly to FP32)
//   Blocking: derived at run time from the L1d and L2 sizes the OS reports
//   (derive_block_limits in gemm_blocked.h; TINYSEEK_GEMM_BLOCKS overrides it). Zen 4 (32 KiB
//   L1d, 1 MiB L2): kc 160 k-steps (256 when K fits), A blocks of <= 128 rows, tasks of <= 512
//   columns when K spans several kc blocks; Zen 5 (48 KiB L1d): kc 256. Block sizes change
//   speed only, never bits (running sums between kc blocks; tests/gemm/gemm_block_plan_test).
//   pack_b of an FP8 B with GemmOptions::compact_fp8 keeps the FP8 codes in the BF16-pair
//   panel order (byte pairs); the driver widens a panel's kc block into a per-thread buffer
//   before its MR panels run (a byte-to-word lookup per element, exact).
//   B packing, when gemm() gets an unpacked B: a packed op(B) of <= 1 MiB (expert-sized
//   GEMMs) is packed by every task for its own columns, so no packed data crosses cores and
//   no barrier waits; the task grid then minimises the estimated time of the slowest thread
//   (multiply-adds, repeated packing, operands read from the other core's cache). Larger B
//   is packed once by all threads, then shared; tasks are mc x nc blocks that split evenly.
//   A: BF16 (FP32) op(A) = A is read in place by the micro-kernel when its rows already are
//   the packed row layout (even K and G, even ld); otherwise packed per block (FP8 widened
//   to BF16 exactly: lookup tables, with AVX512-VBMI byte lookups where the CPU has them).
//   Loops: tasks (taken by the threads in turn) -> [pack the task's B panels] -> A blocks
//   -> kc blocks (pack the A block) -> NR panels -> MR panels -> micro-kernel over the
//   block's groups.
//   Per group g the micro-kernel computes, for its MR x NR tile,
//     P = Σ_{k in g} a·b   in FP32 from +0, in k order (BF16: vdpbf16ps adds the odd then
//                          the even product of each k-pair; a group of odd length is padded
//                          with one zero product)
//     acc = s·P  (first group)   or   acc = fma(P, s, acc)   with s = sA(m,g)·sB(g,n) in FP32
//     (F32/BF16 operands: s = 1 and acc = P, then acc = acc + P)
//   and finally C = alpha·acc (+ beta·C, each rounded, then added) as in the reference.
//   The order of operations of an element depends only on K and G, never on the blocking or
//   thread count, so results are bitwise identical for any thread count and between
//   gemm(B) and gemm(pack_b(B)). Within a group the order may differ from the reference
//   (BF16 pairs); the fma saves one rounding: both stay inside gemm_error_bound.
//   vdpbf16ps treats BF16 denormal inputs as zero and flushes denormal FP32 results
//   (DAZ/FTZ): BF16 operands with |x| < 2^-126, or partial sums below 2^-126, lose those
//   values on the avx512 backend. FP8 values widened to BF16 are never denormal, and sums of
//   FP8 products are multiples of 2^-32 (E5M2) or 2^-18 (E4M3), so FP8 GEMMs are unaffected.
#pragma once
#include <cstdint>
#include <string>

#include "tinyseek/base/aligned.h"
#include "tinyseek/numerics/accum.h"
#include "tinyseek/numerics/quant.h"

namespace tinyseek::gemm {

enum class DType : uint8_t { F32, BF16, E4M3, E5M2 };
const char* to_string(DType t);
inline bool is_fp8(DType t) { return t == DType::E4M3 || t == DType::E5M2; }

// A non-owning view of a stored operand.
struct Matrix {
  DType dtype = DType::F32;
  const void* data = nullptr;     // float*, uint16_t* (bf16 bits) or uint8_t* (fp8 codes)
  int64_t rows = 0, cols = 0, ld = 0;
  bool trans = false;             // use the transpose of the stored matrix
  // FP8 only: scale of stored element (i, j) = scales[grid.index(i, j)].
  const float* scales = nullptr;
  numerics::ScaleGrid grid;

  int64_t op_rows() const { return trans ? cols : rows; }
  int64_t op_cols() const { return trans ? rows : cols; }
};

Matrix view_f32(const float* data, int64_t rows, int64_t cols, int64_t ld, bool trans = false);
Matrix view_bf16(const uint16_t* data, int64_t rows, int64_t cols, int64_t ld, bool trans = false);
Matrix view_fp8(const numerics::QTensor& q, bool trans = false);

enum class Accumulation : uint8_t { kFp32, kTensorCore };

enum class Backend : uint8_t {
  kAuto,       // fastest available (AVX-512 kernels where the CPU has them)
  kReference,  // the simple, obviously-correct implementation (FP32 groups, sequential K)
  kPortable,   // the blocked portable kernels (no ISA extensions)
  kAvx512,     // the AVX-512 / AVX512-BF16 kernels (error if the CPU lacks them)
};
const char* to_string(Backend b);

struct GemmOptions {
  float alpha = 1.0f, beta = 0.0f;
  int promote_every = 128;                     // cap on the promotion interval G
  Accumulation accumulation = Accumulation::kFp32;
  numerics::AccumModel tensorcore;             // used when accumulation == kTensorCore
  Backend backend = Backend::kAuto;
  // pack_b only: on the AVX-512 backend an FP8 B keeps its FP8 codes in the panels (1 byte
  // per element instead of a 2-byte BF16 copy: half the memory of packed FP8 weights) and
  // gemm() widens each panel's kc block (<= 32 KiB) into a per-thread buffer just before
  // the micro-kernels read it from L1. Exact: same bits. The widening, repeated per
  // 128-row A block, cost 0-3% of the pre-packed GEMM on the and the trainer's
  // shapes (2026-11-23, bench/RESULTS.md). false: panels of BF16 pairs, as for a BF16 B.
  bool compact_fp8 = true;
};

// C = alpha op(A) op(B) + beta C. Checks shapes and scale layouts; throws tinyseek::Error
// naming the mismatch.
void gemm(float* C, int64_t ldc, const Matrix& A, const Matrix& B, const GemmOptions& opt = {});

// B packed once into a blocked backend's panel layout, for reuse across calls (weights:
// one FP8 copy per optimizer step, packed once and used by every micro-batch's Fprop or
// Dgrad). Owns its memory; the source operand may be freed after packing. Packing widens
// FP8/BF16 exactly (an FP8 B on AVX-512 stays 1 byte per element by default and is widened
// per kc block inside gemm(): GemmOptions::compact_fp8), so gemm(C, A, pack_b(B)) gives the
// same bits as gemm(C, A, B). bytes() is the memory it holds.
struct PackedB {
  Backend backend = Backend::kAuto;  // kPortable or kAvx512 once packed
  bool bf16_pairs = false;           // panels hold BF16 k-pairs (AVX512-BF16 kernel), else FP32
  int64_t K = 0, N = 0;              // op(B) is [K, N]
  int64_t G = 0;                     // the promotion interval the panels were cut for
  Matrix source;                     // B's shape, dtype, trans and scale grid (data, scales null)
  bool fp8_codes = false;            // compact FP8 (GemmOptions::compact_fp8): `codes`, not `panels`
  AlignedBuffer<uint32_t> panels;    // [ceil(N/NR)][k-steps][NR] FP32 or BF16-pair units
  AlignedBuffer<uint8_t> codes;      // fp8_codes: [ceil(N/NR)][k-steps][NR][2] FP8 code pairs (the
                                     // BF16-pair panel with every BF16 word narrowed to its code,
                                     // each 64-code chunk lane-interleaved for the widening)
  AlignedBuffer<float> scales;       // FP8 only: [ceil(N/NR)][groups][NR] = sB(g, n)
  bool empty() const { return backend == Backend::kAuto; }
  size_t bytes() const { return panels.size() * sizeof(uint32_t) + codes.size() + scales.size() * sizeof(float); }
};

// Packs B for gemm(C, ldc, A, packed, opt). opt.backend selects the kernels (kAuto as in
// gemm(); kReference is refused: it has no packed form). group = the promotion interval
// G the calls will use (0: min(opt.promote_every, K-extent of B's scale tiles), right for
// A with 1x128 or coarser scales); gemm() checks it against A. B in BF16/FP8 is packed for
// the BF16 kernel on avx512, so A must then be BF16/FP8 too (checked).
PackedB pack_b(const Matrix& B, const GemmOptions& opt = {}, int64_t group = 0);
// The same into `out`, reusing its memory when the size is unchanged: repacking every step
// then costs no allocation or page faults (which cost ~10 us per 4 KiB page on this VM).
void pack_b(PackedB& out, const Matrix& B, const GemmOptions& opt = {}, int64_t group = 0);

// C = alpha op(A) B + beta C with B packed by pack_b. opt.backend must be kAuto or the
// backend B was packed for; opt.promote_every and accumulation must match the packing
// (kTensorCore is refused). Same bits as gemm() with the unpacked B.
void gemm(float* C, int64_t ldc, const Matrix& A, const PackedB& B, const GemmOptions& opt = {});

// The backend kAuto resolves to right now (kAvx512 or kPortable).
Backend auto_backend();

// The promotion interval G gemm() would use for these operands (exposed for tests).
int64_t promotion_interval(const Matrix& A, const Matrix& B, int promote_every);

// The naive oracle: the same formula with every product and sum in FP64 (C64 row-major
// [M,N], ld = N; beta applied to the given FP32 C, which may be null when beta == 0).
// Kept forever; every kernel is tested against it.
void gemm_oracle(double* C64, const float* C, int64_t ldc, const Matrix& A, const Matrix& B,
                 float alpha = 1.0f, float beta = 0.0f);

// Error bound for comparing an FP32 GEMM against the oracle, per element:
//   |C - C64| <= tol(m,n) = c_K * |alpha| * Σ_k |a·sA||b·sB| + 2 u |beta C|,
//   c_K = (G + ceil(K/G) + 2) * 2^-24,
// the standard a-priori bound for FP32 summation of G-length groups then ceil(K/G) partial
// sums. Tests print max |C - C64| / tol, which must be <= 1.
void gemm_error_bound(double* tol, const float* C, int64_t ldc, const Matrix& A, const Matrix& B,
                      float alpha, float beta, int promote_every);

}  // namespace tinyseek::gemm
