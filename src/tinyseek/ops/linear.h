// Linear layer y = x Wᵀ with W stored [out, in] (Hugging Face convention), through the one
// GEMM entry point tinyseek::gemm::gemm (Backend::kAuto picks the fastest kernels):
//   Fprop  y  = x Wᵀ        [N, out]
//   Dgrad  dx += dy W        [N, in]
//   Wgrad  dW += dyᵀ x       [out, in]
// FP32 only for now: LinearPrecision is the hook through which the FP8/BF16 recipes
// (DESIGN.md §4–5: per-GEMM operand formats, 1×128 / 128×128 scaling, cached FP8 weights)
// will be passed; every non-FP32 setting throws "not built yet".
#pragma once
#include <cstdint>

#include "tinyseek/gemm/gemm.h"

namespace tinyseek::ops {

// Operand formats of the three GEMMs of one Linear. Only all-F32 is implemented.
struct LinearPrecision {
  gemm::DType fprop = gemm::DType::F32;  // format of x and W in y = x Wᵀ
  gemm::DType dgrad = gemm::DType::F32;  // format of dy and W in dx = dy W
  gemm::DType wgrad = gemm::DType::F32;  // format of dy and x in dW = dyᵀ x
  gemm::Backend backend = gemm::Backend::kAuto;
};

// y = x Wᵀ (accumulate = false: y is overwritten) or y += x Wᵀ (accumulate = true, e.g.
// adding o_proj straight into the residual stream).
//   y [N, out]   x [N, in]   w [out, in]
void linear_forward(float* y, const float* x, const float* w, int64_t N, int64_t in, int64_t out,
                    bool accumulate = false, const LinearPrecision& precision = {});

// dx += dy W (skipped when dx is null, e.g. for the first layer's input),
// dw += dyᵀ x (skipped when dw is null, e.g. a frozen weight).
//   dx [N, in]   dw [out, in]   dy [N, out]   x [N, in]   w [out, in]
void linear_backward(float* dx, float* dw, const float* dy, const float* x, const float* w,
                     int64_t N, int64_t in, int64_t out, const LinearPrecision& precision = {});

}  // namespace tinyseek::ops
