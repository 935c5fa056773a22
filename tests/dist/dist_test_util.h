// Helpers of the MPI CLI tests (dp_cli_test.cc, ep_cli_test.cc): launching `tinyseek train`
// on the tiny config under mpirun, and comparing two runs' metrics.jsonl and final weights.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "tinyseek/io/checkpoint.h"
#include "tinyseek/train/run_config.h"
#include "tinyseek/train/state.h"
#include "../train/cli_util.h"
#include "../train/trainer_test_util.h"

namespace tinyseek::dist::testing {
namespace fs = std::filesystem;
using nlohmann::json;
using train::testing::fresh_dir;
using train::testing::run_cli;
using train::testing::source_path;
using train::testing::tiny_data;
using train::testing::train_lines;

// FP32 bounds (see the top); DpCase overrides them for the FP8 recipe.
struct Tolerance {
  double loss = 1e-6, norm = 1e-5, weight = 1e-5;
};

inline bool have_mpirun() { return std::system("command -v mpirun >/dev/null 2>&1") == 0; }

#define REQUIRE_MPIRUN() \
  if (!have_mpirun()) GTEST_SKIP() << "mpirun not found (install openmpi-bin: scripts/install-deps.sh)"

inline const char* kMpirun = "OMP_NUM_THREADS=1 mpirun -np 2 --oversubscribe --allow-run-as-root";

// `tinyseek train` on the tiny config; np = 1 runs the plain binary (no mpirun).
inline std::string train_args(const std::string& out, int64_t steps, const std::string& extra = "") {
  return "train --config '" + source_path("configs/tiny.json") + "' --data '" + tiny_data().data_dir + "' --out '" +
         out + "' --steps " + std::to_string(steps) + " --quiet eval_every=3 save_every=3 " + extra;
}
inline train::testing::CliRun train(int np, const std::string& args) {
  return run_cli(args, np == 1 ? "OMP_NUM_THREADS=1" : kMpirun);
}

inline std::vector<json> all_lines(const std::string& run) {
  std::ifstream in(run + "/metrics.jsonl");
  std::vector<json> out;
  for (std::string line; std::getline(in, line);) out.push_back(json::parse(line));
  return out;
}

inline double rel(double a, double b) { return std::abs(a - b) / std::max(std::abs(b), 1e-30); }

// Every metrics.jsonl line of `got` against `want`: the same keys, steps and token counts;
// losses and norms within the tolerances.
inline void expect_same_metrics(const std::string& got, const std::string& want, size_t expect_lines,
                         const Tolerance& tol = {}) {
  const std::vector<json> a = all_lines(got), b = all_lines(want);
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(a.size(), expect_lines);
  double worst_loss = 0, worst_norm = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    std::vector<std::string> ka, kb;
    for (const auto& [k, v] : a[i].items()) ka.push_back(k);
    for (const auto& [k, v] : b[i].items()) kb.push_back(k);
    EXPECT_EQ(ka, kb) << "line " << i;
    EXPECT_EQ(a[i]["step"], b[i]["step"]);
    if (a[i].contains("loss")) {
      EXPECT_EQ(a[i]["tokens"], b[i]["tokens"]);
      EXPECT_EQ(a[i]["skipped"], b[i]["skipped"]);
      for (const char* k : {"loss", "loss_main", "loss_balance"})
        worst_loss = std::max(worst_loss, rel(a[i][k].get<double>(), b[i][k].get<double>()));
      worst_loss = std::max(worst_loss, rel(a[i]["loss_mtp"][0].get<double>(), b[i]["loss_mtp"][0].get<double>()));
      worst_norm = std::max(worst_norm, rel(a[i]["grad_norm"].get<double>(), b[i]["grad_norm"].get<double>()));
      EXPECT_EQ(a[i]["lr"], b[i]["lr"]);
    } else {
      EXPECT_EQ(a[i]["val_tokens"], b[i]["val_tokens"]);
      worst_loss = std::max(worst_loss, rel(a[i]["val_loss"].get<double>(), b[i]["val_loss"].get<double>()));
    }
  }
  std::printf("  %s vs %s: %zu lines, max rel diff losses %.3g (tol %.0e), grad norms %.3g (tol %.0e)\n",
              fs::path(got).filename().c_str(), fs::path(want).filename().c_str(), a.size(), worst_loss, tol.loss,
              worst_norm, tol.norm);
  EXPECT_LT(worst_loss, tol.loss);
  EXPECT_LT(worst_norm, tol.norm);
}

// The runs' final parameters: max |a-b| / max |b|, and the number of differing floats.
inline void expect_same_weights(const std::string& got, const std::string& want, const Tolerance& tol = {}) {
  const auto load = [](const std::string& run) {
    const std::string dir = io::resolve_checkpoint_dir(run);
    const train::RunConfig rc = train::parse_run_config(io::read_json_file(dir + "/config.json", "config"), {}, dir);
    auto m = std::make_unique<model::Model>(rc.model);
    io::load_model_safetensors(m->registry(), dir + "/model.safetensors");
    return m;
  };
  const auto a = load(got), b = load(want);
  const auto& pa = a->registry().params();
  const auto& pb = b->registry().params();
  ASSERT_EQ(pa.size(), pb.size());
  double max_diff = 0, max_w = 0;
  size_t differ = 0;
  for (size_t i = 0; i < pa.size(); ++i) {
    max_diff = std::max(max_diff, std::abs(double(pa[i]) - double(pb[i])));
    max_w = std::max(max_w, std::abs(double(pb[i])));
    differ += pa[i] != pb[i];
  }
  std::printf("  final weights: %zu of %zu differ, max |diff| %.3g, max |w| %.3g, rel %.3g (tol %.0e)\n", differ,
              pa.size(), max_diff, max_w, max_diff / max_w, tol.weight);
  EXPECT_LT(max_diff / max_w, tol.weight);
}

}  // namespace tinyseek::dist::testing
