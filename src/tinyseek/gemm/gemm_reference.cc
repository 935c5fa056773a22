// The simple, obviously-correct GEMM (Backend::kReference): the formula of gemm.h written
// out directly. For output (m, n):
//
//   acc = 0                                           (FP32)
//   for each K-group g = [g*G, min(K, (g+1)*G)):
//     P = 0; for k in g, in order: P += a(m,k) * b(k,n)     (FP32; products exact for FP8/BF16)
//       (kTensorCore: P = numerics::tensorcore_sum(products of the group in k order); the
//        promotion is the group boundary, so opt.tensorcore.promote_every is not used —
//        the scales change there, and G already carries the promote_every cap)
//     acc += (sA(m,g) * sB(g,n)) * P                  (FP32: scale product first, then times P)
//   C = alpha * acc              if beta == 0 (C is never read: NaN/garbage there is ignored)
//   C = alpha * acc + beta * C   otherwise (two FP32 roundings, then the add; no FMA: the
//                                project builds with -ffp-contract=off)
//
// Speed without changing the arithmetic: op(A) and op(B) are decoded once into FP32 panels,
// and the k-loop updates a whole row of P at once (P[n] += a(m,k) * b(k,n) for all n) —
// each P[n] still sees its addends in k order, so vectorising over n changes no bits.
// Threads take whole output rows (parallel_for over m), so results are identical for
// every thread count.
#include <algorithm>
#include <vector>

#include "tinyseek/base/aligned.h"
#include "tinyseek/base/parallel.h"
#include "tinyseek/gemm/gemm_internal.h"

namespace tinyseek::gemm::detail {

namespace {

struct Panels {
  int64_t M = 0, N = 0, K = 0, G = 1, groups = 0;
  AlignedBuffer<float> a;   // op(A) decoded [M, K]
  AlignedBuffer<float> b;   // op(B) decoded [K, N]
  AlignedBuffer<float> sa;  // sA [M, groups]: A's scale of row m in group g
  AlignedBuffer<float> sb;  // sB [groups, N]: B's scale of column n in group g
};

Panels make_panels(const Matrix& A, const Matrix& B, int64_t G) {
  Panels p;
  p.M = A.op_rows(), p.N = B.op_cols(), p.K = A.op_cols(), p.G = G;
  p.groups = (p.K + G - 1) / G;
  p.a.resize(static_cast<size_t>(p.M * p.K));
  p.b.resize(static_cast<size_t>(p.K * p.N));
  p.sa.resize(static_cast<size_t>(p.M * p.groups));
  p.sb.resize(static_cast<size_t>(p.groups * p.N));
  decode_op(A, p.a.data());
  decode_op(B, p.b.data());
  // Scales are constant within a group (checked), so the scale at the group's first k holds.
  for (int64_t m = 0; m < p.M; ++m)
    for (int64_t g = 0; g < p.groups; ++g) p.sa[m * p.groups + g] = op_scale(A, m, g * G);
  for (int64_t g = 0; g < p.groups; ++g)
    for (int64_t n = 0; n < p.N; ++n) p.sb[g * p.N + n] = op_scale(B, g * G, n);
  return p;
}

// P[0..N) = FP32 sums over k in [k0, k1) of a[k] * b[k, n], each in k order from +0.
void group_sums_fp32(float* P, const float* a, const float* b, int64_t N, int64_t k0, int64_t k1) {
  std::fill(P, P + N, 0.0f);
  for (int64_t k = k0; k < k1; ++k) {
    const float ak = a[k];
    const float* bk = b + k * N;
    for (int64_t n = 0; n < N; ++n) P[n] += ak * bk[n];
  }
}

// P[0..N) = the tensor-core model's sum of the group's products a[k] * b[k, n] (k order).
void group_sums_tensorcore(float* P, float* products, const float* a, const float* b, int64_t N, int64_t k0,
                           int64_t k1, const numerics::AccumModel& model) {
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t k = k0; k < k1; ++k) products[k - k0] = a[k] * b[k * N + n];
    P[n] = numerics::tensorcore_sum(products, k1 - k0, model);
  }
}

}  // namespace

void gemm_reference(float* C, int64_t ldc, const Matrix& A, const Matrix& B, const GemmOptions& opt, int64_t G) {
  const Panels p = make_panels(A, B, G);
  const int64_t M = p.M, N = p.N, K = p.K;
  if (M == 0 || N == 0) return;
  // Per-thread workspace, allocated before the parallel region (allocation can throw):
  // acc [N], P [N], products [G].
  const int64_t per_thread = 2 * N + G;
  AlignedBuffer<float> workspace(static_cast<size_t>(per_thread * max_threads()));
  const bool tensorcore = opt.accumulation == Accumulation::kTensorCore;
  parallel_for(M, [&](int64_t m) {
    float* acc = workspace.data() + thread_id() * per_thread;
    float* P = acc + N;
    float* products = P + N;
    const float* a = p.a.data() + m * K;
    std::fill(acc, acc + N, 0.0f);
    for (int64_t g = 0; g < p.groups; ++g) {
      const int64_t k0 = g * G, k1 = std::min(K, k0 + G);
      if (tensorcore) {
        group_sums_tensorcore(P, products, a, p.b.data(), N, k0, k1, opt.tensorcore);
      } else {
        group_sums_fp32(P, a, p.b.data(), N, k0, k1);
      }
      const float sa = p.sa[m * p.groups + g];
      const float* sb = p.sb.data() + g * N;
      for (int64_t n = 0; n < N; ++n) acc[n] += (sa * sb[n]) * P[n];
    }
    float* c = C + m * ldc;
    if (opt.beta == 0.0f) {
      for (int64_t n = 0; n < N; ++n) c[n] = opt.alpha * acc[n];
    } else {
      for (int64_t n = 0; n < N; ++n) c[n] = opt.alpha * acc[n] + opt.beta * c[n];
    }
  });
}

}  // namespace tinyseek::gemm::detail
