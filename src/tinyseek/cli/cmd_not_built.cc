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
  stub(app, "generate", "generate text (MLA latent KV cache, MTP speculative decoding)", "#7");
  stub(app, "export", "export a Hugging Face DeepSeek-V3 directory (BF16 or block-FP8)", "#7");
}

}  // namespace tinyseek::cli
