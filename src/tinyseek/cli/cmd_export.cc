// tinyseek export: a Hugging Face DeepSeek-V3 directory (BF16, or the released block-FP8
// layout with --fp8) from a checkpoint; io/hf_export.h describes the files.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "tinyseek/cli/commands.h"
#include "tinyseek/io/hf_export.h"

namespace tinyseek::cli {
namespace {

struct ExportArgs {
  std::string checkpoint, out;
  io::ExportOptions opt;
};

void run_export(const ExportArgs& a) {
  const std::vector<std::string> files = io::export_hf(a.checkpoint, a.out, a.opt);
  std::printf("exported %s to %s (%s weights):", a.checkpoint.c_str(), a.out.c_str(),
              a.opt.fp8 ? "FP8 e4m3 128x128-block" : "BF16");
  for (const std::string& f : files) std::printf(" %s", f.c_str());
  std::printf("\nload it back with `tinyseek eval --checkpoint %s --data DATA`\n", a.out.c_str());
}

}  // namespace

void add_export(CLI::App& app) {
  auto args = std::make_shared<ExportArgs>();
  CLI::App* c = app.add_subcommand("export", "export a Hugging Face DeepSeek-V3 directory (BF16 or block-FP8)");
  c->add_option("--checkpoint", args->checkpoint, "run directory of `tinyseek train` (or an exported directory)")
      ->required();
  c->add_option("--out", args->out, "directory to write config.json, model.safetensors, tokenizer.json into")
      ->required();
  c->add_flag("--fp8", args->opt.fp8,
              "Linear weights as F8_E4M3 with float32 weight_scale_inv per 128x128 block (the released layout)");
  c->add_flag("--force", args->opt.force, "write into a non-empty --out directory");
  c->callback([args] { run_export(*args); });
}

}  // namespace tinyseek::cli
