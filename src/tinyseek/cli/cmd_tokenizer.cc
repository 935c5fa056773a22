// tinyseek tokenizer train|encode: byte-level BPE (src/tinyseek/data/bpe.h) trained from
// text files and saved as a Hugging Face tokenizer.json.
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tinyseek/base/check.h"
#include "tinyseek/base/parallel.h"
#include "tinyseek/base/timer.h"
#include "tinyseek/cli/commands.h"
#include "tinyseek/data/bpe.h"
#include "tinyseek/data/corpus.h"
#include "tinyseek/data/hash.h"
#include "tinyseek/data/tokenizer_json.h"

namespace tinyseek::cli {

namespace {

struct TrainArgs {
  std::vector<std::string> inputs;
  std::string out;
  int32_t vocab_size = 0;
  int64_t min_frequency = 2;
  std::vector<std::string> special_tokens = {"<|bos|>", "<|eos|>"};
  std::string pre_tokenizer = "llama3";
  bool quiet = false, json = false;
};

// Fails before the (possibly long) training if the result could not be written.
void check_output_path(const std::string& out) {
  namespace fs = std::filesystem;
  TS_CHECK(!out.empty(), "--out is empty", "pass --out tokenizer.json");
  std::error_code ec;
  TS_CHECK(!fs::is_directory(out, ec), "--out '" << out << "' is a directory", "pass a file name, e.g. " << out
                                                                                << "/tokenizer.json");
  const fs::path parent = fs::path(out).parent_path();
  TS_CHECK(parent.empty() || fs::is_directory(parent, ec),
           "the directory of --out '" << out << "' does not exist", "create it first, e.g. mkdir -p " << parent.string());
}

void run_train(const TrainArgs& a) {
  check_output_path(a.out);
  data::BpeTrainOptions opt;
  opt.vocab_size = a.vocab_size;
  opt.min_frequency = a.min_frequency;
  opt.special_tokens = a.special_tokens;
  opt.pre_tokenizer = data::parse_pre_tokenizer(a.pre_tokenizer);
  opt.progress = !a.quiet && !a.json;
  // Option errors (vocab too small, bad specials) surface before reading the corpus.
  data::check_bpe_train_options(opt);

  Timer t_read;
  data::CorpusInfo info;
  const std::vector<data::Document> docs = data::read_corpus(a.inputs, &info, opt.progress);
  const double read_s = t_read.seconds();
  std::vector<std::string_view> texts;
  for (const auto& d : docs) texts.push_back(d.text);

  data::BpeTrainStats st;
  const data::Tokenizer tok = data::train_bpe(texts, opt, &st);
  data::write_tokenizer_json(tok, a.out);

  // Compression on the training text, and the encoder's speed.
  Timer t_enc;
  int64_t tokens = 0;
  for (const auto& ids : tok.encode_batch(texts)) tokens += static_cast<int64_t>(ids.size());
  const double enc_s = t_enc.seconds();
  const double bytes_per_token = tokens ? static_cast<double>(info.bytes) / static_cast<double>(tokens) : 0.0;
  const double mb = static_cast<double>(info.bytes) / 1e6;

  if (a.json) {
    nlohmann::ordered_json j;
    j["out"] = a.out;
    j["files"] = static_cast<int64_t>(docs.size());
    j["skipped_binary"] = info.skipped_binary;
    j["skipped_empty"] = info.skipped_empty;
    j["bytes"] = info.bytes;
    j["unique_words"] = st.unique_words;
    j["vocab_size"] = tok.vocab_size();
    j["merges"] = st.merges;
    j["stop_reason"] = st.stop_reason;
    j["train_seconds"] = st.count_seconds + st.merge_seconds;
    j["tokens"] = tokens;
    j["bytes_per_token"] = bytes_per_token;
    j["encode_mb_per_s"] = enc_s > 0 ? mb / enc_s : 0.0;
    j["hash"] = data::hex64(tok.hash());
    std::printf("%s\n", j.dump().c_str());
    return;
  }
  std::printf("corpus: %zu text files (%lld binary, %lld empty skipped), %.2f MB, read in %.2f s\n", docs.size(),
              static_cast<long long>(info.skipped_binary), static_cast<long long>(info.skipped_empty), mb, read_s);
  std::printf("words: %lld (%lld unique), pre-tokenizer %s, counted in %.2f s\n", static_cast<long long>(st.words),
              static_cast<long long>(st.unique_words), data::to_string(opt.pre_tokenizer), st.count_seconds);
  std::printf("merges: %d in %.2f s (%s; last pair seen %lld times), %d threads\n", st.merges, st.merge_seconds,
              st.stop_reason.c_str(), static_cast<long long>(st.last_merge_count), max_threads());
  if (tok.vocab_size() < a.vocab_size)
    std::printf("note: vocab is %d, smaller than the requested %d (%s); more text would allow more merges\n",
                tok.vocab_size(), a.vocab_size, st.stop_reason.c_str());
  std::printf("compression: %.3f bytes/token on the training text (%lld tokens); encode %.1f MB/s\n",
              bytes_per_token, static_cast<long long>(tokens), enc_s > 0 ? mb / enc_s : 0.0);
  std::printf("wrote %s: vocab %d (%zu special: BOS %d, EOS %d), hash %s\n", a.out.c_str(), tok.vocab_size(),
              tok.special_ids().size(), tok.bos_id(), tok.eos_id(), data::hex64(tok.hash()).c_str());
}

struct EncodeArgs {
  std::string tokenizer, text, input;
  bool json = false;
};

void run_encode(const EncodeArgs& a) {
  TS_CHECK(a.text.empty() != a.input.empty(), "pass exactly one of --text and --input",
           "e.g. --text 'hello world' or --input notes.txt");
  const data::Tokenizer tok = data::read_tokenizer_json(a.tokenizer);
  const std::string text = a.input.empty() ? a.text : data::read_file_bytes(a.input, "input file");
  const std::vector<int32_t> ids = tok.encode(text);
  if (a.json) {
    nlohmann::ordered_json j;
    j["ids"] = ids;
    j["tokens"] = ids.size();
    j["bytes"] = text.size();
    std::printf("%s\n", j.dump().c_str());
    return;
  }
  for (size_t i = 0; i < ids.size(); ++i) std::printf(i ? " %d" : "%d", ids[i]);
  std::printf("\n%zu tokens for %zu bytes\n", ids.size(), text.size());
}

}  // namespace

void add_tokenizer(CLI::App& app) {
  CLI::App* tok = app.add_subcommand("tokenizer", "byte-level BPE tokenizer: train (Hugging Face tokenizer.json), encode");
  tok->require_subcommand(1, 1);

  auto train_args = std::make_shared<TrainArgs>();
  CLI::App* train = tok->add_subcommand("train", "learn a byte-level BPE vocabulary from text files/directories");
  train->add_option("--input", train_args->inputs, "text files or directories (recursive, sorted; binary files skipped)")
      ->required();
  train->add_option("--vocab-size", train_args->vocab_size, "total vocabulary size incl. special and byte tokens")
      ->required();
  train->add_option("--out", train_args->out, "output tokenizer.json")->required();
  train->add_option("--min-frequency", train_args->min_frequency, "stop when the best pair is rarer than this")
      ->capture_default_str();
  train->add_option("--special-tokens", train_args->special_tokens,
                    "special tokens at ids 0.. (BOS = <|bos|> or the first, EOS = <|eos|> or the second)")
      ->capture_default_str();
  train->add_option("--pre-tokenizer", train_args->pre_tokenizer, "llama3 (digits in 3s) | qwen2 | gpt2")
      ->capture_default_str();
  train->add_flag("--quiet", train_args->quiet, "no progress line");
  train->add_flag("--json", train_args->json, "print one JSON object with the results");
  train->callback([train_args] { run_train(*train_args); });

  auto enc_args = std::make_shared<EncodeArgs>();
  CLI::App* enc = tok->add_subcommand("encode", "print the token ids of a text");
  enc->add_option("--tokenizer", enc_args->tokenizer, "tokenizer.json (ours or a byte-level BPE from HF)")->required();
  enc->add_option("--text", enc_args->text, "text to encode");
  enc->add_option("--input", enc_args->input, "file to encode");
  enc->add_flag("--json", enc_args->json, "print {\"ids\": [...], ...}");
  enc->callback([enc_args] { run_encode(*enc_args); });
}

}  // namespace tinyseek::cli
