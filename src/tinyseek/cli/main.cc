// tinyseek: train DeepSeek-V3-style models (MLA, DeepSeekMoE, MTP) with FP8 on CPUs.
#include <cstdio>

#include "tinyseek/base/check.h"
#include "tinyseek/cli/commands.h"
#include "tinyseek/dist/comm.h"

int main(int argc, char** argv) {
  // Under mpirun: MPI_Init (every rank runs this same main); otherwise nothing.
  tinyseek::dist::init(&argc, &argv);
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
  // An error on one rank must not leave the others waiting in a collective: abort_job
  // prints it (with the rank) and MPI_Abort()s the job; without MPI it only prints.
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int status = app.exit(e);  // usage errors are the same on every rank
    tinyseek::dist::finalize();
    return status;
  } catch (const tinyseek::Error& e) {
    tinyseek::dist::abort_job(e.what(), 1);
    return 1;
  } catch (const std::exception& e) {
    tinyseek::dist::abort_job(std::string("error: ") + e.what(), 1);
    return 1;
  }
  tinyseek::dist::finalize();
  return 0;
}
