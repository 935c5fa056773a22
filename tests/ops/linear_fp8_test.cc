// The precision-aware Linear (ops/linear.h) against an explicit reference: every operand is
// quantized with the scalar oracle quantizer (numerics::quantize_reference) on the grid the
// DeepSeek-V3 table prescribes, dequantized, and multiplied in FP64. The Linear must agree
// within the a-priori FP32 summation bound of gemm_error_bound (printed as max err / bound,
// which must be <= 1), and its quantized operands must equal the oracle's bit for bit.
// Also: FP32 operands through the precision-aware path are bit-identical to the plain FP32
// path; the weight copy is reused until the version changes; delayed scaling uses the
// previous step's amax; telemetry matches an independent computation and changes no bits;
// the tensor-core accumulation knob reaches the GEMM; Linears sharing one input's
// quantization (InputShare) give the bits of quantizing per Linear.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "tinyseek/base/check.h"
#include "tinyseek/base/rng.h"
#include "tinyseek/gemm/gemm.h"
#include "tinyseek/numerics/bf16.h"
#include "tinyseek/numerics/quant.h"
#include "tinyseek/ops/linear.h"

namespace tinyseek::ops {
namespace {

using gemm::DType;
using numerics::Granularity;

constexpr int64_t N = 200, IN = 300, OUT = 136;  // partial 128-tiles along every axis

// N(0, scale²) with every 97th value ×40: outliers make per-tile scales differ from
// per-tensor ones.
std::vector<float> randn(int64_t n, uint64_t seed, float scale) {
  const Philox rng(seed, 5);
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    v[size_t(i)] = scale * static_cast<float>(rng.normal(uint64_t(i))) * (i % 97 == 3 ? 40.0f : 1.0f);
  return v;
}

// One operand as the oracle sees it: FP32 values, BF16-rounded values, or FP8 codes from
// quantize_reference; `deq` is the stored matrix dequantized.
struct RefOperand {
  DType t = DType::F32;
  int64_t rows = 0, cols = 0;
  std::vector<float> f;
  std::vector<uint16_t> bf;
  numerics::QTensor q;
  std::vector<double> deq;

  gemm::Matrix view(bool trans) const {
    if (t == DType::F32) return gemm::view_f32(f.data(), rows, cols, cols, trans);
    if (t == DType::BF16) return gemm::view_bf16(bf.data(), rows, cols, cols, trans);
    return gemm::view_fp8(q, trans);
  }
};

RefOperand ref_operand(const float* x, int64_t rows, int64_t cols, DType t, Granularity g,
                       numerics::ScaleType st = numerics::ScaleType::Fp32, const float* amax_override = nullptr) {
  RefOperand r;
  r.t = t;
  r.rows = rows;
  r.cols = cols;
  const size_t n = size_t(rows * cols);
  r.deq.resize(n);
  if (t == DType::F32) {
    r.f.assign(x, x + n);
    for (size_t i = 0; i < n; ++i) r.deq[i] = x[i];
  } else if (t == DType::BF16) {
    r.bf.resize(n);
    for (size_t i = 0; i < n; ++i) r.bf[i] = numerics::bf16_encode(x[i]), r.deq[i] = numerics::bf16_decode(r.bf[i]);
  } else {
    numerics::QuantSpec spec;
    spec.format = t == DType::E5M2 ? numerics::Fp8Format::E5M2 : numerics::Fp8Format::E4M3;
    spec.granularity = g;
    spec.scale_type = st;
    numerics::quantize_reference(r.q, x, rows, cols, cols, spec, amax_override);
    std::vector<float> d(n);
    numerics::dequantize(d.data(), cols, r.q);
    for (size_t i = 0; i < n; ++i) r.deq[i] = d[i];
  }
  return r;
}

// C64 = beta C0 + op(A) op(B) in FP64, with op(A) [M,K], op(B) [K,Nn] read from the
// dequantized stored layouts.
std::vector<double> gemm64(const RefOperand& A, bool ta, const RefOperand& B, bool tb, const std::vector<float>* C0) {
  const int64_t M = ta ? A.cols : A.rows, K = ta ? A.rows : A.cols, Nn = tb ? B.rows : B.cols;
  // a [M, K] = op(A) and bt [Nn, K] = op(B)ᵀ, so every output is a contiguous dot product.
  std::vector<double> a(size_t(M * K)), bt(size_t(Nn * K));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k = 0; k < K; ++k) a[size_t(m * K + k)] = ta ? A.deq[size_t(k * A.cols + m)] : A.deq[size_t(m * A.cols + k)];
  for (int64_t n = 0; n < Nn; ++n)
    for (int64_t k = 0; k < K; ++k) bt[size_t(n * K + k)] = tb ? B.deq[size_t(n * B.cols + k)] : B.deq[size_t(k * B.cols + n)];
  std::vector<double> C(size_t(M * Nn), 0.0);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < Nn; ++n) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k) s += a[size_t(m * K + k)] * bt[size_t(n * K + k)];
      C[size_t(m * Nn + n)] = s + (C0 ? double((*C0)[size_t(m * Nn + n)]) : 0.0);
    }
  return C;
}

// max |C - C64| / tol over all elements (tol from gemm_error_bound for these operands).
double bound_ratio(const std::vector<float>& C, const std::vector<double>& C64, const RefOperand& A, bool ta,
                   const RefOperand& B, bool tb, const std::vector<float>* C0, int promote_every) {
  const gemm::Matrix a = A.view(ta), b = B.view(tb);
  const int64_t ldc = b.op_cols();
  std::vector<double> tol(C.size());
  gemm::gemm_error_bound(tol.data(), C0 ? C0->data() : nullptr, ldc, a, b, 1.0f, C0 ? 1.0f : 0.0f, promote_every);
  double worst = 0;
  for (size_t i = 0; i < C.size(); ++i) {
    const double err = std::fabs(double(C[i]) - C64[i]);
    const double r = tol[i] > 0 ? err / tol[i] : (err == 0 ? 0.0 : INFINITY);
    worst = std::max(worst, r);
  }
  return worst;
}

bool same_codes(const numerics::QTensor& a, const numerics::QTensor& b) {
  if (a.rows != b.rows || a.cols != b.cols || a.grid.count() != b.grid.count()) return false;
  return std::memcmp(a.codes.data(), b.codes.data(), size_t(a.rows * a.cols)) == 0 &&
         std::memcmp(a.scales.data(), b.scales.data(), size_t(a.grid.count()) * sizeof(float)) == 0;
}

// The grids the DeepSeek-V3 table (ops/linear.h) prescribes, written out independently.
struct Grids {
  Granularity fprop_x, fprop_w, dgrad_dy, dgrad_w, wgrad_dy, wgrad_x;
};
Grids expected_grids(LinearGranularity g) {
  switch (g) {
    case LinearGranularity::kTensor:
      return {Granularity::Tensor, Granularity::Tensor, Granularity::Tensor, Granularity::Tensor,
              Granularity::Tensor, Granularity::Tensor};
    case LinearGranularity::kRow:
      return {Granularity::Row, Granularity::Row, Granularity::Row, Granularity::Col, Granularity::Col, Granularity::Col};
    case LinearGranularity::kTile128:
      return {Granularity::Tile1x128, Granularity::Block128x128, Granularity::Tile1x128, Granularity::Block128x128,
              Granularity::Tile128x1, Granularity::Tile128x1};
    case LinearGranularity::kMx32:
      return {Granularity::Mx1x32, Granularity::Mx1x32, Granularity::Mx1x32, Granularity::Mx32x1,
              Granularity::Mx32x1, Granularity::Mx32x1};
  }
  return {};
}

struct Case {
  const char* name;
  DType xw, dy;  // X and W format; dY format (hybrid: E5M2)
  LinearGranularity g;
  numerics::ScaleType st;
  DType saved_x = DType::F32;
};

LinearPrecision precision_of(const Case& c) {
  LinearPrecision p;
  p.fprop_x = p.weight = p.wgrad_x = c.xw;
  p.dgrad_dy = p.wgrad_dy = c.dy;
  p.saved_x = c.saved_x;
  if (gemm::is_fp8(c.saved_x)) p.wgrad_x = c.saved_x;
  p.granularity = c.g;
  p.scale_type = c.st;
  return p;
}

// Runs forward + backward of one case and checks all three GEMMs against the oracle.
void check_case(const Case& c) {
  SCOPED_TRACE(c.name);
  const LinearPrecision p = precision_of(c);
  const std::vector<float> x = randn(N * IN, 1, 1.0f), w = randn(OUT * IN, 2, 0.05f), dy = randn(N * OUT, 3, 1e-3f);
  const std::vector<float> dx0 = randn(N * IN, 4, 1e-4f), dw0 = randn(OUT * IN, 5, 1e-2f);
  LinearState st;
  std::vector<float> y(size_t(N * OUT)), dx = dx0, dw = dw0;
  linear_forward(y.data(), x.data(), w.data(), 1, N, IN, OUT, false, p, st);
  const numerics::QTensor* fx = gemm::is_fp8(p.fprop_x) ? &linear_scratch().qa : nullptr;
  numerics::QTensor fx_copy;
  if (fx) {  // linear_scratch().qa is reused by backward: keep the Fprop X for the bitwise check
    fx_copy.rows = fx->rows, fx_copy.cols = fx->cols, fx_copy.grid = fx->grid;
    fx_copy.codes.resize(fx->codes.size());
    fx_copy.scales.resize(fx->scales.size());
    std::memcpy(fx_copy.codes.data(), fx->codes.data(), fx->codes.size());
    std::memcpy(fx_copy.scales.data(), fx->scales.data(), fx->scales.size() * sizeof(float));
  }
  // Backward with x = null when the Linear caches its input: the cache must be used.
  linear_backward(dx.data(), dw.data(), dy.data(), c.saved_x == DType::F32 ? x.data() : nullptr, w.data(), 1, N, IN,
                  OUT, p, st);

  const Grids g = expected_grids(c.g);
  const RefOperand X = ref_operand(x.data(), N, IN, c.xw, g.fprop_x, c.st);
  const RefOperand W = ref_operand(w.data(), OUT, IN, c.xw, g.fprop_w, c.st);
  const RefOperand Wd = ref_operand(w.data(), OUT, IN, c.xw, g.dgrad_w, c.st);
  const RefOperand DYd = ref_operand(dy.data(), N, OUT, c.dy, g.dgrad_dy, c.st);
  const RefOperand DYw = ref_operand(dy.data(), N, OUT, c.dy, g.wgrad_dy, c.st);
  // Wgrad X: from FP32 x, or from its BF16 cache.
  std::vector<float> xw_src = x;
  if (c.saved_x == DType::BF16)
    for (float& v : xw_src) v = numerics::bf16_round(v);
  const DType wx_type = gemm::is_fp8(c.saved_x) ? c.saved_x : c.xw;
  const RefOperand Xw = ref_operand(xw_src.data(), N, IN, wx_type, g.wgrad_x, c.st);

  if (fx) {
    EXPECT_TRUE(same_codes(fx_copy, X.q)) << "Fprop X differs from the oracle quantizer";
  }
  if (gemm::is_fp8(c.xw)) {
    EXPECT_TRUE(same_codes(st.w_q, W.q)) << "FP8 W differs from the oracle quantizer";
  }
  if (gemm::is_fp8(c.saved_x)) {
    EXPECT_TRUE(same_codes(st.x_q, Xw.q)) << "cached X differs from the oracle";
  }

  const double rf = bound_ratio(y, gemm64(X, false, W, true, nullptr), X, false, W, true, nullptr, 128);
  const double rd = bound_ratio(dx, gemm64(DYd, false, Wd, false, &dx0), DYd, false, Wd, false, &dx0, 128);
  const double rw = bound_ratio(dw, gemm64(DYw, true, Xw, false, &dw0), DYw, true, Xw, false, &dw0, 128);
  std::printf("[linear-fp8] %-26s max err / FP32 bound: fprop %.3f  dgrad %.3f  wgrad %.3f (must be <= 1)\n", c.name,
              rf, rd, rw);
  EXPECT_LE(rf, 1.0);
  EXPECT_LE(rd, 1.0);
  EXPECT_LE(rw, 1.0);
}

TEST(LinearFp8, MatchesOracleForEveryGranularityAndFormat) {
  using LG = LinearGranularity;
  const auto fp32 = numerics::ScaleType::Fp32, pow2 = numerics::ScaleType::Pow2;
  const Case cases[] = {
      {"e4m3 tensor", DType::E4M3, DType::E4M3, LG::kTensor, fp32},
      {"e4m3 row", DType::E4M3, DType::E4M3, LG::kRow, fp32},
      {"e4m3 tile128", DType::E4M3, DType::E4M3, LG::kTile128, fp32},
      {"e4m3 tile128 pow2", DType::E4M3, DType::E4M3, LG::kTile128, pow2},
      {"e4m3 mx32", DType::E4M3, DType::E4M3, LG::kMx32, pow2},
      {"hybrid tensor", DType::E4M3, DType::E5M2, LG::kTensor, fp32},
      {"hybrid row", DType::E4M3, DType::E5M2, LG::kRow, fp32},
      {"hybrid tile128", DType::E4M3, DType::E5M2, LG::kTile128, fp32},
      {"hybrid mx32", DType::E4M3, DType::E5M2, LG::kMx32, pow2},
      {"e5m2 tile128", DType::E5M2, DType::E5M2, LG::kTile128, fp32},
      {"bf16", DType::BF16, DType::BF16, LG::kTile128, fp32},
      {"e4m3 tile128 cache bf16", DType::E4M3, DType::E4M3, LG::kTile128, fp32, DType::BF16},
      {"e4m3 tile128 cache e4m3", DType::E4M3, DType::E4M3, LG::kTile128, fp32, DType::E4M3},
      {"bf16 cache bf16", DType::BF16, DType::BF16, LG::kTile128, fp32, DType::BF16},
  };
  for (const Case& c : cases) check_case(c);
}

TEST(LinearFp8, Fp32OperandsThroughPrecisionPathAreBitIdenticalToPlainPath) {
  const std::vector<float> x = randn(N * IN, 11, 1.0f), w = randn(OUT * IN, 12, 0.05f), dy = randn(N * OUT, 13, 1.0f);
  std::vector<float> y0(size_t(N * OUT)), dx0(size_t(N * IN), 0.5f), dw0(size_t(OUT * IN), 0.25f);
  linear_forward(y0.data(), x.data(), w.data(), N, IN, OUT);
  linear_backward(dx0.data(), dw0.data(), dy.data(), x.data(), w.data(), N, IN, OUT);
  // {}: the fp32 recipe's precision (dispatches to the plain pair); backend = the one kAuto
  // picks: the general path with F32 operands (views, options, accumulation flags).
  LinearPrecision general;
  general.backend = gemm::auto_backend();
  ASSERT_TRUE(LinearPrecision{}.plain_fp32());
  ASSERT_FALSE(general.plain_fp32());
  for (const LinearPrecision& p : {LinearPrecision{}, general}) {
    LinearState st;
    std::vector<float> y(size_t(N * OUT)), dx(size_t(N * IN), 0.5f), dw(size_t(OUT * IN), 0.25f);
    linear_forward(y.data(), x.data(), w.data(), 7, N, IN, OUT, false, p, st);
    linear_backward(dx.data(), dw.data(), dy.data(), x.data(), w.data(), 7, N, IN, OUT, p, st);
    const bool same = std::memcmp(y.data(), y0.data(), y.size() * 4) == 0 &&
                      std::memcmp(dx.data(), dx0.data(), dx.size() * 4) == 0 &&
                      std::memcmp(dw.data(), dw0.data(), dw.size() * 4) == 0;
    std::printf("[linear-fp8] F32 via %s path (backend %s): y, dx, dW bit-identical to the plain path: %s\n",
                p.plain_fp32() ? "plain-dispatch" : "general", gemm::to_string(p.backend), same ? "yes" : "NO");
    EXPECT_TRUE(same);
  }
}

TEST(LinearFp8, WeightCopyIsReusedUntilTheVersionChanges) {
  LinearPrecision p = precision_of({"", DType::E4M3, DType::E4M3, LinearGranularity::kTile128, numerics::ScaleType::Fp32});
  const std::vector<float> x = randn(N * IN, 21, 1.0f);
  std::vector<float> w = randn(OUT * IN, 22, 0.05f);
  LinearState st;
  std::vector<float> y1(size_t(N * OUT)), y2(y1.size()), y3(y1.size()), y4(y1.size());
  linear_forward(y1.data(), x.data(), w.data(), 5, N, IN, OUT, false, p, st);
  for (float& v : w) v *= 3.0f;  // a write without a version bump: the cached copy is used
  linear_forward(y2.data(), x.data(), w.data(), 5, N, IN, OUT, false, p, st);
  linear_forward(y3.data(), x.data(), w.data(), 6, N, IN, OUT, false, p, st);  // bumped
  LinearState fresh;
  linear_forward(y4.data(), x.data(), w.data(), 0, N, IN, OUT, false, p, fresh);
  const bool reused = std::memcmp(y1.data(), y2.data(), y1.size() * 4) == 0;
  const bool rebuilt = std::memcmp(y3.data(), y4.data(), y3.size() * 4) == 0;
  std::printf("[linear-fp8] same version reuses the FP8 W: %s; new version rebuilds it (= fresh state): %s; "
              "y[0] %.5g -> %.5g\n", reused ? "yes" : "NO", rebuilt ? "yes" : "NO", y1[0], y3[0]);
  EXPECT_TRUE(reused);
  EXPECT_TRUE(rebuilt);
  EXPECT_NE(y1[0], y3[0]);
}

TEST(LinearFp8, DelayedScalingUsesThePreviousStepsAmax) {
  LinearPrecision p = precision_of({"", DType::E4M3, DType::E4M3, LinearGranularity::kTile128, numerics::ScaleType::Fp32});
  p.amax_history = 2;
  const std::vector<float> x1 = randn(N * IN, 31, 1.0f), w = randn(OUT * IN, 32, 0.05f);
  LinearState st;
  st.telemetry_enabled = true;
  std::vector<float> y(size_t(N * OUT));
  linear_forward(y.data(), x1.data(), w.data(), 1, N, IN, OUT, false, p, st);  // step 1: current amax
  // Step 2 (new weight version): inputs 4x larger are quantized with step 1's amax per
  // column tile (max over tokens), so their outliers saturate.
  std::vector<float> x2 = x1;
  for (float& v : x2) v *= 4.0f;
  st.telemetry.reset();
  linear_forward(y.data(), x2.data(), w.data(), 2, N, IN, OUT, false, p, st);
  const numerics::ScaleGrid grid = numerics::make_scale_grid(Granularity::Tile1x128, N, IN);
  std::vector<float> col_amax(size_t(grid.grid_cols), 0.0f), override(size_t(grid.count()));
  for (int64_t i = 0; i < N; ++i)
    for (int64_t j = 0; j < IN; ++j)
      col_amax[size_t(j / 128)] = std::max(col_amax[size_t(j / 128)], std::fabs(x1[size_t(i * IN + j)]));
  for (int64_t s = 0; s < grid.count(); ++s) override[size_t(s)] = col_amax[size_t(s % grid.grid_cols)];
  const RefOperand want = ref_operand(x2.data(), N, IN, DType::E4M3, Granularity::Tile1x128, numerics::ScaleType::Fp32,
                                      override.data());
  const int64_t sat = st.telemetry.fprop.a.saturated;
  std::printf("[linear-fp8] delayed scaling step 2: X quantized with step-1 amax = oracle with that amax: %s; "
              "saturated %lld of %lld\n", same_codes(linear_scratch().qa, want.q) ? "yes" : "NO", (long long)sat,
              (long long)(N * IN));
  EXPECT_TRUE(same_codes(linear_scratch().qa, want.q));
  EXPECT_GT(sat, 0);
  // The weight's history: one entry per version (step), two steps so far after a commit.
  linear_commit_scaling(st);
  EXPECT_EQ(st.history[size_t(LinearOperand::kWeight)].filled(), 2);
  EXPECT_EQ(st.history[size_t(LinearOperand::kFpropX)].filled(), 2);
  EXPECT_EQ(st.history[size_t(LinearOperand::kFpropX)].slots(), grid.grid_cols);
}

TEST(LinearFp8, TelemetryMatchesIndependentComputationAndChangesNoBits) {
  const LinearPrecision p =
      precision_of({"", DType::E4M3, DType::E5M2, LinearGranularity::kTile128, numerics::ScaleType::Fp32});
  const std::vector<float> x = randn(N * IN, 41, 1.0f), w = randn(OUT * IN, 42, 0.05f), dy = randn(N * OUT, 43, 1.0f);
  std::vector<float> y_off(size_t(N * OUT)), y_on(y_off.size()), dx_off(size_t(N * IN), 0.f), dx_on = dx_off;
  std::vector<float> dw_off(size_t(OUT * IN), 0.f), dw_on = dw_off;
  LinearState off, on;
  on.telemetry_enabled = true;
  linear_forward(y_off.data(), x.data(), w.data(), 1, N, IN, OUT, false, p, off);
  linear_backward(dx_off.data(), dw_off.data(), dy.data(), x.data(), w.data(), 1, N, IN, OUT, p, off);
  linear_forward(y_on.data(), x.data(), w.data(), 1, N, IN, OUT, false, p, on);
  linear_backward(dx_on.data(), dw_on.data(), dy.data(), x.data(), w.data(), 1, N, IN, OUT, p, on);
  EXPECT_EQ(std::memcmp(y_on.data(), y_off.data(), y_on.size() * 4), 0);
  EXPECT_EQ(std::memcmp(dx_on.data(), dx_off.data(), dx_on.size() * 4), 0);
  EXPECT_EQ(std::memcmp(dw_on.data(), dw_off.data(), dw_on.size() * 4), 0);

  // Independent: the FP32 product and the oracle-quantized X.
  std::vector<float> y32(y_on.size());
  linear_forward(y32.data(), x.data(), w.data(), N, IN, OUT);
  double s = 0, e = 0;
  for (size_t i = 0; i < y32.size(); ++i) s += double(y32[i]) * y32[i], e += std::pow(double(y_on[i]) - y32[i], 2);
  const RefOperand X = ref_operand(x.data(), N, IN, DType::E4M3, Granularity::Tile1x128);
  double xs = 0, xe = 0;
  for (size_t i = 0; i < x.size(); ++i) xs += double(x[i]) * x[i], xe += std::pow(double(x[i]) - X.deq[i], 2);
  const LinearTelemetry& t = on.telemetry;
  std::printf("[linear-fp8] telemetry fprop rel err %.4e (independent %.4e), SQNR %.2f dB; X SQNR %.2f dB "
              "(independent %.2f), scales [%.3g, %.3g]; dgrad SQNR %.2f dB (dY e5m2), wgrad SQNR %.2f dB\n",
              t.fprop.rel_err(), std::sqrt(e / s), t.fprop.sqnr_db(), t.fprop.a.sqnr_db(), 10 * std::log10(xs / xe),
              t.fprop.a.scale_min, t.fprop.a.scale_max, t.dgrad.sqnr_db(), t.wgrad.sqnr_db());
  EXPECT_EQ(t.fprop.calls, 1);
  EXPECT_EQ(t.dgrad.calls, 1);
  EXPECT_EQ(t.wgrad.calls, 1);
  EXPECT_NEAR(t.fprop.rel_err(), std::sqrt(e / s), 1e-9 * std::sqrt(e / s));
  EXPECT_NEAR(t.fprop.a.sqnr_db(), 10 * std::log10(xs / xe), 1e-9);
  EXPECT_EQ(t.fprop.a.count, N * IN);
  EXPECT_EQ(t.fprop.a.scales, X.q.grid.count());
  // E4M3 keeps 3 mantissa bits: per-element SQNR 30-45 dB (outliers near a tile max are kept well); E5M2 (dY of Dgrad) ~ 6 dB less.
  EXPECT_GT(t.fprop.a.sqnr_db(), 25.0);
  EXPECT_LT(t.fprop.a.sqnr_db(), 45.0);
  EXPECT_LT(t.dgrad.a.sqnr_db(), t.fprop.a.sqnr_db());
  EXPECT_EQ(t.fprop.a.saturated, 0);  // online scaling never saturates
}

TEST(LinearFp8, TensorCoreAccumulationReachesTheGemm) {
  LinearPrecision p =
      precision_of({"", DType::E4M3, DType::E4M3, LinearGranularity::kTensor, numerics::ScaleType::Fp32});
  p.accumulation = gemm::Accumulation::kTensorCore;
  p.accum_mantissa_bits = 8;
  p.promote_every = 1 << 20;  // per-tensor scales: no promotion at all
  const int64_t K = 2048;
  // Non-negative inputs: truncation errors never cancel (the study's worst case).
  std::vector<float> x = randn(8 * K, 51, 1.0f), w = randn(16 * K, 52, 1.0f);
  for (float& v : x) v = std::fabs(v);
  for (float& v : w) v = std::fabs(v);
  LinearState st;
  std::vector<float> y(8 * 16), want(8 * 16), exact(8 * 16);
  linear_forward(y.data(), x.data(), w.data(), 1, 8, K, 16, false, p, st);
  const RefOperand X = ref_operand(x.data(), 8, K, DType::E4M3, Granularity::Tensor);
  const RefOperand W = ref_operand(w.data(), 16, K, DType::E4M3, Granularity::Tensor);
  gemm::GemmOptions opt;
  opt.accumulation = gemm::Accumulation::kTensorCore;
  opt.tensorcore.mantissa_bits = 8;
  opt.promote_every = 1 << 20;
  gemm::gemm(want.data(), 16, X.view(false), W.view(true), opt);
  const std::vector<double> y64 = gemm64(X, false, W, true, nullptr);
  double worst = 0;
  for (size_t i = 0; i < y.size(); ++i) worst = std::max(worst, std::fabs(y[i] - y64[i]) / std::fabs(y64[i]));
  std::printf("[linear-fp8] tensor-core model (8 bits, no promotion, K %lld): Linear == gemm reference: %s; "
              "max rel err vs FP64 %.3e\n", (long long)K,
              std::memcmp(y.data(), want.data(), y.size() * 4) == 0 ? "yes" : "NO", worst);
  EXPECT_EQ(std::memcmp(y.data(), want.data(), y.size() * 4), 0);
  EXPECT_GT(worst, 1e-3);  // 8 retained bits lose far more than FP32 accumulation would
}

// InputShare: two Linears reading one x (q_a/kv_a, gate/up). Publish + reuse must give the
// bits of quantizing per Linear (forward outputs, activation caches, dx, both dW), for an
// FP8 activation cache (x dropped) and for x kept in FP32 (the Wgrad operand shared in
// backward). Evidence that the reuse really takes the published operands: x is changed in
// place between the two calls, and the reusing Linear still sees the original x (same address);
// after another kPublish, or with another spec, the same change is seen (no stale reuse).
TEST(LinearFp8, SharedInputQuantizationGivesTheSameBits) {
  constexpr int64_t OUT2 = 72;
  const std::vector<float> x = randn(N * IN, 61, 1.0f), w1 = randn(OUT * IN, 62, 0.05f),
                           w2 = randn(OUT2 * IN, 63, 0.05f), dy1 = randn(N * OUT, 64, 1e-3f),
                           dy2 = randn(N * OUT2, 65, 1e-3f);
  for (const DType saved : {DType::E4M3, DType::F32}) {
    const LinearPrecision p = precision_of(
        {"", DType::E4M3, DType::E4M3, LinearGranularity::kTile128, numerics::ScaleType::Fp32, saved});
    const bool cached = saved != DType::F32;
    struct Run {
      std::vector<float> y1, y2, dx, dw1, dw2;
      LinearState s1, s2;
    };
    const auto run = [&](InputShare first, InputShare second, Run& o) {
      o.y1.assign(size_t(N * OUT), 0.0f);
      o.y2.assign(size_t(N * OUT2), 0.0f);
      o.dx.assign(size_t(N * IN), 0.0f);
      o.dw1.assign(size_t(OUT * IN), 0.0f);
      o.dw2.assign(size_t(OUT2 * IN), 0.0f);
      linear_forward(o.y1.data(), x.data(), w1.data(), 1, N, IN, OUT, false, p, o.s1, first);
      linear_forward(o.y2.data(), x.data(), w2.data(), 1, N, IN, OUT2, false, p, o.s2, second);
      const float* xb = cached ? nullptr : x.data();
      // Backward in the other order, as MLA runs it (kv_a publishes, q_a reuses).
      linear_backward(o.dx.data(), o.dw2.data(), dy2.data(), xb, w2.data(), 1, N, IN, OUT2, p, o.s2, first);
      linear_backward(o.dx.data(), o.dw1.data(), dy1.data(), xb, w1.data(), 1, N, IN, OUT, p, o.s1, second);
    };
    Run plain, shared;
    run(InputShare::kNone, InputShare::kNone, plain);
    run(InputShare::kPublish, InputShare::kReuse, shared);
    const auto same = [](const std::vector<float>& a, const std::vector<float>& b) {
      return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
    };
    const bool bits = same(plain.y1, shared.y1) && same(plain.y2, shared.y2) && same(plain.dx, shared.dx) &&
                      same(plain.dw1, shared.dw1) && same(plain.dw2, shared.dw2);
    const bool caches = !cached || (same_codes(plain.s1.x_q, shared.s1.x_q) && same_codes(plain.s2.x_q, shared.s2.x_q));
    std::printf("[linear-fp8] shared input (saved_x %s): y1, y2, dx, dW1, dW2 bit-identical to per-Linear "
                "quantization: %s; activation caches identical: %s\n",
                gemm::to_string(saved), bits ? "yes" : "NO", caches ? "yes" : "NO");
    EXPECT_TRUE(bits);
    EXPECT_TRUE(caches);
  }

  // Reuse is real, and never stale.
  const LinearPrecision p =
      precision_of({"", DType::E4M3, DType::E4M3, LinearGranularity::kTile128, numerics::ScaleType::Fp32});
  std::vector<float> xs = x, x4 = x;
  for (float& v : x4) v *= 4.0f;
  std::vector<float> y_orig(size_t(N * OUT2)), y_x4(y_orig.size()), y(y_orig.size()), y1(size_t(N * OUT));
  LinearState a, b, c;
  linear_forward(y_orig.data(), x.data(), w2.data(), 1, N, IN, OUT2, false, p, c);
  linear_forward(y_x4.data(), x4.data(), w2.data(), 1, N, IN, OUT2, false, p, c);
  const auto outcome = [&](const std::vector<float>& got) {
    return std::memcmp(got.data(), y_orig.data(), got.size() * 4) == 0  ? "published x"
           : std::memcmp(got.data(), y_x4.data(), got.size() * 4) == 0 ? "current x"
                                                                        : "NEITHER";
  };
  xs = x;
  linear_forward(y1.data(), xs.data(), w1.data(), 1, N, IN, OUT, false, p, a, InputShare::kPublish);
  xs = x4;  // same address, new values
  linear_forward(y.data(), xs.data(), w2.data(), 1, N, IN, OUT2, false, p, b, InputShare::kReuse);
  const std::string after_publish = outcome(y);
  // Another publish (of another tensor) withdraws x's operands.
  xs = x;
  linear_forward(y1.data(), xs.data(), w1.data(), 1, N, IN, OUT, false, p, a, InputShare::kPublish);
  const std::vector<float> other = randn(N * IN, 66, 1.0f);
  linear_forward(y1.data(), other.data(), w1.data(), 1, N, IN, OUT, false, p, a, InputShare::kPublish);
  xs = x4;
  linear_forward(y.data(), xs.data(), w2.data(), 1, N, IN, OUT2, false, p, b, InputShare::kReuse);
  const std::string after_other = outcome(y);
  // Another spec (E5M2) does not match the published E4M3 operands.
  LinearPrecision p5 = p;
  p5.fprop_x = p5.weight = p5.wgrad_x = p5.saved_x = DType::E5M2;
  std::vector<float> y5_x4(y.size()), y5(y.size());
  LinearState d, e;
  linear_forward(y5_x4.data(), x4.data(), w2.data(), 1, N, IN, OUT2, false, p5, d);
  xs = x;
  linear_forward(y1.data(), xs.data(), w1.data(), 1, N, IN, OUT, false, p, a, InputShare::kPublish);
  xs = x4;
  linear_forward(y5.data(), xs.data(), w2.data(), 1, N, IN, OUT2, false, p5, e, InputShare::kReuse);
  const bool spec_fresh = std::memcmp(y5.data(), y5_x4.data(), y5.size() * 4) == 0;
  std::printf("[linear-fp8] x changed in place between publish and reuse: the reuse sees the %s; after another "
              "publish: the %s; E5M2 reuse of E4M3 operands quantizes afresh: %s\n",
              after_publish.c_str(), after_other.c_str(), spec_fresh ? "yes" : "NO");
  EXPECT_EQ(after_publish, "published x");
  EXPECT_EQ(after_other, "current x");
  EXPECT_TRUE(spec_fresh);
}

}  // namespace
}  // namespace tinyseek::ops
