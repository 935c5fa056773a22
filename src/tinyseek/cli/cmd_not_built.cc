#include "tinyseek/cli/commands.h"

namespace tinyseek::cli {

namespace {
[[maybe_unused]] void stub(CLI::App& parent, const char* name, const char* desc, const char* issue) {
  CLI::App* c = parent.add_subcommand(name, std::string(desc) + " [not built yet]");
  c->allow_extras();
  c->callback([name, issue] { throw NotBuilt{name, issue}; });
}
}  // namespace

void add_not_built(CLI::App& app) {
}

}  // namespace tinyseek::cli
