// The small-M GEMM (gemm_small_m.h) gives exactly the blocked path's bits: for M = 1..9
// (9: past kSmallMaxM, the fallback), K and N around the promotion groups and panel
// widths, every operand format the decode engine uses (fp32, bf16, fp8 tile128: E4M3/E5M2
// 1x128 activations with 128x128 weight blocks, and mixed bf16 A / fp8 B), alpha/beta, on
// both blocked backends and with 1 and 2 threads (large products split panels over the
// threads). Every C must equal gemm() with the same packed B bit for bit, and lie within
// the FP64 oracle's bound.
#include <gtest/gtest.h>
#include <omp.h>

#include <cstdio>
#include <vector>

#include "gemm_test_util.h"
#include "tinyseek/gemm/gemm_small_m.h"
#include "tinyseek/numerics/simd.h"

namespace tinyseek::gemm {
namespace {

using namespace gemm_test;

std::vector<Backend> backends() {
  std::vector<Backend> b = {Backend::kPortable};
  if (cpu_has_avx512_bf16()) b.push_back(Backend::kAvx512);
  return b;
}

TEST(GemmSmallM, SameBitsAsBlockedPath) {
  const OperandSpec f32{DType::F32}, bf16{DType::BF16};
  const OperandSpec tile{DType::E4M3, Granularity::Tile1x128}, block{DType::E4M3, Granularity::Block128x128};
  const OperandSpec tile5{DType::E5M2, Granularity::Tile1x128}, block5{DType::E5M2, Granularity::Block128x128};
  struct Formats {
    const char* name;
    OperandSpec a, b;
  };
  const Formats formats[] = {{"fp32", f32, f32}, {"bf16", bf16, bf16}, {"e4m3-tile128", tile, block},
                             {"e5m2-tile128", tile5, block5}, {"bf16A-fp8B", bf16, block}, {"fp32A-bf16B", f32, bf16}};
  // (K, N): one group, odd K (a half pair), several groups with a tail, N tails of every
  // panel width, and an output-head-sized product (splits over threads).
  const int64_t shapes[][2] = {{128, 48}, {127, 33}, {64, 192}, {300, 100}, {257, 8}, {1, 17}, {128, 2048}};
  const int saved_threads = omp_get_max_threads();
  int64_t cases = 0, small_path = 0, compared = 0, differ = 0;
  double worst = 0;
  int seed = 0;
  for (Backend be : backends())
    for (const Formats& f : formats)
      for (const auto& kn : shapes)
        for (int64_t M = 1; M <= 9; ++M) {
          Case c;
          c.label = f.name;
          c.M = M, c.K = kn[0], c.N = kn[1], c.tb = true, c.a = f.a, c.b = f.b;
          c.pad = M % 3;  // ld > cols for some A rows and C
          if (M % 4 == 1) c.alpha = -1.5f, c.beta = 0.5f;
          if (M % 4 == 2) c.beta = 1.0f;
          const Problem p = make_problem(c, 50000 + seed++, /*with_oracle=*/M <= 3);
          GemmOptions opt = case_options(c, be);
          opt.compact_fp8 = false;  // the engine's widened panels
          const Matrix A = p.A.view(), B = p.B.view();
          if (be == Backend::kAvx512 && A.dtype == DType::F32 && B.dtype != DType::F32) continue;  // refused
          const PackedB packed = pack_b(B, opt, promotion_interval(A, B, c.promote_every));
          std::vector<float> ref = p.C0;
          gemm(ref.data(), p.ldc, A, packed, opt);
          small_path += detail::small_m_applies(A, packed, opt);
          for (const int threads : {1, 2}) {
            omp_set_num_threads(threads);
            std::vector<float> C = p.C0;
            gemm_small_m(C.data(), p.ldc, A, packed, opt);
            omp_set_num_threads(saved_threads);
            const int64_t d = count_bit_differences(C, ref);
            differ += d;
            compared += static_cast<int64_t>(C.size());
            if (d) ADD_FAILURE() << f.name << " " << to_string(be) << " M " << M << " K " << c.K << " N " << c.N
                                 << " threads " << threads << ": " << d << " outputs differ from gemm()";
          }
          if (M <= 3) worst = std::max(worst, judge(c, p, ref, to_string(be), false).ratio);
          ++cases;
        }
  std::printf("%lld cases (%lld on the small-M path), %lld outputs compared at 1 and 2 threads: %lld differ "
              "from gemm() with the same packed B; worst max|C-C64|/tol %.3f (M <= 3)\n",
              (long long)cases, (long long)small_path, (long long)compared, (long long)differ, worst);
  EXPECT_EQ(differ, 0);
  EXPECT_GT(small_path, cases / 2);
}

TEST(GemmSmallM, AppliesOnlyWhereItIsExact) {
  const Operand a = make_operand({DType::BF16}, 4, 128, 0, false, 1);
  const Operand w = make_operand({DType::E4M3, Granularity::Block128x128}, 64, 128, 0, true, 2);
  GemmOptions opt;
  const PackedB compact = pack_b(w.view(), opt);
  opt.compact_fp8 = false;
  const PackedB wide = pack_b(w.view(), opt);
  EXPECT_EQ(detail::small_m_applies(a.view(), wide, opt), true);
  // Compact FP8 panels would need widening per call: gemm() instead (same bits either way).
  EXPECT_EQ(detail::small_m_applies(a.view(), compact, opt), auto_backend() != Backend::kAvx512);
  const Operand tall = make_operand({DType::BF16}, 9, 128, 0, false, 3);
  EXPECT_FALSE(detail::small_m_applies(tall.view(), wide, opt));
  // Bad shapes are reported as gemm() reports them.
  const Operand short_k = make_operand({DType::BF16}, 2, 64, 0, false, 4);
  std::vector<float> C(2 * 64);
  expect_error([&] { gemm_small_m(C.data(), 64, short_k.view(), wide, opt); }, "inner dimensions");
}

}  // namespace
}  // namespace tinyseek::gemm
