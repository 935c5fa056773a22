// Byte-level BPE: training on hand-computable text, against a naive re-counting trainer,
// determinism over thread counts; encode/decode round trips on arbitrary bytes; parallel
// encoding == sequential piece-by-piece encoding; special tokens; option errors.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <map>

#include "data_test_util.h"
#include "tinyseek/base/check.h"
#include "tinyseek/base/timer.h"
#include "tinyseek/data/bpe.h"
#include "tinyseek/data/pretokenize.h"

namespace tinyseek::data {
namespace {

// Merges as readable strings "left right".
std::vector<std::string> merge_strings(const Tokenizer& tok) {
  std::vector<std::string> out;
  for (const Merge& m : tok.merges()) out.push_back(tok.token_bytes(m.left) + " " + tok.token_bytes(m.right));
  return out;
}

BpeTrainOptions quiet_options(int32_t vocab_size, int64_t min_frequency = 2) {
  BpeTrainOptions o;
  o.vocab_size = vocab_size;
  o.min_frequency = min_frequency;
  o.progress = false;
  return o;
}

Tokenizer train_on(const std::vector<std::string>& docs, const BpeTrainOptions& o, BpeTrainStats* st = nullptr) {
  std::vector<std::string_view> views(docs.begin(), docs.end());
  return train_bpe(views, o, st);
}

// A tokenizer with realistic merges, shared by the encode tests.
const Tokenizer& sample_tokenizer() {
  static const Tokenizer tok = [] {
    return train_on({testing::synthetic_corpus(200000, 3), testing::embedded_corpus()}, quiet_options(1024));
  }();
  return tok;
}

TEST(Bpe, HandComputedMergesOnTheClassicExample) {
  // "aaabdaaabac" is one pre-tokenizer piece. Pair counts: aa 4, ab 2, others 1 -> "aa".
  // Then [aa a b d aa a b a c]: (aa,a) 2 and (a,b) 2 tie; the smaller id pair (a,b) wins.
  // Then [aa ab d aa ab a c]: (aa,ab) 2 -> "aaab"; all remaining pairs occur once.
  BpeTrainStats st;
  const Tokenizer tok = train_on({"aaabdaaabac"}, quiet_options(300), &st);
  EXPECT_EQ(merge_strings(tok), (std::vector<std::string>{"a a", "a b", "aa ab"}));
  EXPECT_EQ(st.stop_reason, "min frequency");
  EXPECT_EQ(tok.vocab_size(), 2 + 256 + 3);
  EXPECT_EQ(tok.token_bytes(258), "aa");
  EXPECT_EQ(tok.token_bytes(260), "aaab");
  // Ids: specials first, then bytes in order, then merges in order.
  EXPECT_EQ(tok.bos_id(), 0);
  EXPECT_EQ(tok.eos_id(), 1);
  EXPECT_EQ(tok.byte_token('a'), 2 + 'a');
  EXPECT_EQ(tok.encode("aaabdaaabac"), (std::vector<int32_t>{260, 2 + 'd', 260, 2 + 'a', 2 + 'c'}));

  // min_frequency 1 continues: pairs (aaab,d) (d,aaab) (aaab,a) (a,c) all occur once; the
  // tie goes to the smallest (left id, right id) = (a, c).
  const Tokenizer more = train_on({"aaabdaaabac"}, quiet_options(2 + 256 + 4, 1), &st);
  EXPECT_EQ(merge_strings(more), (std::vector<std::string>{"a a", "a b", "aa ab", "a c"}));
  EXPECT_EQ(st.stop_reason, "vocab size reached");
}

TEST(Bpe, MergesNeverCrossPiecesOrDocuments) {
  // Pieces "ab", " ab", "ab": (a,b) 3 times; (' ',a) once -> one merge only.
  EXPECT_EQ(merge_strings(train_on({"ab ab", "ab"}, quiet_options(400))), std::vector<std::string>{"a b"});
  // "q" + "q" as two documents never form the pair (q,q); as one text they do.
  BpeTrainStats st;
  EXPECT_TRUE(train_on({"q", "q", "q"}, quiet_options(400, 1), &st).merges().empty());
  EXPECT_EQ(st.stop_reason, "no pairs left");
  EXPECT_EQ(merge_strings(train_on({"qq"}, quiet_options(400, 1))), std::vector<std::string>{"q q"});
  // Digits go in groups of at most 3 (llama3): "1234" never becomes one token.
  const Tokenizer digits = train_on({"1234 1234 1234 1234"}, quiet_options(400, 1));
  for (const Merge& m : digits.merges())
    EXPECT_LE(digits.token_bytes(m.result).size(), 3u) << digits.token_bytes(m.result);
}

// Naive BPE trainer: recounts every pair over all words after every merge.
std::vector<std::string> naive_merges(const std::vector<std::string>& docs, size_t vocab_size, int64_t min_freq) {
  std::map<std::string, int64_t> counts;
  for (const std::string& d : docs)
    for (std::string_view p : pretokenize(d, PreTokenizer::Llama3)) ++counts[std::string(p)];
  std::map<std::string, int32_t> id_of;  // token bytes -> id (specials 0,1; bytes 2..257)
  std::vector<std::string> tokens = {"<|bos|>", "<|eos|>"};
  for (int b = 0; b < 256; ++b) {
    id_of[std::string(1, static_cast<char>(b))] = static_cast<int32_t>(tokens.size());
    tokens.emplace_back(1, static_cast<char>(b));
  }
  std::vector<std::pair<std::vector<int32_t>, int64_t>> words;
  for (const auto& [w, c] : counts) {
    std::vector<int32_t> s;
    for (char ch : w) s.push_back(id_of[std::string(1, ch)]);
    words.emplace_back(s, c);
  }
  std::vector<std::string> merges;
  while (tokens.size() < vocab_size) {
    std::map<std::pair<int32_t, int32_t>, int64_t> pc;
    for (const auto& [s, c] : words)
      for (size_t i = 0; i + 1 < s.size(); ++i) pc[{s[i], s[i + 1]}] += c;
    std::pair<int32_t, int32_t> best{-1, -1};
    int64_t best_c = 0;
    for (const auto& [p, c] : pc)  // map order: smallest pair first, so '>' keeps it on ties
      if (c > best_c) best = p, best_c = c;
    if (best_c < min_freq) break;
    const std::string merged = tokens[best.first] + tokens[best.second];
    int32_t n;
    if (id_of.count(merged)) {
      n = id_of[merged];
    } else {
      n = static_cast<int32_t>(tokens.size());
      id_of[merged] = n;
      tokens.push_back(merged);
    }
    merges.push_back(tokens[best.first] + " " + tokens[best.second]);
    for (auto& [s, c] : words) {
      std::vector<int32_t> t;
      for (size_t i = 0; i < s.size();) {
        if (i + 1 < s.size() && s[i] == best.first && s[i + 1] == best.second) {
          t.push_back(n);
          i += 2;
        } else {
          t.push_back(s[i++]);
        }
      }
      s = t;
    }
  }
  return merges;
}

TEST(Bpe, IncrementalTrainingMatchesNaiveRecounting) {
  // Repetitive words ("aaaa", "abab", "1111") exercise overlapping and adjacent merges.
  std::vector<std::string> docs = {testing::synthetic_corpus(30000, 11), testing::embedded_corpus(),
                                   "aaaa aaaaa aaaaaa abab ababab xyxyxyxy 1111 111111 ....... ::::::\n"
                                   "aaaa aaaaa aaaaaa abab ababab xyxyxyxy 1111 111111 ....... ::::::\n"};
  const int n = 400;
  const Tokenizer tok = train_on(docs, quiet_options(258 + n));
  const std::vector<std::string> expected = naive_merges(docs, 258 + n, 2);
  const std::vector<std::string> got = merge_strings(tok);
  size_t same = 0;
  while (same < std::min(got.size(), expected.size()) && got[same] == expected[same]) ++same;
  std::printf("incremental vs naive trainer: %zu merges, first %zu identical (naive has %zu)\n", got.size(), same,
              expected.size());
  EXPECT_EQ(got, expected);
}

TEST(Bpe, TrainingIsIdenticalForAnyThreadCount) {
  const std::vector<std::string> docs = {testing::synthetic_corpus(600000, 5), testing::embedded_corpus()};
  std::vector<uint64_t> hashes;
  const int threads_before = omp_get_max_threads();
  for (int threads : {1, 2, 3}) {
    omp_set_num_threads(threads);
    Timer t;
    BpeTrainStats st;
    const Tokenizer tok = train_on(docs, quiet_options(2048), &st);
    std::printf("threads %d: %d merges (%s) in %.3f s, hash %016llx\n", threads, st.merges, st.stop_reason.c_str(),
                t.seconds(), static_cast<unsigned long long>(tok.hash()));
    hashes.push_back(tok.hash());
  }
  omp_set_num_threads(threads_before);
  EXPECT_EQ(hashes[0], hashes[1]);
  EXPECT_EQ(hashes[0], hashes[2]);
}

TEST(Bpe, RoundTripsArbitraryBytes) {
  const Tokenizer& tok = sample_tokenizer();
  Philox rng(99, 3);
  uint64_t counter = 0;
  size_t bytes = 0, tokens = 0, invalid_texts = 0;
  for (int i = 0; i < 400; ++i) {
    std::string s;
    const size_t n = rng.block(counter++)[0] % 300;
    for (size_t k = 0; k < n; ++k) {
      // Mix of fully random bytes and ASCII text, so merges also fire around invalid bytes.
      const auto r = rng.block(counter++);
      s.push_back(static_cast<char>(r[1] % 4 == 0 ? r[0] & 0xFF : "the river 12 \n"[r[0] % 14]));
    }
    if (!is_valid_utf8(s)) ++invalid_texts;
    const std::vector<int32_t> ids = tok.encode(s);
    for (int32_t id : ids) ASSERT_FALSE(tok.is_special(id));
    ASSERT_EQ(tok.decode(ids), s) << "text #" << i;
    bytes += s.size();
    tokens += ids.size();
  }
  std::printf("random bytes: 400 texts (%zu invalid UTF-8), %zu bytes -> %zu tokens, all round-trip\n",
              invalid_texts, bytes, tokens);
  EXPECT_GT(invalid_texts, 300u);
  EXPECT_TRUE(tok.encode("").empty());
  EXPECT_EQ(tok.decode(std::vector<int32_t>{}), "");
  // Every single byte, and all 256 bytes in a row.
  std::string all;
  for (int b = 0; b < 256; ++b) {
    const std::string one(1, static_cast<char>(b));
    EXPECT_EQ(tok.encode(one), std::vector<int32_t>{tok.byte_token(static_cast<uint8_t>(b))});
    all += one;
  }
  EXPECT_EQ(tok.decode(tok.encode(all)), all);
}

TEST(Bpe, RoundTripsUnicodeAndCompresses) {
  const Tokenizer& tok = sample_tokenizer();
  Philox rng(7, 1);
  uint64_t counter = 0;
  for (int i = 0; i < 500; ++i) {
    const std::string s = testing::random_unicode_text(rng, counter, 60);
    ASSERT_EQ(tok.decode(tok.encode(s)), s);
  }
  const std::string text = testing::embedded_corpus();
  const std::vector<int32_t> ids = tok.encode(text);
  EXPECT_EQ(tok.decode(ids), text);
  const double ratio = static_cast<double>(text.size()) / static_cast<double>(ids.size());
  std::printf("embedded corpus: %zu bytes -> %zu tokens (%.2f bytes/token)\n", text.size(), ids.size(), ratio);
  EXPECT_GT(ratio, 2.0);  // merges were learned and are used
}

TEST(Bpe, ParallelEncodingEqualsSequentialPieceByPiece) {
  const Tokenizer& tok = sample_tokenizer();
  // ~1.5 MB: long enough to be cut into many chunks; includes random unicode lines.
  std::string text = testing::synthetic_corpus(1500000, 21);
  Philox rng(5, 5);
  uint64_t counter = 0;
  for (int i = 0; i < 2000; ++i) text += testing::random_unicode_text(rng, counter, 30) + "\n";
  const int threads_before = omp_get_max_threads();
  std::vector<int32_t> reference;
  for (std::string_view piece : pretokenize(text, tok.pre_tokenizer())) tok.encode_piece(piece, reference);
  for (int threads : {1, 2, 4}) {
    omp_set_num_threads(threads);
    Timer t;
    const std::vector<int32_t> ids = tok.encode(text);
    const double s = t.seconds();
    std::printf("threads %d: %zu bytes -> %zu tokens in %.3f s (%.1f MB/s)\n", threads, text.size(), ids.size(), s,
                static_cast<double>(text.size()) / 1e6 / s);
    EXPECT_EQ(ids, reference) << threads << " threads";
  }
  omp_set_num_threads(threads_before);
  // encode_batch: one result per document, each equal to encoding it alone.
  const std::vector<std::string_view> docs = {std::string_view(text).substr(0, 1000), "", "x",
                                              std::string_view(text).substr(1000, 300000)};
  const auto batch = tok.encode_batch(docs);
  ASSERT_EQ(batch.size(), docs.size());
  for (size_t i = 0; i < docs.size(); ++i) EXPECT_EQ(batch[i], tok.encode(docs[i])) << "doc " << i;
}

TEST(Bpe, SpecialTokensAreInsertedByIdNeverFromText) {
  const Tokenizer& tok = sample_tokenizer();
  EXPECT_EQ(tok.special_ids(), (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(tok.find_special("<|eos|>"), 1);
  const std::string text = "a <|bos|> b";
  const std::vector<int32_t> ids = tok.encode(text);
  for (int32_t id : ids) EXPECT_FALSE(tok.is_special(id));
  std::vector<int32_t> framed = {tok.bos_id()};
  framed.insert(framed.end(), ids.begin(), ids.end());
  framed.push_back(tok.eos_id());
  EXPECT_EQ(tok.decode(framed), "<|bos|>" + text + "<|eos|>");
  EXPECT_EQ(tok.decode(framed, /*skip_special=*/true), text);
  EXPECT_THROW(tok.decode(std::vector<int32_t>{tok.vocab_size()}), Error);
  EXPECT_THROW(tok.decode(std::vector<int32_t>{-1}), Error);
}

TEST(Bpe, BadTrainingInputsGiveClearErrors) {
  auto message_of = [](auto&& f) -> std::string {
    try {
      f();
    } catch (const Error& e) {
      return e.message();
    }
    return "(no error)";
  };
  EXPECT_NE(message_of([] { train_on({"abc"}, quiet_options(100)); }).find("too small"), std::string::npos);
  EXPECT_NE(message_of([] { train_on({"abc"}, quiet_options(258)); }).find("= 259"), std::string::npos);
  EXPECT_NE(message_of([] { train_on({"", ""}, quiet_options(1000)); }).find("empty"), std::string::npos);
  EXPECT_NE(message_of([] { train_on({}, quiet_options(1000)); }).find("empty"), std::string::npos);
  BpeTrainOptions dup = quiet_options(1000);
  dup.special_tokens = {"<|x|>", "<|x|>"};
  EXPECT_NE(message_of([&] { train_on({"abc"}, dup); }).find("twice"), std::string::npos);
  // A special token spelled like a byte token's vocab string would collide in tokenizer.json.
  BpeTrainOptions clash = quiet_options(1000);
  clash.special_tokens = {"a"};
  EXPECT_NE(message_of([&] { train_on({"abc"}, clash); }).find("byte token"), std::string::npos);
  // The smallest legal vocab trains exactly one merge.
  EXPECT_EQ(train_on({"abab"}, quiet_options(259)).merges().size(), 1u);
}

}  // namespace
}  // namespace tinyseek::data
