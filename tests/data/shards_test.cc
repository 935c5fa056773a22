// Token shards (header validation: truncated, wrong magic/version/dtype, checksum, token
// range) and `prepare` (document and tail splits, BOS/EOS layout, sharding, data.json,
// re-runs, the one-step prepare_from_text, bad inputs).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "data_test_util.h"
#include "tinyseek/base/check.h"
#include "tinyseek/data/hash.h"
#include "tinyseek/data/loader.h"
#include "tinyseek/data/prepare.h"
#include "tinyseek/data/shards.h"
#include "tinyseek/data/tokenizer_json.h"

namespace tinyseek::data {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.message();
  }
  return "(no error)";
}

#define EXPECT_ERROR_CONTAINS(stmt, text)                           \
  do {                                                              \
    const std::string msg_ = error_of([&] { stmt; });               \
    EXPECT_NE(msg_.find(text), std::string::npos) << "error: " << msg_; \
  } while (0)

std::vector<int32_t> iota_tokens(size_t n, int32_t vocab) {
  std::vector<int32_t> t(n);
  for (size_t i = 0; i < n; ++i) t[i] = static_cast<int32_t>((i * 7919) % static_cast<size_t>(vocab));
  return t;
}

// Overwrites `bytes` at `offset` of file `path`.
void patch(const std::string& path, size_t offset, const void* bytes, size_t n) {
  std::string s = testing::read_file(path);
  ASSERT_LE(offset + n, s.size());
  std::memcpy(s.data() + offset, bytes, n);
  testing::write_file(path, s);
}

TEST(Shards, RoundTripBothDtypes) {
  TempDir dir;
  for (int64_t vocab : {1000, 65536, 70000}) {
    const std::vector<int32_t> tokens = iota_tokens(5000, static_cast<int32_t>(vocab));
    const std::string path = dir / ("s" + std::to_string(vocab) + ".tok");
    write_shard(path, tokens, static_cast<uint64_t>(vocab), 3);
    const uint32_t tb = vocab <= 65536 ? 2 : 4;
    EXPECT_EQ(fs::file_size(path), 64 + tokens.size() * tb);
    const Shard s = read_shard(path);
    EXPECT_EQ(s.header.token_bytes, tb);
    EXPECT_EQ(s.header.token_count, tokens.size());
    EXPECT_EQ(s.header.vocab_size, static_cast<uint64_t>(vocab));
    EXPECT_EQ(s.header.doc_count, 3u);
    std::vector<int32_t> back(tokens.size());
    s.copy_tokens(0, static_cast<int64_t>(tokens.size()), back.data());
    EXPECT_EQ(back, tokens);
    EXPECT_EQ(read_shard_header(path).checksum, s.header.checksum);
    // The header's first 8 bytes are the magic; the layout is documented in shards.h.
    EXPECT_EQ(testing::read_file(path).substr(0, 6), "TSKTOK");
  }
  write_shard(dir / "empty.tok", {}, 10, 0);
  EXPECT_EQ(read_shard(dir / "empty.tok").size(), 0);
}

TEST(Shards, CorruptAndTruncatedFilesAreRejectedWithClearErrors) {
  TempDir dir;
  const std::string good = dir / "good.tok";
  write_shard(good, iota_tokens(1000, 500), 500, 1);
  const std::string bytes = testing::read_file(good);
  auto variant = [&](const std::string& name, const std::string& content) {
    testing::write_file(dir / name, content);
    return dir / name;
  };
  // Truncated payload, truncated header, empty file.
  const std::string cut = variant("cut.tok", bytes.substr(0, bytes.size() - 1));
  EXPECT_ERROR_CONTAINS(read_shard(cut), "header says 1000 tokens");
  EXPECT_ERROR_CONTAINS(read_shard(variant("short.tok", bytes.substr(0, 40))), "shorter than its 64-byte header");
  EXPECT_ERROR_CONTAINS(read_shard(variant("zero.tok", "")), "shorter than its 64-byte header");
  // Extra bytes at the end.
  EXPECT_ERROR_CONTAINS(read_shard(variant("long.tok", bytes + "xx")), "payload bytes");
  // Wrong magic (e.g. some other binary file).
  std::string other = bytes;
  other[0] = 'X';
  EXPECT_ERROR_CONTAINS(read_shard(variant("magic.tok", other)), "bad magic");
  // Version and dtype fields.
  const std::string v = variant("version.tok", bytes);
  const uint32_t two = 2, three = 3, four = 4;
  patch(v, 8, &two, 4);
  EXPECT_ERROR_CONTAINS(read_shard(v), "format version 2");
  const std::string d = variant("dtype.tok", bytes);
  patch(d, 16, &three, 4);
  EXPECT_ERROR_CONTAINS(read_shard(d), "3 bytes per token");
  const std::string d4 = variant("dtype4.tok", bytes);
  patch(d4, 16, &four, 4);  // 1000 tokens x 4 bytes does not match the file size
  EXPECT_ERROR_CONTAINS(read_shard(d4), "1000 tokens x 4 bytes");
  const std::string vv = variant("vocab.tok", bytes);
  const uint64_t big_vocab = 100000;
  patch(vv, 32, &big_vocab, 8);
  EXPECT_ERROR_CONTAINS(read_shard(vv), "does not fit 2-byte tokens");
  // A flipped payload byte fails the checksum; a smaller vocab in the header (checksum
  // intact) exposes out-of-range ids.
  std::string flipped = bytes;
  flipped[100] ^= 0x10;
  EXPECT_ERROR_CONTAINS(read_shard(variant("flip.tok", flipped)), "fails its checksum");
  const std::string small = variant("small.tok", bytes);
  const uint64_t v10 = 10;
  patch(small, 32, &v10, 8);
  EXPECT_ERROR_CONTAINS(read_shard(small), "outside its vocab size 10");
  EXPECT_ERROR_CONTAINS(read_shard(dir / "absent.tok"), "does not exist");
  // Every message tells the user what to do.
  try {
    read_shard(cut);
  } catch (const Error& e) {
    EXPECT_NE(e.hint().find("tinyseek prepare"), std::string::npos) << e.hint();
  }
}

// A corpus directory of n small documents (distinct, so their hashes differ).
std::string make_corpus(const TempDir& dir, int n_docs, size_t doc_bytes) {
  for (int i = 0; i < n_docs; ++i)
    testing::write_file(dir / ("corpus/sub/doc" + std::to_string(100 + i) + ".txt"),
                        testing::synthetic_corpus(doc_bytes, 1000 + static_cast<uint64_t>(i)));
  return dir / "corpus";
}

const Tokenizer& small_tokenizer() {
  static const Tokenizer tok = [] {
    BpeTrainOptions o;
    o.vocab_size = 600;
    o.progress = false;
    const std::string text = testing::synthetic_corpus(100000, 1);
    return train_bpe({text}, o);
  }();
  return tok;
}

std::vector<int32_t> all_tokens(const std::string& dir, const std::string& split) {
  auto s = TokenSplit::load(dir, split);
  std::vector<int32_t> t(static_cast<size_t>(s->size()));
  s->copy(0, s->size(), t.data());
  return t;
}

TEST(Prepare, DocumentSplitLayoutAndIndex) {
  TempDir dir;
  const std::string corpus = make_corpus(dir, 30, 3000);
  testing::write_file(dir / "corpus/.hidden/skip.txt", "hidden files are skipped");
  testing::write_file(dir / "corpus/image.bin", std::string("PNG\0\0binary", 11));
  testing::write_file(dir / "corpus/empty.txt", "");
  PrepareOptions opt;
  opt.inputs = {corpus};
  opt.out_dir = dir / "data";
  opt.val_fraction = 0.1;
  opt.progress = false;
  const Tokenizer& tok = small_tokenizer();
  const DataIndex d = prepare_data(tok, opt);
  EXPECT_EQ(d.split_method, "document");
  EXPECT_EQ(d.files, 32);
  EXPECT_EQ(d.skipped_binary, 1);
  EXPECT_EQ(d.skipped_empty, 1);
  EXPECT_EQ(d.train.documents + d.val.documents, 30);
  const double val_share = static_cast<double>(d.val.bytes) / static_cast<double>(d.train.bytes + d.val.bytes);
  std::printf("document split: train %lld docs / %lld tokens, val %lld docs / %lld tokens (%.3f of bytes)\n",
              static_cast<long long>(d.train.documents), static_cast<long long>(d.train.tokens),
              static_cast<long long>(d.val.documents), static_cast<long long>(d.val.tokens), val_share);
  EXPECT_GE(val_share, 0.1 * 0.9);
  EXPECT_LE(val_share, 0.1 * 1.5);

  // Each document appears once, as <bos> encode(text) <eos>, in exactly one split.
  std::string train_text, val_text;
  for (const char* split : {"train", "val"}) {
    const std::vector<int32_t> t = all_tokens(opt.out_dir, split);
    (split[0] == 't' ? train_text : val_text) = tok.decode(t);
  }
  size_t found = 0;
  for (int i = 0; i < 30; ++i) {
    const std::string doc = "<|bos|>" + testing::synthetic_corpus(3000, 1000 + static_cast<uint64_t>(i)) + "<|eos|>";
    const bool in_train = train_text.find(doc) != std::string::npos, in_val = val_text.find(doc) != std::string::npos;
    EXPECT_NE(in_train, in_val) << "doc " << i;
    found += in_train || in_val;
  }
  EXPECT_EQ(found, 30u);
  EXPECT_EQ(static_cast<int64_t>(tok.decode(all_tokens(opt.out_dir, "train"), true).size()), d.train.bytes);

  // data.json and tokenizer.json are there and consistent.
  const DataIndex back = read_data_index(opt.out_dir);
  EXPECT_EQ(back.train.tokens, d.train.tokens);
  EXPECT_EQ(back.val.shard_files, d.val.shard_files);
  EXPECT_EQ(back.dtype, "uint16");
  EXPECT_EQ(back.bos_id, tok.bos_id());
  EXPECT_EQ(read_data_tokenizer(back).hash(), tok.hash());
  const auto j = nlohmann::json::parse(testing::read_file(opt.out_dir + "/data.json"));
  EXPECT_EQ(j["format"], "tinyseek-tokens");
  EXPECT_EQ(j["tokenizer"]["hash"], hex64(tok.hash()));
}

TEST(Prepare, TailSplitShardingAndRerun) {
  TempDir dir;
  const std::string text = testing::synthetic_corpus(60000, 5);
  testing::write_file(dir / "one.txt", text);
  PrepareOptions opt;
  opt.inputs = {dir / "one.txt"};
  opt.out_dir = dir / "data";
  opt.val_fraction = 0.2;
  opt.progress = false;
  const Tokenizer& tok = small_tokenizer();
  const DataIndex one_shard = prepare_data(tok, opt);
  EXPECT_EQ(one_shard.split_method, "tail");
  EXPECT_EQ(one_shard.train.shard_files.size(), 1u);
  // Train is the head, val the tail: together they are the file.
  const std::string head = tok.decode(all_tokens(opt.out_dir, "train"), true);
  const std::string tail = tok.decode(all_tokens(opt.out_dir, "val"), true);
  EXPECT_EQ(head + tail, text);
  EXPECT_NEAR(static_cast<double>(tail.size()) / static_cast<double>(text.size()), 0.2, 0.01);
  EXPECT_EQ(head.back(), '\n');  // cut after a newline
  const std::vector<int32_t> train_tokens = all_tokens(opt.out_dir, "train");

  // Re-running into the same directory replaces it; small shards give the same stream.
  opt.shard_tokens = 1024;
  const DataIndex many = prepare_data(tok, opt);
  std::printf("tail split: %lld train tokens in %zu shards of <= 1024, %lld val tokens\n",
              static_cast<long long>(many.train.tokens), many.train.shard_files.size(),
              static_cast<long long>(many.val.tokens));
  EXPECT_GT(many.train.shard_files.size(), 5u);
  EXPECT_EQ(all_tokens(opt.out_dir, "train"), train_tokens);
  size_t tok_files = 0;
  for (const auto& e : fs::directory_iterator(opt.out_dir)) tok_files += e.path().extension() == ".tok";
  EXPECT_EQ(tok_files, many.train.shard_files.size() + many.val.shard_files.size());  // old shards removed

  // A damaged shard or an inconsistent index is caught when the split is loaded.
  const std::string shard0 = opt.out_dir + "/" + many.train.shard_files[0];
  const std::string shard1 = opt.out_dir + "/" + many.train.shard_files[1];
  const std::string last = opt.out_dir + "/" + many.train.shard_files.back();
  fs::copy_file(last, shard1, fs::copy_options::overwrite_existing);
  EXPECT_ERROR_CONTAINS(TokenSplit::load(opt.out_dir, "train"), "data.json lists");
  std::string b = testing::read_file(shard0);
  testing::write_file(shard0, b.substr(0, b.size() - 2));
  EXPECT_ERROR_CONTAINS(TokenSplit::load(opt.out_dir, "train"), "header says 1024 tokens");
  // The fingerprint covers content, not formatting: a re-indented tokenizer.json still matches.
  testing::write_file(opt.out_dir + "/tokenizer.json", testing::read_file(opt.out_dir + "/tokenizer.json") + " \n");
  EXPECT_NO_THROW(read_data_tokenizer(read_data_index(opt.out_dir)));
}

TEST(Prepare, OneStepFromTextAndBadInputs) {
  TempDir dir;
  const std::string corpus = make_corpus(dir, 3, 20000);
  const DataIndex d = prepare_from_text({corpus}, dir / "run/data", 700, 0.1, false);
  const Tokenizer tok = read_data_tokenizer(d);
  std::printf("prepare_from_text: vocab %d, %lld train + %lld val tokens, split %s\n", tok.vocab_size(),
              static_cast<long long>(d.train.tokens), static_cast<long long>(d.val.tokens), d.split_method.c_str());
  EXPECT_LE(tok.vocab_size(), 700);
  EXPECT_GT(tok.merges().size(), 100u);
  EXPECT_GT(d.val.tokens, 0);
  EXPECT_EQ(d.tokenizer_hash, tok.hash());
  // A second run with the output inside the input directory does not read its own files.
  const DataIndex inside = prepare_from_text({corpus}, corpus + "/data", 700, 0.1, false);
  EXPECT_EQ(inside.files, 3);
  const DataIndex again = prepare_from_text({corpus}, corpus + "/data", 700, 0.1, false);
  EXPECT_EQ(again.files, 3);
  EXPECT_EQ(again.train.tokens, inside.train.tokens);

  // Bad inputs: clear errors, and nothing is created.
  testing::write_file(dir / "empty/a.txt", "");
  testing::write_file(dir / "empty/b.bin", std::string("\0\0\0", 3));
  EXPECT_ERROR_CONTAINS(prepare_from_text({dir / "nope"}, dir / "o1", 700), "does not exist");
  EXPECT_ERROR_CONTAINS(prepare_from_text({}, dir / "o2", 700), "no input paths");
  EXPECT_ERROR_CONTAINS(prepare_from_text({dir / "empty"}, dir / "o3", 700), "empty corpus");
  EXPECT_ERROR_CONTAINS(prepare_from_text({corpus}, dir / "o4", 100), "too small");
  EXPECT_ERROR_CONTAINS(prepare_from_text({corpus}, dir / "o5", 700, 0.9), "--val-fraction");
  for (const char* o : {"o1", "o2", "o3", "o4", "o5"}) EXPECT_FALSE(fs::exists(dir / o)) << o;
  // An output directory holding other files is never overwritten.
  testing::write_file(dir / "precious/notes.txt", "keep me");
  EXPECT_ERROR_CONTAINS(prepare_from_text({corpus}, dir / "precious", 700), "not a tinyseek data directory");
  EXPECT_EQ(testing::read_file(dir / "precious/notes.txt"), "keep me");
  EXPECT_ERROR_CONTAINS(read_data_index(dir / "precious"), "no data.json");
  EXPECT_ERROR_CONTAINS(read_data_index(dir / "missing"), "does not exist");
  // A tokenizer that does not belong to the shards.
  const std::string other = dir / "other";
  prepare_from_text({corpus}, other, 650, 0.1, false);
  fs::copy_file(other + "/tokenizer.json", dir / "run/data/tokenizer.json", fs::copy_options::overwrite_existing);
  EXPECT_ERROR_CONTAINS(read_data_tokenizer(read_data_index(dir / "run/data")), "is not the tokenizer");
}

}  // namespace
}  // namespace tinyseek::data
