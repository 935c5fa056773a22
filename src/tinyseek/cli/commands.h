// Each subcommand lives in its own cmd_<name>.cc and registers itself on the app here.
#pragma once
#include <CLI/CLI.hpp>

namespace tinyseek::cli {

void add_numerics(CLI::App& app);
void add_numerics_recipes(CLI::App& numerics);  // `numerics recipes`, called by add_numerics
void add_bench(CLI::App& app);  // bench gemm | step | decode
void add_tokenizer(CLI::App& app);
void add_prepare(CLI::App& app);
void add_train(CLI::App& app);
void add_eval(CLI::App& app);
void add_generate(CLI::App& app);        // cmd_generate.cc
void add_bench_decode(CLI::App& bench);  // `bench decode`, cmd_generate.cc; called by add_bench
void add_export(CLI::App& app);

}  // namespace tinyseek::cli
