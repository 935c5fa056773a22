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
#pragma once
#include <cstdint>
#include <string>

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
};

// C = alpha op(A) op(B) + beta C. Checks shapes and scale layouts; throws tinyseek::Error
// naming the mismatch.
void gemm(float* C, int64_t ldc, const Matrix& A, const Matrix& B, const GemmOptions& opt = {});

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
