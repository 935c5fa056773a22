// A one-line progress display for long work: "label [#####.....] 512/1024 50% 3.1 it/s ETA 2m45s".
// On a terminal the line is redrawn in place (at most ~10 times a second); when stderr is
// not a terminal (logs, CI) it prints a plain line at most every `log_every_s` seconds.
#pragma once
#include <cstdint>
#include <string>

#include "tinyseek/base/timer.h"

namespace tinyseek {

std::string format_duration(double seconds);  // "45s", "3m07s", "2h05m"

class Progress {
 public:
  Progress(std::string label, int64_t total, bool enabled = true, double log_every_s = 10.0);
  ~Progress();
  void update(int64_t done, const std::string& extra = "");
  void finish(const std::string& extra = "");
  // The text that would be drawn (exposed for tests).
  std::string render(int64_t done, double elapsed_s, const std::string& extra) const;

 private:
  std::string label_;
  int64_t total_;
  bool enabled_, tty_, finished_ = false;
  double log_every_s_, last_draw_ = -1e9;
  Timer timer_;
};

}  // namespace tinyseek
