// Numerics telemetry over a run (`tinyseek train --numerics-telemetry N`): every N steps
// the trainer turns the Linears' telemetry on for one step (model/linear_site.h: each
// quantized GEMM is also run on the FP32 operands, its high-precision shadow, and
// compared), writes that step's model::linear_telemetry_json into metrics.jsonl under
// "numerics", and adds it to the run's totals here. At the end it prints one row per GEMM
// role (fprop, dgrad, wgrad) and operand class (fp8: an operand was quantized to FP8 with
// scales; bf16: BF16 operands, e.g. the output head of the fp8 recipe), summed over every
// telemetry step and Linear of that class. The classes are kept apart because their
// errors differ by orders of magnitude and the head's large outputs would dominate a sum.
//   SQNR dB     10 log10(Σ ref² / Σ (out − ref)²) of the GEMM outputs
//   rel err     sqrt(Σ (out − ref)² / Σ ref²)
//   saturated   operand elements clipped at the format's max finite (A and B together),
//               count and fraction of the quantized elements
//   underflow   nonzero operand elements that quantized to zero, likewise
//   worst       the Linear with the lowest SQNR for that role, and its SQNR
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tinyseek/model/linear_site.h"

namespace tinyseek::train {

struct RoleTelemetry {
  std::string role;          // fprop | dgrad | wgrad
  std::string operands;      // fp8 | bf16
  int64_t gemms = 0;         // GEMM calls compared
  double sqnr_db = 0, rel_err = 0;
  int64_t elements = 0;      // operand elements quantized (A + B)
  int64_t saturated = 0, underflow = 0;
  std::string worst_linear;  // "" when no Linear recorded this role
  double worst_sqnr_db = 0;
};

class TelemetryTotals {
 public:
  // Adds one telemetry step's records (collect_linear_telemetry) to the totals.
  void add_step(const std::vector<model::LinearTelemetryRecord>& records);
  int64_t steps() const { return steps_; }
  bool empty() const { return steps_ == 0; }
  // One row per role and operand class present, in the order fprop, dgrad, wgrad; fp8 first.
  std::vector<RoleTelemetry> summary() const;
  nlohmann::json summary_json() const;
  // The end-of-run table (title line + header + 3 rows).
  std::string table() const;

 private:
  int64_t steps_ = 0;
  std::vector<model::LinearTelemetryRecord> linears_;  // summed per weight, first-seen order
};

}  // namespace tinyseek::train
