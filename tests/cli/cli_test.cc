// End-to-end tests of the tinyseek command line: runs the built binary (TINYSEEK_BINARY),
// captures stdout, stderr and the exit status, and checks help, the not-built commands,
// `numerics codes` against the OCP bit-field definitions (computed here, independently of
// the codec) and `numerics accumulation`.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "../common/run_cli.h"

namespace {

using tinyseek::testing::CliRun;
using tinyseek::testing::run_cli;
using tinyseek::testing::slurp;

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

TEST(Cli, HelpListsEveryCommand) {
  const CliRun r = run_cli("--help");
  EXPECT_EQ(r.status, 0) << r.err;
  for (const char* c : {"tokenizer", "prepare", "train", "eval", "generate", "export", "bench", "numerics"})
    EXPECT_TRUE(contains(r.out, c)) << "help does not list '" << c << "':\n" << r.out;
}

// OCP OFP8 values from the bit fields (the reference, not the codec).
std::vector<double> spec_values(int exp_bits, int man_bits, int bias, bool ieee_specials, int* nan_count) {
  std::vector<double> v(256);
  *nan_count = 0;
  for (int c = 0; c < 256; ++c) {
    const bool neg = c & 0x80;
    const int e = (c >> man_bits) & ((1 << exp_bits) - 1), m = c & ((1 << man_bits) - 1);
    const int e_ones = (1 << exp_bits) - 1, m_ones = (1 << man_bits) - 1;
    double mag;
    if ((ieee_specials && e == e_ones && m != 0) || (!ieee_specials && e == e_ones && m == m_ones)) {
      mag = NAN;
      ++*nan_count;
    } else if (ieee_specials && e == e_ones) {
      mag = INFINITY;
    } else {
      const double frac = m / static_cast<double>(1 << man_bits);
      mag = e == 0 ? std::ldexp(frac, 1 - bias) : std::ldexp(1.0 + frac, e - bias);
    }
    v[c] = neg ? -mag : mag;
  }
  return v;
}

void check_codes_json(const char* format, const std::vector<double>& want) {
  const CliRun r = run_cli(std::string("numerics codes --format ") + format + " --json");
  ASSERT_EQ(r.status, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);  // throws (fails the test) if not JSON
  ASSERT_TRUE(j.contains("values"));
  const auto& vals = j["values"];
  ASSERT_EQ(vals.size(), 256u);
  int mismatches = 0, strings = 0;
  for (int c = 0; c < 256; ++c) {
    const double w = want[c];
    const auto& v = vals[c];
    bool ok;
    if (std::isnan(w)) ok = v.is_string() && v.get<std::string>() == "nan";
    else if (std::isinf(w)) ok = v.is_string() && v.get<std::string>() == (w > 0 ? "inf" : "-inf");
    else ok = v.is_number() && v.get<double>() == w && std::signbit(v.get<double>()) == std::signbit(w);
    strings += v.is_string();
    if (!ok) {
      ++mismatches;
      ADD_FAILURE() << format << " code " << c << ": got " << v.dump() << ", want " << w;
    }
  }
  std::printf("codes --format %s --json: 256 values (%d as strings), mismatches vs OCP fields: %d; "
              "code 0x80 = %s, code 0x7E = %s\n",
              format, strings, mismatches, vals[0x80].dump().c_str(), vals[0x7E].dump().c_str());
}

TEST(Cli, CodesJsonMatchesOcpSpec) {
  int nans = 0;
  const std::vector<double> e4m3 = spec_values(4, 3, 7, false, &nans);
  EXPECT_EQ(nans, 2);
  EXPECT_EQ(e4m3[0x7E], 448.0);
  check_codes_json("e4m3", e4m3);
  const std::vector<double> e5m2 = spec_values(5, 2, 15, true, &nans);
  EXPECT_EQ(nans, 6);
  EXPECT_EQ(e5m2[0x7B], 57344.0);
  check_codes_json("e5m2", e5m2);
}

TEST(Cli, CodesTableAndBadFormat) {
  const CliRun table = run_cli("numerics codes --format e4m3");
  EXPECT_EQ(table.status, 0);
  EXPECT_TRUE(contains(table.out, "448")) << table.out;
  const CliRun bad = run_cli("numerics codes --format bogus");
  EXPECT_NE(bad.status, 0);
  EXPECT_TRUE(contains(bad.err, "bogus")) << bad.err;
  EXPECT_TRUE(contains(bad.err, "e4m3") && contains(bad.err, "e5m2")) << bad.err;
}

TEST(Cli, AccumulationRejectsBadArguments) {
  const CliRun k0 = run_cli("numerics accumulation --k 0");
  EXPECT_NE(k0.status, 0);
  EXPECT_TRUE(contains(k0.err, "--k must be a positive integer, got 0")) << k0.err;
  const CliRun t0 = run_cli("numerics accumulation --trials 0");
  EXPECT_NE(t0.status, 0);
  EXPECT_TRUE(contains(t0.err, "--trials must be positive, got 0")) << t0.err;
  const CliRun in = run_cli("numerics accumulation --inputs gaussian --trials 2");
  EXPECT_NE(in.status, 0);
  EXPECT_TRUE(contains(in.err, "normal") && contains(in.err, "uniform")) << in.err;
}

TEST(Cli, AccumulationJson) {
  const CliRun r = run_cli("numerics accumulation --k 1000 --trials 64 --json");
  ASSERT_EQ(r.status, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  ASSERT_TRUE(j.contains("inputs"));
  ASSERT_TRUE(j.contains("rows"));
  EXPECT_TRUE(j["inputs"].is_string());
  bool has_1000 = false;
  int ordered_rows = 0;
  for (const auto& row : j["rows"]) {
    const int64_t k = row["k"].get<int64_t>();
    const double lim = row["max_rel_err_limited"], pro = row["max_rel_err_promoted"], f32 = row["max_rel_err_fp32"];
    std::printf("  K=%6lld max rel err limited %.3e promoted %.3e fp32 %.3e\n", static_cast<long long>(k), lim, pro,
                f32);
    has_1000 |= k == 1000;
    if (k >= 1024) {
      EXPECT_GT(lim, pro) << "K=" << k;
      EXPECT_GT(pro, f32) << "K=" << k;
      ++ordered_rows;
    }
  }
  EXPECT_TRUE(has_1000) << r.out;
  EXPECT_GE(ordered_rows, 5);
}

}  // namespace
