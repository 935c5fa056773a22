// Shared helpers of the GEMM tests: test operands in every dtype and FP8 granularity, a
// case description, the oracle comparison (max |C - C64| / tol) and error expectations.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "tinyseek/base/check.h"
#include "tinyseek/base/rng.h"
#include "tinyseek/gemm/gemm.h"
#include "tinyseek/numerics/bf16.h"
#include "tinyseek/numerics/fp8.h"
#include "tinyseek/numerics/quant.h"

namespace tinyseek::gemm::gemm_test {

using numerics::Fp8Format;
using numerics::Granularity;
using numerics::QTensor;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// x[i, j] = N(0,1) * 2^e with e in [-4, 4] varying across rows and columns, so that
// scales differ between tiles; padding (j >= cols) is NaN so reading it would show.
inline std::vector<float> test_matrix(int64_t rows, int64_t cols, int64_t ld, uint64_t seed) {
  Philox rng(seed, 7);
  std::vector<float> x(static_cast<size_t>(std::max<int64_t>(rows * ld, 1)), kNaN);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      const int e = static_cast<int>((i / 37 + j / 53 + (i * 3 + j) % 5) % 9) - 4;
      x[i * ld + j] = std::ldexp(static_cast<float>(rng.normal(static_cast<uint64_t>(i * ld + j))), e);
    }
  return x;
}

struct OperandSpec {
  DType dtype = DType::F32;
  Granularity gran = Granularity::Tensor;  // FP8 only
};

// A stored operand [rows, cols] with leading dimension ld that owns its storage.
struct Operand {
  OperandSpec spec;
  int64_t rows = 0, cols = 0, ld = 0;
  bool trans = false;
  std::vector<float> f32;
  std::vector<uint16_t> bf16;
  std::vector<uint8_t> codes;  // FP8 codes [rows, ld], padding = NaN codes
  QTensor q;                   // FP8 codes (ld = cols) and scales

  Matrix view() const {
    switch (spec.dtype) {
      case DType::F32: return view_f32(f32.data(), rows, cols, ld, trans);
      case DType::BF16: return view_bf16(bf16.data(), rows, cols, ld, trans);
      default: {
        Matrix m = view_fp8(q, trans);
        m.data = codes.data();
        m.ld = ld;
        return m;
      }
    }
  }
};

inline Operand make_operand(OperandSpec spec, int64_t rows, int64_t cols, int64_t pad, bool trans, uint64_t seed) {
  Operand o;
  o.spec = spec;
  o.rows = rows, o.cols = cols, o.ld = cols + pad, o.trans = trans;
  const std::vector<float> x = test_matrix(rows, cols, o.ld, seed);
  if (spec.dtype == DType::F32) {
    o.f32 = x;
  } else if (spec.dtype == DType::BF16) {
    o.bf16.resize(x.size());
    for (size_t i = 0; i < x.size(); ++i) o.bf16[i] = numerics::bf16_encode(x[i]);
  } else {
    numerics::QuantSpec qs;
    qs.format = spec.dtype == DType::E4M3 ? Fp8Format::E4M3 : Fp8Format::E5M2;
    qs.granularity = spec.gran;
    numerics::quantize(o.q, x.data(), rows, cols, o.ld, qs);
    o.codes.assign(x.size(), 0x7F);  // NaN in both formats
    for (int64_t i = 0; i < rows; ++i) std::memcpy(&o.codes[i * o.ld], &o.q.codes[i * cols], cols);
  }
  return o;
}

inline std::string spec_name(const OperandSpec& s) {
  std::string n = to_string(s.dtype);
  if (is_fp8(s.dtype)) n += std::string("/") + numerics::to_string(s.gran);
  return n;
}

struct Case {
  std::string label;
  int64_t M, N, K;
  bool ta = false, tb = false;
  OperandSpec a, b;
  float alpha = 1.0f, beta = 0.0f;
  int64_t pad = 0;  // extra leading-dimension elements for A, B and C
  int promote_every = 128;
};

struct Evidence {
  double ratio = 0, max_abs = 0;
  int64_t G = 0;
};

// max over elements of |C - C64| / tol (0 where C == C64 exactly).
inline Evidence compare(const float* C, int64_t ldc, const std::vector<double>& c64, const std::vector<double>& tol,
                 int64_t M, int64_t N) {
  Evidence e;
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      const double d = std::fabs(static_cast<double>(C[m * ldc + n]) - c64[m * N + n]);
      e.max_abs = std::max(e.max_abs, std::isnan(d) ? INFINITY : d);
      const double r = d == 0.0 ? 0.0 : d / tol[m * N + n];
      e.ratio = std::max(e.ratio, std::isnan(r) ? INFINITY : r);
    }
  return e;
}

// A case's operands, its starting C (columns beyond N hold a sentinel) and, when asked for,
// the oracle's C64 and the error bound.
struct Problem {
  Operand A, B;
  int64_t ldc = 0;
  std::vector<float> C0;
  std::vector<double> c64, tol;
};

constexpr float kSentinel = 12345.0f;

inline Problem make_problem(const Case& c, uint64_t seed, bool with_oracle = true) {
  Problem p;
  p.A = make_operand(c.a, c.ta ? c.K : c.M, c.ta ? c.M : c.K, c.pad, c.ta, seed);
  p.B = make_operand(c.b, c.tb ? c.N : c.K, c.tb ? c.K : c.N, c.pad, c.tb, seed + 1);
  p.ldc = c.N + c.pad;
  p.C0 = test_matrix(c.M, c.N, p.ldc, seed + 2);
  for (int64_t m = 0; m < c.M; ++m)
    for (int64_t n = c.N; n < p.ldc; ++n) p.C0[m * p.ldc + n] = kSentinel;
  if (with_oracle) {
    p.c64.resize(static_cast<size_t>(c.M * c.N));
    p.tol.resize(p.c64.size());
    const Matrix a = p.A.view(), b = p.B.view();
    gemm_oracle(p.c64.data(), p.C0.data(), p.ldc, a, b, c.alpha, c.beta);
    gemm_error_bound(p.tol.data(), p.C0.data(), p.ldc, a, b, c.alpha, c.beta, c.promote_every);
  }
  return p;
}

inline GemmOptions case_options(const Case& c, Backend backend) {
  GemmOptions opt;
  opt.alpha = c.alpha, opt.beta = c.beta, opt.promote_every = c.promote_every, opt.backend = backend;
  return opt;
}

// C after gemm() on the case's operands with `backend` (B packed first with pack_b when
// `prepacked`).
inline std::vector<float> run_backend(const Case& c, const Problem& p, Backend backend, bool prepacked = false) {
  std::vector<float> C = p.C0;
  const GemmOptions opt = case_options(c, backend);
  if (prepacked) {
    gemm(C.data(), p.ldc, p.A.view(), pack_b(p.B.view(), opt, promotion_interval(p.A.view(), p.B.view(), c.promote_every)),
         opt);
  } else {
    gemm(C.data(), p.ldc, p.A.view(), p.B.view(), opt);
  }
  return C;
}

// Compares C with the oracle (C must be within the bound) and checks C's padding is
// untouched; prints one line when `print` (or when the check fails).
inline Evidence judge(const Case& c, const Problem& p, const std::vector<float>& C, const char* backend, bool print) {
  Evidence e = compare(C.data(), p.ldc, p.c64, p.tol, c.M, c.N);
  e.G = promotion_interval(p.A.view(), p.B.view(), c.promote_every);
  int64_t pad_changed = 0;
  for (int64_t m = 0; m < c.M; ++m)
    for (int64_t n = c.N; n < p.ldc; ++n) pad_changed += C[m * p.ldc + n] != kSentinel;
  EXPECT_EQ(pad_changed, 0) << c.label << " (" << backend << "): gemm wrote outside C's N columns";
  if (print || !(e.ratio <= 1.0))
    std::printf("%-9s %-9s M %3lld N %3lld K %3lld %c%c A %-17s B %-17s a %4.1f b %4.1f ld+%-2lld G %3lld | "
                "max|C-C64|/tol %.3e  max abs %.3e\n",
                c.label.c_str(), backend, (long long)c.M, (long long)c.N, (long long)c.K, c.ta ? 'T' : 'N',
                c.tb ? 'T' : 'N', spec_name(c.a).c_str(), spec_name(c.b).c_str(), c.alpha, c.beta, (long long)c.pad,
                (long long)e.G, e.ratio, e.max_abs);
  EXPECT_LE(e.ratio, 1.0) << c.label << " (" << backend << ") M " << c.M << " N " << c.N << " K " << c.K;
  return e;
}

inline int64_t count_bit_differences(const std::vector<float>& x, const std::vector<float>& y) {
  int64_t d = 0;
  for (size_t i = 0; i < x.size(); ++i) d += std::bit_cast<uint32_t>(x[i]) != std::bit_cast<uint32_t>(y[i]);
  return d;
}

constexpr int64_t kDims[] = {1, 2, 127, 128, 129, 255, 300};
constexpr DType kDTypes[] = {DType::F32, DType::BF16, DType::E4M3, DType::E5M2};
constexpr Granularity kGrans[] = {Granularity::Tensor,    Granularity::Row,          Granularity::Col,
                                  Granularity::Tile1x128, Granularity::Tile128x1,    Granularity::Block128x128,
                                  Granularity::Mx1x32,    Granularity::Mx32x1};

// Case i of the generic sweep (i < 48 reaches every dim in every position, every (transA,
// transB), every dtype and every granularity on each side, leading dimensions > cols, and
// alpha/beta variants).
inline Case sweep_case(int i) {
  Case c;
  c.label = "sweep" + std::to_string(i);
  c.M = kDims[i % 7], c.N = kDims[(3 * i + 2) % 7], c.K = kDims[(5 * i + 4) % 7];
  c.ta = i & 1, c.tb = (i >> 1) & 1;
  c.a = {kDTypes[(i >> 2) % 4], kGrans[(5 * i) % 8]};
  c.b = {kDTypes[(i + i / 16 + 1) % 4], kGrans[(3 * i + 1) % 8]};
  c.pad = i % 3 == 0 ? 0 : (i % 3 == 1 ? 3 : 16);
  if (i % 5 == 0) c.alpha = -1.5f, c.beta = 0.5f;
  if (i % 5 == 1) c.beta = 1.0f;
  return c;
}

// Runs f, expects a tinyseek::Error whose text contains `needle`, prints the message.
inline void expect_error(const std::function<void()>& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
  } catch (const Error& e) {
    std::printf("bad input -> %s\n", e.message().c_str());
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_FALSE(e.hint().empty());
  }
}

}  // namespace tinyseek::gemm::gemm_test
