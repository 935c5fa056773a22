// Bit-exact scalar codecs for OCP FP8 (E4M3FN, E5M2) and the bulk (vectorised) entry
// points. Encoding rounds to nearest, ties to even, directly from the FP32 bit pattern
// (no double rounding). FP32 subnormal inputs are far below half the smallest FP8
// subnormal and encode to a signed zero.
#pragma once
#include <bit>
#include <cstddef>
#include <cstdint>

#include "tinyseek/numerics/formats.h"

namespace tinyseek::numerics {

// Generic encoder for a minifloat with man_bits mantissa bits and smallest normal
// exponent emin; returns the sign|magnitude code. Works on the FP32 bit pattern:
// value = mant24 * 2^(E-23); the target quantum is 2^(max(E,emin) - man_bits).
template <Fp8Format F>
inline uint8_t fp8_encode_t(float x, Overflow ov) {
  constexpr Fp8Traits t = fp8_traits(F);
  const uint32_t bits = std::bit_cast<uint32_t>(x);
  const uint8_t sign = static_cast<uint8_t>((bits >> 24) & 0x80);
  const uint32_t mag = bits & 0x7FFFFFFFu;
  constexpr uint8_t nan_code = t.has_inf ? 0x7F : 0x7F;  // E5M2: 0x7F is a NaN too
  constexpr uint8_t inf_code = t.has_inf ? 0x7C : 0x7F;  // E4M3 has no Inf: NaN
  if (mag > 0x7F800000u) return sign | nan_code;
  if (mag == 0x7F800000u) return sign | (ov == Overflow::Saturate ? t.max_code : inf_code);
  if (mag < 0x00800000u) return sign;  // zero or FP32 subnormal (< 2^-126)
  const int E = static_cast<int>(mag >> 23) - 127;
  // Anything at or above 2^(emax+1) overflows whatever the rounding.
  constexpr int emax = t.has_inf ? (1 << t.exp_bits) - 2 - t.bias : (1 << t.exp_bits) - 1 - t.bias;
  if (E > emax) return sign | (ov == Overflow::Saturate ? t.max_code : inf_code);
  const uint32_t mant24 = (mag & 0x7FFFFFu) | 0x800000u;
  const int et = E > t.emin ? E : t.emin;
  const int s = 23 - t.man_bits + (et - E);  // right shift to count quanta
  if (s > 25) return sign;                     // below half the smallest subnormal
  uint32_t n = mant24 >> s;
  const uint32_t rem = mant24 & ((1u << s) - 1u);
  const uint32_t half = 1u << (s - 1);
  if (rem > half || (rem == half && (n & 1u))) ++n;
  // n quanta of 2^(et - man_bits); the code's exponent field carries naturally.
  const uint32_t code = (static_cast<uint32_t>(et - t.emin) << t.man_bits) + n;
  if (code > t.max_code) return sign | (ov == Overflow::Saturate ? t.max_code : inf_code);
  return sign | static_cast<uint8_t>(code);
}

// Decoding by formula (the tables below are built from this; tests check it against an
// independent evaluation of the OCP bit-field definition).
template <Fp8Format F>
inline float fp8_decode_formula(uint8_t c) {
  constexpr Fp8Traits t = fp8_traits(F);
  const bool neg = c & 0x80;
  const int e = (c & 0x7F) >> t.man_bits;
  const int m = c & ((1 << t.man_bits) - 1);
  float v;
  if (t.has_inf && e == (1 << t.exp_bits) - 1) {
    v = m == 0 ? std::bit_cast<float>(0x7F800000u) : std::bit_cast<float>(0x7FC00000u);
  } else if (!t.has_inf && (c & 0x7F) == 0x7F) {
    v = std::bit_cast<float>(0x7FC00000u);
  } else if (e == 0) {
    v = static_cast<float>(m) * std::bit_cast<float>(static_cast<uint32_t>(127 + t.emin - t.man_bits) << 23);
  } else {
    v = static_cast<float>((1 << t.man_bits) + m) *
        std::bit_cast<float>(static_cast<uint32_t>(127 + e - t.bias - t.man_bits) << 23);
  }
  return neg ? -v : v;
}

// 256-entry decode tables (FP32 values), built once at start-up from the formula.
const float* fp8_decode_table(Fp8Format f);

inline uint8_t fp8_encode(float x, Fp8Format f, Overflow ov = Overflow::Saturate) {
  return f == Fp8Format::E4M3 ? fp8_encode_t<Fp8Format::E4M3>(x, ov)
                              : fp8_encode_t<Fp8Format::E5M2>(x, ov);
}
inline float fp8_decode(uint8_t c, Fp8Format f) { return fp8_decode_table(f)[c]; }

// --- Bulk codecs. Dispatch to AVX-512 where the CPU has it (and not disabled with
// TINYSEEK_SIMD=portable), otherwise the scalar loop; both give identical bits.
// out[i] = encode(in[i] * mul)  — mul = 1 encodes plain values; quantizers pass 1/scale
// only when the scale is a power of two (then the product is exact). Use
// fp8_encode_div_bulk for arbitrary scales so quantization is x / s correctly rounded.
void fp8_encode_bulk(uint8_t* out, const float* in, size_t n, Fp8Format f, Overflow ov);
// out[i] = encode(in[i] / s) with the division correctly rounded in FP32.
void fp8_encode_div_bulk(uint8_t* out, const float* in, size_t n, float s, Fp8Format f, Overflow ov);
void fp8_decode_bulk(float* out, const uint8_t* in, size_t n, Fp8Format f);
// FP8 -> BF16 widening (exact), used when packing GEMM operands.
void fp8_to_bf16_bulk(uint16_t* out, const uint8_t* in, size_t n, Fp8Format f);

// Scalar twins of the bulk codecs (always the plain loop; tests compare bits).
void fp8_encode_bulk_scalar(uint8_t* out, const float* in, size_t n, Fp8Format f, Overflow ov);
void fp8_encode_div_bulk_scalar(uint8_t* out, const float* in, size_t n, float s, Fp8Format f, Overflow ov);
void fp8_decode_bulk_scalar(float* out, const uint8_t* in, size_t n, Fp8Format f);
void fp8_to_bf16_bulk_scalar(uint16_t* out, const uint8_t* in, size_t n, Fp8Format f);

// --- E8M0 (OCP MX scale format): unsigned 8-bit exponent, value 2^(e-127), e in 0..254,
// 0xFF = NaN, no zero. Used for MX 1x32 block scales.
inline float e8m0_decode(uint8_t e) {
  if (e == 0xFF) return std::bit_cast<float>(0x7FC00000u);
  if (e == 0) return 0x1p-127f;
  return std::bit_cast<float>(static_cast<uint32_t>(e) << 23);
}
// Encodes a positive power of two in [2^-127, 2^127] exactly; anything else is a bug.
uint8_t e8m0_encode_pow2(float pow2);

}  // namespace tinyseek::numerics
