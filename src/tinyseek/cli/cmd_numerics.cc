// tinyseek numerics codes|accumulation|recipes: the numerics facts behind the FP8 recipe.
#include <cmath>
#include <cstdio>
#include <set>
#include <string>

#include "tinyseek/base/check.h"
#include "tinyseek/cli/commands.h"
#include "tinyseek/numerics/accum.h"
#include "tinyseek/numerics/fp8.h"

namespace tinyseek::cli {

namespace {

// Exact decimal text of an FP8 value for JSON: %.17g is exact for these dyadic values.
std::string json_number(float v) {
  if (std::isnan(v)) return "\"nan\"";
  if (std::isinf(v)) return v > 0 ? "\"inf\"" : "\"-inf\"";
  if (v == 0.0f) return std::signbit(v) ? "-0.0" : "0.0";
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", static_cast<double>(v));
  return buf;
}

void run_codes(const std::string& format_name, bool json) {
  const numerics::Fp8Format f = numerics::parse_fp8_format(format_name);
  if (json) {
    std::string out = "{\"format\": \"" + std::string(numerics::to_string(f)) + "\", \"values\": [";
    for (int c = 0; c < 256; ++c) {
      if (c) out += ", ";
      out += json_number(numerics::fp8_decode(static_cast<uint8_t>(c), f));
    }
    out += "]}\n";
    std::fputs(out.c_str(), stdout);
    return;
  }
  const numerics::Fp8Traits t = numerics::fp8_traits(f);
  std::printf("%s: 1 sign, %d exponent (bias %d), %d mantissa bits; max finite %g, min normal 2^%d, "
              "min subnormal %g\n",
              numerics::to_string(f), t.exp_bits, t.bias, t.man_bits, t.max_finite, t.emin,
              t.min_subnormal);
  std::printf("row = high nibble, column = low nibble\n      ");
  for (int lo = 0; lo < 16; ++lo) std::printf("%11X", lo);
  std::printf("\n");
  for (int hi = 0; hi < 16; ++hi) {
    std::printf("  %X_  ", hi);
    for (int lo = 0; lo < 16; ++lo) std::printf("%11.6g", numerics::fp8_decode(static_cast<uint8_t>(hi * 16 + lo), f));
    std::printf("\n");
  }
}

void run_accumulation(int64_t k, int trials, uint64_t seed, int bits, int group, int promote,
                      const std::string& inputs, bool json) {
  TS_CHECK(k > 0, "--k must be a positive integer, got " << k, "pass e.g. --k 4096");
  TS_CHECK(trials > 0, "--trials must be positive, got " << trials, "pass e.g. --trials 256");
  TS_CHECK(bits >= 1 && bits <= 23, "--mantissa-bits must be in 1..23, got " << bits,
           "13 explicit bits model the ~14 bits the DeepSeek-V3 report measured");
  TS_CHECK(group >= 1, "--align-group must be positive, got " << group, "32 = one FP8 WGMMA K step");
  TS_CHECK(promote >= 1, "--promote-every must be positive, got " << promote, "DeepSeek-V3 uses 128");
  std::set<int64_t> ks = {512, 1024, 2048, 4096, 8192, 16384};
  ks.insert(k);
  numerics::AccumModel m;
  m.mantissa_bits = bits;
  m.align_group = group;
  m.promote_every = promote;
  const numerics::AccumStudy s =
      numerics::accumulation_study(std::vector<int64_t>(ks.begin(), ks.end()), trials, seed, m,
                                    numerics::parse_accum_inputs(inputs));
  if (json) {
    std::printf("{\"inputs\": \"%s\", \"trials\": %d, \"mantissa_bits\": %d, \"align_group\": %d, "
                "\"promote_every\": %d, \"rows\": [",
                s.inputs.c_str(), s.trials, m.mantissa_bits, m.align_group, m.promote_every);
    for (size_t i = 0; i < s.rows.size(); ++i) {
      const auto& r = s.rows[i];
      std::printf("%s{\"k\": %lld, \"max_rel_err_limited\": %.9g, \"max_rel_err_promoted\": %.9g, "
                  "\"max_rel_err_fp32\": %.9g, \"mean_rel_err_limited\": %.9g, "
                  "\"mean_rel_err_promoted\": %.9g, \"mean_rel_err_fp32\": %.9g}",
                  i ? ", " : "", static_cast<long long>(r.k), r.max_rel_err_limited, r.max_rel_err_promoted,
                  r.max_rel_err_fp32, r.mean_rel_err_limited, r.mean_rel_err_promoted, r.mean_rel_err_fp32);
    }
    std::printf("]}\n");
    return;
  }
  std::printf("Relative error of a K-long dot product vs an FP64 reference, %d trials per K\n", s.trials);
  std::printf("inputs: %s\n", s.inputs.c_str());
  std::printf("tensor-core model: %d explicit mantissa bits, products aligned in groups of %d; "
              "promotion to FP32 every %d\n\n",
              m.mantissa_bits, m.align_group, m.promote_every);
  std::printf("%7s | %-23s | %-23s | %-23s\n", "", "(a) limited, no promote", "(b) promote every N_C",
              "(c) plain FP32");
  std::printf("%7s | %11s %11s | %11s %11s | %11s %11s\n", "K", "max", "mean", "max", "mean", "max", "mean");
  for (const auto& r : s.rows)
    std::printf("%7lld | %10.4f%% %10.4f%% | %10.4f%% %10.4f%% | %10.5f%% %10.5f%%%s\n",
                static_cast<long long>(r.k), 100 * r.max_rel_err_limited, 100 * r.mean_rel_err_limited,
                100 * r.max_rel_err_promoted, 100 * r.mean_rel_err_promoted, 100 * r.max_rel_err_fp32,
                100 * r.mean_rel_err_fp32, r.k == k ? "   <- --k" : "");
  for (const auto& r : s.rows)
    if (r.k == k && r.max_rel_err_promoted > 0)
      std::printf("\nAt K=%lld promotion every %d cuts the max relative error %.1fx (%.3f%% -> %.4f%%).\n",
                  static_cast<long long>(k), m.promote_every, r.max_rel_err_limited / r.max_rel_err_promoted,
                  100 * r.max_rel_err_limited, 100 * r.max_rel_err_promoted);
}

}  // namespace

void add_numerics(CLI::App& app) {
  CLI::App* num = app.add_subcommand("numerics", "numerics facts: FP8 code tables, accumulation error, recipes");
  num->require_subcommand(1, 1);

  static std::string format = "e4m3";
  static bool codes_json = false;
  CLI::App* codes = num->add_subcommand("codes", "decoded value of every FP8 code (OCP E4M3FN / E5M2)");
  codes->add_option("--format", format, "e4m3 or e5m2")->capture_default_str();
  codes->add_flag("--json", codes_json, "machine-readable output");
  codes->callback([] { run_codes(format, codes_json); });

  static int64_t k = 4096;
  static int trials = 1024, bits = 13, group = 32, promote = 128;
  static uint64_t seed = 1234;
  static std::string inputs = "normal";
  static bool acc_json = false;
  CLI::App* acc = num->add_subcommand(
      "accumulation", "error of limited tensor-core accumulation with and without FP32 promotion");
  acc->add_option("--k", k, "inner dimension to highlight (added to the table)")->capture_default_str();
  acc->add_option("--trials", trials, "random dot products per K")->capture_default_str();
  acc->add_option("--seed", seed, "random seed")->capture_default_str();
  acc->add_option("--mantissa-bits", bits, "explicit mantissa bits kept by the accumulator")->capture_default_str();
  acc->add_option("--align-group", group, "products aligned together")->capture_default_str();
  acc->add_option("--promote-every", promote, "N_C: promotion interval")->capture_default_str();
  acc->add_option("--inputs", inputs, "input distribution: normal (zero-mean) or uniform (non-negative, worst case)")
      ->capture_default_str();
  acc->add_flag("--json", acc_json, "machine-readable output");
  acc->callback([] { run_accumulation(k, trials, seed, bits, group, promote, inputs, acc_json); });

  add_numerics_recipes(*num);  // cmd_numerics_recipes.cc
}

}  // namespace tinyseek::cli
