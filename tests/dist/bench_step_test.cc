// `tinyseek bench step` under mpirun (bench/step_bench.h): the per-rank keys of --json and the
// communicator's byte counts (dist::CommStats) against the formulas of docs/architecture.md,
// from quantities the counters do not produce (the parameter buffer of a model built here,
// the routers' load counts the bench reports). Tiny config, 2 ranks, OMP_NUM_THREADS=1:
// about a second per launch.
//
// Data parallel, per step: rank r sends Σ_{q≠r} |shard_q| floats in the reduce-scatter and
// |shard_r|·(N-1) in the all-gather, so Σ_r = 2(N-1)·4P bytes (P = the parameter buffer,
// padding included), 2(N-1)/N·4P per rank on average. Expert parallel: the same over the
// non-expert elements only, plus per MoE layer (main and MTP) and forward:
//   counts El·8·(N-1) + S·(d + c) + 2R·c
// with S (R) the (token, expert) rows this rank sends to (receives from) other ranks, d the
// dispatch row (4D FP32, or D E4M3 codes + 4·ceil(D/128) scale bytes) and c the combine row
// (4D under fp32, 2D BF16 under fp8): forward dispatch S·d, combine R·c, backward ∂ye to the
// owners S·c and ∂xe back R·c. The bench's bytes are means over the timed steps (the routing
// may change as AdamW moves the router), as are S and R, so the check is to 1e-9 relative.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "dist_test_util.h"
#include "tinyseek/model/config.h"
#include "tinyseek/model/deepseek.h"

namespace tinyseek::dist {
namespace {
using namespace tinyseek::dist::testing;

std::string bench_args(const std::string& extra, int batch = 4) {
  return "bench step --config '" + source_path("configs/tiny.json") + "' --batch " + std::to_string(batch) +
         " --seq 32 --steps 2 --warmup 1 " + extra;
}

json run_json(int np, const std::string& extra) {
  const auto r = run_cli(bench_args("--json " + extra), np == 1 ? "OMP_NUM_THREADS=1" : kMpirun);
  EXPECT_EQ(r.status, 0) << r.err;
  if (r.status != 0) return json::object();
  return json::parse(r.out);  // one JSON document: rank 0 alone prints
}

struct Tiny {
  int64_t P = 0, D = 0, E = 0, moe_layers = 0, expert_floats = 0;
};
Tiny tiny() {
  const model::ModelConfig c = model::load_config(source_path("configs/tiny.json"));
  const model::Model m(c);
  Tiny t;
  t.P = static_cast<int64_t>(m.registry().params().size());
  t.D = c.hidden_size;
  t.E = c.n_routed_experts;
  t.moe_layers = static_cast<int64_t>(m.moe_layers().size());
  t.expert_floats = t.moe_layers * t.E * 3 * c.hidden_size * c.moe_intermediate_size;
  return t;
}

void expect_rank_keys(const json& q) {
  for (const char* k : {"rank", "tokens_per_s", "ms_per_step", "comm_bytes_per_step", "comm_ms_per_step",
                        "comm_wait_ms_per_step", "comm_transfer_ms_per_step", "comm_share",
                        "expert_rows_sent_per_step", "expert_rows_received_per_step"})
    EXPECT_TRUE(q.contains(k)) << k;
  for (const char* k : {"gradients", "experts", "other", "total"}) EXPECT_TRUE(q["comm_bytes_per_step"].contains(k)) << k;
  EXPECT_GT(q["tokens_per_s"].get<double>(), 0);
  EXPECT_GE(q["comm_ms_per_step"].get<double>(), q["comm_wait_ms_per_step"].get<double>());
  EXPECT_GE(q["comm_wait_ms_per_step"].get<double>(), 0);
  EXPECT_GT(q["comm_share"].get<double>(), 0);
  EXPECT_LT(q["comm_share"].get<double>(), 1);
}

TEST(BenchStepMpi, DataParallelBytesPerStep) {
  REQUIRE_MPIRUN();
  const Tiny t = tiny();
  // One process: the existing keys, none of the per-rank ones.
  const json one = run_json(1, "");
  ASSERT_FALSE(one.empty());
  EXPECT_FALSE(one.contains("per_rank"));
  EXPECT_FALSE(one.contains("ranks"));
  EXPECT_EQ(one["timed"], "zero_grad + forward_backward + AdamW(fp32 moments)");

  const json j = run_json(2, "");
  ASSERT_FALSE(j.empty());
  for (const auto& [k, v] : one.items()) EXPECT_TRUE(j.contains(k)) << "key " << k << " missing under mpirun";
  EXPECT_EQ(j["ranks"], 2);
  EXPECT_EQ(j["expert_parallel"], 1);
  EXPECT_EQ(j["param_floats"].get<int64_t>(), t.P);
  EXPECT_EQ(j["reduced_floats"].get<int64_t>(), t.P);
  ASSERT_EQ(j["per_rank"].size(), 2u);
  double sum = 0;
  for (const auto& q : j["per_rank"]) {
    expect_rank_keys(q);
    const auto& b = q["comm_bytes_per_step"];
    EXPECT_EQ(b["experts"].get<double>(), 0);
    EXPECT_EQ(b["other"].get<double>(), 0);  // no norm or loss reductions inside the timed step
    sum += b["gradients"].get<double>();
    std::printf("  rank %d: %.0f gradient bytes/step, comm %.3f ms (wait %.3f) of %.3f ms\n", q["rank"].get<int>(),
                b["gradients"].get<double>(), q["comm_ms_per_step"].get<double>(),
                q["comm_wait_ms_per_step"].get<double>(), q["ms_per_step"].get<double>());
  }
  const double want = 2.0 * (2 - 1) * 4.0 * static_cast<double>(t.P);
  std::printf("DP: sum over ranks %.0f bytes/step, formula 2(N-1)*4P = %.0f (P = %lld floats)\n", sum, want,
              static_cast<long long>(t.P));
  EXPECT_EQ(sum, want);
  // With 2 ranks each rank sends the other's shard once and its own once: 4P.
  for (const auto& q : j["per_rank"]) EXPECT_EQ(q["comm_bytes_per_step"]["gradients"].get<double>(), 4.0 * t.P);
}

void check_expert_parallel_bytes(const std::string& recipe, bool fp8) {
  const Tiny t = tiny();
  const int64_t N = 2, El = t.E / N;
  const json j = run_json(2, "--expert-parallel 2 --recipe " + recipe);
  ASSERT_FALSE(j.empty());
  EXPECT_EQ(j["expert_parallel"], 2);
  EXPECT_EQ(j["ep_fp8_dispatch"].get<bool>(), fp8);
  EXPECT_EQ(j["moe_layers"].get<int64_t>(), t.moe_layers);
  // The dense part drops by exactly the experts' weights (tiny: 512-float tensors, no padding).
  EXPECT_EQ(j["param_floats"].get<int64_t>() - j["reduced_floats"].get<int64_t>(), t.expert_floats);
  const double reduced = static_cast<double>(j["reduced_floats"].get<int64_t>());
  const double d = fp8 ? static_cast<double>(t.D + 4 * ((t.D + 127) / 128)) : 4.0 * t.D;
  const double c = fp8 ? 2.0 * t.D : 4.0 * t.D;
  double grads = 0, sent = 0, received = 0;
  for (const auto& q : j["per_rank"]) {
    expect_rank_keys(q);
    const auto& b = q["comm_bytes_per_step"];
    const double S = q["expert_rows_sent_per_step"].get<double>(), R = q["expert_rows_received_per_step"].get<double>();
    const double want = static_cast<double>(t.moe_layers * El * 8 * (N - 1)) + S * (d + c) + 2 * R * c;
    const double got = b["experts"].get<double>();
    std::printf("  EP %s rank %d: rows sent %.2f received %.2f per step; expert bytes %.2f, formula %.2f (rel %.2g); "
                "gradient bytes %.0f\n", recipe.c_str(), q["rank"].get<int>(), S, R, got, want,
                std::abs(got - want) / want, b["gradients"].get<double>());
    EXPECT_GT(S, 0);
    EXPECT_GT(R, 0);
    EXPECT_LT(std::abs(got - want), 1e-9 * want);
    EXPECT_EQ(b["other"].get<double>(), 0);
    grads += b["gradients"].get<double>();
    sent += S;
    received += R;
  }
  EXPECT_DOUBLE_EQ(sent, received);  // every row sent is received by its owner
  std::printf("EP %s: gradient bytes over ranks %.0f, formula 2(N-1)*4*(P - experts) = %.0f\n", recipe.c_str(), grads,
              2.0 * (N - 1) * 4.0 * reduced);
  EXPECT_EQ(grads, 2.0 * (N - 1) * 4.0 * reduced);
}

TEST(BenchStepMpi, ExpertParallelBytesMatchRouting) {
  REQUIRE_MPIRUN();
  check_expert_parallel_bytes("fp32", false);  // FP32 dispatch, FP32 combine
  check_expert_parallel_bytes("fp8", true);    // E4M3 + scales dispatch, BF16 combine
}

TEST(BenchStepMpi, TextOnRankZeroAndRefusals) {
  REQUIRE_MPIRUN();
  const auto text = run_cli(bench_args(""), kMpirun);
  ASSERT_EQ(text.status, 0) << text.err;
  size_t tables = 0;
  for (size_t at = 0; (at = text.out.find("training step, B", at)) != std::string::npos; ++at) ++tables;
  EXPECT_EQ(tables, 1u) << text.out;  // one rank prints
  EXPECT_NE(text.out.find("2 ranks, data parallel"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("transfer ms"), std::string::npos) << text.out;

  const auto matrix = run_cli(bench_args("--recipes fp32,fp8"), kMpirun);
  EXPECT_NE(matrix.status, 0);
  EXPECT_NE(matrix.err.find("one recipe and one recompute policy per launch"), std::string::npos) << matrix.err;
  const auto alone = run_cli(bench_args("--expert-parallel 2"), "OMP_NUM_THREADS=1");
  EXPECT_NE(alone.status, 0);
  EXPECT_NE(alone.err.find("needs 2 MPI ranks"), std::string::npos) << alone.err;
  const auto odd = run_cli(bench_args("", 3), kMpirun);
  EXPECT_NE(odd.status, 0);
  EXPECT_NE(odd.err.find("not divisible by the 2 ranks"), std::string::npos) << odd.err;
}

}  // namespace
}  // namespace tinyseek::dist
