#include "tinyseek/data/pretokenize.h"

#include "tinyseek/base/check.h"
#include "tinyseek/data/unicode.h"

namespace tinyseek::data {

namespace {

bool is_newline(uint32_t cp) { return cp == '\r' || cp == '\n'; }

// End of the run of characters of class `cls` starting at pos (pos itself included).
size_t run_end(std::string_view text, size_t pos, CharClass cls) {
  while (pos < text.size()) {
    const DecodedChar c = decode_char(text, pos);
    if (c.cls != cls) break;
    pos += c.len;
  }
  return pos;
}

// Lower-cases the ASCII letters of interest; U+017F (long s) case-folds to 's'.
uint32_t fold_case(uint32_t cp, bool ignore_case) {
  if (!ignore_case) return cp;
  if (cp >= 'A' && cp <= 'Z') return cp + 32;
  if (cp == 0x17F) return 's';
  return cp;
}

// 's 't 're 've 'm 'll 'd at pos (text[pos] == '\''): returns the end or 0.
size_t match_contraction(std::string_view text, size_t pos, bool ignore_case) {
  const DecodedChar c1 = decode_char(text, pos + 1);
  if (c1.len == 0) return 0;
  const uint32_t l1 = fold_case(c1.cp, ignore_case);
  const size_t after1 = pos + 1 + c1.len;
  if (l1 == 's' || l1 == 't' || l1 == 'm' || l1 == 'd') return after1;
  uint32_t want2 = 0;
  if (l1 == 'r' || l1 == 'v') want2 = 'e';
  if (l1 == 'l') want2 = 'l';
  if (want2 == 0) return 0;
  const DecodedChar c2 = decode_char(text, after1);
  if (c2.len == 0 || fold_case(c2.cp, ignore_case) != want2) return 0;
  return after1 + c2.len;
}

// Whitespace alternatives shared by all schemes, at a whitespace char c0 at pos.
// with_newline_rule adds Llama3's \s*[\r\n]+ in front of \s+(?!\S)|\s+.
size_t match_whitespace(std::string_view text, size_t pos, bool with_newline_rule) {
  size_t end = pos, last_start = pos, last_newline_end = 0, count = 0;
  while (end < text.size()) {
    const DecodedChar c = decode_char(text, end);
    if (c.cls != CharClass::Space) break;
    last_start = end;
    end += c.len;
    ++count;
    if (is_newline(c.cp)) last_newline_end = end;
  }
  // \s*[\r\n]+ : \s* backs off until [\r\n]+ can match, i.e. to the last newline.
  if (with_newline_rule && last_newline_end != 0) return last_newline_end;
  // \s+(?!\S): the whole run at the end of text; otherwise the run minus its last char
  // (which is then followed by whitespace), if that leaves at least one char.
  if (end == text.size()) return end;
  if (count >= 2) return last_start;
  return end;  // \s+
}

size_t next_piece_llama3(std::string_view text, size_t pos, int max_digits) {
  const DecodedChar c0 = decode_char(text, pos);
  // (?i:'s|'t|'re|'ve|'m|'ll|'d)
  if (c0.cp == '\'') {
    const size_t e = match_contraction(text, pos, /*ignore_case=*/true);
    if (e) return e;
  }
  // [^\r\n\p{L}\p{N}]?\p{L}+
  if (c0.cls == CharClass::Letter) return run_end(text, pos, CharClass::Letter);
  if (c0.cls != CharClass::Number && !is_newline(c0.cp)) {
    const DecodedChar c1 = decode_char(text, pos + c0.len);
    if (c1.len && c1.cls == CharClass::Letter) return run_end(text, pos + c0.len, CharClass::Letter);
  }
  // \p{N}{1,3}
  if (c0.cls == CharClass::Number) {
    size_t end = pos + c0.len;
    for (int k = 1; k < max_digits; ++k) {
      const DecodedChar c = decode_char(text, end);
      if (c.len == 0 || c.cls != CharClass::Number) break;
      end += c.len;
    }
    return end;
  }
  //  ?[^\s\p{L}\p{N}]+[\r\n]*
  size_t p = pos;
  if (c0.cp == ' ') p += 1;
  const DecodedChar cp = decode_char(text, p);
  if (cp.len && cp.cls == CharClass::Other) {
    size_t end = run_end(text, p, CharClass::Other);
    while (end < text.size() && is_newline(static_cast<uint8_t>(text[end]))) ++end;
    return end;
  }
  // \s*[\r\n]+|\s+(?!\S)|\s+
  TS_ASSERT(c0.cls == CharClass::Space);
  return match_whitespace(text, pos, /*with_newline_rule=*/true);
}

size_t next_piece_gpt2(std::string_view text, size_t pos) {
  const DecodedChar c0 = decode_char(text, pos);
  // 's|'t|'re|'ve|'m|'ll|'d
  if (c0.cp == '\'') {
    const size_t e = match_contraction(text, pos, /*ignore_case=*/false);
    if (e) return e;
  }
  //  ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+ : an optional space, then a run of one class.
  if (c0.cp == ' ') {
    const DecodedChar c1 = decode_char(text, pos + 1);
    if (c1.len && c1.cls != CharClass::Space) return run_end(text, pos + 1, c1.cls);
  }
  if (c0.cls != CharClass::Space) return run_end(text, pos, c0.cls);
  // \s+(?!\S)|\s+
  return match_whitespace(text, pos, /*with_newline_rule=*/false);
}

}  // namespace

const char* to_string(PreTokenizer p) {
  switch (p) {
    case PreTokenizer::Llama3: return "llama3";
    case PreTokenizer::Qwen2: return "qwen2";
    case PreTokenizer::Gpt2: return "gpt2";
  }
  return "?";
}

PreTokenizer parse_pre_tokenizer(const std::string& s) {
  if (s == "llama3") return PreTokenizer::Llama3;
  if (s == "qwen2") return PreTokenizer::Qwen2;
  if (s == "gpt2") return PreTokenizer::Gpt2;
  TS_FAIL("unknown pre-tokenizer '" << s << "'", "use one of: llama3 (default), qwen2, gpt2");
}

const char* pre_tokenizer_regex(PreTokenizer p) {
  switch (p) {
    case PreTokenizer::Llama3:
      return "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
             "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    case PreTokenizer::Qwen2:
      return "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
             "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    case PreTokenizer::Gpt2:
      return "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
  }
  return "";
}

size_t next_piece_end(std::string_view text, size_t pos, PreTokenizer p) {
  switch (p) {
    case PreTokenizer::Llama3: return next_piece_llama3(text, pos, 3);
    case PreTokenizer::Qwen2: return next_piece_llama3(text, pos, 1);
    case PreTokenizer::Gpt2: return next_piece_gpt2(text, pos);
  }
  return text.size();
}

std::vector<std::string_view> pretokenize(std::string_view text, PreTokenizer p) {
  std::vector<std::string_view> out;
  for_each_piece(text, p, [&](size_t b, size_t e) { out.push_back(text.substr(b, e - b)); });
  return out;
}

namespace {

// Class of the character that ends right before byte `end` (> 0, at a char boundary).
// Walks back to the nearest lead byte; a continuation byte that no valid sequence
// covers is an invalid byte of its own (class Other), as decode_char sees it.
CharClass class_of_char_before(std::string_view text, size_t end) {
  const auto* s = reinterpret_cast<const uint8_t*>(text.data());
  size_t lead = end - 1;
  while (lead > 0 && end - lead < 4 && (s[lead] & 0xC0) == 0x80) --lead;
  const DecodedChar c = decode_char(text, lead);
  return lead + c.len == end ? c.cls : CharClass::Other;
}

}  // namespace

std::vector<size_t> safe_chunk_ends(std::string_view text, size_t target_bytes) {
  std::vector<size_t> ends;
  const size_t n = text.size();
  target_bytes = std::max<size_t>(target_bytes, 1);
  size_t begin = 0;
  while (begin < n) {
    size_t cut = n;
    for (size_t p = begin + target_bytes; p < n; ++p) {
      // p is a boundary if text[p-1] == '\n' ends a whitespace run of length one (GPT-2's
      // \s+(?!\S) would otherwise split "  \n" differently at a chunk end than inside the
      // text) and text[p] starts a non-whitespace character.
      if (text[p - 1] == '\n' && decode_char(text, p).cls != CharClass::Space &&
          (p < 2 || class_of_char_before(text, p - 1) != CharClass::Space)) {
        cut = p;
        break;
      }
    }
    ends.push_back(cut);
    begin = cut;
  }
  return ends;
}

}  // namespace tinyseek::data
