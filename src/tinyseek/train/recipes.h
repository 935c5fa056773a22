// `tinyseek numerics recipes`: train several precision recipes with the same config, seed
// and data, one process each, and compare them (DESIGN.md §5, issue 6). This file holds the
// pieces that need no process: parsing the recipe list, each recipe's run config, the row
// of one finished run, the relative gaps, the table and the JSON. The processes themselves
// are started by cli/cmd_numerics_recipes.cc.
//
// Recipe list syntax (--recipes): comma-separated specs; a spec is a recipe name followed
// by optional precision overrides, each introduced by ':'
//     bf16,fp8,fp32,fp8:precision.scale_type=pow2:precision.granularity=row
// (model::precision_from_spec; the "precision." prefix may be omitted). Values never
// contain ',' or ':' (every precision value is a name or an integer). The spec text is the
// recipe's name in the table and the JSON, as given.
//
// Each recipe's run: the config file with its "precision" section replaced by the spec's
// resolved map (written to OUT/<index>-<slug>.config.json), training for exactly --steps
// steps with the schedule planned over those steps.
//
// Row of a finished run (from its metrics.jsonl and the child's rusage):
//   train_loss       mean main-head cross-entropy of the last max(1, steps/10) steps
//                    (train_loss_steps says how many; one step alone is noisy)
//   val_loss         the validation loss at the last step (the trainer evaluates at the end)
//   rel_gap_vs_bf16  (val_loss − val_loss[bf16]) / val_loss[bf16], signed; null when the list
//                    has no plain "bf16" spec (the first one is the reference)
//   tokens_per_s     median of the per-step tokens/s (robust to a noisy machine)
//   peak_rss_mb      the child's ru_maxrss in MiB (wait4)
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tinyseek/model/precision.h"
#include "tinyseek/train/metrics.h"

namespace tinyseek::train {

struct RecipeSpec {
  std::string text;          // as given, e.g. "fp8:precision.scale_type=pow2"
  model::PrecisionMap map;   // resolved and validated
};

// Parses and validates the whole list before anything runs; errors name the bad spec and
// list the recipes. Duplicates are rejected (their rows could not be told apart).
std::vector<RecipeSpec> parse_recipe_list(const std::string& list);

// A directory-safe name: "<index>-<text with every char outside [A-Za-z0-9._=-] as '_'>".
std::string recipe_slug(size_t index, const std::string& text);

// The run config of one recipe: `config` with "precision" replaced by the spec's map.
nlohmann::json recipe_config(const nlohmann::json& config, const RecipeSpec& spec);

struct RecipeRow {
  std::string recipe;
  double train_loss = 0, val_loss = 0, val_bits_per_byte = 0;
  int64_t train_loss_steps = 0, steps = 0;
  std::optional<double> rel_gap_vs_bf16;
  double tokens_per_s = 0;
  double peak_rss_mb = 0, wall_s = 0;
  std::string run_dir;
  std::vector<CurvePoint> train_curve, val_curve;  // for the overlay plot
};

// The row of a finished run from RUN/metrics.jsonl; throws if the run has no train or
// validation line (it failed or was interrupted).
RecipeRow recipe_row_from_metrics(const std::string& recipe, const std::string& run_dir);

// Sets rel_gap_vs_bf16 of every row against the first row named exactly "bf16"; returns
// false (gaps left empty) if there is none.
bool fill_rel_gaps(std::vector<RecipeRow>& rows);

// {"config", "data", "steps", "reference": "bf16" | null, "plot", "rows": [{"recipe",
//  "train_loss", "val_loss", "rel_gap_vs_bf16", "tokens_per_s", "peak_rss_mb",
//  "train_loss_steps", "val_bits_per_byte", "wall_s", "run_dir"}]}
nlohmann::json recipes_json(const std::vector<RecipeRow>& rows, const std::string& config, const std::string& data,
                            int64_t steps, const std::string& plot);
std::string recipes_table(const std::vector<RecipeRow>& rows);

}  // namespace tinyseek::train
