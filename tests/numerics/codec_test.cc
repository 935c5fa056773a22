// Tests of the FP8 (OCP E4M3FN, E5M2), BF16 and E8M0 codecs against a reference written
// here from the OCP bit-field definitions, independent of src/tinyseek/numerics:
//  - decode: value = (-1)^S * 2^(E - bias) * (1 + M / 2^m) (normal) or 2^(1 - bias) * M / 2^m
//    (subnormal), evaluated exactly in double; specials per the OCP table;
//  - encode: the sorted list of finite spec values is searched for the two neighbours of |x|
//    and the distances compared exactly in double (every difference below has at most ~40
//    significant bits); ties go to the even code; overflow is decided against the value one
//    step above max finite (an exponent-extended code), so 464 rounds to 448 in E4M3 and
//    61440 overflows in E5M2, as OCP specifies.
// Evidence (counts, mismatches, first offending inputs) is printed by every test.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cfloat>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <ostream>
#include <string>
#include <vector>

#include "tinyseek/base/check.h"
#include "tinyseek/base/rng.h"
#include "tinyseek/numerics/bf16.h"
#include "tinyseek/numerics/fp8.h"
#include "tinyseek/numerics/simd.h"

namespace tinyseek {
// Readable test names in gtest output ("avx512-bf16" rather than a byte dump).
void PrintTo(SimdPath p, std::ostream* os) { *os << to_string(p); }
}  // namespace tinyseek

namespace tinyseek::numerics {
namespace {

constexpr Fp8Format kFormats[] = {Fp8Format::E4M3, Fp8Format::E5M2};
constexpr Overflow kPolicies[] = {Overflow::Saturate, Overflow::NonSaturate};

float from_bits(uint32_t b) { return std::bit_cast<float>(b); }
uint32_t to_bits(float x) { return std::bit_cast<uint32_t>(x); }
const float kInf = std::numeric_limits<float>::infinity();

// ---------------------------------------------------------------------------------------
// Independent reference: OCP OFP8 rev 1.0 bit fields (our own constants, not fp8_traits).
struct Layout {
  int exp_bits, man_bits, bias;
  bool ieee_specials;  // E5M2: exponent all ones = Inf (M = 0) / NaN; E4M3FN: only S.1111.111 is NaN
};
Layout layout(Fp8Format f) { return f == Fp8Format::E4M3 ? Layout{4, 3, 7, false} : Layout{5, 2, 15, true}; }

enum class Kind { Finite, Inf, NaN };
struct SpecValue {
  Kind kind;
  bool neg;
  double v;  // signed value when finite (-0.0 for the negative zero)
};

SpecValue spec_value(uint8_t c, Fp8Format f) {
  const Layout L = layout(f);
  const bool neg = (c >> 7) != 0;
  const int e = (c >> L.man_bits) & ((1 << L.exp_bits) - 1);
  const int m = c & ((1 << L.man_bits) - 1);
  const int e_ones = (1 << L.exp_bits) - 1, m_ones = (1 << L.man_bits) - 1;
  if (L.ieee_specials && e == e_ones) return {m == 0 ? Kind::Inf : Kind::NaN, neg, 0.0};
  if (!L.ieee_specials && e == e_ones && m == m_ones) return {Kind::NaN, neg, 0.0};
  const double frac = static_cast<double>(m) / static_cast<double>(1 << L.man_bits);
  const double mag = e == 0 ? std::ldexp(frac, 1 - L.bias) : std::ldexp(1.0 + frac, e - L.bias);
  return {Kind::Finite, neg, neg ? -mag : mag};
}

// Non-negative finite values sorted, each with its code, plus one exponent-extended entry
// past max finite (code max+1, whose parity decides the tie at the overflow midpoint).
struct Grid {
  std::vector<double> mag;
  std::vector<int> code;
  uint8_t max_code;
  double max_finite() const { return mag[mag.size() - 2]; }
};

Grid build_grid(Fp8Format f) {
  std::vector<std::pair<double, int>> v;
  for (int c = 0; c < 128; ++c) {
    const SpecValue s = spec_value(static_cast<uint8_t>(c), f);
    if (s.kind == Kind::Finite) v.push_back({s.v, c});
  }
  std::sort(v.begin(), v.end());
  Grid g;
  for (auto& [m, c] : v) {
    g.mag.push_back(m);
    g.code.push_back(c);
  }
  const size_t n = g.mag.size();
  g.max_code = static_cast<uint8_t>(g.code[n - 1]);
  // Top binade spacing is constant: the next value is max + (max - previous).
  g.mag.push_back(2 * g.mag[n - 1] - g.mag[n - 2]);
  g.code.push_back(g.max_code + 1);
  return g;
}
const Grid& grid(Fp8Format f) {
  static const Grid e4 = build_grid(Fp8Format::E4M3), e5 = build_grid(Fp8Format::E5M2);
  return f == Fp8Format::E4M3 ? e4 : e5;
}

uint8_t ref_overflow_code(bool neg, Fp8Format f, Overflow ov) {
  const uint8_t sign = neg ? 0x80 : 0x00;
  if (ov == Overflow::Saturate) return sign | grid(f).max_code;
  return sign | (f == Fp8Format::E4M3 ? 0x7F : 0x7C);  // E4M3FN: NaN; E5M2: Inf
}

// The NaN code the codec emits is sign|0x7F (E4M3's only NaN; one of E5M2's three).
uint8_t ref_fp8_encode(float x, Fp8Format f, Overflow ov) {
  const Grid& g = grid(f);
  const bool neg = std::signbit(x);
  const uint8_t sign = neg ? 0x80 : 0x00;
  if (std::isnan(x)) return sign | 0x7F;
  if (std::isinf(x)) return ref_overflow_code(neg, f, ov);
  const double a = std::fabs(static_cast<double>(x));
  if (a >= g.mag.back()) return ref_overflow_code(neg, f, ov);
  const size_t hi = static_cast<size_t>(std::upper_bound(g.mag.begin(), g.mag.end(), a) - g.mag.begin());
  const size_t lo = hi - 1;
  const double d_lo = a - g.mag[lo], d_hi = g.mag[hi] - a;
  const size_t pick = d_lo < d_hi ? lo : d_hi < d_lo ? hi : ((g.code[lo] & 1) == 0 ? lo : hi);
  if (pick == g.mag.size() - 1) return ref_overflow_code(neg, f, ov);
  return sign | static_cast<uint8_t>(g.code[pick]);
}

// BF16 reference: value from fields; RNE by comparing the two truncation neighbours in double.
double bf16_field_value(uint16_t h) {  // finite patterns only
  const int e = (h >> 7) & 0xFF, m = h & 0x7F;
  const double mag = e == 0 ? std::ldexp(m / 128.0, -126) : std::ldexp(1.0 + m / 128.0, e - 127);
  return (h & 0x8000) ? -mag : mag;
}
bool bf16_is_nan(uint16_t h) { return (h & 0x7F80) == 0x7F80 && (h & 0x7F) != 0; }

// Returns the expected code; for NaN inputs returns sign|0x7FC0 (tests check NaN + sign only).
uint16_t ref_bf16_encode(float x, Overflow ov) {
  const uint32_t b = to_bits(x);
  const uint16_t sign = static_cast<uint16_t>((b >> 16) & 0x8000);
  const uint16_t overflow = sign | (ov == Overflow::Saturate ? 0x7F7F : 0x7F80);
  if (std::isnan(x)) return sign | 0x7FC0;
  if (std::isinf(x)) return overflow;
  const uint16_t lo = static_cast<uint16_t>((b >> 16) & 0x7FFF);  // truncation toward zero
  const uint16_t hi = lo + 1;                                       // 0x7F80 = "2^128" here
  const double a = std::fabs(static_cast<double>(x));
  const double v_lo = bf16_field_value(lo);
  const double v_hi = hi == 0x7F80 ? std::ldexp(1.0, 128) : bf16_field_value(hi);
  const double d_lo = a - v_lo, d_hi = v_hi - a;
  const uint16_t pick = d_lo < d_hi ? lo : d_hi < d_lo ? hi : ((lo & 1) == 0 ? lo : hi);
  if (pick == 0x7F80) return overflow;
  return sign | pick;
}

// ---------------------------------------------------------------------------------------
// Input sets.
void push_signed(std::vector<float>& v, float x) {
  v.push_back(x);
  v.push_back(-x);
}
void push_around(std::vector<float>& v, float x) {
  push_signed(v, x);
  push_signed(v, std::nextafter(x, kInf));
  if (x > 0) push_signed(v, std::nextafter(x, 0.0f));
}

// Every FP8 value and midpoint (both formats) and every BF16 value and midpoint, each with
// +-1 FP32 ulp, plus specials, FP32 subnormals and FP32 extremes; both signs.
const std::vector<float>& boundary_floats() {
  static const std::vector<float> v = [] {
    std::vector<float> v;
    for (Fp8Format f : kFormats) {
      const Grid& g = grid(f);
      for (size_t i = 0; i < g.mag.size(); ++i) {
        push_around(v, static_cast<float>(g.mag[i]));
        if (i + 1 < g.mag.size()) push_around(v, static_cast<float>((g.mag[i] + g.mag[i + 1]) / 2));
      }
      const float min_sub = static_cast<float>(g.mag[1]);
      for (float q : {0.25f, 0.375f, 0.5f, 0.625f, 0.75f, 1.5f, 2.5f}) push_around(v, min_sub * q);
      const float mx = static_cast<float>(g.max_finite());
      for (float q : {1.5f, 2.0f, 4.0f, 1e3f}) push_around(v, mx * q);
    }
    for (uint32_t h = 0; h < 0x7F80; ++h) {  // positive finite BF16 patterns (negatives via sign)
      const uint32_t b = h << 16;
      push_around(v, from_bits(b));
      push_around(v, from_bits(b | 0x8000));  // midpoint to the next BF16
    }
    for (uint32_t b : {0x00000000u, 0x00000001u, 0x00000002u, 0x00000003u, 0x00400000u, 0x007FFFFFu,
                       0x00800000u, 0x00800001u, 0x7F7FFFFFu, 0x7F7F8000u, 0x7F7F7FFFu, 0x7F800000u,
                       0x7FC00000u, 0x7F800001u, 0x7FBFFFFFu, 0x7FC12345u, 0x7FFFFFFFu, 0x7FA00000u})
      push_signed(v, from_bits(b));
    return v;
  }();
  return v;
}

// 1e7 random floats: half uniformly random bit patterns (all classes incl. NaN payloads,
// subnormals), a quarter log-uniform over [2^-20, 2^18) (the FP8 range and its overflow
// region, any sign and mantissa), a quarter linear-uniform in (-70000, 70000).
const std::vector<float>& random_floats() {
  static const std::vector<float> v = [] {
    constexpr size_t kN = 10'000'000;
    std::vector<float> v(kN);
    const Philox rng(20240917, 7);
    for (size_t i = 0; i < kN; i += 4) {
      const auto w = rng.block(i / 4);
      for (size_t j = 0; j < 4 && i + j < kN; ++j) {
        const size_t k = i + j;
        const uint32_t r = w[j];
        if (k < kN / 2) {
          v[k] = from_bits(r);
        } else if (k < 3 * kN / 4) {
          const uint32_t e = 127 - 20 + (r >> 24) % 38;
          v[k] = from_bits((r & 0x80000000u) | (e << 23) | ((r * 2654435761u) & 0x7FFFFFu));
        } else {
          v[k] = static_cast<float>((static_cast<double>(r) / 4294967296.0 * 2 - 1) * 70000.0);
        }
      }
    }
    return v;
  }();
  return v;
}

// Collects mismatches and remembers the first few for the failure message.
struct Mismatches {
  size_t count = 0;
  std::string first;
  void add(const std::string& what) {
    if (count++ < 5) first += "\n    " + what;
  }
};
std::string hexf(float x) {
  char b[64];
  std::snprintf(b, sizeof b, "%a (0x%08" PRIX32 ")", x, to_bits(x));
  return b;
}
std::string hex8(uint8_t c) {
  char b[8];
  std::snprintf(b, sizeof b, "0x%02X", c);
  return b;
}
std::string hex16(uint16_t c) {
  char b[12];
  std::snprintf(b, sizeof b, "0x%04X", c);
  return b;
}

// ---------------------------------------------------------------------------------------
TEST(Fp8Reference, MatchesOcpTable) {
  // Guards the reference itself against the OCP table (max, min normal, min subnormal).
  const Grid& e4 = grid(Fp8Format::E4M3);
  const Grid& e5 = grid(Fp8Format::E5M2);
  EXPECT_EQ(e4.max_finite(), 448.0);
  EXPECT_EQ(e5.max_finite(), 57344.0);
  EXPECT_EQ(e4.mag.back(), 480.0);    // overflow midpoint is (448 + 480) / 2 = 464
  EXPECT_EQ(e5.mag.back(), 65536.0);  // overflow midpoint 61440
  EXPECT_EQ(e4.mag[1], std::ldexp(1.0, -9));
  EXPECT_EQ(e5.mag[1], std::ldexp(1.0, -16));
  EXPECT_EQ(spec_value(0x08, Fp8Format::E4M3).v, std::ldexp(1.0, -6));
  EXPECT_EQ(spec_value(0x04, Fp8Format::E5M2).v, std::ldexp(1.0, -14));
  EXPECT_EQ(e4.max_code, 0x7E);
  EXPECT_EQ(e5.max_code, 0x7B);
  EXPECT_EQ(e4.mag.size(), 127u + 1);  // 0..0x7E finite + extended entry
  EXPECT_EQ(e5.mag.size(), 124u + 1);
  // Published traits agree with the spec.
  for (Fp8Format f : kFormats) {
    const Fp8Traits t = fp8_traits(f);
    EXPECT_EQ(t.max_finite, static_cast<float>(grid(f).max_finite())) << to_string(f);
    EXPECT_EQ(t.min_subnormal, static_cast<float>(grid(f).mag[1])) << to_string(f);
    EXPECT_EQ(t.max_code, grid(f).max_code) << to_string(f);
  }
}

TEST(Fp8Decode, AllCodesMatchSpec) {
  for (Fp8Format f : kFormats) {
    int finite = 0, nans = 0, infs = 0;
    Mismatches bad;
    for (int c = 0; c < 256; ++c) {
      const SpecValue s = spec_value(static_cast<uint8_t>(c), f);
      const float got_table = fp8_decode(static_cast<uint8_t>(c), f);
      const float got_formula = f == Fp8Format::E4M3 ? fp8_decode_formula<Fp8Format::E4M3>(static_cast<uint8_t>(c))
                                                     : fp8_decode_formula<Fp8Format::E5M2>(static_cast<uint8_t>(c));
      for (float got : {got_table, got_formula}) {
        bool ok = std::signbit(got) == s.neg;
        if (s.kind == Kind::NaN) ok = ok && std::isnan(got);
        else if (s.kind == Kind::Inf) ok = ok && std::isinf(got);
        else ok = ok && static_cast<double>(got) == s.v;
        if (!ok) bad.add(hex8(static_cast<uint8_t>(c)) + " decoded " + hexf(got));
      }
      finite += s.kind == Kind::Finite;
      nans += s.kind == Kind::NaN;
      infs += s.kind == Kind::Inf;
    }
    std::printf("[decode %s] 256 codes: %d finite, %d NaN, %d Inf; mismatches vs OCP fields: %zu\n",
                to_string(f), finite, nans, infs, bad.count);
    EXPECT_EQ(bad.count, 0u) << bad.first;
    EXPECT_EQ(nans, f == Fp8Format::E4M3 ? 2 : 6);
    EXPECT_EQ(infs, f == Fp8Format::E4M3 ? 0 : 2);
  }
  EXPECT_TRUE(std::signbit(fp8_decode(0x80, Fp8Format::E4M3)) && fp8_decode(0x80, Fp8Format::E4M3) == 0.0f);
  EXPECT_EQ(fp8_decode(0xFC, Fp8Format::E5M2), -kInf);
}

TEST(Fp8Encode, RoundTripsEveryNonNanCode) {
  for (Fp8Format f : kFormats) {
    for (Overflow ov : kPolicies) {
      int checked = 0;
      Mismatches bad;
      for (int c = 0; c < 256; ++c) {
        const SpecValue s = spec_value(static_cast<uint8_t>(c), f);
        if (s.kind == Kind::NaN) continue;
        // Inf under Saturate clamps to +-max finite; everything else comes back unchanged.
        const uint8_t want = (s.kind == Kind::Inf && ov == Overflow::Saturate)
                                 ? static_cast<uint8_t>((c & 0x80) | grid(f).max_code)
                                 : static_cast<uint8_t>(c);
        const uint8_t got = fp8_encode(fp8_decode(static_cast<uint8_t>(c), f), f, ov);
        ++checked;
        if (got != want) bad.add(hex8(static_cast<uint8_t>(c)) + " -> " + hex8(got) + ", want " + hex8(want));
      }
      std::printf("[round trip %s %s] %d non-NaN codes, mismatches %zu\n", to_string(f), to_string(ov), checked,
                  bad.count);
      EXPECT_EQ(bad.count, 0u) << bad.first;
    }
  }
}

TEST(Fp8Encode, NamedCases) {
  using F = Fp8Format;
  const auto e4 = [](float x, Overflow ov = Overflow::Saturate) { return fp8_encode(x, F::E4M3, ov); };
  const auto e5 = [](float x, Overflow ov = Overflow::Saturate) { return fp8_encode(x, F::E5M2, ov); };
  const Overflow N = Overflow::NonSaturate;
  EXPECT_EQ(e4(448.0f), 0x7E);
  EXPECT_EQ(e4(464.0f, N), 0x7E);  // tie between 448 (even) and the overflow step: 448
  EXPECT_EQ(e4(std::nextafter(464.0f, kInf), N), 0x7F);
  EXPECT_EQ(e4(std::nextafter(464.0f, kInf)), 0x7E);
  EXPECT_EQ(e4(-1e9f, N), 0xFF);
  EXPECT_EQ(e4(-kInf), 0xFE);
  EXPECT_EQ(e4(-kInf, N), 0xFF);
  EXPECT_EQ(e5(61440.0f, N), 0x7C);  // tie: 57344 has an odd mantissa, overflow wins
  EXPECT_EQ(e5(61440.0f), 0x7B);
  EXPECT_EQ(e5(std::nextafter(61440.0f, 0.0f), N), 0x7B);
  EXPECT_EQ(e5(-kInf, N), 0xFC);
  EXPECT_EQ(e4(0x1p-10f), 0x00);  // half the min subnormal ties to zero
  EXPECT_EQ(e4(-0x1p-10f), 0x80);
  EXPECT_EQ(e4(std::nextafter(0x1p-10f, 1.0f)), 0x01);
  EXPECT_EQ(e4(0x3p-10f), 0x02);  // 1.5 min subnormals ties to 2 (even)
  EXPECT_EQ(e5(0x1p-17f), 0x00);
  EXPECT_EQ(e5(0x3p-17f), 0x02);
  EXPECT_EQ(e4(0x1.1p-6f), 0x08);  // min normal + half a quantum: tie, even code 0x08
  EXPECT_EQ(e4(0x0.Fp-6f), 0x08);  // 7.5 subnormal quanta ties up to 8 = min normal
  EXPECT_EQ(e4(from_bits(0x00000001u)), 0x00);
  EXPECT_EQ(e4(from_bits(0x80400000u)), 0x80);
  EXPECT_EQ(e4(-0.0f), 0x80);
  EXPECT_EQ(e4(1.0f + 1.0f / 16), 0x38);  // 1.0625: tie between 1.0 (even) and 1.125
  EXPECT_EQ(e4(1.0f + 3.0f / 16), 0x3A);  // 1.1875: tie between 1.125 and 1.25 (even)
  EXPECT_EQ(e4(std::nanf("")), 0x7F);
  EXPECT_EQ(e4(-std::nanf("")), 0xFF);
  EXPECT_EQ(e5(from_bits(0x7F800001u)) & 0x7C, 0x7C);  // signalling NaN: still a NaN code
  EXPECT_NE(e5(from_bits(0x7F800001u)) & 0x03, 0x00);
}

// Reference vs codec on a float set, both formats and both policies.
void check_fp8_against_reference(const std::vector<float>& xs, const char* label) {
  for (Fp8Format f : kFormats) {
    Mismatches bad[2];
    size_t ties_checked = 0;
    const Grid& g = grid(f);
    for (float x : xs) {
      const uint8_t want[2] = {ref_fp8_encode(x, f, Overflow::Saturate), ref_fp8_encode(x, f, Overflow::NonSaturate)};
      for (int p = 0; p < 2; ++p) {
        const uint8_t got = fp8_encode(x, f, kPolicies[p]);
        if (got != want[p]) bad[p].add(hexf(x) + " -> " + hex8(got) + ", want " + hex8(want[p]));
      }
      // Count exact midpoints seen (evidence that ties are exercised).
      const double a = std::fabs(static_cast<double>(x));
      if (a < g.mag.back()) {
        const auto it = std::upper_bound(g.mag.begin(), g.mag.end(), a);
        if (a - *(it - 1) == *it - a) ++ties_checked;
      }
    }
    for (int p = 0; p < 2; ++p) {
      std::printf("[encode %s %s %s] %zu inputs (%zu exact ties), mismatches vs reference: %zu\n", label,
                  to_string(f), to_string(kPolicies[p]), xs.size(), ties_checked, bad[p].count);
      EXPECT_EQ(bad[p].count, 0u) << to_string(f) << " " << to_string(kPolicies[p]) << bad[p].first;
    }
  }
}

TEST(Fp8Encode, MatchesReferenceOnBoundaries) { check_fp8_against_reference(boundary_floats(), "boundary"); }
TEST(Fp8Encode, MatchesReferenceOnRandomFloats) { check_fp8_against_reference(random_floats(), "random"); }

TEST(Fp8Encode, DivideMatchesReferenceOfQuotient) {
  // fp8_encode_div_bulk encodes x / s with the FP32 division correctly rounded.
  const std::vector<float>& xs = boundary_floats();
  std::vector<uint8_t> got(xs.size());
  for (float s : {1.0f, 0.37f, 3.0e-3f, 1.7e5f, 0.125f, -2.5f}) {
    for (Fp8Format f : kFormats) {
      for (Overflow ov : kPolicies) {
        fp8_encode_div_bulk_scalar(got.data(), xs.data(), xs.size(), s, f, ov);
        Mismatches bad;
        for (size_t i = 0; i < xs.size(); ++i) {
          const uint8_t want = ref_fp8_encode(xs[i] / s, f, ov);
          if (got[i] != want) bad.add(hexf(xs[i]) + "/" + hexf(s) + " -> " + hex8(got[i]) + ", want " + hex8(want));
        }
        EXPECT_EQ(bad.count, 0u) << bad.first;
        if (bad.count) std::printf("[div s=%g %s %s] mismatches %zu\n", s, to_string(f), to_string(ov), bad.count);
      }
    }
  }
  std::printf("[div] %zu boundary inputs x 6 scales x 2 formats x 2 policies checked against encode_ref(x / s)\n",
              xs.size());
}

// ---------------------------------------------------------------------------------------
TEST(Bf16, AllPatternsDecodeToFieldValuesAndReEncode) {
  size_t nans = 0;
  Mismatches bad;
  for (uint32_t h = 0; h < 65536; ++h) {
    const uint16_t c = static_cast<uint16_t>(h);
    const float x = bf16_decode(c);
    const bool inf = (c & 0x7FFF) == 0x7F80;
    if (bf16_is_nan(c)) {
      ++nans;
      if (!std::isnan(x) || std::signbit(x) != ((c & 0x8000) != 0)) bad.add("decode " + hex16(c) + " = " + hexf(x));
      for (Overflow ov : kPolicies) {
        const uint16_t r = bf16_encode(x, ov);
        if (!bf16_is_nan(r) || (r & 0x8000) != (c & 0x8000) || (r & 0x0040) == 0)
          bad.add("NaN " + hex16(c) + " re-encoded " + hex16(r) + " (not a quiet NaN of the same sign)");
      }
      continue;
    }
    const double want = inf ? ((c & 0x8000) ? -INFINITY : INFINITY) : bf16_field_value(c);
    if (static_cast<double>(x) != want || std::signbit(x) != ((c & 0x8000) != 0))
      bad.add("decode " + hex16(c) + " = " + hexf(x));
    const uint16_t r_non = bf16_encode(x, Overflow::NonSaturate), r_sat = bf16_encode(x, Overflow::Saturate);
    const uint16_t want_sat = inf ? static_cast<uint16_t>((c & 0x8000) | 0x7F7F) : c;
    if (r_non != c) bad.add("nonsaturate " + hex16(c) + " -> " + hex16(r_non));
    if (r_sat != want_sat) bad.add("saturate " + hex16(c) + " -> " + hex16(r_sat) + ", want " + hex16(want_sat));
  }
  std::printf("[bf16] 65536 patterns (%zu NaN): decode vs fields and re-encode, mismatches %zu\n", nans, bad.count);
  EXPECT_EQ(bad.count, 0u) << bad.first;
}

void check_bf16_against_reference(const std::vector<float>& xs, const char* label) {
  for (Overflow ov : kPolicies) {
    Mismatches bad;
    for (float x : xs) {
      const uint16_t want = ref_bf16_encode(x, ov), got = bf16_encode(x, ov);
      const bool ok = std::isnan(x) ? (bf16_is_nan(got) && (got & 0x8000) == (want & 0x8000)) : got == want;
      if (!ok) bad.add(hexf(x) + " -> " + hex16(got) + ", want " + hex16(want));
    }
    std::printf("[bf16 encode %s %s] %zu inputs, mismatches vs reference: %zu\n", label, to_string(ov), xs.size(),
                bad.count);
    EXPECT_EQ(bad.count, 0u) << to_string(ov) << bad.first;
  }
}
TEST(Bf16, EncodeMatchesReferenceOnBoundaries) { check_bf16_against_reference(boundary_floats(), "boundary"); }
TEST(Bf16, EncodeMatchesReferenceOnRandomFloats) { check_bf16_against_reference(random_floats(), "random"); }

TEST(Bf16, NamedCases) {
  EXPECT_EQ(bf16_encode(from_bits(0x3F808000u)), 0x3F80);  // tie, even stays
  EXPECT_EQ(bf16_encode(from_bits(0x3F818000u)), 0x3F82);  // tie, odd rounds up
  EXPECT_EQ(bf16_encode(from_bits(0x7F7F8000u)), 0x7F80);  // tie at the top rounds to Inf
  EXPECT_EQ(bf16_encode(from_bits(0x7F7F8000u), Overflow::Saturate), 0x7F7F);
  EXPECT_EQ(bf16_encode(from_bits(0x7F7F7FFFu), Overflow::NonSaturate), 0x7F7F);
  EXPECT_EQ(bf16_encode(-kInf, Overflow::Saturate), 0xFF7F);
  EXPECT_EQ(bf16_encode(-kInf, Overflow::NonSaturate), 0xFF80);
  EXPECT_EQ(bf16_encode(from_bits(0x00008000u)), 0x0000);  // subnormal tie to zero
  EXPECT_EQ(bf16_encode(from_bits(0x00018000u)), 0x0002);
  EXPECT_EQ(bf16_encode(from_bits(0xFF800001u)) & 0xFFC0, 0xFFC0);  // -sNaN -> -qNaN
}

// ---------------------------------------------------------------------------------------
TEST(Fp8ToBf16, IsExactForEveryCode) {
  for (Fp8Format f : kFormats) {
    Mismatches bad;
    for (int c = 0; c < 256; ++c) {
      uint16_t h = 0;
      const uint8_t code = static_cast<uint8_t>(c);
      fp8_to_bf16_bulk_scalar(&h, &code, 1, f);
      const float want = fp8_decode(code, f), got = bf16_decode(h);
      const bool ok = std::isnan(want) ? (std::isnan(got) && std::signbit(got) == std::signbit(want))
                                       : to_bits(got) == to_bits(want);
      if (!ok) bad.add(hex8(code) + " -> " + hex16(h) + " = " + hexf(got) + ", want " + hexf(want));
    }
    std::printf("[fp8->bf16 %s] 256 codes, inexact: %zu\n", to_string(f), bad.count);
    EXPECT_EQ(bad.count, 0u) << bad.first;
  }
}

TEST(E8M0, RoundTripsEveryExponentAndRejectsOthers) {
  int checked = 0;
  for (int e = 0; e <= 254; ++e) {
    const float p = std::ldexp(1.0f, e - 127);  // 2^-127 is an FP32 subnormal, still exact
    ASSERT_EQ(static_cast<double>(p), std::ldexp(1.0, e - 127));
    EXPECT_EQ(to_bits(e8m0_decode(static_cast<uint8_t>(e))), to_bits(p)) << "e=" << e;
    EXPECT_EQ(e8m0_encode_pow2(p), e) << "e=" << e;
    ++checked;
  }
  EXPECT_TRUE(std::isnan(e8m0_decode(0xFF)));
  int rejected = 0;
  for (float bad : {0.0f, -0.0f, -1.0f, -0.5f, 3.0f, 0.75f, std::nextafter(1.0f, 2.0f), 0x1p-128f, 0x1p-149f,
                    0x3p-128f, kInf, -kInf, std::nanf("")}) {
    EXPECT_THROW(e8m0_encode_pow2(bad), tinyseek::Error) << hexf(bad);
    ++rejected;
  }
  try {
    e8m0_encode_pow2(3.0f);
  } catch (const tinyseek::Error& e) {
    EXPECT_NE(std::string(e.what()).find("power of two"), std::string::npos) << e.what();
  }
  std::printf("[e8m0] %d exponents round-trip, %d non-powers rejected\n", checked, rejected);
}

// ---------------------------------------------------------------------------------------
// Bulk (vectorised) codecs vs their scalar twins, on the AVX-512 path and the portable path.
class BulkVsScalar : public ::testing::TestWithParam<SimdPath> {
 protected:
  void SetUp() override {
    if (GetParam() == SimdPath::Avx512Bf16 && !cpu_has_avx512_bf16())
      GTEST_SKIP() << "this CPU lacks AVX512-BF16: the AVX-512 bulk codecs cannot run here";
    set_simd_override(GetParam());
    ASSERT_EQ(simd_path(), GetParam());
  }
  void TearDown() override { clear_simd_override(); }
};

// Compares bulk(out, in, n) with scalar(out, in, n) over the whole set and over every length
// 0..67 at offsets 0..3 (unaligned), with guards around the output to catch stray stores.
template <class Out, class In, class Bulk, class Scalar>
size_t compare_bulk(const std::vector<In>& in, Bulk bulk, Scalar scalar, const char* label) {
  size_t bad = 0;
  std::vector<Out> a(in.size()), b(in.size());
  bulk(a.data(), in.data(), in.size());
  scalar(b.data(), in.data(), in.size());
  for (size_t i = 0; i < in.size(); ++i)
    if (std::memcmp(&a[i], &b[i], sizeof(Out)) != 0 && bad++ < 3)
      ADD_FAILURE() << label << ": element " << i << " differs";
  const size_t span = std::min<size_t>(in.size(), 128);
  constexpr size_t kGuard = 32;
  for (size_t off = 0; off < 4; ++off) {
    for (size_t n = 0; n <= 67 && off + n <= span; ++n) {
      std::vector<Out> oa(n + 2 * kGuard + 4), ob(oa.size());
      std::memset(oa.data(), 0xA5, oa.size() * sizeof(Out));
      std::memset(ob.data(), 0xA5, ob.size() * sizeof(Out));
      bulk(oa.data() + kGuard + off, in.data() + off, n);
      scalar(ob.data() + kGuard + off, in.data() + off, n);
      if (std::memcmp(oa.data(), ob.data(), oa.size() * sizeof(Out)) != 0 && bad++ < 3)
        ADD_FAILURE() << label << ": n=" << n << " offset=" << off << " differs (tail or guard bytes)";
    }
  }
  return bad;
}

TEST_P(BulkVsScalar, IdenticalBits) {
  std::vector<float> xs = boundary_floats();
  // Random set: shuffle-free interleave so tails see every class of value.
  const std::vector<float>& r = random_floats();
  std::vector<float> all = xs;
  all.insert(all.end(), r.begin(), r.end());
  std::vector<uint8_t> codes(4096);
  for (size_t i = 0; i < codes.size(); ++i) codes[i] = static_cast<uint8_t>((i * 167 + (i >> 8)) & 0xFF);
  std::vector<uint16_t> halves(65536 + 100);
  for (size_t i = 0; i < halves.size(); ++i) halves[i] = static_cast<uint16_t>(i * 40503u);
  size_t bad = 0, compared = 0;
  for (Fp8Format f : kFormats) {
    for (Overflow ov : kPolicies) {
      bad += compare_bulk<uint8_t>(
          all, [&](uint8_t* o, const float* i, size_t n) { fp8_encode_bulk(o, i, n, f, ov); },
          [&](uint8_t* o, const float* i, size_t n) { fp8_encode_bulk_scalar(o, i, n, f, ov); }, "fp8_encode_bulk");
      compared += all.size();
      for (float s : {1.0f, 0.37f, 3.0e-3f, 1.7e5f, -2.5f, 0.0f}) {
        bad += compare_bulk<uint8_t>(
            xs, [&](uint8_t* o, const float* i, size_t n) { fp8_encode_div_bulk(o, i, n, s, f, ov); },
            [&](uint8_t* o, const float* i, size_t n) { fp8_encode_div_bulk_scalar(o, i, n, s, f, ov); },
            "fp8_encode_div_bulk");
        compared += xs.size();
      }
    }
    bad += compare_bulk<float>(
        codes, [&](float* o, const uint8_t* i, size_t n) { fp8_decode_bulk(o, i, n, f); },
        [&](float* o, const uint8_t* i, size_t n) { fp8_decode_bulk_scalar(o, i, n, f); }, "fp8_decode_bulk");
    bad += compare_bulk<uint16_t>(
        codes, [&](uint16_t* o, const uint8_t* i, size_t n) { fp8_to_bf16_bulk(o, i, n, f); },
        [&](uint16_t* o, const uint8_t* i, size_t n) { fp8_to_bf16_bulk_scalar(o, i, n, f); }, "fp8_to_bf16_bulk");
    compared += 2 * codes.size();
  }
  for (Overflow ov : kPolicies) {
    bad += compare_bulk<uint16_t>(
        all, [&](uint16_t* o, const float* i, size_t n) { bf16_encode_bulk(o, i, n, ov); },
        [&](uint16_t* o, const float* i, size_t n) { bf16_encode_bulk_scalar(o, i, n, ov); }, "bf16_encode_bulk");
    compared += all.size();
  }
  bad += compare_bulk<float>(
      halves, [](float* o, const uint16_t* i, size_t n) { bf16_decode_bulk(o, i, n); },
      [](float* o, const uint16_t* i, size_t n) { bf16_decode_bulk_scalar(o, i, n); }, "bf16_decode_bulk");
  compared += halves.size();
  std::printf("[bulk vs scalar, %s] %zu element comparisons + lengths 0..67 x offsets 0..3 per codec; "
              "differences: %zu\n",
              to_string(GetParam()), compared, bad);
  EXPECT_EQ(bad, 0u);
}

INSTANTIATE_TEST_SUITE_P(Paths, BulkVsScalar, ::testing::Values(SimdPath::Avx512Bf16, SimdPath::Portable),
                         [](const ::testing::TestParamInfo<SimdPath>& p) {
                           return std::string(p.param == SimdPath::Avx512Bf16 ? "Avx512Bf16" : "Portable");
                         });

}  // namespace
}  // namespace tinyseek::numerics
