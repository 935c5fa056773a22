// Every op's backward against central finite differences in double precision, at tiny
// shapes and several input scales, plus the float instantiation against the double one
// (method: ops_test_util.h). Each check prints max |grad|, max abs error and the normwise
// relative error with its tolerance.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "ops_test_util.h"
#include "tinyseek/ops/attention.h"
#include "tinyseek/ops/balance_loss.h"
#include "tinyseek/ops/cross_entropy.h"
#include "tinyseek/ops/embedding.h"
#include "tinyseek/ops/moe_dispatch.h"
#include "tinyseek/ops/rmsnorm.h"
#include "tinyseek/ops/rope.h"
#include "tinyseek/ops/router.h"
#include "tinyseek/ops/swiglu.h"

namespace tinyseek::ops::test {
namespace {

const double kScales[] = {0.1, 1.0, 10.0};

TEST(OpsGrad, Embedding) {
  const int64_t V = 7, D = 5, N = 9;
  const std::vector<Index> tokens = {3, 1, 3, 0, 6, 3, 1, 2, 6};  // repeats: scatter-add sums
  const Vec G = randn(N * D, 1);
  struct In { Vec table; };
  for (double scale : kScales)
    check_op("embedding", scale, In{randn(V * D, 2, scale)}, {&In::table}, {"table"},
             [&]<class T>(const In& in, bool backward) {
               const auto table = cast<T>(in.table);
               std::vector<T> out(N * D);
               embedding_forward(out.data(), tokens.data(), table.data(), N, D, V);
               Eval r;
               r.out = to_double(out.data(), out.size());
               r.loss = dot(r.out, G);
               if (backward) {
                 auto dtable = grad_prefill<T>(V * D, 3);
                 const auto g = cast<T>(G);
                 embedding_backward(dtable.data(), g.data(), tokens.data(), N, D, V);
                 r.grads.push_back(accumulated(dtable, V * D, 3));
               }
               return r;
             });
}

// N = 37 rows span two dw chunks; D = 7 and 19 exercise the vector-lane tails; ldx > D checks
// the strided column-slice form (padding must neither be read nor written).
void check_rmsnorm(int64_t N, int64_t D, int64_t ldx) {
  const int64_t ld = ldx ? ldx : D;
  const Vec G = randn(N * D, 4);
  struct In { Vec x, w; };
  for (double scale : {0.01, 1.0, 100.0}) {
    In in{randn(N * ld, 5, scale), randn(D, 6, 0.3)};
    for (double& w : in.w) w += 1.0;
    check_op("rmsnorm", scale, in, {&In::x, &In::w}, {"x", "w"}, [&]<class T>(const In& in, bool backward) {
      const auto x = cast<T>(in.x), w = cast<T>(in.w);
      std::vector<T> y(N * D), rstd(N);
      rmsnorm_forward(y.data(), rstd.data(), x.data(), w.data(), N, D, 1e-6, ldx);
      Eval r;
      r.out = to_double(y.data(), y.size());
      r.loss = dot(r.out, G);
      if (backward) {
        auto dx = grad_prefill<T>(N * ld, 7), dw = grad_prefill<T>(D, 8);
        const auto g = cast<T>(G);
        rmsnorm_backward(dx.data(), dw.data(), g.data(), x.data(), w.data(), rstd.data(), N, D, ldx);
        r.grads.push_back(accumulated(dx, N * ld, 7));
        r.grads.push_back(accumulated(dw, D, 8));
      }
      return r;
    });
  }
}

TEST(OpsGrad, RmsNorm) { check_rmsnorm(37, 19, 0); }
TEST(OpsGrad, RmsNormStridedSlice) { check_rmsnorm(5, 7, 10); }

// RoPE on the rope part of a query-shaped buffer [N, H, dn+dr] (strided vectors) into a
// contiguous [N, H, dr]; backward writes the inverse rotation into the strided slice of a
// gradient buffer whose other entries must stay untouched.
TEST(OpsGrad, Rope) {
  const int64_t B = 2, T_seq = 3, N = B * T_seq, H = 2, dn = 3, dr = 8, ld = dn + dr, offset = 2;
  const auto table_d = make_rope_table<double>(dr, 8, 10.0);
  const auto table_f = make_rope_table<float>(dr, 8, 10.0);
  const Vec G = randn(N * H * dr, 9);
  struct In { Vec x; };
  for (double scale : kScales)
    check_op("rope", scale, In{randn(N * H * ld, 10, scale)}, {&In::x}, {"x"}, [&]<class T>(const In& in, bool backward) {
      const RopeTable<T>* table;
      if constexpr (std::is_same_v<T, double>) table = &table_d; else table = &table_f;
      const auto x = cast<T>(in.x);
      std::vector<T> y(N * H * dr);
      rope_forward(y.data(), x.data() + dn, *table, N, H, T_seq, offset, dr, ld);
      Eval r;
      r.out = to_double(y.data(), y.size());
      r.loss = dot(r.out, G);
      if (backward) {
        const T sentinel = T(7);
        std::vector<T> dx(N * H * ld, sentinel);
        const auto g = cast<T>(G);
        rope_backward(dx.data() + dn, g.data(), *table, N, H, T_seq, offset, ld, dr);
        Vec d(dx.size());
        for (size_t i = 0; i < dx.size(); ++i) {
          if (static_cast<int64_t>(i % ld) < dn) {
            EXPECT_EQ(dx[i], sentinel) << "rope_backward wrote outside the rope slice at " << i;
            d[i] = 0;
          } else {
            d[i] = dx[i];
          }
        }
        r.grads.push_back(d);
      }
      return r;
    });
}

void check_attention(int64_t B, int64_t T_seq, int64_t H, int64_t dn, int64_t dr, int64_t dv,
                     std::initializer_list<double> scales) {
  const int64_t N = B * T_seq;
  const Vec G = randn(N * H * dv, 11);
  struct In { Vec q, kv, k_pe; };
  for (double scale : scales) {
    In in{randn(N * H * (dn + dr), 12, scale), randn(N * H * (dn + dv), 13, scale), randn(N * dr, 14, scale)};
    check_op("attention", scale, in, {&In::q, &In::kv, &In::k_pe}, {"q", "kv", "k_pe"},
             [&]<class T>(const In& in, bool backward) {
               const auto q = cast<T>(in.q), kv = cast<T>(in.kv), k_pe = cast<T>(in.k_pe);
               std::vector<T> o(N * H * dv), lse(N * H);
               attention_forward(o.data(), lse.data(), q.data(), kv.data(), k_pe.data(), B, T_seq, H, dn, dr, dv);
               Eval r;
               r.out = to_double(o.data(), o.size());
               r.loss = dot(r.out, G);
               if (backward) {
                 auto dq = grad_prefill<T>(q.size(), 15), dkv = grad_prefill<T>(kv.size(), 16),
                      dk_pe = grad_prefill<T>(k_pe.size(), 17);
                 const auto g = cast<T>(G);
                 attention_backward(dq.data(), dkv.data(), dk_pe.data(), g.data(), q.data(), kv.data(),
                                    k_pe.data(), o.data(), lse.data(), B, T_seq, H, dn, dr, dv);
                 r.grads.push_back(accumulated(dq, q.size(), 15));
                 r.grads.push_back(accumulated(dkv, kv.size(), 16));
                 r.grads.push_back(accumulated(dk_pe, k_pe.size(), 17));
               }
               return r;
             });
  }
}

TEST(OpsGrad, Attention) { check_attention(2, 5, 2, 4, 2, 3, {0.3, 1.0, 3.0}); }
// T = 37 > one forward query block (32); dn = 17 crosses a vector-lane boundary.
TEST(OpsGrad, AttentionLongerSequence) { check_attention(1, 37, 1, 17, 2, 3, {1.0}); }

TEST(OpsGrad, SwiGlu) {
  const int64_t n = 23;
  const Vec G = randn(n, 18);
  struct In { Vec g, u; };
  for (double scale : kScales)
    check_op("swiglu", scale, In{randn(n, 19, scale), randn(n, 20, scale)}, {&In::g, &In::u}, {"g", "u"},
             [&]<class T>(const In& in, bool backward) {
               const auto g = cast<T>(in.g), u = cast<T>(in.u);
               std::vector<T> h(n);
               swiglu_forward(h.data(), g.data(), u.data(), n);
               Eval r;
               r.out = to_double(h.data(), n);
               r.loss = dot(r.out, G);
               if (backward) {
                 auto dg = grad_prefill<T>(n, 21), du = grad_prefill<T>(n, 22);
                 const auto dh = cast<T>(G);
                 swiglu_backward(dg.data(), du.data(), dh.data(), g.data(), u.data(), n);
                 r.grads.push_back(accumulated(dg, n, 21));
                 r.grads.push_back(accumulated(du, n, 22));
               }
               return r;
             });
}

// L = Σ Gg ⊙ gates + Σ Gs ⊙ scores: both gradient paths (through the gates, and directly into
// s as the balance loss does). The selection must not change under the FD steps (checked).
void check_router(const RouterConfig& cfg, const char* label) {
  const int64_t N = 6, E = cfg.E, K = cfg.K;
  const Vec Gg = randn(N * K, 23), Gs = randn(N * E, 24), bias = randn(E, 25, 0.1);
  std::vector<Index> reference_indices;
  struct In { Vec logits; };
  for (double scale : {0.3, 1.0, 3.0})
    check_op(label, scale, In{randn(N * E, 26, scale)}, {&In::logits}, {"logits"},
             [&]<class T>(const In& in, bool backward) {
               const auto logits = cast<T>(in.logits), b = cast<T>(bias);
               std::vector<Index> idx(N * K);
               std::vector<T> gates(N * K), scores(N * E);
               std::vector<int32_t> load(E);
               router_forward(idx.data(), gates.data(), scores.data(), load.data(), logits.data(), b.data(), N, cfg);
               if (backward && std::is_same_v<T, double>) reference_indices = idx;
               EXPECT_EQ(idx, reference_indices) << "selection changed under a finite-difference step";
               Eval r;
               const Vec g = to_double(gates.data(), gates.size()), s = to_double(scores.data(), scores.size());
               r.out = g;
               r.out.insert(r.out.end(), s.begin(), s.end());
               r.loss = dot(g, Gg) + dot(s, Gs);
               if (backward) {
                 auto dlogits = grad_prefill<T>(N * E, 27);
                 const auto dg = cast<T>(Gg), ds = cast<T>(Gs);
                 router_backward(dlogits.data(), dg.data(), ds.data(), idx.data(), scores.data(), N, cfg);
                 r.grads.push_back(accumulated(dlogits, N * E, 27));
               }
               return r;
             });
}

TEST(OpsGrad, RouterGroupLimitedNormalised) {
  check_router({.E = 8, .K = 3, .n_group = 4, .topk_group = 2, .norm_topk_prob = true, .routed_scaling_factor = 2.5},
               "router(group)");
}
TEST(OpsGrad, RouterUnnormalised) {
  check_router({.E = 8, .K = 2, .n_group = 1, .topk_group = 1, .norm_topk_prob = false, .routed_scaling_factor = 1.5},
               "router(unnorm)");
}

TEST(OpsGrad, BalanceLoss) {
  const int64_t B = 2, T_seq = 4, E = 6, K = 2, N = B * T_seq;
  // Selection from a real router call; the loss treats it (and so f) as constant.
  const RouterConfig cfg{.E = E, .K = K};
  const auto logits = cast<double>(randn(N * E, 28));
  std::vector<Index> idx(N * K);
  std::vector<double> gates(N * K), s0(N * E);
  std::vector<int32_t> load(E);
  router_forward(idx.data(), gates.data(), s0.data(), load.data(), logits.data(), static_cast<const double*>(nullptr), N, cfg);
  struct In { Vec scores; };
  for (double scale : kScales) {
    In in{Vec(s0.begin(), s0.end())};
    for (double& v : in.scores) v *= scale;  // scores are positive (sigmoids); scale them
    check_op("balance_loss", scale, in, {&In::scores}, {"scores"}, [&]<class T>(const In& in, bool backward) {
      const auto s = cast<T>(in.scores);
      std::vector<T> f(B * E);
      Eval r;
      r.loss = balance_loss_forward(f.data(), s.data(), idx.data(), B, T_seq, E, K);
      r.out = {r.loss};
      for (T v : f) r.out.push_back(static_cast<double>(v));
      if (backward) {
        auto ds = grad_prefill<T>(N * E, 29);
        balance_loss_backward(ds.data(), 1.0, f.data(), s.data(), B, T_seq, E);
        r.grads.push_back(accumulated(ds, N * E, 29));
      }
      return r;
    });
  }
}

struct MoePlanFixture {
  static constexpr int64_t N = 5, K = 2, E = 4;
  std::vector<Index> indices = {2, 0, 1, 2, 3, 1, 0, 3, 2, 1};
  std::vector<int64_t> offsets = std::vector<int64_t>(E + 1), row_of = std::vector<int64_t>(N * K);
  std::vector<Index> row_token = std::vector<Index>(N * K);
  MoePlanFixture() { moe_plan(offsets.data(), row_token.data(), row_of.data(), indices.data(), N, K, E); }
};

TEST(OpsGrad, MoeGather) {
  const MoePlanFixture p;
  const int64_t N = p.N, K = p.K, D = 3;
  const Vec G = randn(N * K * D, 30);
  struct In { Vec x; };
  for (double scale : kScales)
    check_op("moe_gather", scale, In{randn(N * D, 31, scale)}, {&In::x}, {"x"}, [&]<class T>(const In& in, bool backward) {
      const auto x = cast<T>(in.x);
      std::vector<T> xe(N * K * D);
      moe_gather_forward(xe.data(), x.data(), p.row_token.data(), N, K, D);
      Eval r;
      r.out = to_double(xe.data(), xe.size());
      r.loss = dot(r.out, G);
      if (backward) {
        auto dx = grad_prefill<T>(N * D, 32);
        const auto dxe = cast<T>(G);
        moe_gather_backward(dx.data(), dxe.data(), p.row_of.data(), N, K, D);
        r.grads.push_back(accumulated(dx, N * D, 32));
      }
      return r;
    });
}

TEST(OpsGrad, MoeCombine) {
  const MoePlanFixture p;
  const int64_t N = p.N, K = p.K, D = 3;
  const Vec G = randn(N * D, 33), y0 = randn(N * D, 34);
  struct In { Vec ye, gates; };
  for (double scale : kScales)
    check_op("moe_combine", scale, In{randn(N * K * D, 35, scale), randn(N * K, 36, scale)}, {&In::ye, &In::gates},
             {"ye", "gates"}, [&]<class T>(const In& in, bool backward) {
               const auto ye = cast<T>(in.ye), gates = cast<T>(in.gates);
               auto y = cast<T>(y0);  // combine accumulates onto the shared-expert output
               moe_combine_forward(y.data(), ye.data(), gates.data(), p.row_of.data(), N, K, D);
               Eval r;
               r.out = to_double(y.data(), y.size());
               r.loss = dot(r.out, G);
               if (backward) {
                 auto dye = grad_prefill<T>(N * K * D, 37), dgates = grad_prefill<T>(N * K, 38);
                 const auto dy = cast<T>(G);
                 moe_combine_backward(dye.data(), dgates.data(), dy.data(), ye.data(), gates.data(), p.row_of.data(), N, K, D);
                 r.grads.push_back(accumulated(dye, N * K * D, 37));
                 r.grads.push_back(accumulated(dgates, N * K, 38));
               }
               return r;
             });
}

// Loss scaled by dloss = 0.7; row 2 is masked (target −1) and must get zero gradient; the
// backward overwrites, so dlogits starts as NaN.
TEST(OpsGrad, CrossEntropy) {
  const int64_t N = 6, V = 11;
  const std::vector<Index> targets = {3, 0, -1, 10, 3, 7};
  const double dloss = 0.7;
  struct In { Vec logits; };
  for (double scale : {0.1, 1.0, 10.0, 100.0})
    check_op("cross_entropy", scale, In{randn(N * V, 39, scale)}, {&In::logits}, {"logits"},
             [&]<class T>(const In& in, bool backward) {
               const auto logits = cast<T>(in.logits);
               std::vector<T> lse(N);
               Eval r;
               const double loss = cross_entropy_forward(lse.data(), logits.data(), targets.data(), N, V);
               r.loss = dloss * loss;
               r.out = {loss};
               for (T v : lse) r.out.push_back(static_cast<double>(v));
               if (backward) {
                 std::vector<T> dlogits(N * V, std::numeric_limits<T>::quiet_NaN());
                 cross_entropy_backward(dlogits.data(), dloss, logits.data(), lse.data(), targets.data(), N, V);
                 for (int64_t j = 0; j < V; ++j) EXPECT_EQ(dlogits[2 * V + j], T(0)) << "masked row got gradient";
                 r.grads.push_back(to_double(dlogits.data(), dlogits.size()));
               }
               return r;
             });
}

}  // namespace
}  // namespace tinyseek::ops::test
