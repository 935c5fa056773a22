// Running the tinyseek binary from a test: one helper for every test area (header only, so
// tests/common/ needs no test binary of its own).
#pragma once
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

namespace tinyseek::testing {

struct CliRun {
  int status = -1;  // exit status, or -1 if the process did not exit normally
  std::string out, err;
};

inline std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// Runs `<env> tinyseek <args>` through the shell (args are shell words), capturing stdout,
// stderr and the exit status; prints the command and the first stderr line as evidence.
inline CliRun run_cli(const std::string& args, const std::string& env = "") {
  static int counter = 0;
  const std::string base =
      ::testing::TempDir() + "tinyseek_cli_" + std::to_string(::getpid()) + "_" + std::to_string(counter++);
  const std::string cmd = env + " '" + TINYSEEK_BINARY + "' " + args + " >'" + base + ".out' 2>'" + base + ".err'";
  const int raw = std::system(cmd.c_str());
  CliRun r;
  r.status = (raw != -1 && WIFEXITED(raw)) ? WEXITSTATUS(raw) : -1;
  r.out = slurp(base + ".out");
  r.err = slurp(base + ".err");
  std::remove((base + ".out").c_str());
  std::remove((base + ".err").c_str());
  std::printf("$ %s tinyseek %s -> exit %d, %zu bytes stdout, stderr: %s\n", env.c_str(), args.c_str(), r.status,
              r.out.size(), r.err.empty() ? "(empty)" : r.err.substr(0, r.err.find('\n')).c_str());
  return r;
}

}  // namespace tinyseek::testing
