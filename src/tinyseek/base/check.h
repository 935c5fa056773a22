// Error handling: every failure names where it happened and what the user can do.
//
//   TS_CHECK(k > 0, "--k must be positive, got " << k, "pass e.g. --k 4096");
//
// Failures throw tinyseek::Error (so tests can assert on them and the CLI can print
// them and exit non-zero); nothing in the library calls exit() or abort().
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace tinyseek {

class Error : public std::runtime_error {
 public:
  Error(std::string what, std::string hint, const char* file, int line);
  const std::string& message() const { return message_; }
  const std::string& hint() const { return hint_; }
  const char* file() const { return file_; }
  int line() const { return line_; }

 private:
  std::string message_, hint_;
  const char* file_;
  int line_;
};

// Formats "error: <what>\n  hint: <hint>\n  at <file>:<line>".
std::string format_error(const std::string& what, const std::string& hint, const char* file,
                         int line);

}  // namespace tinyseek

// Builds the message with stream syntax so call sites can interpolate values.
#define TS_FAIL(msg, hint)                                                            \
  do {                                                                                \
    std::ostringstream ts_msg_;                                                       \
    ts_msg_ << msg;                                                                   \
    std::ostringstream ts_hint_;                                                      \
    ts_hint_ << hint;                                                                 \
    throw ::tinyseek::Error(ts_msg_.str(), ts_hint_.str(), __FILE__, __LINE__);       \
  } while (0)

#define TS_CHECK(cond, msg, hint) \
  do {                            \
    if (!(cond)) TS_FAIL(msg, hint); \
  } while (0)

// Internal invariants: a failure here is a tinyseek bug, not a user error.
#define TS_ASSERT(cond)                                                                \
  TS_CHECK(cond, "internal check failed: " #cond,                                      \
           "this is a bug in tinyseek; please report it with the command you ran")
