// The 8- and 16-bit floating point formats tinyseek computes with, and the policy for
// values beyond the largest finite number.
//
// OCP 8-bit Floating Point Specification (OFP8) rev 1.0:
//   E4M3FN: 1 sign, 4 exponent (bias 7), 3 mantissa; no infinities; NaN = S.1111.111;
//           max finite 448 (S.1111.110), min normal 2^-6, min subnormal 2^-9.
//   E5M2:   1 sign, 5 exponent (bias 15), 2 mantissa; Inf = S.11111.00, NaN = S.11111.{01,10,11};
//           max finite 57344, min normal 2^-14, min subnormal 2^-16.
// Both widen exactly to BF16 and FP32.
#pragma once
#include <cstdint>
#include <string>

namespace tinyseek::numerics {

enum class Fp8Format : uint8_t { E4M3, E5M2 };

// What encode does with finite values whose rounded magnitude exceeds max finite, and
// with +-Inf. Saturate (OFP8 "SAT", the training default, hardware `satfinite`): clamp to
// +-max finite. NonSaturate (OFP8 "NONSAT"): E4M3 gives NaN, E5M2 and BF16 give +-Inf.
// NaN inputs stay NaN under both policies.
enum class Overflow : uint8_t { Saturate, NonSaturate };

struct Fp8Traits {
  int exp_bits, man_bits, bias;
  int emin;              // exponent of the smallest normal: 1 - bias
  uint8_t max_code;      // magnitude code of the largest finite value
  float max_finite;      // 448 or 57344
  float min_subnormal;   // 2^-9 or 2^-16
  bool has_inf;
};

constexpr Fp8Traits fp8_traits(Fp8Format f) {
  return f == Fp8Format::E4M3 ? Fp8Traits{4, 3, 7, -6, 0x7E, 448.0f, 0.001953125f, false}
                              : Fp8Traits{5, 2, 15, -14, 0x7B, 57344.0f, 1.52587890625e-05f, true};
}

const char* to_string(Fp8Format f);   // "e4m3" / "e5m2"
const char* to_string(Overflow o);    // "saturate" / "nonsaturate"
// Parse "e4m3" | "e5m2" (case-insensitive); throws tinyseek::Error naming the valid values.
Fp8Format parse_fp8_format(const std::string& s);
Overflow parse_overflow(const std::string& s);

}  // namespace tinyseek::numerics
