// Every op, forward and backward in float at shapes large enough to span several work chunks,
// run with 1 and with 2 OpenMP threads: all outputs and gradients must be bit-identical.
#include <gtest/gtest.h>
#include <omp.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "ops_test_util.h"
#include "tinyseek/ops/attention.h"
#include "tinyseek/ops/balance_loss.h"
#include "tinyseek/ops/cross_entropy.h"
#include "tinyseek/ops/embedding.h"
#include "tinyseek/ops/linear.h"
#include "tinyseek/ops/moe_dispatch.h"
#include "tinyseek/ops/rmsnorm.h"
#include "tinyseek/ops/rope.h"
#include "tinyseek/ops/router.h"
#include "tinyseek/ops/swiglu.h"

namespace tinyseek::ops::test {
namespace {

using F = std::vector<float>;
F randf(size_t n, uint64_t seed, double scale = 1.0) { return cast<float>(randn(n, seed, scale)); }

// Runs every op and returns its outputs, labelled, so a mismatch names the op.
std::vector<std::pair<std::string, F>> run_all() {
  std::vector<std::pair<std::string, F>> out;
  auto keep = [&](const char* name, F v) { out.emplace_back(name, std::move(v)); };
  {  // embedding: many repeated tokens, columns split across threads
    const int64_t V = 50, D = 200, N = 300;
    std::vector<Index> tok(N);
    for (int64_t n = 0; n < N; ++n) tok[n] = static_cast<Index>((n * 7) % V);
    F table = randf(V * D, 1), y(N * D), dt(V * D, 0.f);
    embedding_forward(y.data(), tok.data(), table.data(), N, D, V);
    embedding_backward(dt.data(), randf(N * D, 2).data(), tok.data(), N, D, V);
    keep("embedding fwd", y);
    keep("embedding bwd", dt);
  }
  {  // rmsnorm: 200 rows = 7 dw chunks
    const int64_t N = 200, D = 100;
    F x = randf(N * D, 3), w = randf(D, 4), y(N * D), r(N), dx(N * D, 0.f), dw(D, 0.f);
    rmsnorm_forward(y.data(), r.data(), x.data(), w.data(), N, D, 1e-6);
    rmsnorm_backward(dx.data(), dw.data(), randf(N * D, 5).data(), x.data(), w.data(), r.data(), N, D);
    keep("rmsnorm y", y);
    keep("rmsnorm dx", dx);
    keep("rmsnorm dw", dw);
  }
  {  // rope
    const int64_t N = 100, H = 4, dr = 16;
    const auto table = make_rope_table<float>(dr, 64, 10000.0);
    F x = randf(N * H * dr, 6), y(x.size()), dx(x.size());
    rope_forward(y.data(), x.data(), table, N, H, 50, 0, dr, dr);
    rope_backward(dx.data(), y.data(), table, N, H, 50, 0, dr, dr);
    keep("rope fwd", y);
    keep("rope bwd", dx);
  }
  {  // attention: 3 query blocks per sequence, dk_pe reduced over heads
    const int64_t B = 2, T = 70, H = 2, dn = 16, dr = 8, dv = 16, N = B * T;
    F q = randf(N * H * (dn + dr), 7), kv = randf(N * H * (dn + dv), 8), kpe = randf(N * dr, 9);
    F o(N * H * dv), lse(N * H), dq(q.size(), 0.f), dkv(kv.size(), 0.f), dkpe(kpe.size(), 0.f);
    attention_forward(o.data(), lse.data(), q.data(), kv.data(), kpe.data(), B, T, H, dn, dr, dv);
    attention_backward(dq.data(), dkv.data(), dkpe.data(), randf(o.size(), 10).data(), q.data(), kv.data(),
                       kpe.data(), o.data(), lse.data(), B, T, H, dn, dr, dv);
    keep("attention o", o);
    keep("attention lse", lse);
    keep("attention dq", dq);
    keep("attention dkv", dkv);
    keep("attention dk_pe", dkpe);
  }
  {  // swiglu
    const int64_t n = 20000;
    F g = randf(n, 11), u = randf(n, 12), h(n), dg(n, 0.f), du(n, 0.f);
    swiglu_forward(h.data(), g.data(), u.data(), n);
    swiglu_backward(dg.data(), du.data(), randf(n, 13).data(), g.data(), u.data(), n);
    keep("swiglu h", h);
    keep("swiglu dg", dg);
    keep("swiglu du", du);
  }
  {  // router + balance loss + dispatch/combine
    const int64_t B = 3, T = 100, N = B * T, E = 16, K = 4, D = 32;
    const RouterConfig cfg{.E = E, .K = K, .n_group = 4, .topk_group = 2, .routed_scaling_factor = 2.5};
    F logits = randf(N * E, 14), bias = randf(E, 15, 0.1), gates(N * K), s(N * E), f(B * E);
    std::vector<Index> idx(N * K);
    std::vector<int32_t> load(E);
    router_forward(idx.data(), gates.data(), s.data(), load.data(), logits.data(), bias.data(), N, cfg);
    const double bal = balance_loss_forward(f.data(), s.data(), idx.data(), B, T, E, K);
    F ds(N * E, 0.f), dlogits(N * E, 0.f);
    balance_loss_backward(ds.data(), 1e-4, f.data(), s.data(), B, T, E);
    std::vector<int64_t> offsets(E + 1), row_of(N * K);
    std::vector<Index> row_token(N * K);
    moe_plan(offsets.data(), row_token.data(), row_of.data(), idx.data(), N, K, E);
    F x = randf(N * D, 16), xe(N * K * D), y = randf(N * D, 17), dxe = randf(N * K * D, 18), dx(N * D, 0.f);
    moe_gather_forward(xe.data(), x.data(), row_token.data(), N, K, D);
    moe_combine_forward(y.data(), xe.data(), gates.data(), row_of.data(), N, K, D);
    F dye(N * K * D, 0.f), dgates(N * K, 0.f);
    moe_combine_backward(dye.data(), dgates.data(), randf(N * D, 19).data(), xe.data(), gates.data(), row_of.data(), N, K, D);
    moe_gather_backward(dx.data(), dxe.data(), row_of.data(), N, K, D);
    router_backward(dlogits.data(), dgates.data(), ds.data(), idx.data(), s.data(), N, cfg);
    F idxf(idx.begin(), idx.end()), loadf(load.begin(), load.end());
    keep("router indices", idxf);
    keep("router load", loadf);
    keep("router gates", gates);
    keep("balance loss", {static_cast<float>(bal), static_cast<float>(bal - static_cast<float>(bal))});
    keep("balance ds", ds);
    keep("moe combine y", y);
    keep("moe dye", dye);
    keep("moe dgates", dgates);
    keep("moe gather dx", dx);
    keep("router dlogits", dlogits);
  }
  {  // cross-entropy
    const int64_t N = 64, V = 1000;
    std::vector<Index> t(N);
    for (int64_t n = 0; n < N; ++n) t[n] = n % 5 == 0 ? -1 : static_cast<Index>((n * 37) % V);
    F logits = randf(N * V, 20, 3.0), lse(N), d(N * V);
    const double loss = cross_entropy_forward(lse.data(), logits.data(), t.data(), N, V);
    cross_entropy_backward(d.data(), 1.0, logits.data(), lse.data(), t.data(), N, V);
    keep("xent loss", {static_cast<float>(loss), static_cast<float>(loss - static_cast<float>(loss))});
    keep("xent dlogits", d);
  }
  {  // linear
    const int64_t N = 64, IN = 128, OUT = 96;
    F x = randf(N * IN, 21), w = randf(OUT * IN, 22), y(N * OUT), dx(N * IN, 0.f), dw(OUT * IN, 0.f);
    linear_forward(y.data(), x.data(), w.data(), N, IN, OUT);
    linear_backward(dx.data(), dw.data(), randf(N * OUT, 23).data(), x.data(), w.data(), N, IN, OUT);
    keep("linear y", y);
    keep("linear dx", dx);
    keep("linear dw", dw);
  }
  return out;
}

TEST(OpsDeterminism, OneAndTwoThreadsGiveIdenticalBits) {
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const auto one = run_all();
  omp_set_num_threads(2);
  const auto two = run_all();
  const auto again = run_all();
  omp_set_num_threads(saved);
  ASSERT_EQ(one.size(), two.size());
  for (size_t i = 0; i < one.size(); ++i) {
    const F& a = one[i].second;
    const F& b = two[i].second;
    ASSERT_EQ(a.size(), b.size()) << one[i].first;
    const bool same = std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0 &&
                      std::memcmp(b.data(), again[i].second.data(), b.size() * sizeof(float)) == 0;
    std::printf("[determinism] %-18s %7zu values, 1 vs 2 threads (and rerun): %s\n", one[i].first.c_str(),
                a.size(), same ? "identical bits" : "DIFFERENT");
    EXPECT_TRUE(same) << one[i].first;
  }
}

}  // namespace
}  // namespace tinyseek::ops::test
