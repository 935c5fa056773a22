// tinyseek train: from a config (and a data directory or raw text) to a run directory with
// checkpoints, metrics.jsonl and loss.svg (src/tinyseek/train/trainer.h).
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "tinyseek/base/check.h"
#include "tinyseek/cli/commands.h"
#include "tinyseek/dist/comm.h"
#include "tinyseek/data/prepare.h"
#include "tinyseek/io/checkpoint.h"
#include "tinyseek/train/run_config.h"
#include "tinyseek/train/state.h"
#include "tinyseek/train/trainer.h"

namespace tinyseek::cli {
namespace {
namespace fs = std::filesystem;

struct TrainArgs {
  std::string config, out, resume, recipe;
  std::vector<std::string> data;
  int64_t steps = -1;
  bool quiet = false;
  // --numerics-telemetry [N]: given (telemetry_given), with N or "" for the default.
  bool telemetry_given = false;
  std::string telemetry_every;
  bool allow_precision_change = false;
  int expert_parallel = 1;
  std::string ep_fp8_dispatch;  // "" (auto) | on | off
};

// The telemetry interval: N as given, else the run's eval_every, else 10.
int64_t telemetry_interval(const TrainArgs& a, const train::RunConfig& rc) {
  if (!a.telemetry_given) return 0;
  if (a.telemetry_every.empty()) return rc.hyper.run.eval_every > 0 ? rc.hyper.run.eval_every : 10;
  int64_t n = 0;
  size_t used = 0;
  try {
    n = std::stoll(a.telemetry_every, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  TS_CHECK(used == a.telemetry_every.size() && n > 0, "--numerics-telemetry takes an optional positive step "
           "interval, got '" << a.telemetry_every << "'", "write --numerics-telemetry=N or --numerics-telemetry N");
  return n;
}

volatile std::sig_atomic_t g_stop = 0;

// First SIGINT/SIGTERM: finish the step, save, exit cleanly. A second one kills at once
// (the checkpoint on disk is always complete: saves are atomic).
extern "C" void on_stop_signal(int sig) {
  if (g_stop) {
    std::signal(sig, SIG_DFL);
    std::raise(sig);
  }
  g_stop = 1;
}

bool is_data_dir(const std::string& p) { return fs::is_directory(p) && fs::exists(fs::path(p) / "data.json"); }

void check_writable_dir(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  TS_CHECK(!ec && fs::is_directory(dir), "cannot create the output directory " << dir << ": "
           << (ec ? ec.message() : "a file of that name exists"), "choose another --out");
  TS_CHECK(::access(dir.c_str(), W_OK | X_OK) == 0, "the output directory " << dir << " is not writable",
           "choose another --out or fix the permissions");
}

// The data directory to train on: a prepared one as is, raw text prepared into RUN/data.
std::string resolve_data(const TrainArgs& a, const std::string& run_dir, const train::RunConfig& rc,
                         const std::string& resumed_data_dir) {
  if (a.data.empty()) {
    TS_CHECK(!resumed_data_dir.empty(), "no training data given", "pass --data DATA_DIR (from `tinyseek prepare`) "
             "or --data with text files/directories");
    TS_CHECK(is_data_dir(resumed_data_dir), "the run's data directory " << resumed_data_dir << " is gone",
             "pass --data with the same data again");
    return resumed_data_dir;
  }
  for (const std::string& p : a.data)
    TS_CHECK(fs::exists(p), "--data path " << p << " does not exist", "check the path");
  if (a.data.size() == 1 && is_data_dir(a.data[0])) return a.data[0];
  const std::string out = (fs::path(run_dir) / "data").string();
  // A resumed run keeps the data its tokenizer was trained on.
  if (!a.resume.empty() && is_data_dir(out)) return out;
  // Under mpirun rank 0 prepares the data; the others wait for it, then read it.
  const dist::Comm& comm = dist::world();
  if (!comm.is_root()) {
    comm.barrier();
    TS_CHECK(is_data_dir(out), "rank 0 did not prepare " << out, "see rank 0's error");
    return out;
  }
  std::printf("preparing %zu text input(s): tokenizer (vocab %lld) + shards -> %s\n", a.data.size(),
              static_cast<long long>(rc.model.vocab_size), out.c_str());
  std::fflush(stdout);
  data::prepare_from_text(a.data, out, static_cast<int32_t>(rc.model.vocab_size), 0.05, !a.quiet);
  comm.barrier();
  return out;
}

int run_train(const TrainArgs& a, const std::vector<std::string>& overrides) {
  TS_CHECK(!a.config.empty() || !a.resume.empty(), "no config given", "pass --config configs/small.json (or --resume RUN)");
  // The config: the given file, else the resumed run's own.
  nlohmann::json j;
  std::string source;
  train::TrainerState resumed;
  if (!a.resume.empty()) {
    const std::string dir = io::resolve_checkpoint_dir(a.resume);
    resumed = train::read_trainer_state(dir + "/trainer_state.json");
    if (a.config.empty()) {
      j = io::read_json_file(dir + "/config.json", "checkpoint config");
      source = dir + "/config.json";
    }
  }
  if (!a.config.empty()) {
    j = train::read_config_file(a.config);
    source = a.config;
  }
  // --recipe sets every field: the config's (or resumed checkpoint's) section is replaced;
  // precision.<field>=<value> overrides then apply on top.
  if (!a.recipe.empty()) j["precision"] = nlohmann::json{{"recipe", a.recipe}};
  // --steps N: train until global step N; a fresh run without training.steps plans N steps.
  std::vector<std::string> all_overrides = overrides;
  train::RunConfig rc = train::parse_run_config(j, all_overrides, source);
  const int64_t telemetry_every = telemetry_interval(a, rc);
  int64_t until = a.steps >= 0 ? a.steps : rc.hyper.run.steps;
  TS_CHECK(until > 0, "no step count: pass --steps N or set training.steps", "e.g. --steps 200");
  if (rc.hyper.run.steps == train::TrainHyper::kUnset) {
    all_overrides.push_back("steps=" + std::to_string(until));
    rc = train::parse_run_config(j, all_overrides, source);
  }

  const std::string run_dir =
      !a.out.empty() ? a.out
                     : !a.resume.empty() ? a.resume
                                         : (fs::path("runs") / fs::path(a.config).stem()).string();
  check_writable_dir(run_dir);
  TS_CHECK(!a.resume.empty() || !io::has_checkpoint(run_dir), run_dir << " already holds a checkpoint",
           "continue it with --resume " << run_dir << ", or pick another --out");

  train::TrainData data = train::load_train_data(resolve_data(a, run_dir, rc, resumed.data_dir));
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
  train::TrainerOptions opt;
  opt.run_dir = run_dir;
  opt.print = !a.quiet;
  opt.stop_flag = &g_stop;
  opt.telemetry_every = telemetry_every;
  opt.allow_precision_change = a.allow_precision_change;
  opt.expert_parallel = a.expert_parallel;
  if (!a.ep_fp8_dispatch.empty()) {
    TS_CHECK(a.ep_fp8_dispatch == "on" || a.ep_fp8_dispatch == "off", "--ep-fp8-dispatch takes on or off, got '"
             << a.ep_fp8_dispatch << "'", "write --ep-fp8-dispatch off (default: on under the fp8 recipe)");
    TS_CHECK(a.expert_parallel > 1, "--ep-fp8-dispatch without --expert-parallel",
             "add --expert-parallel N (N = the mpirun -np), or drop --ep-fp8-dispatch");
    opt.ep_fp8_dispatch = a.ep_fp8_dispatch == "on";
  }
  train::Trainer trainer(rc.model, rc.hyper, std::move(data), opt);
  const bool root = dist::world().is_root();  // only rank 0 prints
  if (a.resume.empty()) {
    trainer.init_fresh();
  } else {
    trainer.resume(a.resume);
    if (!a.quiet && root) std::printf("resumed %s at step %lld\n", a.resume.c_str(), static_cast<long long>(trainer.step()));
  }
  if (trainer.step() >= until) {
    if (root) std::printf("already at step %lld (>= --steps %lld): nothing to do\n", static_cast<long long>(trainer.step()),
                static_cast<long long>(until));
    return 0;
  }
  const train::Trainer::Stop stop = trainer.run(until);
  if (!root) return 0;
  std::printf("%s at step %lld: checkpoint %s, metrics %s/metrics.jsonl, loss plot %s/loss.svg\n",
              stop == train::Trainer::Stop::kSignal ? "interrupted" : "done", static_cast<long long>(trainer.step()),
              run_dir.c_str(), run_dir.c_str(), run_dir.c_str());
  if (stop == train::Trainer::Stop::kSignal)
    std::printf("continue with: tinyseek train --resume %s --steps %lld\n", run_dir.c_str(),
                static_cast<long long>(until));
  return 0;
}

}  // namespace

void add_train(CLI::App& app) {
  auto args = std::make_shared<TrainArgs>();
  CLI::App* c = app.add_subcommand("train", "train a model; writes checkpoints, metrics.jsonl and loss.svg");
  c->add_option("--config", args->config, "config.json (HF DeepSeek-V3 keys + training), e.g. configs/small.json");
  c->add_option("--data", args->data,
                "a data directory from `tinyseek prepare`, or text files/directories (a tokenizer is trained and "
                "shards are written to RUN/data)");
  c->add_option("--out", args->out, "run directory (default runs/<config name>, or the --resume directory)");
  c->add_option("--steps", args->steps, "train until global step N (training.steps plans the schedule)");
  c->add_option("--resume", args->resume, "continue the run in this directory bit-identically");
  c->add_option("--recipe", args->recipe, "precision recipe: fp32 | bf16 | fp8 (= precision.recipe=...)");
  c->add_flag("--quiet", args->quiet, "no start-up summary or progress lines");
  CLI::Option* tel = c->add_option("--numerics-telemetry", args->telemetry_every,
                                   "every N steps (default: eval_every) measure every quantized GEMM against its "
                                   "FP32 shadow for one step: metrics.jsonl \"numerics\" + an end-of-run table")
                         ->expected(0, 1)
                         ->type_name("[N]");
  c->add_flag("--allow-precision-change", args->allow_precision_change,
              "with --resume: continue under a precision map other than the checkpoint's (moments converted, "
              "amax histories restarted); without it such a resume is refused");
  // Launch-shape options like -np itself: not saved in the checkpoint, so a run resumes
  // on any rank count with or without expert parallelism.
  c->add_option("--expert-parallel", args->expert_parallel,
                "under mpirun -np N: partition the routed experts over the N ranks (N must equal -np and divide "
                "n_routed_experts; 1 = off): tokens go to their experts' owners by all-to-all");
  c->add_option("--ep-fp8-dispatch", args->ep_fp8_dispatch,
                "on | off: send the experts' inputs as FP8 E4M3 with 1x128 tile scales (default: on under the fp8 "
                "recipe, off otherwise)");
  c->allow_extras();
  c->footer("Extra arguments key=value override config keys: lr=1e-3 steps=500 batch_size=16 "
            "precision.recipe=bf16 hidden_size=128 (see src/tinyseek/train/hyper.h).");
  c->callback([args, c, tel] {
    args->telemetry_given = tel->count() > 0;
    std::vector<std::string> overrides = c->remaining();
    // `--data D lr=1e-3`: the multi-value --data swallowed overrides; give them back.
    std::erase_if(args->data, [&](const std::string& d) {
      const bool is_override = d.find('=') != std::string::npos && !fs::exists(d);
      if (is_override) overrides.push_back(d);
      return is_override;
    });
    // `--numerics-telemetry lr=1e-3`: the optional value swallowed an override; give it back.
    if (args->telemetry_every.find('=') != std::string::npos) {
      overrides.push_back(args->telemetry_every);
      args->telemetry_every.clear();
    }
    const int rc = run_train(*args, overrides);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace tinyseek::cli
