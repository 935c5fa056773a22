#include "tinyseek/train/recipes.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "tinyseek/base/check.h"

namespace tinyseek::train {
using nlohmann::json;

std::vector<RecipeSpec> parse_recipe_list(const std::string& list) {
  std::vector<RecipeSpec> out;
  std::set<std::string> seen;
  std::stringstream ss(list);
  std::string names;
  for (const std::string& n : model::precision_recipe_names()) names += (names.empty() ? "" : ", ") + n;
  for (std::string text; std::getline(ss, text, ',');) {
    TS_CHECK(!text.empty(), "--recipes '" << list << "' has an empty entry",
             "separate recipes by single commas, e.g. --recipes bf16,fp8,fp32");
    TS_CHECK(seen.insert(text).second, "--recipes lists '" << text << "' twice",
             "list each recipe once (their rows would be indistinguishable)");
    RecipeSpec spec;
    spec.text = text;
    try {
      spec.map = model::precision_from_spec(text);
    } catch (const Error& e) {
      TS_FAIL("--recipes entry '" << text << "': " << e.message(),
              "an entry is <recipe>[:precision.<field>=<value>]..., recipes: " << names
              << " (e.g. fp8:precision.scale_type=pow2)");
    }
    out.push_back(std::move(spec));
  }
  TS_CHECK(!out.empty(), "--recipes is empty", "e.g. --recipes bf16,fp8,fp32");
  return out;
}

std::string recipe_slug(size_t index, const std::string& text) {
  std::string s = std::to_string(index) + "-";
  for (char c : text) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == '=' || c == '-';
    s += ok ? c : '_';
  }
  return s;
}

json recipe_config(const json& config, const RecipeSpec& spec) {
  json j = config;
  j["precision"] = model::precision_to_json(spec.map);
  return j;
}

namespace {

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

RecipeRow recipe_row_from_metrics(const std::string& recipe, const std::string& run_dir) {
  const std::string path = (std::filesystem::path(run_dir) / "metrics.jsonl").string();
  std::ifstream in(path);
  TS_CHECK(in.good(), "recipe " << recipe << ": no " << path, "the recipe's training run failed; see its train.log");
  RecipeRow row;
  row.recipe = recipe;
  row.run_dir = run_dir;
  std::vector<double> tps;
  std::optional<json> last_eval;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    const json j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) continue;
    const int64_t step = j.value("step", int64_t{0});
    if (j.contains("loss_main") && j["loss_main"].is_number() && !j.value("skipped", false)) {
      row.train_curve.push_back({step, j["loss_main"].get<double>()});
      if (j.contains("tokens_per_s") && j["tokens_per_s"].is_number()) tps.push_back(j["tokens_per_s"].get<double>());
      row.steps = std::max(row.steps, step);
    }
    if (j.contains("val_loss") && j["val_loss"].is_number()) {
      row.val_curve.push_back({step, j["val_loss"].get<double>()});
      last_eval = j;
    }
  }
  TS_CHECK(!row.train_curve.empty() && last_eval, "recipe " << recipe << ": " << path
           << " has no finished training (no train or validation line)", "see the recipe's train.log");
  const size_t n = row.train_curve.size();
  const size_t k = std::max<size_t>(1, n / 10);
  double sum = 0;
  for (size_t i = n - k; i < n; ++i) sum += row.train_curve[i].value;
  row.train_loss = sum / static_cast<double>(k);
  row.train_loss_steps = static_cast<int64_t>(k);
  row.val_loss = (*last_eval)["val_loss"].get<double>();
  row.val_bits_per_byte = last_eval->value("val_bits_per_byte", 0.0);
  row.tokens_per_s = median(tps);
  return row;
}

bool fill_rel_gaps(std::vector<RecipeRow>& rows) {
  const auto ref = std::find_if(rows.begin(), rows.end(), [](const RecipeRow& r) { return r.recipe == "bf16"; });
  for (RecipeRow& r : rows) r.rel_gap_vs_bf16.reset();
  if (ref == rows.end()) return false;
  const double base = ref->val_loss;
  for (RecipeRow& r : rows) r.rel_gap_vs_bf16 = (r.val_loss - base) / base;
  return true;
}

json recipes_json(const std::vector<RecipeRow>& rows, const std::string& config, const std::string& data,
                  int64_t steps, const std::string& plot) {
  json arr = json::array();
  bool has_ref = false;
  for (const RecipeRow& r : rows) {
    has_ref = has_ref || r.recipe == "bf16";
    arr.push_back({{"recipe", r.recipe},
                   {"train_loss", r.train_loss},
                   {"val_loss", r.val_loss},
                   {"rel_gap_vs_bf16", r.rel_gap_vs_bf16 ? json(*r.rel_gap_vs_bf16) : json(nullptr)},
                   {"tokens_per_s", r.tokens_per_s},
                   {"peak_rss_mb", r.peak_rss_mb},
                   {"train_loss_steps", r.train_loss_steps},
                   {"val_bits_per_byte", r.val_bits_per_byte},
                   {"steps", r.steps},
                   {"wall_s", r.wall_s},
                   {"run_dir", r.run_dir}});
  }
  return {{"config", config}, {"data", data},   {"steps", steps}, {"reference", has_ref ? json("bf16") : json(nullptr)},
          {"plot", plot},     {"rows", arr}};
}

std::string recipes_table(const std::vector<RecipeRow>& rows) {
  size_t w = 6;
  for (const RecipeRow& r : rows) w = std::max(w, r.recipe.size());
  const int iw = static_cast<int>(w);
  std::string s;
  char buf[512];
  std::snprintf(buf, sizeof buf, "%-*s  %10s  %9s  %12s  %9s  %12s\n", iw, "recipe", "train loss", "val loss",
                "gap vs bf16", "tokens/s", "peak RSS MiB");
  s += buf;
  bool has_ref = false;
  for (const RecipeRow& r : rows) {
    has_ref = has_ref || r.rel_gap_vs_bf16.has_value();
    char gap[32] = "-";
    if (r.rel_gap_vs_bf16) std::snprintf(gap, sizeof gap, "%+.3f%%", 100 * *r.rel_gap_vs_bf16);
    std::snprintf(buf, sizeof buf, "%-*s  %10.4f  %9.4f  %12s  %9.0f  %12.1f\n", iw, r.recipe.c_str(), r.train_loss,
                  r.val_loss, gap, r.tokens_per_s, r.peak_rss_mb);
    s += buf;
  }
  if (!has_ref)
    s += "gap vs bf16: not computed, the list has no plain `bf16` recipe (add it to --recipes to compare)\n";
  else
    s += "gap vs bf16 = (val loss - val loss of bf16) / val loss of bf16; train loss: mean of the last 10% of steps\n";
  return s;
}

}  // namespace tinyseek::train
