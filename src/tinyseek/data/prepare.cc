#include "tinyseek/data/prepare.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <regex>
#include <stdexcept>

#include "tinyseek/base/check.h"
#include "tinyseek/base/progress.h"
#include "tinyseek/data/corpus.h"
#include "tinyseek/data/hash.h"
#include "tinyseek/data/shards.h"
#include "tinyseek/data/tokenizer_json.h"

namespace tinyseek::data {

namespace fs = std::filesystem;

namespace {

constexpr const char* kIndexFile = "data.json";
constexpr const char* kTokenizerFile = "tokenizer.json";
constexpr size_t kMinDocsForDocumentSplit = 20;
constexpr size_t kBatchBytes = 8 << 20;  // text encoded per encode_batch call

// A span of a document that goes to one split as one <bos> ... <eos> document.
struct Part {
  std::string_view text;
  bool val;
};

// Byte offset where the tail of `text` holding ~fraction of its bytes starts: just after
// the first newline at or past the cut, else at the next UTF-8 character boundary.
size_t tail_start(std::string_view text, double fraction) {
  if (fraction <= 0) return text.size();
  size_t cut = static_cast<size_t>(static_cast<double>(text.size()) * (1.0 - fraction));
  if (cut >= text.size()) return text.size();
  const size_t nl = text.find('\n', cut);
  if (nl != std::string_view::npos) return nl + 1;
  while (cut < text.size() && (static_cast<uint8_t>(text[cut]) & 0xC0) == 0x80) ++cut;
  return cut;
}

std::vector<Part> split_tail(const std::vector<Document>& docs, double f) {
  std::vector<Part> parts;
  for (const Document& d : docs) {
    const std::string_view t = d.text;
    const size_t s = tail_start(t, f);
    if (s > 0) parts.push_back({t.substr(0, s), false});
    if (s < t.size()) parts.push_back({t.substr(s), true});
  }
  return parts;
}

// Empty result if no document fits the val budget.
std::vector<Part> split_documents(const std::vector<Document>& docs, double f) {
  int64_t total = 0;
  for (const Document& d : docs) total += static_cast<int64_t>(d.text.size());
  const double target = f * static_cast<double>(total);
  std::vector<size_t> order(docs.size());
  std::iota(order.begin(), order.end(), 0);
  std::vector<uint64_t> h(docs.size());
  for (size_t i = 0; i < docs.size(); ++i) h[i] = fnv1a64(docs[i].text);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return h[a] != h[b] ? h[a] < h[b] : a < b; });
  std::vector<uint8_t> is_val(docs.size(), 0);
  double val_bytes = 0;
  for (size_t i : order) {
    if (val_bytes >= target) break;
    const auto sz = static_cast<double>(docs[i].text.size());
    if (val_bytes + sz > 1.5 * target) continue;
    is_val[i] = 1;
    val_bytes += sz;
  }
  if (val_bytes == 0 && f > 0) return {};
  std::vector<Part> parts;
  for (size_t i = 0; i < docs.size(); ++i) parts.push_back({docs[i].text, is_val[i] != 0});
  return parts;
}

// Accumulates one split's token stream and cuts it into shards of `shard_tokens`.
class ShardWriter {
 public:
  ShardWriter(std::string dir, std::string name, int64_t shard_tokens, int64_t vocab)
      : dir_(std::move(dir)), name_(std::move(name)), shard_tokens_(shard_tokens), vocab_(vocab) {}

  void add_document(int32_t bos, const std::vector<int32_t>& ids, int32_t eos, int64_t bytes) {
    doc_starts_.push_back(static_cast<int64_t>(buffer_.size()));
    buffer_.push_back(bos);
    buffer_.insert(buffer_.end(), ids.begin(), ids.end());
    buffer_.push_back(eos);
    ++info_.documents;
    info_.bytes += bytes;
    while (static_cast<int64_t>(buffer_.size()) >= shard_tokens_) flush(shard_tokens_);
  }

  SplitInfo finish() {
    if (!buffer_.empty()) flush(static_cast<int64_t>(buffer_.size()));
    return info_;
  }

 private:
  void flush(int64_t n) {
    std::vector<int32_t> head(buffer_.begin(), buffer_.begin() + n);
    buffer_.erase(buffer_.begin(), buffer_.begin() + n);
    // Documents that start inside this shard are counted in its header.
    int64_t docs = 0;
    std::vector<int64_t> rest;
    for (int64_t s : doc_starts_) {
      if (s < n) ++docs;
      else rest.push_back(s - n);
    }
    doc_starts_ = std::move(rest);
    char name[64];
    std::snprintf(name, sizeof name, "%s_%06zu.tok", name_.c_str(), info_.shard_files.size());
    write_shard((fs::path(dir_) / name).string(), head, static_cast<uint64_t>(vocab_), static_cast<uint64_t>(docs));
    info_.shard_files.push_back(name);
    info_.shard_tokens.push_back(n);
    info_.tokens += n;
  }

  std::string dir_, name_;
  int64_t shard_tokens_, vocab_;
  std::vector<int32_t> buffer_;
  std::vector<int64_t> doc_starts_;
  SplitInfo info_;
};

// Fails (changing nothing) unless `dir` is absent, empty or a tinyseek data directory.
void check_out_dir(const std::string& dir) {
  TS_CHECK(!dir.empty(), "no output directory given", "pass --out DATA_DIR");
  std::error_code ec;
  if (!fs::exists(dir, ec)) return;
  TS_CHECK(fs::is_directory(dir, ec), "output path '" << dir << "' exists and is not a directory",
           "choose a new directory name for --out");
  const bool has_index = fs::exists(fs::path(dir) / kIndexFile, ec);
  TS_CHECK(has_index || fs::is_empty(dir, ec),
           "output directory '" << dir << "' is not empty and is not a tinyseek data directory (no data.json)",
           "choose a new or empty directory for --out; nothing was written");
}

// Creates `dir`, or clears the index and shards of a previous `prepare` in it.
void prepare_out_dir(const std::string& dir) {
  check_out_dir(dir);
  std::error_code ec;
  if (fs::exists(dir, ec)) {
    if (fs::exists(fs::path(dir) / kIndexFile, ec)) {
      fs::remove(fs::path(dir) / kIndexFile, ec);  // first, so a crash leaves no stale index
      const std::regex shard_name("(train|val)_[0-9]{6}\\.tok(\\.tmp)?");
      for (const auto& e : fs::directory_iterator(dir, ec))
        if (std::regex_match(e.path().filename().string(), shard_name)) fs::remove(e.path(), ec);
    }
  } else {
    fs::create_directories(dir, ec);
    TS_CHECK(!ec, "cannot create output directory '" << dir << "': " << ec.message(),
             "check that the parent directory exists and is writable");
  }
  // Probe writability now rather than after tokenizing everything.
  const fs::path probe = fs::path(dir) / ".tinyseek-write-test";
  { std::ofstream(probe) << "ok"; }
  TS_CHECK(fs::exists(probe, ec), "output directory '" << dir << "' is not writable",
           "check its permissions or choose another --out");
  fs::remove(probe, ec);
}

nlohmann::ordered_json split_json(const SplitInfo& s) {
  nlohmann::ordered_json j;
  j["documents"] = s.documents;
  j["bytes"] = s.bytes;
  j["tokens"] = s.tokens;
  j["shards"] = nlohmann::ordered_json::array();
  for (size_t i = 0; i < s.shard_files.size(); ++i)
    j["shards"].push_back({{"file", s.shard_files[i]}, {"tokens", s.shard_tokens[i]}});
  return j;
}

void write_index(const DataIndex& d) {
  nlohmann::ordered_json j;
  j["format"] = "tinyseek-tokens";
  j["version"] = 1;
  j["tokenizer"] = {{"file", d.tokenizer_file},
                    {"hash", hex64(d.tokenizer_hash)},
                    {"vocab_size", d.vocab_size},
                    {"bos_id", d.bos_id},
                    {"eos_id", d.eos_id}};
  j["dtype"] = d.dtype;
  j["document_layout"] = "bos text eos";
  j["split"] = {{"method", d.split_method}, {"val_fraction", d.val_fraction}};
  j["inputs"] = {{"files", d.files},
                 {"documents", d.train.documents + d.val.documents},
                 {"skipped_binary", d.skipped_binary},
                 {"skipped_empty", d.skipped_empty},
                 {"skipped_unreadable", d.skipped_unreadable}};
  j["splits"] = {{"train", split_json(d.train)}, {"val", split_json(d.val)}};
  write_file_atomic((fs::path(d.dir) / kIndexFile).string(), j.dump(2) + "\n", "data index");
}

}  // namespace

SplitMethod parse_split_method(const std::string& s) {
  if (s == "auto") return SplitMethod::Auto;
  if (s == "document") return SplitMethod::Document;
  if (s == "tail") return SplitMethod::Tail;
  TS_FAIL("unknown split method '" << s << "'", "use auto, document or tail");
}

const SplitInfo& DataIndex::split(const std::string& name) const {
  if (name == "train") return train;
  if (name == "val") return val;
  TS_FAIL("unknown data split '" << name << "'", "use train or val");
}

namespace {

void check_prepare_options(const PrepareOptions& opt) {
  TS_CHECK(opt.val_fraction >= 0 && opt.val_fraction <= 0.5,
           "--val-fraction must be in [0, 0.5], got " << opt.val_fraction, "use e.g. --val-fraction 0.05");
  TS_CHECK(opt.shard_tokens >= 1024, "--shard-tokens must be at least 1024, got " << opt.shard_tokens,
           "use e.g. --shard-tokens 67108864");
  check_out_dir(opt.out_dir);
}

// prepare_data after the corpus has been read.
DataIndex prepare_documents(const Tokenizer& tok, const std::vector<Document>& docs, const CorpusInfo& corpus,
                            const PrepareOptions& opt) {
  TS_CHECK(tok.bos_id() >= 0 && tok.eos_id() >= 0, "the tokenizer has no special tokens to use as BOS/EOS",
           "train one with `tinyseek tokenizer train` (it adds <|bos|> and <|eos|>)");
  prepare_out_dir(opt.out_dir);

  DataIndex d;
  d.dir = opt.out_dir;
  d.tokenizer_file = kTokenizerFile;
  d.tokenizer_hash = tok.hash();
  d.vocab_size = tok.vocab_size();
  d.bos_id = tok.bos_id();
  d.eos_id = tok.eos_id();
  d.dtype = token_bytes_for_vocab(static_cast<uint64_t>(tok.vocab_size())) == 2 ? "uint16" : "uint32";
  d.val_fraction = opt.val_fraction;
  d.files = corpus.files_seen;
  d.skipped_binary = corpus.skipped_binary;
  d.skipped_empty = corpus.skipped_empty;
  d.skipped_unreadable = corpus.skipped_unreadable;

  std::vector<Part> parts;
  const bool want_documents = opt.split == SplitMethod::Document ||
                              (opt.split == SplitMethod::Auto && docs.size() >= kMinDocsForDocumentSplit);
  if (want_documents) parts = split_documents(docs, opt.val_fraction);
  TS_CHECK(!(opt.split == SplitMethod::Document && parts.empty()),
           "cannot split " << docs.size() << " documents by document: none fits a val fraction of "
                           << opt.val_fraction,
           "use --split tail or a larger --val-fraction");
  d.split_method = parts.empty() ? "tail" : "document";
  if (parts.empty()) parts = split_tail(docs, opt.val_fraction);

  ShardWriter train(opt.out_dir, "train", opt.shard_tokens, tok.vocab_size());
  ShardWriter val(opt.out_dir, "val", opt.shard_tokens, tok.vocab_size());
  Progress progress("tokenizing", corpus.bytes, opt.progress);
  int64_t done_bytes = 0;
  for (size_t begin = 0; begin < parts.size();) {
    size_t end = begin, batch_bytes = 0;
    while (end < parts.size() && (end == begin || batch_bytes + parts[end].text.size() <= kBatchBytes))
      batch_bytes += parts[end++].text.size();
    std::vector<std::string_view> texts;
    for (size_t i = begin; i < end; ++i) texts.push_back(parts[i].text);
    const std::vector<std::vector<int32_t>> ids = tok.encode_batch(texts);
    for (size_t i = begin; i < end; ++i)
      (parts[i].val ? val : train)
          .add_document(tok.bos_id(), ids[i - begin], tok.eos_id(), static_cast<int64_t>(parts[i].text.size()));
    done_bytes += static_cast<int64_t>(batch_bytes);
    progress.update(done_bytes);
    begin = end;
  }
  d.train = train.finish();
  d.val = val.finish();
  progress.finish(std::to_string(d.train.tokens + d.val.tokens) + " tokens");
  write_tokenizer_json(tok, (fs::path(opt.out_dir) / kTokenizerFile).string());
  write_index(d);
  return d;
}

}  // namespace

DataIndex prepare_data(const Tokenizer& tok, const PrepareOptions& opt) {
  check_prepare_options(opt);
  CorpusInfo corpus;
  const std::vector<Document> docs = read_corpus(opt.inputs, &corpus, opt.progress, opt.out_dir);
  return prepare_documents(tok, docs, corpus, opt);
}

DataIndex prepare_from_text(const std::vector<std::string>& text_paths, const std::string& out_dir,
                            int32_t vocab_size, double val_fraction, bool progress) {
  PrepareOptions opt;
  opt.inputs = text_paths;
  opt.out_dir = out_dir;
  opt.val_fraction = val_fraction;
  opt.progress = progress;
  BpeTrainOptions topt;
  topt.vocab_size = vocab_size;
  topt.progress = progress;
  return prepare_from_text(opt, topt);
}

DataIndex prepare_from_text(const PrepareOptions& opt, const BpeTrainOptions& tokenizer_options) {
  check_prepare_options(opt);
  check_bpe_train_options(tokenizer_options);
  CorpusInfo corpus;
  const std::vector<Document> docs = read_corpus(opt.inputs, &corpus, opt.progress, opt.out_dir);
  std::vector<std::string_view> texts;
  texts.reserve(docs.size());
  for (const Document& doc : docs) texts.push_back(doc.text);
  const Tokenizer tok = train_bpe(texts, tokenizer_options);
  return prepare_documents(tok, docs, corpus, opt);
}

Tokenizer read_data_tokenizer(const DataIndex& index) {
  const std::string path = (fs::path(index.dir) / index.tokenizer_file).string();
  Tokenizer tok = read_tokenizer_json(path);
  TS_CHECK(tok.hash() == index.tokenizer_hash,
           "'" << path << "' is not the tokenizer the shards in '" << index.dir << "' were made with (fingerprint "
               << hex64(tok.hash()) << ", data.json says " << hex64(index.tokenizer_hash) << ")",
           "re-run `tinyseek prepare` so tokenizer and shards match");
  TS_CHECK(tok.vocab_size() == index.vocab_size,
           "'" << path << "' has " << tok.vocab_size() << " tokens but data.json says " << index.vocab_size,
           "re-run `tinyseek prepare` so tokenizer and shards match");
  return tok;
}

DataIndex read_data_index(const std::string& dir) {
  const fs::path index_path = fs::path(dir) / kIndexFile;
  std::error_code ec;
  TS_CHECK(fs::is_directory(dir, ec), "data directory '" << dir << "' does not exist",
           "create it with `tinyseek prepare --tokenizer T --input TEXT... --out " << dir << "`");
  TS_CHECK(fs::exists(index_path, ec), "'" << dir << "' is not a tinyseek data directory (no data.json)",
           "create it with `tinyseek prepare --tokenizer T --input TEXT... --out " << dir << "`");
  const std::string path = index_path.string();
  const std::string text = read_file_bytes(path, "data index");
  DataIndex d;
  d.dir = dir;
  try {
    const nlohmann::json j = nlohmann::json::parse(text);
    TS_CHECK(j.value("format", "") == "tinyseek-tokens", path << " is not a tinyseek data index (format field)",
             "re-run `tinyseek prepare`");
    TS_CHECK(j.value("version", 0) == 1, path << " has unsupported version " << j.value("version", 0),
             "re-run `tinyseek prepare` with this tinyseek");
    const auto& t = j.at("tokenizer");
    d.tokenizer_file = t.at("file").get<std::string>();
    d.tokenizer_hash = std::stoull(t.at("hash").get<std::string>(), nullptr, 16);
    d.vocab_size = t.at("vocab_size").get<int64_t>();
    d.bos_id = t.at("bos_id").get<int32_t>();
    d.eos_id = t.at("eos_id").get<int32_t>();
    d.dtype = j.at("dtype").get<std::string>();
    d.split_method = j.at("split").at("method").get<std::string>();
    d.val_fraction = j.at("split").at("val_fraction").get<double>();
    const auto& in = j.at("inputs");
    d.files = in.value("files", int64_t{0});
    d.skipped_binary = in.value("skipped_binary", int64_t{0});
    d.skipped_empty = in.value("skipped_empty", int64_t{0});
    d.skipped_unreadable = in.value("skipped_unreadable", int64_t{0});
    for (const char* name : {"train", "val"}) {
      const auto& s = j.at("splits").at(name);
      SplitInfo& si = name[0] == 't' ? d.train : d.val;
      si.documents = s.at("documents").get<int64_t>();
      si.bytes = s.at("bytes").get<int64_t>();
      si.tokens = s.at("tokens").get<int64_t>();
      int64_t sum = 0;
      for (const auto& sh : s.at("shards")) {
        si.shard_files.push_back(sh.at("file").get<std::string>());
        si.shard_tokens.push_back(sh.at("tokens").get<int64_t>());
        sum += si.shard_tokens.back();
      }
      TS_CHECK(sum == si.tokens, path << ": split " << name << " lists shards with " << sum
                                      << " tokens but says it has " << si.tokens,
               "the index is corrupt: re-run `tinyseek prepare`");
    }
  } catch (const nlohmann::json::exception& e) {
    TS_FAIL(path << " is malformed: " << e.what(), "the index is corrupt: re-run `tinyseek prepare`");
  } catch (const std::logic_error&) {  // std::stoull: invalid_argument / out_of_range
    TS_FAIL(path << ": tokenizer hash is not hexadecimal", "the index is corrupt: re-run `tinyseek prepare`");
  }
  TS_CHECK(d.vocab_size > 0, path << ": vocab size " << d.vocab_size, "the index is corrupt: re-run `tinyseek prepare`");
  return d;
}

}  // namespace tinyseek::data
