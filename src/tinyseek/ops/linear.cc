#include "tinyseek/ops/linear.h"

#include "tinyseek/base/check.h"

namespace tinyseek::ops {

namespace {

void check_precision(const LinearPrecision& p) {
  TS_CHECK(p.fprop == gemm::DType::F32 && p.dgrad == gemm::DType::F32 && p.wgrad == gemm::DType::F32,
           "linear with operand formats fprop " << gemm::to_string(p.fprop) << ", dgrad "
               << gemm::to_string(p.dgrad) << ", wgrad " << gemm::to_string(p.wgrad)
               << " is not built yet (only F32 is)",
           "use the fp32 precision recipe");
}

void check_dims(int64_t N, int64_t in, int64_t out) {
  TS_CHECK(N >= 0 && in > 0 && out > 0,
           "linear needs N >= 0 and positive in/out features, got N " << N << ", in " << in
                                                                      << ", out " << out,
           "check the model config");
}

}  // namespace

void linear_forward(float* y, const float* x, const float* w, int64_t N, int64_t in, int64_t out,
                    bool accumulate, const LinearPrecision& precision) {
  check_precision(precision);
  check_dims(N, in, out);
  if (N == 0) return;
  gemm::GemmOptions opt;
  opt.beta = accumulate ? 1.0f : 0.0f;
  opt.backend = precision.backend;
  // y[N, out] = x[N, in] · (w[out, in])ᵀ
  gemm::gemm(y, out, gemm::view_f32(x, N, in, in), gemm::view_f32(w, out, in, in, /*trans=*/true), opt);
}

void linear_backward(float* dx, float* dw, const float* dy, const float* x, const float* w,
                     int64_t N, int64_t in, int64_t out, const LinearPrecision& precision) {
  check_precision(precision);
  check_dims(N, in, out);
  if (N == 0) return;
  gemm::GemmOptions opt;
  opt.beta = 1.0f;
  opt.backend = precision.backend;
  // dx[N, in] += dy[N, out] · w[out, in]
  if (dx) gemm::gemm(dx, in, gemm::view_f32(dy, N, out, out), gemm::view_f32(w, out, in, in), opt);
  // dw[out, in] += (dy[N, out])ᵀ · x[N, in]
  if (dw)
    gemm::gemm(dw, in, gemm::view_f32(dy, N, out, out, /*trans=*/true), gemm::view_f32(x, N, in, in), opt);
}

}  // namespace tinyseek::ops
