// Internal to train/adamw.cc: the per-chunk AdamW kernels. The portable ones live in
// adamw.cc; the AVX-512 ones (adamw_avx512.cc) do the same IEEE operations in the same
// order (mul, add, sqrt, div; no FMA), so both paths give identical bits.
#pragma once
#include <cstddef>
#include <cstdint>

namespace tinyseek::train::detail {

// FP32 coefficients of one step, each rounded once from double (see adamw.h).
struct AdamWCoeffs {
  float beta1, one_minus_beta1, beta2, one_minus_beta2, eps;
  float decay_mul;      // 1 − lr·wd
  float neg_step_size;  // −lr / (1 − β1^t)
  float bc2_sqrt;       // sqrt(1 − β2^t)
  float grad_scale;
};

// p, g [n] FP32; m, v [n] the moments (FP32 or BF16 bit patterns), updated in place.
void adamw_chunk_fp32_avx512(float* p, const float* g, float* m, float* v, size_t n, bool decay,
                             const AdamWCoeffs& c);
void adamw_chunk_bf16_avx512(float* p, const float* g, uint16_t* m, uint16_t* v, size_t n, bool decay,
                             const AdamWCoeffs& c);

}  // namespace tinyseek::train::detail
