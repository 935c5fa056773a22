// Fixtures of the trainer tests: configs/tiny.json with overrides, and in-memory token
// streams with learnable structure.
#pragma once
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tinyseek/base/rng.h"
#include "tinyseek/data/loader.h"
#include "tinyseek/train/run_config.h"
#include "tinyseek/train/trainer.h"

namespace tinyseek::train::testing {

inline std::string source_path(const std::string& rel) { return std::string(TINYSEEK_SOURCE_DIR) + "/" + rel; }

inline RunConfig tiny_run_config(const std::vector<std::string>& overrides) {
  return parse_run_config(read_config_file(source_path("configs/tiny.json")), overrides, "configs/tiny.json");
}

// A first-order Markov stream over `alphabet` tokens: next = (7·prev + 3) mod alphabet with
// probability 0.85, else uniform. Learnable in a few dozen steps; entropy well below ln V.
inline std::vector<int32_t> markov_tokens(int64_t n, int32_t alphabet, uint64_t seed) {
  const Philox rng(seed, 0x7E57);
  std::vector<int32_t> t(static_cast<size_t>(n));
  int32_t prev = 1;
  for (int64_t i = 0; i < n; ++i) {
    const double u = rng.uniform(static_cast<uint64_t>(2 * i));
    prev = u < 0.85 ? (7 * prev + 3) % alphabet
                    : static_cast<int32_t>(rng.uniform(static_cast<uint64_t>(2 * i + 1)) * alphabet) % alphabet;
    t[static_cast<size_t>(i)] = prev;
  }
  return t;
}

inline TrainData memory_data(int64_t vocab, uint64_t seed = 3) {
  TrainData d;
  d.train = data::TokenSplit::from_tokens(markov_tokens(20000, 61, seed), vocab);
  d.val = data::TokenSplit::from_tokens(markov_tokens(3000, 61, seed + 100), vocab);
  return d;
}

inline std::string slurp_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// A fresh empty directory under the test temp dir.
inline std::string fresh_dir(const std::string& name) {
  const std::filesystem::path p = std::filesystem::path(::testing::TempDir()) / ("tinyseek_train_" + name);
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p.string();
}

// Trainer options for tests: no console output; run_dir empty = no checkpoints or metrics.
inline TrainerOptions quiet(const std::string& run_dir = "") {
  TrainerOptions o;
  o.run_dir = run_dir;
  o.print = false;
  return o;
}

// The per-step records (those with "loss") of a run's metrics.jsonl.
inline std::vector<nlohmann::json> train_lines(const std::string& run_dir) {
  std::ifstream in(run_dir + "/metrics.jsonl");
  std::vector<nlohmann::json> out;
  for (std::string line; std::getline(in, line);) {
    const nlohmann::json j = nlohmann::json::parse(line);
    if (j.contains("loss")) out.push_back(j);
  }
  return out;
}

}  // namespace tinyseek::train::testing
