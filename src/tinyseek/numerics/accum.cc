#include "tinyseek/numerics/accum.h"

#include <algorithm>
#include <cmath>

#include "tinyseek/base/check.h"
#include "tinyseek/base/parallel.h"
#include "tinyseek/base/rng.h"
#include "tinyseek/numerics/fp8.h"

namespace tinyseek::numerics {

namespace {

// Truncates x toward zero to a multiple of q (a power of two); exact in FP64 for the
// magnitudes involved (< 2^60 quanta never happens: addends are < 2^(bits+1) quanta).
inline double trunc_to(double x, double q) { return std::trunc(x / q) * q; }

// The quantum that keeps `bits`+1 significant bits of a number whose leading bit is 2^e.
inline double quantum_for(double largest_abs, int bits) {
  int e;
  std::frexp(largest_abs, &e);  // largest_abs = f * 2^e, f in [0.5, 1): leading bit 2^(e-1)
  return std::ldexp(1.0, e - 1 - bits);
}

// One group: align {acc, p_0..p_{n-1}} to the largest exponent, truncate, add, truncate.
inline double tc_group(double acc, const float* p, int64_t n, int bits) {
  double largest = std::fabs(acc);
  for (int64_t j = 0; j < n; ++j) largest = std::max(largest, std::fabs(static_cast<double>(p[j])));
  if (largest == 0.0) return 0.0;
  const double q = quantum_for(largest, bits);
  double sum = trunc_to(acc, q);
  for (int64_t j = 0; j < n; ++j) sum += trunc_to(p[j], q);
  if (sum == 0.0) return 0.0;
  return trunc_to(sum, quantum_for(std::fabs(sum), bits));
}

}  // namespace

float tensorcore_sum(const float* products, int64_t n, const AccumModel& m) {
  TS_CHECK(m.mantissa_bits >= 1 && m.mantissa_bits <= 23, "accumulator mantissa bits must be in 1..23, got "
           << m.mantissa_bits, "13 models the ~14 bits DeepSeek-V3 measured on H800");
  TS_CHECK(m.align_group >= 1, "align_group must be positive", "32 = one FP8 WGMMA K step");
  double acc = 0.0;
  for (int64_t i = 0; i < n; i += m.align_group)
    acc = tc_group(acc, products + i, std::min<int64_t>(m.align_group, n - i), m.mantissa_bits);
  return static_cast<float>(acc);
}

float tensorcore_dot(const float* a, const float* b, int64_t n, const AccumModel& m) {
  std::vector<float> p(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) p[i] = a[i] * b[i];
  if (m.promote_every <= 0) return tensorcore_sum(p.data(), n, m);
  float out = 0.0f;  // the FP32 "CUDA core" accumulator
  for (int64_t i = 0; i < n; i += m.promote_every)
    out += tensorcore_sum(p.data() + i, std::min<int64_t>(m.promote_every, n - i), m);
  return out;
}

const char* to_string(AccumInputs i) { return i == AccumInputs::kNormal ? "normal" : "uniform"; }

AccumInputs parse_accum_inputs(const std::string& s) {
  if (s == "normal") return AccumInputs::kNormal;
  if (s == "uniform") return AccumInputs::kUniform;
  TS_FAIL("unknown input distribution '" << s << "'", "valid: normal (N(0,1)), uniform ([0,1))");
}

AccumStudy accumulation_study(const std::vector<int64_t>& ks, int trials, uint64_t seed, const AccumModel& model,
                              AccumInputs inputs) {
  TS_CHECK(trials > 0, "trials must be positive, got " << trials, "pass e.g. 256");
  AccumStudy s;
  s.model = model;
  s.trials = trials;
  s.inputs = inputs == AccumInputs::kNormal
                 ? "normal: a, b i.i.d. N(0,1) rounded to E4M3; relative error = |c - exact| / rms(exact) "
                   "over the trials (the GEMM's output scale)"
                 : "uniform: a, b i.i.d. uniform [0,1) rounded to E4M3 (non-negative, no cancellation: "
                   "worst case); relative error = |c - exact| / |exact|";
  AccumModel limited = model;
  limited.promote_every = 0;
  for (int64_t k : ks) {
    TS_CHECK(k > 0, "K must be positive, got " << k, "pass e.g. 4096");
    std::vector<double> exact(trials), el(trials), ep(trials), ef(trials);
    parallel_for(trials, [&](int64_t t) {
      const Philox rng(seed, static_cast<uint64_t>(k) * 1000003u + static_cast<uint64_t>(t));
      std::vector<float> a(k), b(k);
      for (int64_t i = 0; i < k; ++i) {
        const double x = inputs == AccumInputs::kNormal ? rng.normal(2 * i) : rng.uniform(2 * i);
        const double y = inputs == AccumInputs::kNormal ? rng.normal(2 * i + 1) : rng.uniform(2 * i + 1);
        a[i] = fp8_decode(fp8_encode(static_cast<float>(x), Fp8Format::E4M3), Fp8Format::E4M3);
        b[i] = fp8_decode(fp8_encode(static_cast<float>(y), Fp8Format::E4M3), Fp8Format::E4M3);
      }
      double ref = 0.0;
      float f32 = 0.0f;
      for (int64_t i = 0; i < k; ++i) {
        ref += static_cast<double>(a[i]) * b[i];  // exact: FP8 products have 8 significant bits
        f32 += a[i] * b[i];
      }
      exact[t] = ref;
      el[t] = std::fabs(tensorcore_dot(a.data(), b.data(), k, limited) - ref);
      ep[t] = std::fabs(tensorcore_dot(a.data(), b.data(), k, model) - ref);
      ef[t] = std::fabs(static_cast<double>(f32) - ref);
    });
    double rms = 0.0;
    for (double e : exact) rms += e * e / trials;
    rms = std::sqrt(rms);
    AccumRow r;
    r.k = k;
    for (int t = 0; t < trials; ++t) {
      const double d = std::max(inputs == AccumInputs::kNormal ? rms : std::fabs(exact[t]), 1e-300);
      r.max_rel_err_limited = std::max(r.max_rel_err_limited, el[t] / d);
      r.max_rel_err_promoted = std::max(r.max_rel_err_promoted, ep[t] / d);
      r.max_rel_err_fp32 = std::max(r.max_rel_err_fp32, ef[t] / d);
      r.mean_rel_err_limited += el[t] / d / trials;
      r.mean_rel_err_promoted += ep[t] / d / trials;
      r.mean_rel_err_fp32 += ef[t] / d / trials;
    }
    s.rows.push_back(r);
  }
  return s;
}

}  // namespace tinyseek::numerics
