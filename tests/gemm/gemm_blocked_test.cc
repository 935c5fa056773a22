// Tests of every GEMM backend (kReference, kPortable, kAvx512) and the kAuto dispatch: each
// backend against the FP64 oracle within gemm_error_bound over the generic shape sweep, the
// training orientations (Fprop, Dgrad, Wgrad with beta = 1; small odd and larger shapes),
// every FP8 granularity on either side, odd sizes at every blocking boundary (MR, NR, kc,
// mc, nc, G ± 1); the blocked kernels' documented formula bit for bit; alpha/beta (beta = 0
// ignores NaN in C; C = alpha·acc + beta·C0 bit for bit); prepacked B gives the same bits as
// unpacked; identical bits for 1, 2, 3 threads and across runs; kAuto follows simd_path()
// (set_simd_override and TINYSEEK_SIMD=portable); edge cases and bad input.
// Each test prints the worst max |C - C64| / tol per backend.
#include <gtest/gtest.h>
#include <omp.h>

#include <unistd.h>

#include <bit>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "gemm_test_util.h"
#include "tinyseek/numerics/simd.h"

namespace tinyseek::gemm {
namespace {

using namespace gemm_test;

bool have_avx512() { return cpu_has_avx512_bf16(); }

std::vector<Backend> blocked_backends() {
  std::vector<Backend> b = {Backend::kPortable};
  if (have_avx512()) b.push_back(Backend::kAvx512);
  return b;
}

std::vector<Backend> all_backends() {
  std::vector<Backend> b = {Backend::kReference};
  for (Backend x : blocked_backends()) b.push_back(x);
  return b;
}

// Worst ratio per backend over a test, printed at the end.
struct Worst {
  std::map<std::string, double> ratio;
  std::map<std::string, int> cases;
  void add(Backend b, const Evidence& e) {
    double& r = ratio[to_string(b)];
    r = std::max(r, e.ratio);
    ++cases[to_string(b)];
  }
  void print(const char* what) const {
    for (const auto& [name, r] : ratio)
      std::printf("%s: backend %-9s worst max|C-C64|/tol = %.3e over %d cases\n", what, name.c_str(), r,
                  cases.at(name));
  }
};

// One oracle per case, every backend judged against it.
void run_all_backends(const Case& c, uint64_t seed, Worst& worst, bool print = false) {
  const Problem p = make_problem(c, seed);
  for (Backend b : all_backends()) worst.add(b, judge(c, p, run_backend(c, p, b), to_string(b), print));
}

// The generic 48-case sweep (sweep_case) through every backend, the reference included.
TEST(GemmBlocked, BackendsMatchOracleSweep) {
  Worst worst;
  for (int i = 0; i < 48; ++i) run_all_backends(sweep_case(i), 1000 + i, worst);
  worst.print("sweep");
}

// The orientations training uses (Linear with X [T, Kin], W [Nout, Kin], dY [T, Nout]):
//   Fprop M=T,    N=Nout, K=Kin:  A = X [T,Kin] 1x128,         B = W [Nout,Kin] block, trans
//   Dgrad M=T,    N=Kin,  K=Nout: A = dY [T,Nout] 1x128,       B = W [Nout,Kin] block
//   Wgrad M=Nout, N=Kin,  K=T:    A = dY [T,Nout] 128x1 trans, B = X [T,Kin] 128x1, beta = 1
// and the same with OCP MX 32-element blocks along K; through every backend. Large shapes
// in every dtype (FP8 roles only for E4M3); small odd shapes in FP8 (gradients in E5M2 for
// some, the hybrid recipe). Checks the promotion interval each role gets (128, MX: 32).
TEST(GemmBlocked, BackendsMatchOracleTrainingOrientations) {
  struct Role {
    const char* name;
    bool ta, tb;
    Granularity ga, gb;
    float beta;
    int64_t expected_G;
  };
  const Role roles[] = {
      {"fprop", false, true, Granularity::Tile1x128, Granularity::Block128x128, 0.0f, 128},
      {"dgrad", false, false, Granularity::Tile1x128, Granularity::Block128x128, 0.0f, 128},
      {"wgrad", true, false, Granularity::Tile128x1, Granularity::Tile128x1, 1.0f, 128},
      {"fprop-mx", false, true, Granularity::Mx1x32, Granularity::Mx1x32, 0.0f, 32},
      {"dgrad-mx", false, false, Granularity::Mx1x32, Granularity::Mx32x1, 0.0f, 32},
      {"wgrad-mx", true, false, Granularity::Mx32x1, Granularity::Mx32x1, 1.0f, 32},
  };
  const int64_t large[][3] = {{512, 384, 1000}, {300, 257, 129}, {33, 1030, 520}};
  const int64_t small[][3] = {{1, 300, 129}, {127, 255, 300}, {129, 128, 255}, {300, 2, 128}};
  Worst worst;
  int i = 0;
  auto run = [&](const Role& r, const int64_t* shape, DType dt, bool dy_e5m2, int64_t pad) {
    Case c;
    c.label = r.name;
    c.M = shape[0], c.N = shape[1], c.K = shape[2];
    c.ta = r.ta, c.tb = r.tb, c.beta = r.beta;
    c.a = {dy_e5m2 ? DType::E5M2 : dt, r.ga};
    c.b = {dt, r.gb};
    c.pad = pad;
    const Problem p = make_problem(c, 5000 + i++);
    if (is_fp8(dt)) {
      EXPECT_EQ(promotion_interval(p.A.view(), p.B.view(), c.promote_every), r.expected_G) << r.name;
    }
    for (Backend b : all_backends()) worst.add(b, judge(c, p, run_backend(c, p, b), to_string(b), true));
  };
  for (const Role& r : roles) {
    const bool mx = std::string(r.name).find("mx") != std::string::npos;
    const bool grad_a = std::string(r.name).rfind("fprop", 0) != 0;  // A is dY
    for (int s = 0; s < 3; ++s)
      for (DType dt : {DType::F32, DType::BF16, DType::E4M3}) {
        if (mx && dt != DType::E4M3) continue;  // MX roles differ only in FP8 scales
        run(r, large[s], dt, dt == DType::E4M3 && s == 1 && grad_a, s == 1 ? 5 : 0);
      }
    for (int s = 0; s < 4; ++s) run(r, small[s], DType::E4M3, s >= 2 && grad_a, s % 2 ? 5 : 0);
  }
  worst.print("training orientations");
}

// Sizes one below, at and one above every blocking boundary: MR (8 avx512, 4 portable), NR
// (32, 8), kc (256 k-steps: 512 k for BF16 pairs, 256 for FP32), mc (128) and nc (1024),
// and the promotion interval (127/128/129). Also K that ends on an odd element of a pair.
TEST(GemmBlocked, OddSizesAtBlockingBoundaries) {
  const int64_t Ms[] = {1, 3, 5, 7, 8, 9, 127, 128, 129, 257};
  const int64_t Ns[] = {1, 7, 9, 31, 32, 33, 65, 1023, 1025};
  const int64_t Ks[] = {1, 2, 3, 127, 128, 129, 255, 256, 257, 511, 512, 513};
  const OperandSpec specs[][2] = {{{DType::F32}, {DType::F32}},
                                  {{DType::BF16}, {DType::BF16}},
                                  {{DType::E4M3, Granularity::Tile1x128}, {DType::E4M3, Granularity::Block128x128}},
                                  {{DType::BF16}, {DType::E5M2, Granularity::Row}}};
  Worst worst;
  int i = 0;
  // Every M with every K and every N with every K, paired cyclically (each value appears
  // with several partners), large N only with small M to keep the oracle cheap.
  for (int64_t mi = 0; mi < 10; ++mi)
    for (int64_t ki = 0; ki < 12; ki += 3) {
      Case c;
      c.label = "boundary";
      c.M = Ms[mi], c.K = Ks[(ki + mi) % 12], c.N = Ns[(mi + ki) % 6];
      c.tb = (mi + ki) % 2, c.ta = (mi / 2 + ki) % 3 == 0;
      c.a = specs[i % 4][0], c.b = specs[i % 4][1];
      run_all_backends(c, 7000 + i++, worst);
    }
  for (int64_t ni = 0; ni < 9; ++ni)
    for (int64_t ki = 0; ki < 12; ki += 4) {
      Case c;
      c.label = "boundary";
      c.N = Ns[ni], c.K = Ks[(ki + ni) % 12], c.M = Ns[ni] > 100 ? 9 : Ms[(ni + ki) % 10];
      c.tb = (ni + ki) % 2 == 0, c.ta = ni % 3 == 1;
      c.a = specs[i % 4][0], c.b = specs[i % 4][1];
      if (ni % 2) c.beta = 1.0f;
      run_all_backends(c, 7000 + i++, worst);
    }
  worst.print("blocking boundaries");
}

// Every FP8 granularity for A against every one for B (64 pairs), in all four (transA,
// transB) combinations: per-tensor/row/col scales, 1x128 and 128x1 tiles, 128x128 blocks and
// MX blocks, which give G = 1, 32, 128 or K.
TEST(GemmBlocked, EveryGranularityOnEitherSide) {
  Worst worst;
  int i = 0;
  for (Granularity ga : kGrans)
    for (Granularity gb : kGrans) {
      Case c;
      c.label = "gran";
      c.M = 37, c.N = 45, c.K = 300;
      c.ta = i & 1, c.tb = (i >> 1) & 1;
      c.a = {i % 3 ? DType::E4M3 : DType::E5M2, ga};
      c.b = {DType::E4M3, gb};
      c.pad = i % 2 ? 4 : 0;
      run_all_backends(c, 9000 + i++, worst);
    }
  worst.print("granularities");
}

// The formula gemm.h states for the blocked kernels, emulated in scalar code, bit for bit:
//   avx512 BF16 kernel  P = ((P + a_odd·b_odd) + a_even·b_even) per k-pair (vdpbf16ps order)
//   avx512 FP32 kernel  P = fma(a, b, P) in k order
//   portable            P = P + a·b in k order
// then acc = s·P (first group), acc = fma(P, s, acc) (avx512) or acc + s·P (portable), with
// s = sA·sB, and C = alpha·acc + beta·C0. K = 301 gives groups of 128, 128 and 45 (odd: the
// last pair is padded with a zero product).
TEST(GemmBlocked, KernelsComputeTheDocumentedFormulaBitwise) {
  const int64_t M = 9, N = 35, K = 301, G = 128;
  struct Variant {
    Backend backend;
    DType a, b;
    bool b_per_column = false;  // B = [K, N] with 128x1 tiles (Wgrad's X): sB varies across a panel
  };
  std::vector<Variant> variants = {{Backend::kPortable, DType::E4M3, DType::E4M3},
                                   {Backend::kPortable, DType::F32, DType::F32},
                                   {Backend::kPortable, DType::E4M3, DType::E4M3, true}};
  if (have_avx512()) {
    variants.push_back({Backend::kAvx512, DType::E4M3, DType::E5M2});        // BF16 kernel, one sB per panel
    variants.push_back({Backend::kAvx512, DType::E5M2, DType::E4M3, true});  // BF16 kernel, sB per column
    variants.push_back({Backend::kAvx512, DType::F32, DType::E4M3});         // FP32 kernel (mixed)
  }
  for (const Variant& v : variants) {
    const Operand A = make_operand({v.a, Granularity::Tile1x128}, M, K, 0, false, 18000);
    const Operand B = v.b_per_column ? make_operand({v.b, Granularity::Tile128x1}, K, N, 0, false, 18001)
                                     : make_operand({v.b, Granularity::Block128x128}, N, K, 0, true, 18001);
    const Matrix a = A.view(), b = B.view();
    const float alpha = 1.5f, beta = -0.5f;
    const std::vector<float> C0 = test_matrix(M, N, N, 18002);
    std::vector<float> C = C0;
    GemmOptions opt;
    opt.backend = v.backend, opt.alpha = alpha, opt.beta = beta;
    gemm(C.data(), N, a, b, opt);
    const bool pairs = v.backend == Backend::kAvx512 && v.a != DType::F32 && v.b != DType::F32;
    const bool fused = v.backend == Backend::kAvx512;
    auto val = [](const Operand& X, const Matrix& x, int64_t i, int64_t j) -> float {
      switch (X.spec.dtype) {
        case DType::F32: return X.f32[i * x.ld + j];
        case DType::BF16: return numerics::bf16_decode(X.bf16[i * x.ld + j]);
        default:
          return numerics::fp8_decode(X.codes[i * x.ld + j],
                                      X.spec.dtype == DType::E4M3 ? Fp8Format::E4M3 : Fp8Format::E5M2);
      }
    };
    auto scale = [](const Operand& X, int64_t i, int64_t j) {
      return is_fp8(X.spec.dtype) ? X.q.scale_at(i, j) : 1.0f;
    };
    // B's element and scale at (k, n) of op(B).
    auto bval = [&](int64_t k, int64_t n) { return v.b_per_column ? val(B, b, k, n) : val(B, b, n, k); };
    auto bscale = [&](int64_t k, int64_t n) { return v.b_per_column ? scale(B, k, n) : scale(B, n, k); };
    int64_t mismatches = 0;
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        float acc = 0.0f;
        for (int64_t k0 = 0; k0 < K; k0 += G) {
          const int64_t len = std::min(G, K - k0);
          float P = 0.0f;
          if (pairs) {
            for (int64_t j = 0; j < len; j += 2) {
              const float even = val(A, a, m, k0 + j) * bval(k0 + j, n);
              const float odd = j + 1 < len ? val(A, a, m, k0 + j + 1) * bval(k0 + j + 1, n) : 0.0f;
              P = (P + odd) + even;
            }
          } else {
            for (int64_t j = 0; j < len; ++j) {
              const float x = val(A, a, m, k0 + j), y = bval(k0 + j, n);
              P = fused ? std::fma(x, y, P) : P + x * y;
            }
          }
          const float s = scale(A, m, k0) * bscale(k0, n);
          if (k0 == 0) {
            acc = s * P;
          } else {
            acc = fused ? std::fma(P, s, acc) : acc + s * P;
          }
        }
        const float want = alpha * acc + beta * C0[m * N + n];
        mismatches += std::bit_cast<uint32_t>(want) != std::bit_cast<uint32_t>(C[m * N + n]);
      }
    std::printf("%-8s A %s B %s %s (%s kernel): %lld of %lld outputs differ in bits from the documented formula\n",
                to_string(v.backend), to_string(v.a), to_string(v.b), v.b_per_column ? "128x1" : "128x128",
                pairs ? "BF16-pair" : "FP32",
                (long long)mismatches, (long long)(M * N));
    EXPECT_EQ(mismatches, 0);
  }
}

// beta = 0 never reads C (NaN there stays out), and C = alpha·acc + beta·C0 exactly, with
// acc the backend's own sums (from alpha = 1, beta = 0), each product rounded, then added.
TEST(GemmBlocked, AlphaBetaSemanticsBitwise) {
  const int64_t M = 37, N = 41, K = 600, ldc = N + 2;
  const OperandSpec specs[][2] = {{{DType::F32}, {DType::F32}},
                                  {{DType::F32}, {DType::BF16}},
                                  {{DType::BF16}, {DType::BF16}},
                                  {{DType::E4M3, Granularity::Tile1x128}, {DType::E4M3, Granularity::Block128x128}}};
  for (Backend be : all_backends())
    for (const auto& s : specs) {
      const Operand A = make_operand(s[0], M, K, 0, false, 31);
      const Operand B = make_operand(s[1], N, K, 0, true, 32);
      const Matrix a = A.view(), b = B.view();
      GemmOptions opt;
      opt.backend = be;
      std::vector<float> acc(M * ldc, kNaN), over_zero(M * ldc, 0.0f);
      gemm(acc.data(), ldc, a, b, opt);
      gemm(over_zero.data(), ldc, a, b, opt);
      int64_t nonfinite = 0, differ = 0;
      for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n) {
          nonfinite += !std::isfinite(acc[m * ldc + n]);
          differ += std::bit_cast<uint32_t>(acc[m * ldc + n]) != std::bit_cast<uint32_t>(over_zero[m * ldc + n]);
        }
      std::printf("%-9s A %-15s B %-20s beta 0 over NaN C: %lld non-finite, %lld differ from C = 0\n",
                  to_string(be), spec_name(s[0]).c_str(), spec_name(s[1]).c_str(), (long long)nonfinite,
                  (long long)differ);
      EXPECT_EQ(nonfinite, 0);
      EXPECT_EQ(differ, 0);
      const std::vector<float> C0 = test_matrix(M, N, ldc, 33);
      const float ab[][2] = {{2.5f, -0.75f}, {-1.0f, 1.0f}, {0.0f, 1.0f}, {0.5f, 0.0f}, {1.0f, 1.0f}};
      for (const auto& v : ab) {
        std::vector<float> C = C0;
        opt.alpha = v[0], opt.beta = v[1];
        gemm(C.data(), ldc, a, b, opt);
        int64_t wrong = 0;
        for (int64_t m = 0; m < M; ++m)
          for (int64_t n = 0; n < N; ++n) {
            const float want =
                v[1] == 0.0f ? v[0] * acc[m * ldc + n] : v[0] * acc[m * ldc + n] + v[1] * C0[m * ldc + n];
            wrong += std::bit_cast<uint32_t>(want) != std::bit_cast<uint32_t>(C[m * ldc + n]);
          }
        std::vector<double> c64(M * N), tol(M * N);
        gemm_oracle(c64.data(), C0.data(), ldc, a, b, v[0], v[1]);
        gemm_error_bound(tol.data(), C0.data(), ldc, a, b, v[0], v[1], 128);
        const Evidence e = compare(C.data(), ldc, c64, tol, M, N);
        std::printf("%-9s alpha %5.2f beta %5.2f A %-15s B %-20s: %lld bit mismatches vs alpha*acc+beta*C0, "
                    "max|C-C64|/tol %.3e, max abs %.3e\n",
                    to_string(be), v[0], v[1], spec_name(s[0]).c_str(), spec_name(s[1]).c_str(), (long long)wrong,
                    e.ratio, e.max_abs);
        EXPECT_EQ(wrong, 0);
        EXPECT_LE(e.ratio, 1.0);
      }
    }
}

// gemm(A, pack_b(B)) has the bits of gemm(A, B), in every orientation and dtype; a PackedB
// repacked in place (pack_b(out, ...)) with other values gives the new product.
TEST(GemmBlocked, PrepackedGivesIdenticalBits) {
  struct Orient {
    const char* name;
    bool ta, tb;
    Granularity ga, gb;
  };
  const Orient orients[] = {{"fprop", false, true, Granularity::Tile1x128, Granularity::Block128x128},
                            {"dgrad", false, false, Granularity::Tile1x128, Granularity::Block128x128},
                            {"wgrad", true, false, Granularity::Tile128x1, Granularity::Tile128x1},
                            {"fprop-mx", false, true, Granularity::Mx1x32, Granularity::Mx1x32}};
  int i = 0;
  for (Backend be : blocked_backends())
    for (const Orient& o : orients)
      for (DType dt : {DType::F32, DType::BF16, DType::E4M3, DType::E5M2}) {
        Case c;
        c.label = o.name;
        c.M = 70, c.N = 100, c.K = 700;
        c.ta = o.ta, c.tb = o.tb;
        c.a = {dt, o.ga}, c.b = {dt, o.gb};
        c.beta = o.ta ? 1.0f : 0.0f;
        const Problem p = make_problem(c, 11000 + i++, false);
        const int64_t differ = count_bit_differences(run_backend(c, p, be, false), run_backend(c, p, be, true));
        std::printf("%-8s %-8s %-5s: prepacked vs unpacked: %lld of %lld outputs differ in bits\n", to_string(be),
                    o.name, to_string(dt), (long long)differ, (long long)(p.C0.size()));
        EXPECT_EQ(differ, 0);
      }
  // Repacking in place reuses the memory and gives the new operand's product.
  Case c;
  c.M = 20, c.N = 64, c.K = 256, c.tb = true;
  c.a = {DType::E4M3, Granularity::Tile1x128}, c.b = {DType::E4M3, Granularity::Block128x128};
  const Problem p1 = make_problem(c, 12001, false), p2 = make_problem(c, 12002, false);
  for (Backend be : blocked_backends()) {
    const GemmOptions opt = case_options(c, be);
    PackedB packed = pack_b(p1.B.view(), opt);
    const uint32_t* before = packed.panels.data();
    pack_b(packed, p2.B.view(), opt);
    EXPECT_EQ(packed.panels.data(), before) << "same size: the memory is reused";
    std::vector<float> C(p2.C0.size()), want = run_backend(c, p2, be);
    gemm(C.data(), p2.ldc, p2.A.view(), packed, opt);
    EXPECT_EQ(count_bit_differences(C, want), 0) << to_string(be);
  }
}

// Same bits for 1, 2 and 3 threads and on repeated runs, for every backend and format;
// shapes with many tasks, several kc blocks and edge tiles.
TEST(GemmBlocked, DeterministicAcrossThreadsAndRuns) {
  const int saved = omp_get_max_threads();
  const OperandSpec specs[][2] = {{{DType::F32}, {DType::F32}},
                                  {{DType::BF16}, {DType::BF16}},
                                  {{DType::E4M3, Granularity::Tile1x128}, {DType::E4M3, Granularity::Block128x128}},
                                  {{DType::E5M2, Granularity::Tile128x1}, {DType::E4M3, Granularity::Tile128x1}}};
  int i = 0;
  for (Backend be : all_backends())
    for (const auto& s : specs) {
      Case c;
      c.M = be == Backend::kReference ? 60 : 300, c.N = 260, c.K = 1100;
      c.a = s[0], c.b = s[1];
      c.ta = s[0].gran == Granularity::Tile128x1, c.tb = !c.ta;
      c.beta = c.ta ? 1.0f : 0.0f;
      const Problem p = make_problem(c, 13000 + i++, false);
      std::vector<std::vector<float>> runs;
      for (const int threads : {1, 2, 2, 3}) {
        omp_set_num_threads(threads);
        runs.push_back(run_backend(c, p, be));
      }
      omp_set_num_threads(saved);
      int64_t differing = 0;
      for (size_t r = 1; r < runs.size(); ++r) differing += count_bit_differences(runs[r], runs[0]);
      std::printf("determinism %-9s %-15s: %lld outputs differ from the 1-thread bits over threads 2, 2, 3\n",
                  to_string(be), spec_name(s[0]).c_str(), (long long)differing);
      EXPECT_EQ(differing, 0);
    }
}

// kAuto is kAvx512 when simd_path() says AVX512-BF16, else kPortable; forcing the portable
// path (set_simd_override) makes kAuto run the portable kernels, which pass the oracle.
TEST(GemmBlocked, AutoFollowsSimdPath) {
  Case c;
  c.label = "auto";
  c.M = 130, c.N = 70, c.K = 300, c.tb = true;
  c.a = {DType::BF16}, c.b = {DType::BF16};
  const Problem p = make_problem(c, 14000);
  const std::vector<float> portable = run_backend(c, p, Backend::kPortable);
  set_simd_override(SimdPath::Portable);
  EXPECT_EQ(auto_backend(), Backend::kPortable);
  const std::vector<float> forced = run_backend(c, p, Backend::kAuto);
  Worst worst;
  for (int i = 0; i < 12; ++i) {  // part of the sweep through kAuto while forced portable
    const Case s = sweep_case(i);
    const Problem q = make_problem(s, 14100 + i);
    worst.add(Backend::kAuto, judge(s, q, run_backend(s, q, Backend::kAuto), "auto", false));
  }
  clear_simd_override();
  worst.print("auto forced portable");
  const int64_t differ_forced = count_bit_differences(forced, portable);
  std::printf("auto with the portable path forced: %lld outputs differ from kPortable\n", (long long)differ_forced);
  EXPECT_EQ(differ_forced, 0);
  if (have_avx512()) {
    EXPECT_EQ(auto_backend(), simd_path() == SimdPath::Avx512Bf16 ? Backend::kAvx512 : Backend::kPortable);
    const std::vector<float> avx = run_backend(c, p, Backend::kAvx512), autod = run_backend(c, p, Backend::kAuto);
    const Backend expect = auto_backend();
    const int64_t differ = count_bit_differences(autod, expect == Backend::kAvx512 ? avx : portable);
    std::printf("auto without override (%s): %lld outputs differ from that backend; avx512 vs portable differ in "
                "%lld (BF16 pairs change the order within groups)\n",
                to_string(expect), (long long)differ, (long long)count_bit_differences(avx, portable));
    EXPECT_EQ(differ, 0);
  }
}

// The same through the environment: the test runs itself in a child process with
// TINYSEEK_SIMD=portable (simd_path() reads it once per process), where kAuto must give the
// portable kernels' bits and pass the oracle. Under that variable (e.g. the whole suite run
// with it) the test is the child.
TEST(GemmBlocked, EnvironmentForcesPortable) {
  const char* env = std::getenv("TINYSEEK_SIMD");
  if (env && std::string(env) == "portable") {
    EXPECT_EQ(simd_path(), SimdPath::Portable);
    EXPECT_EQ(auto_backend(), Backend::kPortable);
    Case c;
    c.label = "env";
    c.M = 65, c.N = 40, c.K = 260, c.tb = true;
    c.a = {DType::E4M3, Granularity::Tile1x128}, c.b = {DType::E4M3, Granularity::Block128x128};
    const Problem p = make_problem(c, 15000);
    const std::vector<float> autod = run_backend(c, p, Backend::kAuto);
    const int64_t differ = count_bit_differences(autod, run_backend(c, p, Backend::kPortable));
    const Evidence e = judge(c, p, autod, "auto", true);
    std::printf("TINYSEEK_SIMD=portable: kAuto differs from kPortable in %lld outputs, max|C-C64|/tol %.3e\n",
                (long long)differ, e.ratio);
    EXPECT_EQ(differ, 0);
    return;
  }
  // /proc/self/exe inside the shell would be the shell: resolve this binary's path first.
  char self[4096];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  ASSERT_GT(n, 0);
  self[n] = 0;
  const std::string run = "TINYSEEK_SIMD=portable '" + std::string(self) +
                          "' --gtest_filter=GemmBlocked.EnvironmentForcesPortable 2>&1";
  FILE* f = popen(run.c_str(), "r");
  ASSERT_NE(f, nullptr);
  std::string out;
  char buf[512];
  while (fgets(buf, sizeof(buf), f)) out += buf;
  const int status = pclose(f);
  std::printf("child (TINYSEEK_SIMD=portable) exit status %d, output tail:\n%s\n", status,
              out.substr(out.size() > 500 ? out.size() - 500 : 0).c_str());
  EXPECT_EQ(status, 0);
  EXPECT_NE(out.find("TINYSEEK_SIMD=portable: kAuto differs from kPortable in 0 outputs"), std::string::npos);
  EXPECT_NE(out.find("[  PASSED  ] 1 test"), std::string::npos);
}

// K = 0 (C = alpha·0 + beta·C), empty M or N (C untouched), an odd promotion interval
// (BF16 pairs padded at every group end), and the tensor-core model (always the reference).
TEST(GemmBlocked, EdgeCases) {
  for (Backend be : blocked_backends()) {
    std::vector<float> a(8, 1.0f), C(6, 3.0f);
    GemmOptions opt;
    opt.backend = be;
    opt.alpha = 2.0f, opt.beta = 0.5f;
    gemm(C.data(), 3, view_f32(a.data(), 2, 0, 1), view_f32(a.data(), 0, 3, 3), opt);
    for (float v : C) EXPECT_EQ(v, 1.5f) << to_string(be) << ": K = 0 gives beta * C";
    gemm(C.data(), 3, view_f32(a.data(), 0, 4, 4), view_f32(a.data(), 4, 3, 3), opt);
    gemm(C.data(), 1, view_f32(a.data(), 2, 4, 4), view_f32(a.data(), 4, 0, 1), opt);
    for (float v : C) EXPECT_EQ(v, 1.5f) << to_string(be) << ": M or N = 0 leaves C alone";
  }
  Worst worst;
  for (int pe : {7, 1, 33}) {
    Case c;
    c.label = "odd-G";
    c.M = 19, c.N = 37, c.K = 101, c.promote_every = pe, c.tb = pe == 7;
    c.a = {DType::BF16}, c.b = {pe == 33 ? DType::E4M3 : DType::BF16, Granularity::Tensor};
    run_all_backends(c, 16000 + pe, worst, true);
  }
  worst.print("odd promotion intervals");
  // kTensorCore through a blocked backend runs the reference: the same bits.
  Case c;
  c.M = 9, c.N = 11, c.K = 300, c.tb = true;
  c.a = {DType::E4M3, Granularity::Tile1x128}, c.b = {DType::E4M3, Granularity::Block128x128};
  const Problem p = make_problem(c, 16100, false);
  for (Backend be : blocked_backends()) {
    GemmOptions opt = case_options(c, be), ref = case_options(c, Backend::kReference);
    opt.accumulation = ref.accumulation = Accumulation::kTensorCore;
    std::vector<float> C1 = p.C0, C2 = p.C0;
    gemm(C1.data(), p.ldc, p.A.view(), p.B.view(), opt);
    gemm(C2.data(), p.ldc, p.A.view(), p.B.view(), ref);
    EXPECT_EQ(count_bit_differences(C1, C2), 0) << to_string(be) << " with kTensorCore";
  }
}

// vdpbf16ps treats BF16 denormals as zero (documented in gemm.h); the portable kernels keep
// them. A = 2^-130 (a BF16 denormal), B = 1: exact result 2^-130 · K.
TEST(GemmBlocked, Bf16DenormalsFlushOnlyOnAvx512) {
  if (!have_avx512()) GTEST_SKIP() << "no AVX512-BF16";
  const int64_t K = 4;
  std::vector<uint16_t> a(K, numerics::bf16_encode(0x1p-130f)), b(K, numerics::bf16_encode(1.0f));
  ASSERT_EQ(numerics::bf16_decode(a[0]), 0x1p-130f);
  float c_avx = -1, c_port = -1;
  GemmOptions opt;
  opt.backend = Backend::kAvx512;
  gemm(&c_avx, 1, view_bf16(a.data(), 1, K, K), view_bf16(b.data(), K, 1, 1), opt);
  opt.backend = Backend::kPortable;
  gemm(&c_port, 1, view_bf16(a.data(), 1, K, K), view_bf16(b.data(), K, 1, 1), opt);
  std::printf("BF16 denormal inputs: avx512 %g (flushed), portable %g (exact %g)\n", c_avx, c_port, 0x1p-128);
  EXPECT_EQ(c_avx, 0.0f);
  EXPECT_EQ(c_port, 0x1p-128f);
}

TEST(GemmBlocked, PackedBadInputIsRejected) {
  Case c;
  c.M = 4, c.N = 64, c.K = 256, c.tb = true;
  c.a = {DType::E4M3, Granularity::Tile1x128}, c.b = {DType::E4M3, Granularity::Block128x128};
  const Problem p = make_problem(c, 17000, false);
  std::vector<float> C(4 * 64);
  const Backend be = blocked_backends().back();
  const GemmOptions opt = case_options(c, be);
  const PackedB packed = pack_b(p.B.view(), opt);
  expect_error([&] { pack_b(p.B.view(), case_options(c, Backend::kReference)); }, "no packed form");
  expect_error(
      [&] {
        GemmOptions o = opt;
        o.backend = be == Backend::kAvx512 ? Backend::kPortable : Backend::kAvx512;
        gemm(C.data(), 64, p.A.view(), packed, o);
      },
      "was packed for backend");
  expect_error(
      [&] {
        GemmOptions o = opt;
        o.accumulation = Accumulation::kTensorCore;
        gemm(C.data(), 64, p.A.view(), packed, o);
      },
      "tensor-core");
  // MX A needs groups of 32; B was cut for 128.
  const Operand mx = make_operand({DType::E4M3, Granularity::Mx1x32}, 4, 256, 0, false, 17001);
  expect_error([&] { gemm(C.data(), 64, mx.view(), packed, opt); }, "packed for groups of 128");
  const Operand wrong_k = make_operand({DType::E4M3, Granularity::Tile1x128}, 4, 128, 0, false, 17002);
  expect_error([&] { gemm(C.data(), 64, wrong_k.view(), packed, opt); }, "inner dimensions differ");
  expect_error([&] { gemm(C.data(), 64, p.A.view(), PackedB{}, opt); }, "empty");
  expect_error([&] { pack_b(p.B.view(), opt, 96); }, "not a multiple of group 96");
  if (have_avx512()) {
    const Operand f32 = make_operand({DType::F32}, 4, 256, 0, false, 17003);
    GemmOptions o = opt;
    o.backend = Backend::kAvx512;
    const PackedB pairs = pack_b(p.B.view(), o);
    expect_error([&] { gemm(C.data(), 64, f32.view(), pairs, o); }, "packed for the BF16 kernel");
  }
}

}  // namespace
}  // namespace tinyseek::gemm
