// tinyseek numerics recipes: train a list of precision recipes with the same config, seed
// and data, each in its own process (so its peak RSS is its own), and compare them
// (train/recipes.h: syntax, row definitions). Writes OUT/recipes.json, OUT/loss.svg (the
// loss curves overlaid) and one run directory per recipe (OUT/<index>-<slug>/, with the
// child's output in train.log).
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tinyseek/base/check.h"
#include "tinyseek/cli/commands.h"
#include "tinyseek/io/checkpoint.h"
#include "tinyseek/train/recipes.h"
#include "tinyseek/train/run_config.h"

namespace tinyseek::cli {
namespace {
namespace fs = std::filesystem;

struct RecipesArgs {
  std::string config, out, recipes = "bf16,fp8,fp32";
  std::vector<std::string> data;
  int64_t steps = 0;
  bool json = false, force = false;
};

// This binary, to re-execute as `tinyseek train` / `tinyseek prepare`.
std::string self_exe() {
  std::vector<char> buf(4096);
  const ssize_t n = ::readlink("/proc/self/exe", buf.data(), buf.size() - 1);
  TS_CHECK(n > 0, "cannot find the tinyseek binary (/proc/self/exe): " << std::strerror(errno),
           "run on Linux with /proc mounted");
  return std::string(buf.data(), static_cast<size_t>(n));
}

struct ChildResult {
  int exit_code = -1;       // -1: killed by a signal
  double peak_rss_mb = 0;   // ru_maxrss of the child
  double wall_s = 0;
};

// Runs `exe args...` with stdout and stderr into log_path and waits for it. wait4 gives
// this child's own rusage: ru_maxrss is its peak resident set (KiB on Linux; it includes
// the pages it shared with this small parent at fork, a few MiB).
ChildResult run_child(const std::string& exe, const std::vector<std::string>& args, const std::string& log_path) {
  std::vector<std::string> words = {exe};
  words.insert(words.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& w : words) argv.push_back(w.data());
  argv.push_back(nullptr);
  const int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  TS_CHECK(log >= 0, "cannot write " << log_path << ": " << std::strerror(errno), "check the --out directory");
  std::fflush(nullptr);
  const auto t0 = std::chrono::steady_clock::now();
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int null = ::open("/dev/null", O_RDONLY);
    if (null >= 0) ::dup2(null, 0);
    ::dup2(log, 1);
    ::dup2(log, 2);
    ::execv(exe.c_str(), argv.data());
    std::fprintf(stderr, "cannot execute %s: %s\n", exe.c_str(), std::strerror(errno));
    ::_exit(127);
  }
  ::close(log);
  TS_CHECK(pid > 0, "cannot start a process: " << std::strerror(errno), "check the process limits (ulimit -u)");
  int status = 0;
  struct rusage ru {};
  pid_t r;
  do r = ::wait4(pid, &status, 0, &ru);
  while (r < 0 && errno == EINTR);
  TS_CHECK(r == pid, "waiting for process " << pid << " failed: " << std::strerror(errno), "this is a bug");
  ChildResult c;
  c.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  c.peak_rss_mb = static_cast<double>(ru.ru_maxrss) / 1024.0;
  c.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return c;
}

// The last `n` lines of a log, for error messages.
std::string tail(const std::string& path, size_t n) {
  std::string text;
  try {
    text = io::read_text_file(path, "log");
  } catch (const Error&) {
    return "(no log)";
  }
  size_t pos = text.size();
  for (size_t k = 0; k <= n && pos > 0; ++k) pos = text.rfind('\n', pos - 1);
  return text.substr(pos == std::string::npos ? 0 : pos + 1);
}

bool is_data_dir(const std::string& p) { return fs::is_directory(p) && fs::exists(fs::path(p) / "data.json"); }

void remove_own_dir(const fs::path& p, bool force) {
  if (!fs::exists(p)) return;
  TS_CHECK(force, p.string() << " exists (from an earlier comparison?)",
           "pass --force to replace the recipe runs in --out, or choose another --out");
  fs::remove_all(p);
}

int run_recipes(const RecipesArgs& a, const std::vector<std::string>& overrides) {
  TS_CHECK(a.steps > 0, "--steps must be positive, got " << a.steps, "e.g. --steps 200");
  for (const std::string& o : overrides)
    TS_CHECK(o.find('=') != std::string::npos, "unexpected argument '" << o << "'",
             "extra arguments are key=value overrides applied to every recipe (e.g. eval_every=50); "
             "per-recipe precision overrides go in --recipes, e.g. fp8:precision.scale_type=pow2");
  const std::vector<train::RecipeSpec> specs = train::parse_recipe_list(a.recipes);
  const nlohmann::json config = train::read_config_file(a.config);
  // Validates the shared overrides now rather than in the first child.
  std::vector<std::string> all = overrides;
  all.push_back("steps=" + std::to_string(a.steps));
  const train::RunConfig rc = train::parse_run_config(config, all, a.config);

  const fs::path out = a.out.empty() ? fs::path("runs") / ("recipes-" + fs::path(a.config).stem().string()) : fs::path(a.out);
  std::error_code ec;
  fs::create_directories(out, ec);
  TS_CHECK(!ec && fs::is_directory(out), "cannot create " << out.string() << (ec ? ": " + ec.message() : ""),
           "choose another --out");
  std::vector<fs::path> run_dirs;
  for (size_t i = 0; i < specs.size(); ++i) {
    run_dirs.push_back(fs::absolute(out / train::recipe_slug(i, specs[i].text)));
    remove_own_dir(run_dirs.back(), a.force);
  }
  std::FILE* progress = a.json ? stderr : stdout;
  const std::string exe = self_exe();

  // One data directory for every recipe: text is prepared once, in a child process too, so
  // the tokenizer's training does not raise the parent's (and so every child's) RSS.
  std::string data;
  TS_CHECK(!a.data.empty(), "no data given", "pass --data DATA_DIR (from `tinyseek prepare`) or text files");
  for (const std::string& p : a.data) TS_CHECK(fs::exists(p), "--data path " << p << " does not exist", "check the path");
  if (a.data.size() == 1 && is_data_dir(a.data[0])) {
    data = fs::absolute(a.data[0]).string();
  } else {
    data = fs::absolute(out / "data").string();
    if (fs::exists(data)) fs::remove_all(data);  // our own output of an earlier run
    std::vector<std::string> args = {"prepare", "--vocab-size", std::to_string(rc.model.vocab_size), "--val-fraction",
                                     "0.05", "--out", data, "--quiet", "--input"};
    args.insert(args.end(), a.data.begin(), a.data.end());
    std::fprintf(progress, "preparing the text once for every recipe -> %s\n", data.c_str());
    const std::string log = (out / "prepare.log").string();
    const ChildResult c = run_child(exe, args, log);
    TS_CHECK(c.exit_code == 0, "preparing the data failed (exit " << c.exit_code << "), " << log << " ends with:\n"
             << tail(log, 5), "fix the --data inputs");
  }

  std::vector<train::RecipeRow> rows;
  for (size_t i = 0; i < specs.size(); ++i) {
    const train::RecipeSpec& spec = specs[i];
    const fs::path& run_dir = run_dirs[i];
    const std::string cfg_path = fs::absolute(out / (run_dir.filename().string() + ".config.json")).string();
    io::write_file_synced(cfg_path, train::recipe_config(config, spec).dump(2) + "\n");
    fs::create_directories(run_dir);
    const std::string log = (run_dir / "train.log").string();
    std::vector<std::string> args = {"train", "--config", cfg_path, "--data", data, "--out", run_dir.string(),
                                     "--steps", std::to_string(a.steps), "steps=" + std::to_string(a.steps)};
    args.insert(args.end(), overrides.begin(), overrides.end());
    std::fprintf(progress, "[%zu/%zu] %s: %lld steps -> %s\n", i + 1, specs.size(), spec.text.c_str(),
                 static_cast<long long>(a.steps), run_dir.c_str());
    std::fflush(progress);
    const ChildResult c = run_child(exe, args, log);
    TS_CHECK(c.exit_code == 0, "recipe " << spec.text << ": training failed (exit " << c.exit_code << "), " << log
             << " ends with:\n" << tail(log, 8), "fix the recipe or the config; the other recipes were not run");
    train::RecipeRow row = train::recipe_row_from_metrics(spec.text, run_dir.string());
    TS_CHECK(row.steps == a.steps, "recipe " << spec.text << " stopped at step " << row.steps << " of " << a.steps,
             "it was interrupted; run the comparison again");
    row.peak_rss_mb = c.peak_rss_mb;
    row.wall_s = c.wall_s;
    std::fprintf(progress, "      done in %.1f s: train loss %.4f, val loss %.4f, %.0f tokens/s, peak RSS %.1f MiB\n",
                 c.wall_s, row.train_loss, row.val_loss, row.tokens_per_s, row.peak_rss_mb);
    std::fflush(progress);
    rows.push_back(std::move(row));
  }
  train::fill_rel_gaps(rows);

  const std::string plot = fs::absolute(out / "loss.svg").string();
  std::vector<train::LossSeries> series;
  for (const train::RecipeRow& r : rows) series.push_back({r.recipe, r.train_curve, r.val_curve});
  train::write_loss_overlay(plot, series,
                            "tinyseek recipes: " + fs::path(a.config).stem().string() + ", " + std::to_string(a.steps) +
                                " steps");
  const nlohmann::json j = train::recipes_json(rows, a.config, data, a.steps, plot);
  const std::string json_path = fs::absolute(out / "recipes.json").string();
  io::write_file_synced(json_path, j.dump(2) + "\n");
  if (a.json) {
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("\n%s", train::recipes_table(rows).c_str());
    std::printf("loss curves: %s\nJSON: %s\n", plot.c_str(), json_path.c_str());
  }
  return 0;
}

}  // namespace

void add_numerics_recipes(CLI::App& numerics) {
  auto args = std::make_shared<RecipesArgs>();
  CLI::App* c = numerics.add_subcommand(
      "recipes", "train several precision recipes with the same seed and data (one process each) and compare them");
  c->add_option("--config", args->config, "config.json, e.g. configs/small.json")->required();
  c->add_option("--data", args->data, "a data directory from `tinyseek prepare`, or text files/directories "
                "(prepared once into OUT/data)")->required();
  c->add_option("--steps", args->steps, "training steps per recipe (the schedule is planned over them)")->required();
  c->add_option("--recipes", args->recipes,
                "comma-separated <recipe>[:precision.<field>=<value>]..., e.g. "
                "bf16,fp8,fp32,fp8:precision.scale_type=pow2")
      ->capture_default_str();
  c->add_option("--out", args->out, "output directory (default runs/recipes-<config name>)");
  c->add_flag("--json", args->json, "print the result as JSON on stdout (progress goes to stderr)");
  c->add_flag("--force", args->force, "replace recipe run directories left in --out by an earlier comparison");
  c->allow_extras();
  c->footer("Extra key=value arguments override config keys for every recipe (e.g. eval_every=50 eval_batches=0).\n"
            "Relative gaps are against the plain `bf16` entry; see docs/numerics.md.");
  c->callback([args, c] {
    std::vector<std::string> overrides = c->remaining();
    // `--data D eval_batches=2`: the multi-value --data swallowed overrides; give them back.
    std::erase_if(args->data, [&](const std::string& d) {
      const bool is_override = d.find('=') != std::string::npos && !fs::exists(d);
      if (is_override) overrides.push_back(d);
      return is_override;
    });
    const int rc = run_recipes(*args, overrides);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace tinyseek::cli
