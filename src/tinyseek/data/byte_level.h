// GPT-2's byte-to-unicode mapping (the "ByteLevel" pre-tokenizer/decoder of Hugging Face
// tokenizers): every byte value maps to one printable code point, so that any byte
// string becomes a printable JSON-safe token string. Printable Latin-1 bytes ('!'..'~',
// U+00A1..U+00AC, U+00AE..U+00FF) map to themselves; the other 68 bytes map in order to
// U+0100, U+0101, ... (so ' ' -> 'Ġ' U+0120, '\n' -> 'Ċ' U+010A).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tinyseek::data {

uint32_t byte_to_code_point(uint8_t b);
// The byte a code point stands for, or -1 if cp is not in the byte alphabet.
int code_point_to_byte(uint32_t cp);

// Raw bytes -> byte-level token string (valid UTF-8).
std::string bytes_to_byte_level(std::string_view bytes);
// Byte-level token string -> raw bytes; nullopt if it holds invalid UTF-8 or a character
// outside the byte alphabet.
std::optional<std::string> byte_level_to_bytes(std::string_view s);

}  // namespace tinyseek::data
