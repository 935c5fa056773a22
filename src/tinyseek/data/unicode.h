// UTF-8 decoding and the character classes of the pre-tokenizer regexes.
//
// The classes mirror what Oniguruma (the regex engine behind Hugging Face tokenizers'
// Split pre-tokenizer) means by \p{L}, \p{N} and \s on UTF-8 text:
//   Letter  \p{L}  general categories Lu Ll Lt Lm Lo (Unicode 14.0 tables)
//   Number  \p{N}  Nd Nl No
//   Space   \s     the White_Space property: U+0009..U+000D, U+0020, U+0085, U+00A0,
//                  U+1680, U+2000..U+200A, U+2028, U+2029, U+202F, U+205F, U+3000
//   Other          everything else (punctuation, symbols, marks, controls, unassigned)
// Bytes that are not valid UTF-8 (stray continuation bytes, overlong forms, surrogates,
// code points above U+10FFFF, truncated sequences) decode one byte at a time as
// kInvalidCodePoint in class Other. Hugging Face never sees such input (Rust strings are
// valid UTF-8); we need it so that every byte string tokenizes and round-trips.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace tinyseek::data {

enum class CharClass : uint8_t { Letter, Number, Space, Other };

inline constexpr uint32_t kInvalidCodePoint = 0xFFFFFFFFu;

struct DecodedChar {
  uint32_t cp;    // code point, or kInvalidCodePoint for an invalid byte
  uint32_t len;   // bytes consumed (1..4); 0 only at the end of the text
  CharClass cls;
};

CharClass classify_code_point(uint32_t cp);

// Decodes the character starting at byte `pos` of `text` (strict UTF-8, RFC 3629).
// At pos >= text.size() returns {0, 0, Other}.
DecodedChar decode_char(std::string_view text, size_t pos);

// Appends the UTF-8 encoding of cp (must be a valid scalar value).
void append_utf8(std::string& out, uint32_t cp);

// True if `s` is entirely valid UTF-8.
bool is_valid_utf8(std::string_view s);

}  // namespace tinyseek::data
