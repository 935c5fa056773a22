// GEMM front end: names, operand views, validation, the promotion interval, and dispatch
// to a backend. The formula and its guarantees are documented in gemm.h.
#include "tinyseek/gemm/gemm.h"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <string>

#include "tinyseek/base/check.h"
#include "tinyseek/base/parallel.h"
#include "tinyseek/gemm/gemm_blocked.h"
#include "tinyseek/gemm/gemm_internal.h"
#include "tinyseek/numerics/bf16.h"
#include "tinyseek/numerics/fp8.h"

namespace tinyseek::gemm {

const char* to_string(DType t) {
  switch (t) {
    case DType::F32: return "f32";
    case DType::BF16: return "bf16";
    case DType::E4M3: return "e4m3";
    case DType::E5M2: return "e5m2";
  }
  return "unknown-dtype";
}

const char* to_string(Backend b) {
  switch (b) {
    case Backend::kAuto: return "auto";
    case Backend::kReference: return "reference";
    case Backend::kPortable: return "portable";
    case Backend::kAvx512: return "avx512";
  }
  return "unknown-backend";
}

namespace {

Matrix make_view(DType dtype, const void* data, int64_t rows, int64_t cols, int64_t ld, bool trans) {
  Matrix m;
  m.dtype = dtype;
  m.data = data;
  m.rows = rows;
  m.cols = cols;
  m.ld = ld;
  m.trans = trans;
  return m;
}

// "e4m3 [256 x 512] ld 512 transposed" — for error messages.
std::string describe(const Matrix& X) {
  std::ostringstream s;
  s << to_string(X.dtype) << " [" << X.rows << " x " << X.cols << "] ld " << X.ld << (X.trans ? " transposed" : "");
  return s.str();
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Extent along K of X's scale tiles. K runs along A's stored columns unless A is used
// transposed, and along B's stored rows unless B is used transposed (op(B) is [K, N]).
// Wgrad: A = dY stored [M_tok, N_out] used transposed, so K = M_tok runs down the stored
// rows and the tile128x1 grid gives a K-extent of tile_rows = 128.
int64_t k_extent_of_tiles(const Matrix& X, bool is_a) {
  const bool k_along_stored_cols = is_a ? !X.trans : X.trans;
  return k_along_stored_cols ? X.grid.tile_cols : X.grid.tile_rows;
}

}  // namespace

Matrix view_f32(const float* data, int64_t rows, int64_t cols, int64_t ld, bool trans) {
  return make_view(DType::F32, data, rows, cols, ld, trans);
}

Matrix view_bf16(const uint16_t* data, int64_t rows, int64_t cols, int64_t ld, bool trans) {
  return make_view(DType::BF16, data, rows, cols, ld, trans);
}

Matrix view_fp8(const numerics::QTensor& q, bool trans) {
  const DType dtype = q.format == numerics::Fp8Format::E4M3 ? DType::E4M3 : DType::E5M2;
  Matrix m = make_view(dtype, q.codes.data(), q.rows, q.cols, q.cols, trans);
  m.scales = q.scales.data();
  m.grid = q.grid;
  return m;
}

int64_t promotion_interval(const Matrix& A, const Matrix& B, int promote_every) {
  TS_CHECK(promote_every > 0, "promote_every must be positive, got " << promote_every,
           "128 is DeepSeek-V3's N_C; use a large value (e.g. K) to promote only at scale-tile boundaries");
  int64_t G = promote_every;
  if (is_fp8(A.dtype)) G = std::min(G, k_extent_of_tiles(A, true));
  if (is_fp8(B.dtype)) G = std::min(G, k_extent_of_tiles(B, false));
  return std::max<int64_t>(G, 1);
}

namespace detail {

void validate_operand(const Matrix& X, const char* name) {
  TS_CHECK(X.rows >= 0 && X.cols >= 0, "operand " << name << " has a negative shape: " << describe(X),
           "rows and cols are the stored (row-major) extents");
  TS_CHECK(X.ld >= std::max<int64_t>(X.cols, 1),
           "operand " << name << " has leading dimension " << X.ld << " < its " << X.cols << " stored columns ("
                      << describe(X) << ")",
           "ld is the distance in elements between stored rows; it must be at least cols");
  TS_CHECK(X.data != nullptr || X.rows * X.cols == 0, "operand " << name << " (" << describe(X) << ") has no data",
           "pass the pointer to its first element");
  if (!is_fp8(X.dtype)) {
    TS_CHECK(X.scales == nullptr,
             "operand " << name << " is " << to_string(X.dtype) << " but carries FP8 scales (" << describe(X) << ")",
             "F32/BF16 operands have an implicit scale of 1; quantize to FP8 (view_fp8) to use scales");
    return;
  }
  TS_CHECK(X.scales != nullptr, "FP8 operand " << name << " (" << describe(X) << ") has no scales",
           "build FP8 operands with view_fp8(QTensor) so codes, scales and grid travel together");
  const numerics::ScaleGrid& g = X.grid;
  TS_CHECK(g.tile_rows >= 1 && g.tile_cols >= 1,
           "FP8 operand " << name << " has scale tiles of " << g.tile_rows << " x " << g.tile_cols,
           "tiles must be at least 1 x 1; use numerics::make_scale_grid");
  TS_CHECK(g.grid_rows == ceil_div(X.rows, g.tile_rows) && g.grid_cols == ceil_div(X.cols, g.tile_cols),
           "FP8 operand " << name << " (" << describe(X) << ") has a " << g.grid_rows << " x " << g.grid_cols
                          << " grid of " << g.tile_rows << " x " << g.tile_cols << " scale tiles, but its shape needs "
                          << ceil_div(X.rows, g.tile_rows) << " x " << ceil_div(X.cols, g.tile_cols),
           "the scale grid must describe the stored matrix; use numerics::make_scale_grid(granularity, rows, cols)");
}

void validate_operands(const Matrix& A, const Matrix& B) {
  validate_operand(A, "A");
  validate_operand(B, "B");
  TS_CHECK(A.op_cols() == B.op_rows(),
           "inner dimensions differ: op(A) is [" << A.op_rows() << ", " << A.op_cols() << "] but op(B) is ["
                                                 << B.op_rows() << ", " << B.op_cols() << "] (A: " << describe(A)
                                                 << ", B: " << describe(B) << ")",
           "op(A) must be [M, K] and op(B) [K, N]; check the trans flags (Fprop: B = W [N, K] transposed; "
           "Wgrad: A = dY [M, N] transposed)");
}

void validate_output(const float* C, int64_t ldc, int64_t M, int64_t N, const GemmOptions& opt) {
  TS_CHECK(std::isfinite(opt.alpha) && std::isfinite(opt.beta),
           "alpha and beta must be finite, got alpha " << opt.alpha << ", beta " << opt.beta,
           "beta = 0 overwrites C, beta = 1 accumulates into it");
  TS_CHECK(C != nullptr || M * N == 0, "output C [" << M << ", " << N << "] is null", "pass the output buffer");
  TS_CHECK(ldc >= std::max<int64_t>(N, 1), "ldc " << ldc << " is smaller than the " << N << " columns of C",
           "C is row-major [M, N]; ldc must be at least N");
}

int64_t checked_promotion_interval(const Matrix& A, const Matrix& B, int promote_every) {
  const int64_t G = promotion_interval(A, B, promote_every);
  const int64_t K = A.op_cols();
  // Scales are constant within each K-group when every tile boundary along K is a group
  // boundary (extent a multiple of G) or when one tile spans all of K.
  auto check = [&](const Matrix& X, bool is_a, const char* name) {
    if (!is_fp8(X.dtype)) return;
    const int64_t extent = k_extent_of_tiles(X, is_a);
    TS_CHECK(extent % G == 0 || extent >= K,
             "operand " << name << "'s scale tiles (" << X.grid.tile_rows << " x " << X.grid.tile_cols << ") span "
                        << extent << " elements along K, not a multiple of the promotion interval G = " << G
                        << " (promote_every " << promote_every << ", K " << K
                        << "): its scale would change inside a promotion group",
             "choose promote_every (and the other operand's scale tiles) so that G divides every scale tile's K-extent,"
             " e.g. 128-wide tiles with promote_every = 128");
  };
  check(A, true, "A");
  check(B, false, "B");
  return G;
}

float stored_value(const Matrix& X, int64_t i, int64_t j) {
  const int64_t at = i * X.ld + j;
  switch (X.dtype) {
    case DType::F32: return static_cast<const float*>(X.data)[at];
    case DType::BF16: return numerics::bf16_decode(static_cast<const uint16_t*>(X.data)[at]);
    case DType::E4M3: return numerics::fp8_decode_table(numerics::Fp8Format::E4M3)[static_cast<const uint8_t*>(X.data)[at]];
    case DType::E5M2: return numerics::fp8_decode_table(numerics::Fp8Format::E5M2)[static_cast<const uint8_t*>(X.data)[at]];
  }
  return 0.0f;
}

float op_scale(const Matrix& X, int64_t r, int64_t c) {
  if (!is_fp8(X.dtype)) return 1.0f;
  return X.trans ? X.scales[X.grid.index(c, r)] : X.scales[X.grid.index(r, c)];
}

void decode_op(const Matrix& X, float* out) {
  const int64_t R = X.op_rows(), Cn = X.op_cols();
  parallel_for(R, [&](int64_t r) {
    float* o = out + r * Cn;
    if (X.trans) {
      for (int64_t c = 0; c < Cn; ++c) o[c] = stored_value(X, c, r);
    } else {
      for (int64_t c = 0; c < Cn; ++c) o[c] = stored_value(X, r, c);
    }
  });
}

}  // namespace detail

void gemm(float* C, int64_t ldc, const Matrix& A, const Matrix& B, const GemmOptions& opt) {
  detail::validate_operands(A, B);
  detail::validate_output(C, ldc, A.op_rows(), B.op_cols(), opt);
  if (opt.accumulation == Accumulation::kTensorCore) {
    // Checked here because the model runs inside parallel loops, where a throw cannot escape.
    TS_CHECK(opt.tensorcore.mantissa_bits >= 1 && opt.tensorcore.mantissa_bits <= 23,
             "tensor-core accumulator mantissa bits must be in 1..23, got " << opt.tensorcore.mantissa_bits,
             "13 models the ~14 bits DeepSeek-V3 measured on H800");
    TS_CHECK(opt.tensorcore.align_group >= 1, "tensor-core align_group must be positive, got "
             << opt.tensorcore.align_group, "32 = one FP8 WGMMA K step");
  }
  const int64_t G = detail::checked_promotion_interval(A, B, opt.promote_every);
  // The tensor-core model is a numerical study tool that only the reference implements.
  if (opt.backend == Backend::kReference || opt.accumulation == Accumulation::kTensorCore) {
    detail::gemm_reference(C, ldc, A, B, opt, G);
    return;
  }
  detail::gemm_blocked(C, ldc, A, B, opt, G);
}

}  // namespace tinyseek::gemm
