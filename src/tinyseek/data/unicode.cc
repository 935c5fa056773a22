#include "tinyseek/data/unicode.h"

#include <algorithm>
#include <array>

#include "tinyseek/data/unicode_tables.h"

namespace tinyseek::data {

namespace {

using unicode_tables::CodeRange;

bool in_ranges(const CodeRange* ranges, size_t n, uint32_t cp) {
  // First range whose upper end is >= cp; cp is inside it iff its lower end is <= cp.
  const CodeRange* end = ranges + n;
  const CodeRange* it =
      std::lower_bound(ranges, end, cp, [](const CodeRange& r, uint32_t v) { return r.hi < v; });
  return it != end && it->lo <= cp;
}

bool is_white_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

CharClass classify_slow(uint32_t cp) {
  if (is_white_space(cp)) return CharClass::Space;
  if (in_ranges(unicode_tables::letter_ranges, unicode_tables::letter_ranges_count, cp))
    return CharClass::Letter;
  if (in_ranges(unicode_tables::number_ranges, unicode_tables::number_ranges_count, cp))
    return CharClass::Number;
  return CharClass::Other;
}

// ASCII dominates real text (and all code): a table avoids the binary searches.
const std::array<CharClass, 128> kAsciiClass = [] {
  std::array<CharClass, 128> t{};
  for (uint32_t c = 0; c < 128; ++c) t[c] = classify_slow(c);
  return t;
}();

}  // namespace

CharClass classify_code_point(uint32_t cp) {
  if (cp < 128) return kAsciiClass[cp];
  if (cp == kInvalidCodePoint) return CharClass::Other;
  return classify_slow(cp);
}

DecodedChar decode_char(std::string_view text, size_t pos) {
  const size_t n = text.size();
  if (pos >= n) return {0, 0, CharClass::Other};
  const auto* s = reinterpret_cast<const uint8_t*>(text.data());
  const uint8_t b0 = s[pos];
  if (b0 < 0x80) return {b0, 1, kAsciiClass[b0]};
  const DecodedChar invalid{kInvalidCodePoint, 1, CharClass::Other};
  uint32_t len, cp, min_cp;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2, cp = b0 & 0x1Fu, min_cp = 0x80;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3, cp = b0 & 0x0Fu, min_cp = 0x800;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4, cp = b0 & 0x07u, min_cp = 0x10000;
  } else {
    return invalid;  // continuation byte, C0/C1 (overlong 2-byte) or F5..FF lead byte
  }
  if (pos + len > n) return invalid;
  for (uint32_t k = 1; k < len; ++k) {
    const uint8_t b = s[pos + k];
    if ((b & 0xC0) != 0x80) return invalid;
    cp = (cp << 6) | (b & 0x3Fu);
  }
  if (cp < min_cp || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return invalid;
  return {cp, len, classify_slow(cp)};
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

bool is_valid_utf8(std::string_view s) {
  for (size_t pos = 0; pos < s.size();) {
    const DecodedChar c = decode_char(s, pos);
    if (c.cp == kInvalidCodePoint) return false;
    pos += c.len;
  }
  return true;
}

}  // namespace tinyseek::data
