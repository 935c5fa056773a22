#include "tinyseek/base/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace tinyseek {

std::string format_duration(double s) {
  if (!(s >= 0) || !std::isfinite(s)) return "?";
  char buf[32];
  const long t = static_cast<long>(std::lround(s));
  if (t < 60) std::snprintf(buf, sizeof buf, "%lds", t);
  else if (t < 3600) std::snprintf(buf, sizeof buf, "%ldm%02lds", t / 60, t % 60);
  else std::snprintf(buf, sizeof buf, "%ldh%02ldm", t / 3600, (t % 3600) / 60);
  return buf;
}

Progress::Progress(std::string label, int64_t total, bool enabled, double log_every_s)
    : label_(std::move(label)), total_(total), enabled_(enabled),
      tty_(isatty(STDERR_FILENO) != 0), log_every_s_(log_every_s) {}

Progress::~Progress() {
  if (enabled_ && !finished_ && tty_) std::fputc('\n', stderr);
}

std::string Progress::render(int64_t done, double elapsed, const std::string& extra) const {
  std::string line = label_;
  char buf[160];
  if (total_ > 0) {
    // Clamped: a caller overshooting (or passing a negative count) must not size the bar
    // with a negative fill (std::string would throw).
    const double frac = std::clamp(static_cast<double>(done) / static_cast<double>(total_), 0.0, 1.0);
    const int width = 24, fill = static_cast<int>(frac * width);
    line += " [" + std::string(fill, '#') + std::string(width - fill, '.') + "]";
    const double rate = elapsed > 0 ? done / elapsed : 0.0;
    const double eta = (rate > 0) ? (total_ - done) / rate : -1.0;
    std::snprintf(buf, sizeof buf, " %lld/%lld %3.0f%% %.3g it/s ETA %s", static_cast<long long>(done),
                  static_cast<long long>(total_), 100.0 * frac, rate, format_duration(eta).c_str());
  } else {
    std::snprintf(buf, sizeof buf, " %lld done, %s elapsed", static_cast<long long>(done),
                  format_duration(elapsed).c_str());
  }
  line += buf;
  if (!extra.empty()) line += " | " + extra;
  return line;
}

void Progress::update(int64_t done, const std::string& extra) {
  if (!enabled_) return;
  const double now = timer_.seconds();
  const double gap = tty_ ? 0.1 : log_every_s_;
  if (now - last_draw_ < gap) return;
  last_draw_ = now;
  const std::string line = render(done, now, extra);
  if (tty_) std::fprintf(stderr, "\r%s\033[K", line.c_str());
  else std::fprintf(stderr, "%s\n", line.c_str());
  std::fflush(stderr);
}

void Progress::finish(const std::string& extra) {
  if (!enabled_ || finished_) return;
  finished_ = true;
  const std::string line = render(total_ > 0 ? total_ : 0, timer_.seconds(), extra);
  if (tty_) std::fprintf(stderr, "\r%s\033[K\n", line.c_str());
  else std::fprintf(stderr, "%s\n", line.c_str());
}

}  // namespace tinyseek
