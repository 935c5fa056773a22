// `tinyseek numerics recipes`: each recipe trained in its own process on the same data;
// the JSON rows, the relative-gap arithmetic, the overlay plot, and clear errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "../common/run_cli.h"
#include "tinyseek/base/rng.h"

namespace {
namespace fs = std::filesystem;
using nlohmann::json;
using tinyseek::testing::CliRun;
using tinyseek::testing::run_cli;
using tinyseek::testing::slurp;

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

std::string fresh(const std::string& name) {
  const fs::path p = fs::path(::testing::TempDir()) / ("tinyseek_recipes_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

// A small text file (~60 KB of pseudo-English from a fixed word list): enough for the tiny
// config's 512-token vocabulary and a validation split.
std::string text_file(const std::string& dir) {
  static const char* kWords[] = {"the", "model", "learns", "to", "predict", "the", "next", "token", "from", "a",
                                 "small", "corpus", "of", "text", "and", "each", "expert", "routes", "tokens"};
  constexpr size_t kN = sizeof(kWords) / sizeof(kWords[0]);
  const tinyseek::Philox rng(11, 0x5EC1);
  std::string s;
  for (uint64_t i = 0; s.size() < 60000; ++i) {
    s += kWords[static_cast<size_t>(rng.uniform(i) * kN) % kN];
    s += (i % 13 == 12) ? ".\n" : " ";
  }
  const std::string path = dir + "/corpus.txt";
  std::ofstream(path) << s;
  return path;
}

std::string tiny() { return std::string("--config '") + TINYSEEK_SOURCE_DIR + "/configs/tiny.json'"; }

TEST(NumericsRecipes, JsonRowsGapsAndPlot) {
  const std::string dir = fresh("json");
  const std::string out = dir + "/out";
  const CliRun r = run_cli("numerics recipes " + tiny() + " --data '" + text_file(dir) + "' --steps 3 --recipes "
                           "bf16,fp8:precision.scale_type=pow2 --json --out '" + out + "' eval_batches=2");
  ASSERT_EQ(r.status, 0) << r.err;
  const json j = json::parse(r.out);  // stdout is the JSON alone (progress went to stderr)
  std::printf("%s\n", j.dump(1).c_str());
  EXPECT_TRUE(contains(r.err, "[2/2] fp8:precision.scale_type=pow2")) << r.err;
  ASSERT_EQ(j["rows"].size(), 2u);
  const json& bf16 = j["rows"][0];
  const json& fp8 = j["rows"][1];
  EXPECT_EQ(bf16["recipe"], "bf16");
  EXPECT_EQ(fp8["recipe"], "fp8:precision.scale_type=pow2");  // as given
  EXPECT_EQ(j["reference"], "bf16");
  for (const json& row : j["rows"]) {
    for (const char* k : {"train_loss", "val_loss", "rel_gap_vs_bf16", "tokens_per_s", "peak_rss_mb"})
      ASSERT_TRUE(row[k].is_number()) << k << " in " << row.dump();
    EXPECT_EQ(row["steps"], 3);
    // A fresh model predicts ~uniformly over 512 tokens: the losses start near ln 512 = 6.24.
    EXPECT_GT(row["val_loss"].get<double>(), 3.0);
    EXPECT_LT(row["val_loss"].get<double>(), 7.0);
    EXPECT_GT(row["tokens_per_s"].get<double>(), 0.0);
    // The child's own peak RSS: more than an empty process, far less than the machine.
    EXPECT_GT(row["peak_rss_mb"].get<double>(), 5.0);
    EXPECT_LT(row["peak_rss_mb"].get<double>(), 2048.0);
    // Each recipe trained under its own precision map.
    const json cfg = json::parse(slurp(row["run_dir"].get<std::string>() + "/config.json"));
    std::printf("  %s: precision %s\n", row["recipe"].get<std::string>().c_str(), cfg["precision"].dump().c_str());
  }
  const json fp8_cfg = json::parse(slurp(fp8["run_dir"].get<std::string>() + "/config.json"))["precision"];
  EXPECT_EQ(fp8_cfg["recipe"], "fp8");
  EXPECT_EQ(fp8_cfg["scale_type"], "pow2");
  EXPECT_EQ(json::parse(slurp(bf16["run_dir"].get<std::string>() + "/config.json"))["precision"]["format"], "bf16");
  // The gap arithmetic: (val - val_bf16) / val_bf16, and 0 for bf16 itself.
  const double vb = bf16["val_loss"].get<double>(), vf = fp8["val_loss"].get<double>();
  const double gap = fp8["rel_gap_vs_bf16"].get<double>();
  std::printf("  val loss bf16 %.6f, fp8 pow2 %.6f: gap %.6e, expected %.6e\n", vb, vf, gap, (vf - vb) / vb);
  EXPECT_EQ(bf16["rel_gap_vs_bf16"].get<double>(), 0.0);
  EXPECT_NEAR(gap, (vf - vb) / vb, 1e-15);
  EXPECT_NE(vf, vb) << "FP8 and BF16 training cannot produce the same loss bits";
  // The val loss is the last evaluation in the run's own metrics.
  std::ifstream m(bf16["run_dir"].get<std::string>() + "/metrics.jsonl");
  double last_val = -1;
  for (std::string line; std::getline(m, line);)
    if (const json l = json::parse(line); l.contains("val_loss")) last_val = l["val_loss"].get<double>();
  EXPECT_EQ(last_val, vb);

  // The plot overlays both runs: each colour draws a train line and a dashed val line, and
  // the legend names each recipe; recipes.json holds the same result.
  const std::string svg = slurp(out + "/loss.svg");
  ASSERT_FALSE(svg.empty());
  for (const char* color : {"#1f77b4", "#ff7f0e"}) {
    size_t lines = 0;
    for (size_t p = svg.find("<polyline"); p != std::string::npos; p = svg.find("<polyline", p + 1))
      lines += svg.compare(svg.find("stroke=\"", p) + 8, 7, color) == 0;
    std::printf("  loss.svg: %zu polylines in %s\n", lines, color);
    EXPECT_EQ(lines, 2u) << color;
  }
  EXPECT_TRUE(contains(svg, ">bf16</text>"));
  EXPECT_TRUE(contains(svg, ">fp8:precision.scale_type=pow2</text>"));
  EXPECT_EQ(json::parse(slurp(out + "/recipes.json")), j);
  EXPECT_TRUE(fs::exists(out + "/data/data.json")) << "the text is prepared once for every recipe";

  // A second comparison into the same --out is refused unless --force.
  const CliRun again = run_cli("numerics recipes " + tiny() + " --data '" + out + "/data' --steps 1 --recipes bf16 "
                               "--out '" + out + "'");
  EXPECT_NE(again.status, 0);
  EXPECT_TRUE(contains(again.err, "--force")) << again.err;
}

TEST(NumericsRecipes, TableWithoutBf16SaysSo) {
  const std::string dir = fresh("table");
  // An override right after --data is an override, not a second data path.
  const CliRun r = run_cli("numerics recipes " + tiny() + " --data '" + text_file(dir) + "' eval_batches=1 --steps 2 "
                           "--recipes fp32,fp8 --out '" + dir + "/out'");
  ASSERT_EQ(r.status, 0) << r.err;
  std::printf("%s", r.out.c_str());
  EXPECT_TRUE(contains(r.out, "peak RSS MiB")) << r.out;
  EXPECT_TRUE(contains(r.out, "no plain `bf16` recipe")) << r.out;
  const json j = json::parse(slurp(dir + "/out/recipes.json"));
  EXPECT_TRUE(j["reference"].is_null());
  for (const json& row : j["rows"]) {
    EXPECT_TRUE(row["rel_gap_vs_bf16"].is_null()) << row.dump();
    // eval_batches=1 reached the child: one batch of B=4 x T=32 tokens.
    std::ifstream m(row["run_dir"].get<std::string>() + "/metrics.jsonl");
    int64_t val_tokens = -1;
    for (std::string line; std::getline(m, line);)
      if (const json l = json::parse(line); l.contains("val_tokens")) val_tokens = l["val_tokens"].get<int64_t>();
    EXPECT_EQ(val_tokens, 128) << row["recipe"];
  }
}

TEST(NumericsRecipes, BadRecipeIsAClearErrorBeforeAnyRun) {
  const std::string dir = fresh("bad");
  for (const char* list : {"bf16,fp9", "bf16,fp8:precision.granularity=tile64", "bf16,,fp8", "fp8,fp8"}) {
    const CliRun r = run_cli("numerics recipes " + tiny() + " --data '" + dir + "' --steps 2 --recipes '" + list +
                             "' --out '" + dir + "/out'");
    EXPECT_EQ(r.status, 1) << list;
    EXPECT_TRUE(contains(r.err, "--recipes")) << r.err;
    EXPECT_FALSE(fs::exists(dir + "/out")) << "nothing may run for a bad list: " << list;
  }
  const CliRun r = run_cli("numerics recipes " + tiny() + " --data '" + dir + "' --steps 2 --recipes bf16,fp9");
  EXPECT_TRUE(contains(r.err, "fp9")) << r.err;
  EXPECT_TRUE(contains(r.err, "fp32, bf16, fp8")) << r.err;
}

}  // namespace
