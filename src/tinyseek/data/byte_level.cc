#include "tinyseek/data/byte_level.h"

#include <array>

#include "tinyseek/data/unicode.h"

namespace tinyseek::data {

namespace {

struct ByteTables {
  std::array<uint32_t, 256> to_cp{};
  std::array<int16_t, 512> from_cp{};  // every mapped code point is < 0x144
};

const ByteTables kTables = [] {
  ByteTables t;
  t.from_cp.fill(-1);
  uint32_t next_extra = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    t.to_cp[b] = printable ? static_cast<uint32_t>(b) : next_extra++;
    t.from_cp[t.to_cp[b]] = static_cast<int16_t>(b);
  }
  return t;
}();

}  // namespace

uint32_t byte_to_code_point(uint8_t b) { return kTables.to_cp[b]; }

int code_point_to_byte(uint32_t cp) { return cp < kTables.from_cp.size() ? kTables.from_cp[cp] : -1; }

std::string bytes_to_byte_level(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) append_utf8(out, byte_to_code_point(static_cast<uint8_t>(c)));
  return out;
}

std::optional<std::string> byte_level_to_bytes(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t pos = 0; pos < s.size();) {
    const DecodedChar c = decode_char(s, pos);
    const int b = c.cp == kInvalidCodePoint ? -1 : code_point_to_byte(c.cp);
    if (b < 0) return std::nullopt;
    out.push_back(static_cast<char>(b));
    pos += c.len;
  }
  return out;
}

}  // namespace tinyseek::data
