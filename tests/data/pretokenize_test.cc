// Pre-tokenizer: hand-checked splits, agreement with a real backtracking regex engine
// (Python's `regex`, same semantics as Oniguruma) on random Unicode text, and chunked ==
// whole-text splitting.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "data_test_util.h"
#include "tinyseek/data/pretokenize.h"
#include "tinyseek/data/unicode.h"

namespace tinyseek::data {
namespace {

using testing::TempDir;

std::vector<std::string> split(std::string_view text, PreTokenizer p) {
  std::vector<std::string> out;
  for (std::string_view s : pretokenize(text, p)) out.emplace_back(s);
  return out;
}

TEST(PreTokenizer, Llama3HandExamples) {
  // Expected pieces from the regex semantics (also what Python `regex` returns).
  EXPECT_EQ(split("Hello  world's 12345!!\n\n   x\t\n y   ", PreTokenizer::Llama3),
            (std::vector<std::string>{"Hello", " ", " world", "'s", " ", "123", "45", "!!\n\n", "  ", " x", "\t\n",
                                      " y", "   "}));
  EXPECT_EQ(split("    def f(self):\n        return x.append(1)", PreTokenizer::Llama3),
            (std::vector<std::string>{"   ", " def", " f", "(self", "):\n", "       ", " return", " x", ".append",
                                      "(", "1", ")"}));
  EXPECT_EQ(split("I'M DON'T 'ſ", PreTokenizer::Llama3),
            (std::vector<std::string>{"I", "'M", " DON", "'T", " '", "ſ"}));
  EXPECT_EQ(split("", PreTokenizer::Llama3), std::vector<std::string>{});
}

TEST(PreTokenizer, Gpt2AndQwen2HandExamples) {
  EXPECT_EQ(split("I'm  here: 2024 ok\n", PreTokenizer::Gpt2),
            (std::vector<std::string>{"I", "'m", " ", " here", ":", " 2024", " ok", "\n"}));
  EXPECT_EQ(split("I'M 12345", PreTokenizer::Gpt2), (std::vector<std::string>{"I", "'", "M", " 12345"}));
  EXPECT_EQ(split("x 12345", PreTokenizer::Qwen2), (std::vector<std::string>{"x", " ", "1", "2", "3", "4", "5"}));
}

TEST(PreTokenizer, InvalidUtf8BytesAreSinglePunctuationChars) {
  // 0xFF and a lone continuation byte act like punctuation: they start a letter run's
  // prefix or join a punctuation run, and every byte lands in exactly one piece.
  const std::string text = std::string("ab\xFF") + "cd \x80\x80!" + "\xE2\x82" + " z";
  std::string joined;
  for (const std::string& p : split(text, PreTokenizer::Llama3)) joined += p;
  EXPECT_EQ(joined, text);
  EXPECT_EQ(split(text, PreTokenizer::Llama3),
            (std::vector<std::string>{"ab", "\xFF" "cd", " \x80\x80!\xE2\x82", " z"}));
}

TEST(PreTokenizer, CharacterClasses) {
  EXPECT_EQ(classify_code_point('a'), CharClass::Letter);
  EXPECT_EQ(classify_code_point(0x4E2D), CharClass::Letter);   // CJK
  EXPECT_EQ(classify_code_point(0x660), CharClass::Number);    // Arabic-Indic zero (Nd)
  EXPECT_EQ(classify_code_point(0xBD), CharClass::Number);     // one half (No)
  EXPECT_EQ(classify_code_point(0x2167), CharClass::Number);   // Roman numeral (Nl)
  EXPECT_EQ(classify_code_point(0x3000), CharClass::Space);
  EXPECT_EQ(classify_code_point(0x1C), CharClass::Other);      // isspace() in Python, not White_Space
  EXPECT_EQ(classify_code_point(0x301), CharClass::Other);     // combining mark
  EXPECT_EQ(decode_char("\xED\xA0\x80", 0).cp, kInvalidCodePoint);  // surrogate
  EXPECT_EQ(decode_char("\xC0\xAF", 0).cp, kInvalidCodePoint);      // overlong
  EXPECT_EQ(decode_char("\xF4\x90\x80\x80", 0).cp, kInvalidCodePoint);  // > U+10FFFF
  EXPECT_EQ(decode_char("\xF0\x9F\x99\x82", 0).cp, 0x1F642u);
}

TEST(PreTokenizer, AgreesWithPythonRegexOnRandomText) {
  if (!testing::python_has_regex()) GTEST_SKIP() << "python3 has no `regex` module";
  TempDir dir;
  Philox rng(2024, 1);
  uint64_t counter = 0;
  std::vector<std::string> texts;
  for (int i = 0; i < 3000; ++i) texts.push_back(testing::random_unicode_text(rng, counter, 40));
  texts.push_back("");
  texts.push_back(testing::embedded_corpus());
  testing::write_file(dir / "in.json", nlohmann::json(texts).dump());
  for (PreTokenizer p : {PreTokenizer::Llama3, PreTokenizer::Qwen2, PreTokenizer::Gpt2}) {
    const auto r = testing::run(std::string(TINYSEEK_PYTHON) + " " + testing::reference_script() + " split " +
                                to_string(p) + " " + (dir / "in.json") + " " + (dir / "out.json"));
    ASSERT_EQ(r.status, 0) << r.err;
    const auto expected = nlohmann::json::parse(testing::read_file(dir / "out.json"));
    size_t mismatches = 0, pieces = 0;
    for (size_t i = 0; i < texts.size(); ++i) {
      const auto got = split(texts[i], p);
      pieces += got.size();
      if (got != expected[i].get<std::vector<std::string>>()) {
        if (++mismatches <= 3) ADD_FAILURE() << to_string(p) << " differs on " << nlohmann::json(texts[i]).dump()
                                             << "\n  ours:   " << nlohmann::json(got).dump()
                                             << "\n  python: " << expected[i].dump();
      }
    }
    std::printf("%s: %zu texts, %zu pieces, %zu mismatches vs Python regex\n", to_string(p), texts.size(), pieces,
                mismatches);
    EXPECT_EQ(mismatches, 0u);
  }
}

TEST(PreTokenizer, SafeChunksSplitLikeTheWholeText) {
  std::string text;
  for (int i = 0; i < 40; ++i) text += testing::embedded_corpus();
  text += "\n\n   trailing   \n";
  for (PreTokenizer p : {PreTokenizer::Llama3, PreTokenizer::Gpt2}) {
    const auto whole = split(text, p);
    for (size_t target : {1, 100, 4096}) {
      std::vector<std::string> chunked;
      size_t begin = 0;
      const std::vector<size_t> ends = safe_chunk_ends(text, target);
      for (size_t end : ends) {
        for (auto& s : split(std::string_view(text).substr(begin, end - begin), p)) chunked.push_back(s);
        begin = end;
      }
      EXPECT_EQ(ends.back(), text.size());
      EXPECT_EQ(chunked, whole) << to_string(p) << " target " << target;
      std::printf("%s target %zu: %zu chunks, %zu pieces identical to whole-text split\n", to_string(p), target,
                  ends.size(), whole.size());
    }
  }
}

TEST(PreTokenizer, SafeChunksOnRandomUnicodeText) {
  // Random lines full of whitespace variants (\t, U+0085, U+2028, U+3000, "\r\n"), digits
  // and invalid bytes: every chunking must give the whole-text pieces, for every scheme.
  Philox rng(77, 4);
  uint64_t counter = 0;
  std::string text;
  for (int i = 0; i < 4000; ++i) {
    text += testing::random_unicode_text(rng, counter, 12);
    const uint32_t r = rng.block(counter++)[0] % 8;
    text += r == 0 ? "\n" : r == 1 ? " \n" : r == 2 ? "\xFF\n" : r == 3 ? "\r\n" : "";
  }
  size_t total_chunks = 0;
  for (PreTokenizer p : {PreTokenizer::Llama3, PreTokenizer::Qwen2, PreTokenizer::Gpt2}) {
    const auto whole = split(text, p);
    for (size_t target : {1, 7, 300}) {
      std::vector<std::string> chunked;
      size_t begin = 0;
      const std::vector<size_t> ends = safe_chunk_ends(text, target);
      for (size_t end : ends) {
        for (auto& s : split(std::string_view(text).substr(begin, end - begin), p)) chunked.push_back(s);
        begin = end;
      }
      total_chunks += ends.size();
      EXPECT_EQ(chunked, whole) << to_string(p) << " target " << target;
    }
  }
  std::printf("%zu bytes of random text: %zu chunks over 3 schemes x 3 targets, all identical to whole-text\n",
              text.size(), total_chunks);
  EXPECT_GT(total_chunks, 1000u);
}

}  // namespace
}  // namespace tinyseek::data
