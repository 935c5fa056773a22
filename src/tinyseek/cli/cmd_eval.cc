// tinyseek eval: validation loss, perplexity and bits per byte of a checkpoint; optionally a
// short sample (plain sampling over Model::forward; real generation with the MLA KV cache
// and MTP speculative decoding is `tinyseek generate`, a later issue).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tinyseek/base/check.h"
#include "tinyseek/base/rng.h"
#include "tinyseek/cli/commands.h"
#include "tinyseek/data/tokenizer_json.h"
#include "tinyseek/io/checkpoint.h"
#include "tinyseek/train/run_config.h"
#include "tinyseek/train/state.h"
#include "tinyseek/train/trainer.h"

namespace tinyseek::cli {
namespace {
namespace fs = std::filesystem;

struct EvalArgs {
  std::string checkpoint, data, prompt = "\n";
  int64_t batches = 0, sample = 0;
  double temperature = 0.8;
  uint64_t seed = 1;
  bool json = false;
};

// Samples `n` tokens after `prompt` with temperature (0 = greedy), re-running the whole
// context through Model::forward per token (O(n²) but fine for a demo sample).
std::string sample_text(model::Model& m, const data::Tokenizer& tok, const EvalArgs& a) {
  const int64_t V = m.config().vocab_size, max_ctx = m.config().max_position_embeddings;
  std::vector<int32_t> ctx;
  if (tok.bos_id() >= 0) ctx.push_back(tok.bos_id());
  for (int32_t t : tok.encode(a.prompt)) ctx.push_back(t);
  const size_t prompt_len = ctx.size();
  const Philox rng(a.seed, 0x5A4D);
  std::vector<double> p(static_cast<size_t>(V));
  for (int64_t i = 0; i < a.sample; ++i) {
    // The model needs T > Dmtp positions: pad a too-short context on the left with BOS.
    const int64_t T = std::clamp<int64_t>(static_cast<int64_t>(ctx.size()), m.config().num_nextn_predict_layers + 1, max_ctx);
    std::vector<int32_t> window(static_cast<size_t>(T + 1), tok.bos_id() >= 0 ? tok.bos_id() : 0);
    const int64_t have = std::min<int64_t>(T, static_cast<int64_t>(ctx.size()));
    std::copy(ctx.end() - have, ctx.end(), window.begin() + (T - have));
    m.forward(window.data(), 1, T);
    const float* logits = m.logits(0) + (T - 1) * V;
    int32_t next = 0;
    if (a.temperature <= 0) {
      next = static_cast<int32_t>(std::max_element(logits, logits + V) - logits);
    } else {
      const double mx = *std::max_element(logits, logits + V);
      double z = 0;
      for (int64_t v = 0; v < V; ++v) z += p[size_t(v)] = std::exp((logits[v] - mx) / a.temperature);
      double u = rng.uniform(static_cast<uint64_t>(i)) * z;
      for (next = 0; next < V - 1 && u >= p[size_t(next)]; ++next) u -= p[size_t(next)];
    }
    if (next == tok.eos_id()) break;
    ctx.push_back(next);
  }
  return tok.decode(ctx.data() + prompt_len, ctx.size() - prompt_len, true);
}

void run_eval(const EvalArgs& a) {
  const std::string dir = io::resolve_checkpoint_dir(a.checkpoint);
  const nlohmann::json j = io::read_json_file(dir + "/config.json", "checkpoint config");
  const train::RunConfig rc = train::parse_run_config(j, {}, dir + "/config.json");
  std::string data_dir = a.data;
  if (data_dir.empty() && fs::exists(dir + "/trainer_state.json"))
    data_dir = train::read_trainer_state(dir + "/trainer_state.json").data_dir;
  TS_CHECK(!data_dir.empty(), "no evaluation data", "pass --data DATA_DIR (a `tinyseek prepare` directory)");
  TS_CHECK(fs::exists(fs::path(data_dir) / "data.json"), data_dir << " is not a prepared data directory (no data.json)",
           "pass --data DATA_DIR from `tinyseek prepare` or the run's RUN/data");
  train::TrainData data = train::load_train_data(data_dir);
  if (fs::exists(dir + "/tokenizer.json") && data.tokenizer_hash != 0) {
    const data::Tokenizer tok = data::read_tokenizer_json(dir + "/tokenizer.json");
    TS_CHECK(tok.hash() == data.tokenizer_hash, "the data in " << data_dir << " was tokenized with another tokenizer "
             "than the checkpoint's", "evaluate on data prepared with " << dir << "/tokenizer.json");
  }
  train::TrainHyper h = rc.hyper;
  if (h.run.steps <= 0) h.run.steps = 1;
  train::TrainerOptions opt;
  opt.print = false;
  train::Trainer trainer(rc.model, h, std::move(data), opt);
  io::load_model_safetensors(trainer.model().registry(), dir + "/model.safetensors");
  const train::EvalResult e = trainer.evaluate(a.batches);
  std::string sample;
  if (a.sample > 0) {
    TS_CHECK(fs::exists(dir + "/tokenizer.json"), dir << " has no tokenizer.json to decode a sample",
             "train with --data from `tinyseek prepare` or raw text");
    sample = sample_text(trainer.model(), data::read_tokenizer_json(dir + "/tokenizer.json"), a);
  }
  if (a.json) {
    nlohmann::ordered_json o;
    o["val_loss"] = e.val_loss;
    o["perplexity"] = e.perplexity;
    o["bits_per_byte"] = e.bits_per_byte;
    o["tokens"] = e.tokens;
    if (a.sample > 0) o["sample"] = sample;
    std::printf("%s\n", o.dump().c_str());
    return;
  }
  std::printf("checkpoint %s\nval loss %.4f | perplexity %.2f | %.4f bits/byte | %lld tokens\n", dir.c_str(),
              e.val_loss, e.perplexity, e.bits_per_byte, static_cast<long long>(e.tokens));
  if (a.sample > 0) std::printf("--- sample (temperature %g) ---\n%s%s\n---\n", a.temperature, a.prompt.c_str(), sample.c_str());
}

}  // namespace

void add_eval(CLI::App& app) {
  auto args = std::make_shared<EvalArgs>();
  CLI::App* c = app.add_subcommand("eval", "validation loss, perplexity and bits per byte of a checkpoint");
  c->add_option("--checkpoint", args->checkpoint, "run directory of `tinyseek train`")->required();
  c->add_option("--data", args->data, "prepared data directory (default: the one the run trained on)");
  c->add_option("--batches", args->batches, "evaluate at most N batches (0 = the whole val split)")->capture_default_str();
  c->add_option("--sample", args->sample, "also sample N tokens after --prompt")->capture_default_str();
  c->add_option("--prompt", args->prompt, "prompt of the sample");
  c->add_option("--temperature", args->temperature, "sampling temperature (0 = greedy)")->capture_default_str();
  c->add_option("--seed", args->seed, "sampling seed")->capture_default_str();
  c->add_flag("--json", args->json, "print {\"val_loss\", \"perplexity\", \"bits_per_byte\", \"tokens\"}");
  c->callback([args] { run_eval(*args); });
}

}  // namespace tinyseek::cli
