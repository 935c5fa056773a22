// Hugging Face tokenizer.json: GPT-2 byte alphabet, structure of the files we write,
// write -> read round trip, loading hand-written GPT-2 / Llama-3 style files, agreement
// with an independent Python BPE (OpenAI's algorithm) on text, and malformed files.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "data_test_util.h"
#include "tinyseek/base/check.h"
#include "tinyseek/data/bpe.h"
#include "tinyseek/data/byte_level.h"
#include "tinyseek/data/tokenizer_json.h"

namespace tinyseek::data {
namespace {

using nlohmann::json;
using testing::TempDir;

std::string utf8(uint32_t cp) {
  std::string s;
  append_utf8(s, cp);
  return s;
}

Tokenizer trained(PreTokenizer pre = PreTokenizer::Llama3, int32_t vocab = 700) {
  BpeTrainOptions o;
  o.vocab_size = vocab;
  o.progress = false;
  o.pre_tokenizer = pre;
  const std::string a = testing::synthetic_corpus(80000, 17), b = testing::embedded_corpus();
  return train_bpe({a, b}, o);
}

// GPT-2's byte order for ids 0..255: printable bytes first, then the rest (as in its vocab).
std::vector<int> gpt2_byte_order() {
  std::vector<int> order;
  for (int b = 0; b < 256; ++b)
    if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) order.push_back(b);
  for (int b = 0; b < 256; ++b)
    if (!((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF))) order.push_back(b);
  return order;
}

// A GPT-2-style file as HF writes it: ByteLevel pre-tokenizer, "<|endoftext|>" as the last
// id (in vocab and added_tokens), merges "Ġ t", "h e", "Ġt he", "i n".
json hand_written_gpt2(bool array_merges) {
  json vocab = json::object();
  const std::vector<int> order = gpt2_byte_order();
  for (size_t id = 0; id < 256; ++id) vocab[utf8(byte_to_code_point(static_cast<uint8_t>(order[id])))] = id;
  vocab["Ġt"] = 256;
  vocab["he"] = 257;
  vocab["Ġthe"] = 258;
  vocab["in"] = 259;
  vocab["<|endoftext|>"] = 260;
  json merges = json::array();
  for (auto [l, r] : std::vector<std::pair<const char*, const char*>>{{"Ġ", "t"}, {"h", "e"}, {"Ġt", "he"}, {"i", "n"}})
    merges.push_back(array_merges ? json::array({l, r}) : json(std::string(l) + " " + r));
  return {{"version", "1.0"},
          {"truncation", nullptr},
          {"padding", nullptr},
          {"added_tokens",
           json::array({{{"id", 260}, {"content", "<|endoftext|>"}, {"single_word", false}, {"lstrip", false},
                         {"rstrip", false}, {"normalized", true}, {"special", true}}})},
          {"normalizer", nullptr},
          {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}}},
          {"post_processor", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", false}}},
          {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}}},
          {"model",
           {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", ""},
            {"end_of_word_suffix", ""}, {"fuse_unk", false}, {"vocab", vocab}, {"merges", merges}}}};
}

TEST(TokenizerJson, Gpt2ByteAlphabet) {
  // Known entries of GPT-2's bytes_to_unicode().
  EXPECT_EQ(byte_to_code_point(' '), 0x120u);   // 'Ġ'
  EXPECT_EQ(byte_to_code_point('\n'), 0x10Au);  // 'Ċ'
  EXPECT_EQ(byte_to_code_point(0), 0x100u);
  EXPECT_EQ(byte_to_code_point(0x7F), 0x121u);
  EXPECT_EQ(byte_to_code_point(0xAD), 0x143u);  // soft hyphen -> 'Ń'
  EXPECT_EQ(byte_to_code_point('A'), static_cast<uint32_t>('A'));
  EXPECT_EQ(byte_to_code_point(0xFF), 0xFFu);
  // A bijection onto 256 code points, inverted by code_point_to_byte.
  std::string all;
  for (int b = 0; b < 256; ++b) {
    all.push_back(static_cast<char>(b));
    EXPECT_EQ(code_point_to_byte(byte_to_code_point(static_cast<uint8_t>(b))), b);
  }
  EXPECT_EQ(byte_level_to_bytes(bytes_to_byte_level(all)), all);
  EXPECT_EQ(code_point_to_byte(0x144), -1);
  EXPECT_FALSE(byte_level_to_bytes("a\xFF").has_value());       // invalid UTF-8
  EXPECT_FALSE(byte_level_to_bytes(utf8(0x4E2D)).has_value());  // outside the alphabet
}

TEST(TokenizerJson, WrittenFileHasHuggingFaceStructure) {
  const Tokenizer tok = trained();
  const json j = json::parse(tokenizer_to_json(tok));
  EXPECT_EQ(j["model"]["type"], "BPE");
  EXPECT_EQ(j["model"]["byte_fallback"], false);
  EXPECT_TRUE(j["normalizer"].is_null());
  EXPECT_EQ(j["pre_tokenizer"]["type"], "Sequence");
  EXPECT_EQ(j["pre_tokenizer"]["pretokenizers"][0]["type"], "Split");
  EXPECT_EQ(j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"], pre_tokenizer_regex(PreTokenizer::Llama3));
  EXPECT_EQ(j["pre_tokenizer"]["pretokenizers"][0]["behavior"], "Isolated");
  EXPECT_EQ(j["pre_tokenizer"]["pretokenizers"][1]["type"], "ByteLevel");
  EXPECT_EQ(j["pre_tokenizer"]["pretokenizers"][1]["use_regex"], false);
  EXPECT_EQ(j["decoder"]["type"], "ByteLevel");
  ASSERT_EQ(j["added_tokens"].size(), 2u);
  EXPECT_EQ(j["added_tokens"][0]["content"], "<|bos|>");
  EXPECT_EQ(j["added_tokens"][0]["id"], 0);
  EXPECT_EQ(j["added_tokens"][0]["special"], true);
  EXPECT_EQ(j["added_tokens"][1]["content"], "<|eos|>");
  const json& vocab = j["model"]["vocab"];
  EXPECT_EQ(static_cast<int32_t>(vocab.size()), tok.vocab_size());
  EXPECT_EQ(vocab["Ġ"], 2 + ' ');
  EXPECT_EQ(vocab["Ċ"], 2 + '\n');
  EXPECT_EQ(vocab["a"], 2 + 'a');
  EXPECT_EQ(j["model"]["merges"].size(), tok.merges().size());
  // Each merge is "left right" and left+right is in the vocab with the merged id.
  for (size_t r = 0; r < tok.merges().size(); ++r) {
    const std::string m = j["model"]["merges"][r];
    const size_t sp = m.find(' ');
    ASSERT_NE(sp, std::string::npos);
    EXPECT_EQ(vocab[m.substr(0, sp) + m.substr(sp + 1)], tok.merges()[r].result) << m;
  }
  std::printf("written tokenizer.json: vocab %zu, merges %zu, %zu bytes\n", vocab.size(),
              j["model"]["merges"].size(), tokenizer_to_json(tok).size());
}

TEST(TokenizerJson, WriteReadRoundTrip) {
  TempDir dir;
  for (PreTokenizer p : {PreTokenizer::Llama3, PreTokenizer::Qwen2, PreTokenizer::Gpt2}) {
    const Tokenizer tok = trained(p);
    write_tokenizer_json(tok, dir / "tok.json");
    const Tokenizer back = read_tokenizer_json(dir / "tok.json");
    EXPECT_EQ(back.hash(), tok.hash()) << to_string(p);
    EXPECT_EQ(back.pre_tokenizer(), p);
    EXPECT_EQ(back.bos_id(), tok.bos_id());
    EXPECT_EQ(back.eos_id(), tok.eos_id());
    const std::string text = testing::embedded_corpus();
    EXPECT_EQ(back.encode(text), tok.encode(text));
    // Writing the loaded tokenizer again gives the same bytes.
    EXPECT_EQ(tokenizer_to_json(back), tokenizer_to_json(tok));
  }
}

TEST(TokenizerJson, LoadsHandWrittenGpt2File) {
  const Tokenizer tok = tokenizer_from_json(hand_written_gpt2(false).dump(), "gpt2.json");
  const std::vector<int> order = gpt2_byte_order();
  auto id_of_byte = [&](char c) {
    return static_cast<int32_t>(std::find(order.begin(), order.end(), static_cast<uint8_t>(c)) - order.begin());
  };
  EXPECT_EQ(tok.vocab_size(), 261);
  EXPECT_EQ(tok.pre_tokenizer(), PreTokenizer::Gpt2);
  EXPECT_EQ(tok.byte_token('!'), 0);
  EXPECT_EQ(tok.byte_token(' '), id_of_byte(' '));
  EXPECT_EQ(tok.bos_id(), 260);  // <|endoftext|> is both BOS and EOS, as in GPT-2
  EXPECT_EQ(tok.eos_id(), 260);
  // "the theme": pieces "the" " theme". "the": (h,e) -> t|he. " theme": (Ġ,t) rank 0,
  // (h,e) rank 1, (Ġt,he) rank 2 -> Ġthe|m|e.
  EXPECT_EQ(tok.encode("the theme"),
            (std::vector<int32_t>{id_of_byte('t'), 257, 258, id_of_byte('m'), id_of_byte('e')}));
  EXPECT_EQ(tok.decode(tok.encode("the theme in")), "the theme in");
  // Array-style merges (newer tokenizers versions) load to the same tokenizer.
  EXPECT_EQ(tokenizer_from_json(hand_written_gpt2(true).dump(), "gpt2b.json").hash(), tok.hash());
  // add_prefix_space: " " is prepended, so "the" encodes like " the".
  json aps = hand_written_gpt2(false);
  aps["pre_tokenizer"]["add_prefix_space"] = true;
  const Tokenizer tok2 = tokenizer_from_json(aps.dump(), "aps.json");
  EXPECT_EQ(tok2.encode("the"), std::vector<int32_t>{258});
}

TEST(TokenizerJson, IgnoreMergesUsesWholePieceTokens) {
  // Llama-3 files set ignore_merges: a piece that is a vocab entry is that one token.
  json j = hand_written_gpt2(false);
  j["model"]["vocab"]["xyz"] = 261;  // no merge path leads to it
  const Tokenizer plain = tokenizer_from_json(j.dump(), "plain.json");
  EXPECT_EQ(plain.encode("xyz").size(), 3u);
  j["model"]["ignore_merges"] = true;
  const Tokenizer ignoring = tokenizer_from_json(j.dump(), "ignore.json");
  EXPECT_EQ(ignoring.encode("xyz"), std::vector<int32_t>{261});
  EXPECT_NE(ignoring.hash(), plain.hash());
}

TEST(TokenizerJson, EncodingMatchesIndependentPythonBpe) {
  if (!testing::python_has_regex()) GTEST_SKIP() << "python3 has no `regex` module (apt-get install python3-regex)";
  TempDir dir;
  std::vector<std::string> texts = {testing::embedded_corpus(), "", "the theme in the inn",
                                    testing::synthetic_corpus(20000, 99)};
  Philox rng(31, 2);
  uint64_t counter = 0;
  for (int i = 0; i < 300; ++i) texts.push_back(testing::random_unicode_text(rng, counter, 50));
  testing::write_file(dir / "texts.json", json(texts).dump());
  struct Case {
    std::string name;
    Tokenizer tok;
  };
  std::vector<Case> cases;
  cases.push_back({"trained llama3", trained(PreTokenizer::Llama3, 1500)});
  cases.push_back({"trained gpt2", trained(PreTokenizer::Gpt2, 1500)});
  cases.push_back({"hand-written gpt2", tokenizer_from_json(hand_written_gpt2(false).dump(), "gpt2.json")});
  for (const Case& c : cases) {
    write_tokenizer_json(c.tok, dir / "tok.json");
    const auto r = testing::run(std::string(TINYSEEK_PYTHON) + " " + testing::reference_script() + " encode " +
                                (dir / "tok.json") + " " + (dir / "texts.json") + " " + (dir / "ids.json"));
    ASSERT_EQ(r.status, 0) << r.err;
    const json expected = json::parse(testing::read_file(dir / "ids.json"));
    size_t tokens = 0, mismatches = 0;
    for (size_t i = 0; i < texts.size(); ++i) {
      const std::vector<int32_t> got = c.tok.encode(texts[i]);
      tokens += got.size();
      if (got != expected[i].get<std::vector<int32_t>>() && ++mismatches <= 3)
        ADD_FAILURE() << c.name << " differs on text #" << i << ": " << json(texts[i]).dump().substr(0, 200);
    }
    std::printf("%s: %zu texts, %zu tokens, %zu mismatches vs Python reference BPE\n", c.name.c_str(), texts.size(),
                tokens, mismatches);
    EXPECT_EQ(mismatches, 0u);
  }
}

TEST(TokenizerJson, MalformedFilesGiveClearErrors) {
  auto error_of = [](const std::string& text) -> std::string {
    try {
      tokenizer_from_json(text, "t.json");
    } catch (const Error& e) {
      return e.message();
    }
    return "(no error)";
  };
  auto with = [](auto&& edit) {
    json j = hand_written_gpt2(false);
    edit(j);
    return j.dump();
  };
  const std::string good = hand_written_gpt2(false).dump();
  EXPECT_NE(error_of(good.substr(0, good.size() / 2)).find("not valid JSON"), std::string::npos);
  EXPECT_NE(error_of("[1, 2]").find("not a JSON object"), std::string::npos);
  EXPECT_NE(error_of(with([](json& j) { j["model"]["type"] = "Unigram"; })).find("Unigram"), std::string::npos);
  EXPECT_NE(error_of(with([](json& j) { j["model"]["byte_fallback"] = true; })).find("byte_fallback"),
            std::string::npos);
  EXPECT_NE(error_of(with([](json& j) { j["model"]["vocab"].erase("Ġ"); })).find("not dense"), std::string::npos);
  EXPECT_NE(error_of(with([](json& j) { j["model"]["merges"].push_back("Ġ zz"); })).find("not in the vocab"),
            std::string::npos);
  EXPECT_NE(error_of(with([](json& j) { j["model"]["merges"].push_back("i n x"); })).find("not of the form"),
            std::string::npos);
  EXPECT_NE(error_of(with([](json& j) { j["model"]["vocab"]["中"] = 261; })).find("byte-level"), std::string::npos);
  EXPECT_NE(error_of(with([](json& j) { j["pre_tokenizer"] = {{"type", "Whitespace"}}; })).find("unsupported"),
            std::string::npos);
  EXPECT_NE(error_of(with([](json& j) {
              j["pre_tokenizer"] = {{"type", "Sequence"},
                                    {"pretokenizers",
                                     {{{"type", "Split"}, {"pattern", {{"Regex", "\\w+"}}}, {"behavior", "Isolated"}},
                                      {{"type", "ByteLevel"}, {"use_regex", false}}}}};
            })).find("not one tinyseek implements"),
            std::string::npos);
  EXPECT_NE(error_of(with([](json& j) { j["normalizer"] = {{"type", "NFC"}}; })).find("normalizer"),
            std::string::npos);
  // A merge whose result is not in the vocab.
  EXPECT_NE(error_of(with([](json& j) { j["model"]["merges"].push_back("Ġ x"); })).find("not in the vocabulary"),
            std::string::npos);
  TempDir dir;
  try {
    read_tokenizer_json(dir / "missing.json");
    ADD_FAILURE() << "no error for a missing file";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("does not exist"), std::string::npos) << e.message();
  }
}

}  // namespace
}  // namespace tinyseek::data
