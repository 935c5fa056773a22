#include "tinyseek/base/check.h"

namespace tinyseek {

std::string format_error(const std::string& what, const std::string& hint, const char* file,
                         int line) {
  std::string s = "error: " + what;
  if (!hint.empty()) s += "\n  hint: " + hint;
  s += "\n  at " + std::string(file) + ":" + std::to_string(line);
  return s;
}

Error::Error(std::string what, std::string hint, const char* file, int line)
    : std::runtime_error(format_error(what, hint, file, line)),
      message_(std::move(what)),
      hint_(std::move(hint)),
      file_(file),
      line_(line) {}

}  // namespace tinyseek
