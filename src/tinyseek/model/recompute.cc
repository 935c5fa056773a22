#include "tinyseek/model/recompute.h"

#include "tinyseek/base/check.h"

namespace tinyseek::model {

const char* to_string(Recompute r) {
  switch (r) {
    case Recompute::kNone: return "none";
    case Recompute::kSelective: return "selective";
    case Recompute::kFull: return "full";
  }
  return "?";
}

Recompute parse_recompute(const std::string& s) {
  if (s == "none") return Recompute::kNone;
  if (s == "selective") return Recompute::kSelective;
  if (s == "full") return Recompute::kFull;
  TS_CHECK(false, "unknown recompute policy '" << s << "'", "use one of: none, selective, full");
  return Recompute::kNone;
}

}  // namespace tinyseek::model
