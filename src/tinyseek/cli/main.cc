// tinyseek: train DeepSeek-V3-style models (MLA, DeepSeekMoE, MTP) with FP8 on CPUs.
#include <cstdio>

#include "tinyseek/base/check.h"
#include "tinyseek/cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{
      "tinyseek: train DeepSeek-V3-style language models (MLA, DeepSeekMoE, multi-token\n"
      "prediction) end to end on CPUs, with the paper's FP8 mixed-precision recipe."};
  app.name("tinyseek");
  app.require_subcommand(1, 1);
  app.fallthrough(false);
  tinyseek::cli::add_numerics(app);
  tinyseek::cli::add_bench(app);
  tinyseek::cli::add_tokenizer(app);
  tinyseek::cli::add_prepare(app);
  tinyseek::cli::add_train(app);
  tinyseek::cli::add_eval(app);
  tinyseek::cli::add_generate(app);
  tinyseek::cli::add_export(app);
  app.footer(
      "\nRun `tinyseek <command> --help` for a command's options.\n"
      "Threads follow OMP_NUM_THREADS; TINYSEEK_SIMD=portable forces the portable kernels.");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const tinyseek::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
