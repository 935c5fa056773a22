// `tinyseek generate` and `tinyseek bench decode` end to end on a checkpoint directory made
// in-process (random weights, a small BPE tokenizer): the JSON interfaces scripts rely on,
// greedy speculative == greedy plain through the CLI, and the bad inputs.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "../common/run_cli.h"
#include "infer_test_util.h"
#include "tinyseek/data/bpe.h"
#include "tinyseek/data/tokenizer_json.h"
#include "tinyseek/io/checkpoint.h"

namespace tinyseek::infer {
namespace {
namespace fs = std::filesystem;
using tinyseek::testing::CliRun;
using tinyseek::testing::run_cli;
using namespace testing;

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// A checkpoint directory (config.json, model.safetensors, tokenizer.json) with `mtp` modules.
std::string make_checkpoint(int64_t mtp) {
  const fs::path dir = fs::path(::testing::TempDir()) /
                       ("tinyseek_infer_ckpt_" + std::to_string(::getpid()) + "_" + std::to_string(mtp));
  fs::remove_all(dir);
  fs::create_directories(dir);
  auto m = random_model(infer_config(Arch::kMoe, "fp8", mtp, /*vocab=*/300, /*max_pos=*/64), 5, 2.0f);
  io::write_file_synced((dir / "config.json").string(), model::to_json(m->config()).dump(2));
  io::write_model_safetensors(m->registry(), (dir / "model.safetensors").string());
  std::string text;
  for (int i = 0; i < 200; ++i) text += "the latent keys share one rope and every expert routes tokens. ";
  data::BpeTrainOptions bo;
  bo.vocab_size = 300;
  bo.progress = false;
  data::write_tokenizer_json(data::train_bpe({text}, bo), (dir / "tokenizer.json").string());
  return dir.string();
}

const std::string& checkpoint() {
  static const std::string d = make_checkpoint(1);
  return d;
}

nlohmann::json parse(const CliRun& r) {
  EXPECT_EQ(r.status, 0) << r.err;
  return nlohmann::json::parse(r.out);
}

TEST(CliGenerate, JsonKeysAndSpeculativeEqualsPlainGreedy) {
  const std::string base = "generate --checkpoint " + checkpoint() + " --prompt 'the expert' --max-new-tokens 12 "
                           "--temperature 0 --json";
  const nlohmann::json plain = parse(run_cli(base));
  for (const char* k : {"text", "tokens", "tokens_per_s", "kv_bytes_per_token", "mha_kv_bytes_per_token"})
    EXPECT_TRUE(plain.contains(k)) << k << " missing: " << plain.dump();
  EXPECT_FALSE(plain.contains("acceptance"));  // speculative only
  EXPECT_LE(plain["tokens"].size(), 12u);
  EXPECT_GT(plain["tokens"].size(), 0u);
  // 2 layers · (dc 32 + dr 8) · 4 bytes; MHA 2 · 2 heads · (16 + 8 + 16) · 4.
  EXPECT_EQ(plain["kv_bytes_per_token"], 320);
  EXPECT_EQ(plain["mha_kv_bytes_per_token"], 640);
  const nlohmann::json spec = parse(run_cli(base + " --speculative"));
  EXPECT_EQ(spec["tokens"], plain["tokens"]);
  EXPECT_EQ(spec["text"], plain["text"]);
  ASSERT_TRUE(spec.contains("acceptance"));
  EXPECT_EQ(spec["acceptance"].size(), 1u);
  std::printf("greedy tokens %s, speculative acceptance %s\n", plain["tokens"].dump().c_str(),
              spec["acceptance"].dump().c_str());
}

TEST(CliGenerate, StreamsSampledText) {
  const CliRun r = run_cli("generate --checkpoint " + checkpoint() +
                           " --prompt 'the' --max-new-tokens 8 --temperature 0.9 --top-k 20 --top-p 0.95 --seed 3");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "tokens/s")) << r.err;
  EXPECT_TRUE(contains(r.err, "B/token")) << r.err;
  // Seeded: the same command prints the same text.
  const CliRun again = run_cli("generate --checkpoint " + checkpoint() +
                               " --prompt 'the' --max-new-tokens 8 --temperature 0.9 --top-k 20 --top-p 0.95 --seed 3");
  EXPECT_EQ(r.out, again.out);
}

TEST(CliGenerate, BenchDecodeJson) {
  const nlohmann::json j =
      parse(run_cli("bench decode --checkpoint " + checkpoint() + " --tokens 16 --repeats 1 --json"));
  for (const char* k : {"plain_tokens_per_s", "speculative_tokens_per_s", "acceptance", "kv_bytes_per_token",
                        "mha_kv_bytes_per_token"})
    EXPECT_TRUE(j.contains(k)) << k << " missing: " << j.dump();
  EXPECT_GT(j["plain_tokens_per_s"].get<double>(), 0);
  EXPECT_GT(j["speculative_tokens_per_s"].get<double>(), 0);
  EXPECT_GE(j["acceptance"].get<double>(), 0);
  EXPECT_LE(j["acceptance"].get<double>(), 1);
  EXPECT_EQ(j["identical_tokens"], true);
}

TEST(CliGenerate, BadInputs) {
  const CliRun missing = run_cli("generate --checkpoint /nonexistent/run --prompt hi");
  EXPECT_EQ(missing.status, 1);
  EXPECT_TRUE(contains(missing.err, "not a directory")) << missing.err;

  std::string long_prompt;
  for (int i = 0; i < 100; ++i) long_prompt += "expert ";
  const CliRun too_long = run_cli("generate --checkpoint " + checkpoint() + " --prompt '" + long_prompt + "'");
  EXPECT_EQ(too_long.status, 1);
  EXPECT_TRUE(contains(too_long.err, "max_position_embeddings")) << too_long.err;

  static const std::string no_mtp = make_checkpoint(0);
  const CliRun refused = run_cli("generate --checkpoint " + no_mtp + " --prompt hi --speculative --max-new-tokens 4");
  EXPECT_EQ(refused.status, 1);
  EXPECT_TRUE(contains(refused.err, "MTP")) << refused.err;
  EXPECT_TRUE(contains(refused.err, "--allow-no-mtp")) << refused.err;
  const CliRun fallback = run_cli("generate --checkpoint " + no_mtp +
                                  " --prompt hi --speculative --allow-no-mtp --max-new-tokens 4 --json");
  EXPECT_EQ(fallback.status, 0) << fallback.err;
  EXPECT_TRUE(contains(fallback.err, "without speculation")) << fallback.err;
  const CliRun bench = run_cli("bench decode --checkpoint " + no_mtp + " --tokens 4");
  EXPECT_EQ(bench.status, 1);
  EXPECT_TRUE(contains(bench.err, "MTP")) << bench.err;
}

}  // namespace
}  // namespace tinyseek::infer
