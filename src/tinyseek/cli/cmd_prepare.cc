// tinyseek prepare: tokenize text files into train/val token shards (src/tinyseek/data/prepare.h).
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tinyseek/base/check.h"
#include "tinyseek/base/timer.h"
#include "tinyseek/cli/commands.h"
#include "tinyseek/data/prepare.h"
#include "tinyseek/data/tokenizer_json.h"

namespace tinyseek::cli {

namespace {

struct PrepareArgs {
  std::string tokenizer, out, split = "auto";
  std::vector<std::string> inputs;
  double val_fraction = 0.05;
  int32_t vocab_size = 0;  // train a tokenizer (instead of --tokenizer)
  int64_t shard_tokens = int64_t{1} << 26;
  bool quiet = false, json = false;
};

void run_prepare(const PrepareArgs& a) {
  Timer timer;
  TS_CHECK(a.tokenizer.empty() != (a.vocab_size == 0),
           (a.tokenizer.empty() ? "pass --tokenizer or --vocab-size" : "pass --tokenizer or --vocab-size, not both"),
           "--tokenizer T.json uses an existing tokenizer; --vocab-size N trains one on the inputs");
  data::PrepareOptions opt;
  opt.inputs = a.inputs;
  opt.out_dir = a.out;
  opt.val_fraction = a.val_fraction;
  opt.shard_tokens = a.shard_tokens;
  opt.split = data::parse_split_method(a.split);
  opt.progress = !a.quiet && !a.json;
  data::DataIndex d;
  if (a.vocab_size != 0) {
    data::BpeTrainOptions topt;
    topt.vocab_size = a.vocab_size;
    topt.progress = opt.progress;
    d = data::prepare_from_text(opt, topt);
  } else {
    d = data::prepare_data(data::read_tokenizer_json(a.tokenizer), opt);
  }
  const double s = timer.seconds();
  const int64_t bytes = d.train.bytes + d.val.bytes, tokens = d.train.tokens + d.val.tokens;
  if (a.json) {
    nlohmann::ordered_json j;
    j["out"] = a.out;
    j["files"] = d.files;
    j["skipped_binary"] = d.skipped_binary;
    j["skipped_empty"] = d.skipped_empty;
    j["split_method"] = d.split_method;
    j["vocab_size"] = d.vocab_size;
    for (const char* name : {"train", "val"}) {
      const data::SplitInfo& si = d.split(name);
      j[name] = {{"documents", si.documents}, {"bytes", si.bytes}, {"tokens", si.tokens},
                 {"shards", si.shard_files.size()}};
    }
    j["bytes_per_token"] = tokens ? static_cast<double>(bytes) / static_cast<double>(tokens) : 0.0;
    j["seconds"] = s;
    std::printf("%s\n", j.dump().c_str());
    return;
  }
  std::printf("inputs: %lld files (%lld binary, %lld empty, %lld unreadable skipped)\n",
              static_cast<long long>(d.files), static_cast<long long>(d.skipped_binary),
              static_cast<long long>(d.skipped_empty), static_cast<long long>(d.skipped_unreadable));
  std::printf("split by %s, val fraction %.3g:\n", d.split_method.c_str(), d.val_fraction);
  for (const char* name : {"train", "val"}) {
    const data::SplitInfo& si = d.split(name);
    std::printf("  %-5s %6lld documents %10lld bytes %10lld tokens in %zu shard(s)\n", name,
                static_cast<long long>(si.documents), static_cast<long long>(si.bytes),
                static_cast<long long>(si.tokens), si.shard_files.size());
  }
  std::printf("%.3f bytes/token (incl. BOS/EOS), %s tokens, %.2f s (%.1f MB/s)\n",
              tokens ? static_cast<double>(bytes) / static_cast<double>(tokens) : 0.0, d.dtype.c_str(), s,
              static_cast<double>(bytes) / 1e6 / s);
  std::printf("wrote %s/data.json and %s/tokenizer.json (vocab %lld)\n", a.out.c_str(), a.out.c_str(),
              static_cast<long long>(d.vocab_size));
}

}  // namespace

void add_prepare(CLI::App& app) {
  auto args = std::make_shared<PrepareArgs>();
  CLI::App* c = app.add_subcommand("prepare", "tokenize text files into train/val token shards (+ data.json)");
  c->add_option("--tokenizer", args->tokenizer, "tokenizer.json (from `tinyseek tokenizer train` or HF)");
  c->add_option("--vocab-size", args->vocab_size, "instead of --tokenizer: train one with this vocabulary size");
  c->add_option("--input", args->inputs, "text files or directories (recursive, sorted; binary files skipped)")
      ->required();
  c->add_option("--out", args->out, "output data directory")->required();
  c->add_option("--val-fraction", args->val_fraction, "fraction of the text held out for validation")
      ->capture_default_str();
  c->add_option("--shard-tokens", args->shard_tokens, "tokens per shard file")->capture_default_str();
  c->add_option("--split", args->split, "auto | document | tail (see data/prepare.h)")->capture_default_str();
  c->add_flag("--quiet", args->quiet, "no progress line");
  c->add_flag("--json", args->json, "print one JSON object with the results");
  c->callback([args] { run_prepare(*args); });
}

}  // namespace tinyseek::cli
