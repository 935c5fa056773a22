// Running the tinyseek binary from the train tests, and a small prepared data directory.
#pragma once
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "tinyseek/base/rng.h"
#include "tinyseek/data/prepare.h"

#include "../common/run_cli.h"

namespace tinyseek::train::testing {

using tinyseek::testing::CliRun;
using tinyseek::testing::run_cli;
using tinyseek::testing::slurp;

// Pseudo-English text (~`bytes` bytes) from a fixed word list and Philox.
inline std::string synthetic_text(size_t bytes, uint64_t seed) {
  static const char* kWords[] = {"the", "model", "learns", "to", "predict", "next", "token", "from", "a", "small",
                                 "corpus", "of", "text", "and", "every", "expert", "routes", "tokens", "with",
                                 "bias", "latent", "attention", "keys", "values", "share", "one", "rope"};
  constexpr size_t kN = sizeof(kWords) / sizeof(kWords[0]);
  const Philox rng(seed, 0x7E47);
  std::string s;
  for (uint64_t i = 0; s.size() < bytes; ++i) {
    s += kWords[static_cast<size_t>(rng.uniform(i) * kN) % kN];
    s += (i % 11 == 10) ? ".\n" : " ";
  }
  return s;
}

// A text directory and a prepared data directory (tokenizer with the tiny config's vocab),
// made once per test binary.
struct TinyData {
  std::string text_dir, data_dir;
};
inline const TinyData& tiny_data() {
  static const TinyData d = [] {
    namespace fs = std::filesystem;
    TinyData t;
    const fs::path root = fs::path(::testing::TempDir()) / ("tinyseek_train_data_" + std::to_string(::getpid()));
    fs::remove_all(root);
    fs::create_directories(root / "text");
    for (int f = 0; f < 3; ++f) std::ofstream(root / "text" / ("doc" + std::to_string(f) + ".txt")) << synthetic_text(20000, f);
    t.text_dir = (root / "text").string();
    t.data_dir = (root / "data").string();
    data::prepare_from_text({t.text_dir}, t.data_dir, 512, 0.1, false);
    return t;
  }();
  return d;
}

}  // namespace tinyseek::train::testing
