#include "tinyseek/numerics/formats.h"

#include <algorithm>
#include <cctype>

#include "tinyseek/base/check.h"

namespace tinyseek::numerics {

namespace {
std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}
}  // namespace

const char* to_string(Fp8Format f) { return f == Fp8Format::E4M3 ? "e4m3" : "e5m2"; }
const char* to_string(Overflow o) { return o == Overflow::Saturate ? "saturate" : "nonsaturate"; }

Fp8Format parse_fp8_format(const std::string& s) {
  const std::string l = lower(s);
  if (l == "e4m3" || l == "e4m3fn") return Fp8Format::E4M3;
  if (l == "e5m2") return Fp8Format::E5M2;
  TS_FAIL("unknown FP8 format '" << s << "'", "valid formats: e4m3 (E4M3FN), e5m2");
}

Overflow parse_overflow(const std::string& s) {
  const std::string l = lower(s);
  if (l == "saturate" || l == "sat") return Overflow::Saturate;
  if (l == "nonsaturate" || l == "nonsat") return Overflow::NonSaturate;
  TS_FAIL("unknown overflow policy '" << s << "'", "valid policies: saturate, nonsaturate");
}

}  // namespace tinyseek::numerics
