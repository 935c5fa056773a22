// `tinyseek train` / `tinyseek eval` end to end through the binary: a run from raw text,
// --steps as "until global step N" across a resume, eval --json, and bad input (malformed
// config, bad values, missing or empty data, unwritable output, an existing run).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "trainer_test_util.h"

namespace tinyseek::train {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;
using testing::fresh_dir;
using testing::CliRun;
using testing::run_cli;
using testing::source_path;
using testing::tiny_data;

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

std::string tiny() { return "--config '" + source_path("configs/tiny.json") + "'"; }

int count_train_lines(const std::string& run) {
  std::ifstream in(run + "/metrics.jsonl");
  std::string line;
  int n = 0;
  while (std::getline(in, line)) n += json::parse(line).contains("loss");
  return n;
}

TEST(TrainCli, TrainResumeUntilStepThenEval) {
  const std::string run = fresh_dir("cli_run") + "/run";
  const std::string data = tiny_data().data_dir;
  CliRun r = run_cli("train " + tiny() + " --data '" + data + "' --out '" + run + "' --steps 3 eval_every=0");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "step 3/3 | loss ")) << r.out;
  EXPECT_TRUE(contains(r.out, "loss plot")) << r.out;
  // --steps means "until global step N": 3 more steps, not 5.
  r = run_cli("train --resume '" + run + "' --steps 5 --quiet");
  ASSERT_EQ(r.status, 0) << r.err;
  const json st = json::parse(testing::slurp(run + "/trainer_state.json"));
  EXPECT_EQ(st["step"], 5);
  EXPECT_EQ(count_train_lines(run), 5);
  // A fresh run into a directory with a checkpoint is refused (nothing is overwritten).
  r = run_cli("train " + tiny() + " --data '" + data + "' --out '" + run + "' --steps 3");
  EXPECT_NE(r.status, 0);
  EXPECT_TRUE(contains(r.err, "already holds a checkpoint")) << r.err;

  r = run_cli("eval --checkpoint '" + run + "' --json");
  ASSERT_EQ(r.status, 0) << r.err;
  const json e = json::parse(r.out);
  for (const char* k : {"val_loss", "perplexity", "bits_per_byte", "tokens"}) EXPECT_TRUE(e.contains(k)) << k;
  std::printf("  eval: %s\n", e.dump().c_str());
  EXPECT_NEAR(e["perplexity"].get<double>(), std::exp(e["val_loss"].get<double>()), 1e-9 * e["perplexity"].get<double>());
  EXPECT_GT(e["bits_per_byte"].get<double>(), 0.0);
  EXPECT_GT(e["tokens"].get<int64_t>(), 0);
  r = run_cli("eval --checkpoint '" + fresh_dir("cli_no_run") + "'");
  EXPECT_NE(r.status, 0);
  EXPECT_TRUE(contains(r.err, "no checkpoint")) << r.err;
}

TEST(TrainCli, RawTextIsTokenizedIntoTheRun) {
  const std::string run = fresh_dir("cli_raw") + "/run";
  const CliRun r = run_cli("train " + tiny() + " --data '" + tiny_data().text_dir + "' --out '" + run +
                           "' --steps 2 eval_batches=1 --quiet");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(fs::exists(run + "/data/data.json"));
  EXPECT_TRUE(fs::exists(run + "/tokenizer.json"));
  EXPECT_TRUE(fs::exists(run + "/loss.svg"));
}

TEST(TrainCli, MalformedConfigIsAClearError) {
  const std::string dir = fresh_dir("cli_bad_config");
  std::ofstream(dir + "/bad.json") << "{ \"hidden_size\": 32, ";
  CliRun r = run_cli("train --config '" + dir + "/bad.json' --data '" + tiny_data().data_dir + "' --out '" + dir +
                     "/run' --steps 2");
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(contains(r.err, "not valid JSON")) << r.err;
  EXPECT_FALSE(fs::exists(dir + "/run/checkpoint"));

  r = run_cli("train " + tiny() + " --data '" + tiny_data().data_dir + "' --out '" + dir + "/run' --steps 2 hidden_size=-4");
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(contains(r.err, "hidden_size")) << r.err;
  r = run_cli("train " + tiny() + " --data '" + tiny_data().data_dir + "' --out '" + dir + "/run' --steps 2 lrr=1e-3");
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(contains(r.err, "unknown key 'lrr'")) << r.err;
  r = run_cli("train --config '" + dir + "/missing.json' --steps 2");
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(contains(r.err, "does not exist")) << r.err;
}

TEST(TrainCli, BadDataAndOutputAreClearErrors) {
  const std::string dir = fresh_dir("cli_bad_data");
  CliRun r = run_cli("train " + tiny() + " --data '" + dir + "/nope' --out '" + dir + "/run' --steps 2");
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(contains(r.err, "does not exist")) << r.err;
  fs::create_directories(dir + "/empty");
  r = run_cli("train " + tiny() + " --data '" + dir + "/empty' --out '" + dir + "/run2' --steps 2");
  EXPECT_EQ(r.status, 1);
  EXPECT_FALSE(r.err.empty());
  r = run_cli("train " + tiny() + " --out '" + dir + "/run3' --steps 2");
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(contains(r.err, "no training data")) << r.err;
  r = run_cli("train " + tiny() + " --data '" + tiny_data().data_dir + "' --out /proc/tinyseek_run --steps 2");
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(contains(r.err, "/proc/tinyseek_run")) << r.err;
  // The model's vocabulary must hold the data's tokens.
  r = run_cli("train " + tiny() + " --data '" + tiny_data().data_dir + "' --out '" + dir + "/run4' --steps 2 vocab_size=300");
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(contains(r.err, "vocab_size")) << r.err;
}

TEST(TrainCli, NumericsTelemetryAndPrecisionOnResume) {
  const std::string run = fresh_dir("cli_telemetry") + "/run";
  const std::string data = tiny_data().data_dir;
  // No N: every eval_every (= 2 here) steps; the value slot does not swallow an override.
  CliRun r = run_cli("train " + tiny() + " --data '" + data + "' --out '" + run + "' --steps 4 --recipe fp8 "
                     "precision.scaling=delayed eval_batches=1 --numerics-telemetry eval_every=2");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "numerics telemetry: every 2 steps")) << r.out;
  const size_t table = r.out.find("numerics telemetry: 2 step(s)");
  ASSERT_NE(table, std::string::npos) << r.out;
  std::printf("%s", r.out.substr(table, r.out.find("done at step") - table).c_str());
  for (const char* row : {"\nfprop  fp8", "\ndgrad  fp8", "\nwgrad  fp8", "\nfprop  bf16"})
    EXPECT_TRUE(contains(r.out.substr(table), row)) << row;
  std::ifstream in(run + "/metrics.jsonl");
  int with_numerics = 0;
  for (std::string line; std::getline(in, line);) {
    const json j = json::parse(line);
    if (!j.contains("numerics")) continue;
    ++with_numerics;
    EXPECT_EQ(j["step"].get<int64_t>() % 2, 0);
    const json& fprop = j["numerics"]["summary"]["fprop"];
    EXPECT_GT(fprop["calls"].get<int64_t>(), 0);
    EXPECT_GT(fprop["sqnr_db"].get<double>(), 20.0);
  }
  EXPECT_EQ(with_numerics, 2);
  r = run_cli("train --resume '" + run + "' --steps 5 --numerics-telemetry=x");
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(contains(r.err, "--numerics-telemetry")) << r.err;

  // The checkpoint's precision map is kept: another recipe on resume is refused, unless allowed.
  r = run_cli("train --resume '" + run + "' --steps 5 --recipe bf16 --quiet");
  EXPECT_EQ(r.status, 1);
  EXPECT_TRUE(contains(r.err, "another precision map")) << r.err;
  EXPECT_TRUE(contains(r.err, "precision.format: \"e4m3\" vs \"bf16\"")) << r.err;
  r = run_cli("train --resume '" + run + "' --steps 5 --quiet");
  EXPECT_EQ(r.status, 0) << r.err;
  const json cfg = json::parse(testing::slurp(run + "/config.json"));
  EXPECT_EQ(cfg["precision"]["recipe"], "fp8");
  EXPECT_EQ(cfg["precision"]["scaling"], "delayed");
  r = run_cli("train --resume '" + run + "' --steps 6 --recipe bf16 --allow-precision-change");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(contains(r.out, "precision map changed on resume")) << r.out;
  EXPECT_EQ(json::parse(testing::slurp(run + "/config.json"))["precision"]["recipe"], "bf16");
}

}  // namespace
}  // namespace tinyseek::train
