#include "tinyseek/train/telemetry.h"

#include <cmath>
#include <cstdio>

namespace tinyseek::train {

void TelemetryTotals::add_step(const std::vector<model::LinearTelemetryRecord>& records) {
  ++steps_;
  for (const model::LinearTelemetryRecord& r : records) {
    model::LinearTelemetryRecord* total = nullptr;
    for (model::LinearTelemetryRecord& t : linears_)
      if (t.weight == r.weight) total = &t;
    if (!total) {
      linears_.push_back({r.weight, r.name, r.layer, {}});
      total = &linears_.back();
    }
    total->telemetry.fprop.add(r.telemetry.fprop);
    total->telemetry.dgrad.add(r.telemetry.dgrad);
    total->telemetry.wgrad.add(r.telemetry.wgrad);
  }
}

namespace {
// An operand with scale slots was quantized to FP8; BF16 operands have none.
bool fp8_gemm(const ops::GemmStats& g) { return g.a.scales > 0 || g.b.scales > 0; }
}  // namespace

std::vector<RoleTelemetry> TelemetryTotals::summary() const {
  using Member = ops::GemmStats ops::LinearTelemetry::*;
  const std::pair<const char*, Member> roles[] = {{"fprop", &ops::LinearTelemetry::fprop},
                                                  {"dgrad", &ops::LinearTelemetry::dgrad},
                                                  {"wgrad", &ops::LinearTelemetry::wgrad}};
  std::vector<RoleTelemetry> out;
  for (const auto& [name, member] : roles) {
    for (const bool fp8 : {true, false}) {
      RoleTelemetry row;
      row.role = name;
      row.operands = fp8 ? "fp8" : "bf16";
      ops::GemmStats sum;
      for (const model::LinearTelemetryRecord& l : linears_) {
        const ops::GemmStats& g = l.telemetry.*member;
        if (g.calls == 0 || fp8_gemm(g) != fp8) continue;
        sum.add(g);
        // The worst Linear: lowest SQNR (an exact GEMM, +inf, is never the worst).
        const double db = g.sqnr_db();
        if (std::isfinite(db) && (row.worst_linear.empty() || db < row.worst_sqnr_db)) {
          row.worst_linear = l.name;
          row.worst_sqnr_db = db;
        }
      }
      if (sum.calls == 0) continue;
      row.gemms = sum.calls;
      row.sqnr_db = sum.sqnr_db();
      row.rel_err = sum.rel_err();
      row.elements = sum.a.count + sum.b.count;
      row.saturated = sum.a.saturated + sum.b.saturated;
      row.underflow = sum.a.underflow + sum.b.underflow;
      out.push_back(row);
    }
  }
  return out;
}

namespace {
nlohmann::json finite_or_null(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

std::string count_and_fraction(int64_t n, int64_t of) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%lld (%.1e)", static_cast<long long>(n),
                of > 0 ? static_cast<double>(n) / static_cast<double>(of) : 0.0);
  return buf;
}
}  // namespace

nlohmann::json TelemetryTotals::summary_json() const {
  nlohmann::json rows = nlohmann::json::array();
  for (const RoleTelemetry& r : summary())
    rows.push_back({{"role", r.role},
                 {"operands", r.operands},
                 {"gemms", r.gemms},
                 {"sqnr_db", finite_or_null(r.sqnr_db)},
                 {"rel_err", finite_or_null(r.rel_err)},
                 {"elements", r.elements},
                 {"saturated", r.saturated},
                 {"underflow", r.underflow},
                 {"worst_linear", r.worst_linear},
                 {"worst_sqnr_db", r.worst_linear.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.worst_sqnr_db)}});
  return {{"steps", steps_}, {"rows", rows}};
}

std::string TelemetryTotals::table() const {
  std::string s;
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "numerics telemetry: %lld step(s), %zu Linear(s); every quantized GEMM vs its FP32 shadow\n"
                "%-6s %-8s %6s %8s %9s %-20s %-20s %s\n",
                static_cast<long long>(steps_), linears_.size(), "role", "operands", "GEMMs", "SQNR dB", "rel err", "saturated",
                "underflow", "worst Linear (SQNR dB)");
  s += buf;
  for (const RoleTelemetry& r : summary()) {
    char db[32];
    std::snprintf(db, sizeof db, " (%.1f)", r.worst_sqnr_db);
    const std::string worst = r.worst_linear.empty() ? std::string("-") : r.worst_linear + db;
    std::snprintf(buf, sizeof buf, "%-6s %-8s %6lld %8.2f %9.2e %-20s %-20s %s\n", r.role.c_str(),
                  r.operands.c_str(), static_cast<long long>(r.gemms), r.sqnr_db, r.rel_err,
                  count_and_fraction(r.saturated, r.elements).c_str(), count_and_fraction(r.underflow, r.elements).c_str(),
                  worst.c_str());
    s += buf;
  }
  return s;
}

}  // namespace tinyseek::train
