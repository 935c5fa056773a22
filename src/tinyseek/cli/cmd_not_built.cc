#include "tinyseek/cli/commands.h"

namespace tinyseek::cli {

namespace {
void stub(CLI::App& parent, const char* name, const char* desc, const char* issue) {
  CLI::App* c = parent.add_subcommand(name, std::string(desc) + " [not built yet]");
  c->allow_extras();
  c->callback([name, issue] { throw NotBuilt{name, issue}; });
}
}  // namespace

void add_not_built(CLI::App& app) {
  CLI::App* tok = app.add_subcommand("tokenizer", "byte-level BPE tokenizer: `tokenizer train` [not built yet]");
  tok->allow_extras();
  tok->callback([] { throw NotBuilt{"tokenizer", "#5"}; });
  stub(app, "prepare", "tokenize text into training shards", "#5");
  stub(app, "train", "train a model (fp32 | bf16 | fp8 recipe, MTP)", "#5 and #6");
  stub(app, "eval", "validation loss, perplexity, bits per byte of a checkpoint", "#5");
  stub(app, "generate", "generate text (MLA latent KV cache, MTP speculative decoding)", "#7");
  stub(app, "export", "export a Hugging Face DeepSeek-V3 directory (BF16 or block-FP8)", "#7");
}

}  // namespace tinyseek::cli
