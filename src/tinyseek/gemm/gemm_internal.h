// Pieces shared by the GEMM front end (gemm.cc), the simple implementation
// (gemm_reference.cc) and the FP64 oracle (gemm_oracle.cc). Not part of the public API.
#pragma once
#include <cstdint>

#include "tinyseek/gemm/gemm.h"

namespace tinyseek::gemm::detail {

// Checks one operand on its own (ld, data, scales vs dtype, grid vs shape). `name` is "A"
// or "B" and appears in every message.
void validate_operand(const Matrix& X, const char* name);
// Checks both operands and that op(A) [M,K] and op(B) [K,N] agree on K.
void validate_operands(const Matrix& A, const Matrix& B);
// Checks the output C [M, N] (ldc, not null unless empty) and that alpha and beta are finite.
void validate_output(const float* C, int64_t ldc, int64_t M, int64_t N, const GemmOptions& opt);
// promotion_interval() plus the check that scales are constant inside every K-group.
int64_t checked_promotion_interval(const Matrix& A, const Matrix& B, int promote_every);

// Stored element (i, j) decoded to FP32 (FP8 code -> value, without its scale).
float stored_value(const Matrix& X, int64_t i, int64_t j);
// Scale of element (r, c) of op(X); 1 for F32/BF16.
float op_scale(const Matrix& X, int64_t r, int64_t c);
// op(X) decoded into a row-major FP32 panel out[op_rows, op_cols] (no scales applied).
void decode_op(const Matrix& X, float* out);

// The simple implementation (validated inputs, G from checked_promotion_interval).
void gemm_reference(float* C, int64_t ldc, const Matrix& A, const Matrix& B, const GemmOptions& opt, int64_t G);

}  // namespace tinyseek::gemm::detail
