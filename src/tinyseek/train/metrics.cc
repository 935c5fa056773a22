#include "tinyseek/train/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "tinyseek/base/check.h"
#include "tinyseek/io/checkpoint.h"

namespace tinyseek::train {
namespace fs = std::filesystem;

MetricsLog::MetricsLog(const std::string& run_dir, int64_t resume_step)
    : path_((fs::path(run_dir) / "metrics.jsonl").string()) {
  std::string kept;
  if (resume_step >= 0 && fs::exists(path_)) {
    std::ifstream in(path_);
    std::string line;
    int64_t dropped = 0;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(line);
      } catch (const nlohmann::json::parse_error&) {
        ++dropped;  // a line cut by a kill
        continue;
      }
      if (!j.is_object() || !j.contains("step") || !j["step"].is_number_integer() ||
          j["step"].get<int64_t>() > resume_step) {
        ++dropped;
        continue;
      }
      remember(j);
      kept += line + "\n";
    }
    if (dropped > 0)
      std::fprintf(stderr, "metrics: dropped %lld line(s) of %s written after step %lld\n",
                   static_cast<long long>(dropped), path_.c_str(), static_cast<long long>(resume_step));
  }
  io::write_file_synced(path_, kept);
}

void MetricsLog::remember(const nlohmann::json& line) {
  const int64_t step = line.value("step", int64_t{0});
  if (line.contains("loss_main") && line["loss_main"].is_number() && !line.value("skipped", false))
    train_.push_back({step, line["loss_main"].get<double>()});
  if (line.contains("val_loss") && line["val_loss"].is_number()) val_.push_back({step, line["val_loss"].get<double>()});
}

void MetricsLog::append(const nlohmann::json& line) {
  remember(line);
  if (path_.empty()) return;
  std::FILE* f = std::fopen(path_.c_str(), "a");
  TS_CHECK(f != nullptr, "cannot append to " << path_, "check the run directory's permissions and free space");
  const std::string s = line.dump() + "\n";
  std::fwrite(s.data(), 1, s.size(), f);
  std::fclose(f);
}

namespace {

// 1, 2, 5 × 10^k tick spacing giving about `target` ticks over [lo, hi].
double nice_step(double lo, double hi, int target) {
  const double raw = (hi - lo) / std::max(1, target);
  if (!(raw > 0)) return 1;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (raw <= m * mag) return m * mag;
  return 10 * mag;
}

std::string xml_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '&': o += "&amp;"; break;
      case '"': o += "&quot;"; break;
      default: o += c;
    }
  }
  return o;
}

std::string fmt(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

}  // namespace

namespace {

// The plot area of a loss chart: bounds over every finite point, the step → x and
// loss → y maps, and the frame (title, grid, ticks, axis labels).
struct Chart {
  static constexpr double W = 760, H = 440, L = 64, R = 20, Tm = 40, Bm = 48;
  double x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  double legend_w = 190;  // widened for long labels (~7 px per character at 12 px)
  std::ostringstream o;

  explicit Chart(std::vector<CurvePoint> all) {
    std::erase_if(all, [](const CurvePoint& p) { return !std::isfinite(p.value); });
    if (!all.empty()) {
      x0 = x1 = static_cast<double>(all[0].step);
      y0 = y1 = all[0].value;
      for (const CurvePoint& p : all) {
        x0 = std::min(x0, double(p.step)), x1 = std::max(x1, double(p.step));
        y0 = std::min(y0, p.value), y1 = std::max(y1, p.value);
      }
    }
    if (x1 <= x0) x1 = x0 + 1;
    if (y1 <= y0) y1 = y0 + 1;
    const double pad = 0.05 * (y1 - y0);
    y0 -= pad, y1 += pad;
  }
  double X(double s) const { return L + (s - x0) / (x1 - x0) * (W - L - R); }
  double Y(double v) const { return Tm + (y1 - v) / (y1 - y0) * (H - Tm - Bm); }

  void frame(const std::string& title) {
    o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H << "\" viewBox=\"0 0 " << W
      << " " << H << "\" font-family=\"sans-serif\" font-size=\"12\">\n";
    o << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
    o << "<text x=\"" << W / 2 << "\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">" << xml_escape(title)
      << "</text>\n";
    const double ys = nice_step(y0, y1, 6);
    for (double v = std::ceil(y0 / ys) * ys; v <= y1; v += ys) {
      o << "<line x1=\"" << L << "\" x2=\"" << W - R << "\" y1=\"" << Y(v) << "\" y2=\"" << Y(v)
        << "\" stroke=\"#e4e4e4\"/>\n<text x=\"" << L - 6 << "\" y=\"" << Y(v) + 4 << "\" text-anchor=\"end\">"
        << fmt(v) << "</text>\n";
    }
    const double xs = std::max(1.0, nice_step(x0, x1, 8));
    for (double s = std::ceil(x0 / xs) * xs; s <= x1; s += xs) {
      o << "<line x1=\"" << X(s) << "\" x2=\"" << X(s) << "\" y1=\"" << Tm << "\" y2=\"" << H - Bm
        << "\" stroke=\"#f0f0f0\"/>\n<text x=\"" << X(s) << "\" y=\"" << H - Bm + 16 << "\" text-anchor=\"middle\">"
        << fmt(s) << "</text>\n";
    }
    o << "<rect x=\"" << L << "\" y=\"" << Tm << "\" width=\"" << W - L - R << "\" height=\"" << H - Tm - Bm
      << "\" fill=\"none\" stroke=\"#444\"/>\n";
    o << "<text x=\"" << (L + W - R) / 2 << "\" y=\"" << H - 10 << "\" text-anchor=\"middle\">step</text>\n";
    o << "<text x=\"16\" y=\"" << (Tm + H - Bm) / 2 << "\" text-anchor=\"middle\" transform=\"rotate(-90 16 "
      << (Tm + H - Bm) / 2 << ")\">cross-entropy (nats/token)</text>\n";
  }

  // dash: "" for a solid line, else an SVG stroke-dasharray.
  void polyline(const std::vector<CurvePoint>& pts, const std::string& color, double width, double opacity,
                const char* dash = "") {
    if (pts.empty()) return;
    o << "<polyline fill=\"none\" stroke=\"" << color << "\" stroke-width=\"" << width << "\" stroke-opacity=\""
      << opacity << "\"";
    if (*dash) o << " stroke-dasharray=\"" << dash << "\"";
    o << " points=\"";
    for (const CurvePoint& p : pts)
      if (std::isfinite(p.value)) o << X(double(p.step)) << "," << Y(p.value) << " ";
    o << "\"/>\n";
  }
  void dots(const std::vector<CurvePoint>& pts, const std::string& color) {
    for (const CurvePoint& p : pts)
      if (std::isfinite(p.value))
        o << "<circle cx=\"" << X(double(p.step)) << "\" cy=\"" << Y(p.value) << "\" r=\"3\" fill=\"" << color
          << "\"/>\n";
  }
  // Legend entry `row` (0 = top) in the upper right corner.
  void legend(int row, const std::string& color, const std::string& label, const char* dash = "") {
    const double lx = W - R - legend_w, ly = Tm + 14 + 18 * row;
    o << "<line x1=\"" << lx << "\" x2=\"" << lx + 24 << "\" y1=\"" << ly << "\" y2=\"" << ly << "\" stroke=\""
      << color << "\" stroke-width=\"2\"";
    if (*dash) o << " stroke-dasharray=\"" << dash << "\"";
    o << "/><text x=\"" << lx + 30 << "\" y=\"" << ly + 4 << "\">" << xml_escape(label) << "</text>\n";
  }
  std::string finish() {
    o << "</svg>\n";
    return o.str();
  }
};

// Moving average over a window of ~2% of the points (at least 1): the raw per-step loss
// is noisy with small batches.
std::vector<CurvePoint> moving_average(const std::vector<CurvePoint>& train) {
  std::vector<CurvePoint> smooth;
  const size_t win = std::max<size_t>(1, train.size() / 50);
  double acc = 0;
  for (size_t i = 0; i < train.size(); ++i) {
    acc += train[i].value;
    if (i >= win) acc -= train[i - win].value;
    smooth.push_back({train[i].step, acc / double(std::min(i + 1, win))});
  }
  return smooth;
}

}  // namespace

std::string loss_plot_svg(const std::vector<CurvePoint>& train, const std::vector<CurvePoint>& val,
                          const std::string& title) {
  std::vector<CurvePoint> all(train);
  all.insert(all.end(), val.begin(), val.end());
  Chart c(std::move(all));
  c.frame(title);
  c.polyline(train, "#1f77b4", 1, 0.35);
  c.polyline(moving_average(train), "#1f77b4", 2, 1);
  c.polyline(val, "#d62728", 2, 1);
  c.dots(val, "#d62728");
  c.legend(0, "#1f77b4", "train (main head)");
  c.legend(1, "#d62728", "validation");
  return c.finish();
}

const std::vector<std::string>& series_colors() {
  // Tableau 10: distinguishable, and readable by most colour-blind viewers for the first few.
  static const std::vector<std::string> k = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                             "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
  return k;
}

std::string loss_overlay_svg(const std::vector<LossSeries>& series, const std::string& title) {
  std::vector<CurvePoint> all;
  std::vector<std::vector<CurvePoint>> smooth;
  for (const LossSeries& s : series) {
    smooth.push_back(moving_average(s.train));
    all.insert(all.end(), smooth.back().begin(), smooth.back().end());
    all.insert(all.end(), s.val.begin(), s.val.end());
  }
  Chart c(std::move(all));
  for (const LossSeries& s : series) c.legend_w = std::max(c.legend_w, 40.0 + 7.0 * double(s.label.size()));
  c.frame(title);
  const std::vector<std::string>& colors = series_colors();
  for (size_t i = 0; i < series.size(); ++i) {
    const std::string& color = colors[i % colors.size()];
    // Earlier series are drawn wider, so near-identical curves (bf16 vs fp32) stay visible
    // beneath the ones drawn after them.
    const double w = 1.2 + 2.4 * double(series.size() - 1 - i) / double(std::max<size_t>(1, series.size() - 1));
    c.polyline(smooth[i], color, w, 0.9);
    c.polyline(series[i].val, color, w, 1, "6 3");
    c.dots(series[i].val, color);
    c.legend(static_cast<int>(i), color, series[i].label);
  }
  c.legend(static_cast<int>(series.size()), "#444", "train (main head, smoothed)");
  c.legend(static_cast<int>(series.size()) + 1, "#444", "validation", "6 3");
  return c.finish();
}

void write_loss_overlay(const std::string& path, const std::vector<LossSeries>& series, const std::string& title) {
  io::write_file_synced(path, loss_overlay_svg(series, title));
}

void write_loss_plot(const std::string& path, const std::vector<CurvePoint>& train,
                     const std::vector<CurvePoint>& val, const std::string& title) {
  io::write_file_synced(path, loss_plot_svg(train, val, title));
}

}  // namespace tinyseek::train
