// The run's machine-readable log (metrics.jsonl) and its loss-curve plot (loss.svg).
//
// metrics.jsonl: one JSON object per line. Training lines: step, loss (total), loss_main,
// loss_mtp (list per depth), loss_balance, lr, grad_norm, tokens_per_s, ms, mfu (null if
// the peak is unknown), imbalance, mtp_lambda, tokens (seen so far), skipped. Evaluation
// lines: step, val_loss, val_perplexity, val_bits_per_byte, val_tokens (and no `loss`
// key, so scripts tell the kinds apart). With --numerics-telemetry, the training line of
// every telemetry step also has "numerics" (model::linear_telemetry_json: per Linear and
// summed per GEMM role, SQNR / relative error / saturation / underflow / scale stats).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace tinyseek::train {

struct CurvePoint {
  int64_t step = 0;
  double value = 0;
};

class MetricsLog {
 public:
  MetricsLog() = default;  // disabled: records nothing on disk, keeps the curves
  // Opens run_dir/metrics.jsonl for appending. Lines with step > `resume_step` (written
  // after the checkpoint a resumed run starts from) and unparsable lines (a kill mid-write)
  // are dropped, so the log matches the run; resume_step < 0 starts a fresh file.
  MetricsLog(const std::string& run_dir, int64_t resume_step);

  void append(const nlohmann::json& line);  // one line, flushed

  // Curves for the plot: train = loss_main per step, val = val_loss per evaluation.
  const std::vector<CurvePoint>& train_curve() const { return train_; }
  const std::vector<CurvePoint>& val_curve() const { return val_; }
  const std::string& path() const { return path_; }

 private:
  void remember(const nlohmann::json& line);
  std::string path_;
  std::vector<CurvePoint> train_, val_;
};

// An SVG line chart of the train curve (thin: raw, thick: moving average) and the val
// curve (points joined), with axes, ticks and a legend. Written atomically.
std::string loss_plot_svg(const std::vector<CurvePoint>& train, const std::vector<CurvePoint>& val,
                          const std::string& title);
void write_loss_plot(const std::string& path, const std::vector<CurvePoint>& train,
                     const std::vector<CurvePoint>& val, const std::string& title);

// Several runs on one chart (`tinyseek numerics recipes`): one colour per series (in
// order, from series_colors(); earlier series drawn wider so overlapping curves stay
// visible), its train curve smoothed and solid, its val curve dashed with points; the
// legend names each series and the two line styles.
struct LossSeries {
  std::string label;
  std::vector<CurvePoint> train, val;
};
const std::vector<std::string>& series_colors();
std::string loss_overlay_svg(const std::vector<LossSeries>& series, const std::string& title);
void write_loss_overlay(const std::string& path, const std::vector<LossSeries>& series, const std::string& title);

}  // namespace tinyseek::train
