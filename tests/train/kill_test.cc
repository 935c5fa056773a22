// Atomic checkpoints: a training process killed with SIGKILL at random moments (mid-step,
// mid-save, mid-log) always leaves a checkpoint that loads completely, and resuming from it
// keeps making progress.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "cli_util.h"
#include "tinyseek/base/rng.h"
#include "tinyseek/io/checkpoint.h"
#include "tinyseek/train/run_config.h"
#include "tinyseek/train/state.h"
#include "trainer_test_util.h"

namespace tinyseek::train {
namespace {

pid_t spawn(const std::vector<std::string>& args) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int null = ::open("/dev/null", O_WRONLY);
    ::dup2(null, 1);
    ::dup2(null, 2);
    std::vector<char*> argv;
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

// Loads every file of the run's current checkpoint as resume would; returns its step.
int64_t load_everything(const std::string& run) {
  const std::string dir = io::resolve_checkpoint_dir(run);
  const RunConfig rc = parse_run_config(io::read_json_file(dir + "/config.json", "config"), {}, dir);
  model::Model m(rc.model);
  io::load_model_safetensors(m.registry(), dir + "/model.safetensors");
  AdamW opt(m.registry(), rc.hyper.adamw);
  load_optimizer_state(opt, m.registry(), dir + "/optimizer.safetensors");
  const TrainerState st = read_trainer_state(dir + "/trainer_state.json");
  check_router_biases(st, m.registry());
  EXPECT_EQ(opt.step_count(), st.step);  // no skipped steps in this run
  return st.step;
}

TEST(TrainKill, CheckpointSurvivesSigkillAtRandomMoments) {
  const std::string run = testing::fresh_dir("kill") + "/run";
  const std::string data = testing::tiny_data().data_dir;
  const Philox rng(2024, 9);
  int64_t last = 0;
  int loaded = 0;
  constexpr int kIterations = 10;
  for (int it = 0; it < kIterations; ++it) {
    std::vector<std::string> args = {TINYSEEK_BINARY, "train", "--config", testing::source_path("configs/tiny.json"),
                                     "--data", data, "--out", run, "--steps", "100000", "--quiet",
                                     "save_every=1", "eval_every=0"};
    if (io::has_checkpoint(run)) args.insert(args.end(), {"--resume", run});
    const int delay_ms = 150 + static_cast<int>(rng.uniform(static_cast<uint64_t>(it)) * 700);
    const pid_t pid = spawn(args);
    ASSERT_GT(pid, 0);
    // The first run lives until its first checkpoint exists (a busy machine may need
    // seconds to get there), then a random moment more; the later ones die at random
    // moments of start-up, training, saving or logging.
    if (it == 0)
      for (int i = 0; i < 1200 && !io::has_checkpoint(run); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::this_thread::sleep_for(std::chrono::milliseconds(it == 0 ? delay_ms / 3 : delay_ms));
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status)) << "the trainer exited by itself (status " << status << ")";
    ASSERT_TRUE(io::has_checkpoint(run)) << "kill " << it << ": no current checkpoint";
    int64_t step = -1;
    ASSERT_NO_THROW(step = load_everything(run)) << "kill " << it << " left a checkpoint that does not load";
    std::printf("  kill %d after %d ms: checkpoint at step %lld loads\n", it, delay_ms, static_cast<long long>(step));
    EXPECT_GE(step, last) << "the checkpoint went backwards";
    last = step;
    ++loaded;
  }
  EXPECT_EQ(loaded, kIterations);
  EXPECT_GT(last, 0);
}

TEST(TrainKill, SigintSavesAndExitsCleanly) {
  const std::string run = testing::fresh_dir("sigint") + "/run";
  const pid_t pid = spawn({TINYSEEK_BINARY, "train", "--config", testing::source_path("configs/tiny.json"), "--data",
                           testing::tiny_data().data_dir, "--out", run, "--steps", "100000", "--quiet",
                           "save_every=0", "eval_every=0"});
  ASSERT_GT(pid, 0);
  // Interrupt once the first step is logged (polling: the machine may be busy).
  for (int i = 0; i < 600 && testing::slurp(run + "/metrics.jsonl").empty(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ::kill(pid, SIGINT);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status)) << "killed by the signal instead of saving";
  EXPECT_EQ(WEXITSTATUS(status), 0);
  ASSERT_TRUE(io::has_checkpoint(run)) << "no checkpoint saved on SIGINT (save_every=0)";
  const int64_t step = load_everything(run);
  std::printf("  SIGINT after the first step: clean exit, checkpoint at step %lld\n", static_cast<long long>(step));
  EXPECT_GT(step, 0);
}

}  // namespace
}  // namespace tinyseek::train
