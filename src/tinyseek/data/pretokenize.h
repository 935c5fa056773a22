// Pre-tokenization: splitting text into "words" before BPE, so merges never cross a
// word boundary (keeps " the", "123", "    " and "):\n" as separate units).
//
// Each scheme is a hand-written matcher for one well-known regex, evaluated the way a
// backtracking engine (Oniguruma, used by Hugging Face tokenizers) evaluates it: at each
// position the first alternative that matches wins; quantifiers are greedy and give back
// characters only when the rest of that alternative needs them. Character classes are
// those of unicode.h. The pieces tile the text exactly (every byte lands in one piece).
//
// Llama3 (the default for trained tokenizers; also OpenAI cl100k):
//   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}
//   | ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//   - contractions ('s 't 're 've 'm 'll 'd, any case; U+017F "long s" folds to s),
//   - a run of letters, optionally led by one non-letter/non-digit/non-newline char
//     (" word", "(self", ".append"),
//   - digits in groups of at most 3 ("12345" -> "123" "45"),
//   - a run of punctuation/symbols with an optional leading space, plus any newlines
//     right after it ("):\n"),
//   - whitespace up to and including its last newline ("  \n\n"),
//   - a whitespace run except its last char when a non-space follows (so the next
//     word keeps its leading space: "    def" -> "   " " def"), else the whole run.
// Qwen2: the same with \p{N} (digits one at a time).
// Gpt2:
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//
// Invalid UTF-8 bytes are single "Other" characters (punctuation-like); Hugging Face
// cannot be given such input at all, so there is nothing to disagree with.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace tinyseek::data {

enum class PreTokenizer { Llama3, Qwen2, Gpt2 };

const char* to_string(PreTokenizer p);                  // "llama3", "qwen2", "gpt2"
PreTokenizer parse_pre_tokenizer(const std::string& s);  // throws on unknown names
// The regex of the scheme, spelled exactly as in Hugging Face tokenizer.json files.
const char* pre_tokenizer_regex(PreTokenizer p);

// End (byte offset) of the piece that starts at `pos` (< text.size()).
size_t next_piece_end(std::string_view text, size_t pos, PreTokenizer p);

// Calls emit(begin, end) for each piece of text[begin, end) in order.
template <class F>
void for_each_piece(std::string_view text, PreTokenizer p, F&& emit) {
  for (size_t pos = 0; pos < text.size();) {
    const size_t end = next_piece_end(text, pos, p);
    emit(pos, end);
    pos = end;
  }
}

std::vector<std::string_view> pretokenize(std::string_view text, PreTokenizer p);

// Splits text into consecutive chunks of roughly `target_bytes` whose boundaries are
// also piece boundaries for every scheme above, so chunks can be pre-tokenized
// independently (in parallel) with the same result as the whole text. A boundary is
// placed only right after a '\n' that follows a non-whitespace character and is followed
// by one: no alternative of any scheme matches across such a point (the whitespace run is
// the lone '\n', which every scheme makes one piece), and matching after it does not
// depend on what came before. Returns the chunk end offsets (last == text.size()).
// The result depends only on the text and target_bytes, never on the thread count.
std::vector<size_t> safe_chunk_ends(std::string_view text, size_t target_bytes);

}  // namespace tinyseek::data
