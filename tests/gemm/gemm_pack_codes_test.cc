// Compact FP8 B panels (pack_b with GemmOptions::compact_fp8, detail::pack_b_codes_avx512):
// the direct packer (code bytes permuted straight into the panels with AVX512-VBMI) must
// write the bytes of the fallback packer (BF16-pair panels narrowed back to codes) and of
// a scalar reference built from the layout's definition, for both orientations, both FP8
// formats, odd N, K not a multiple of the pair / chunk / group, odd G, padded rows, and
// every code value (NaNs included: E5M2's three NaN magnitudes narrow to the smallest).
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <vector>

#include "gemm_test_util.h"
#include "tinyseek/gemm/gemm_blocked.h"
#include "tinyseek/numerics/fp8.h"
#include "tinyseek/numerics/simd.h"

namespace tinyseek::gemm {
namespace {

using namespace gemm_test;

constexpr int64_t kNR = 32;  // the AVX-512 BF16 kernel's panel width (gemm_avx512.cc)

// The smallest code whose BF16 word equals that of code c (what widening then narrowing
// keeps): c itself except for duplicate words (E5M2 NaNs).
uint8_t canonical(uint8_t c, DType t) {
  const float* dec = numerics::fp8_decode_table(t == DType::E4M3 ? Fp8Format::E4M3 : Fp8Format::E5M2);
  auto word = [&](int x) {
    uint32_t bits;
    std::memcpy(&bits, &dec[x & 0x7F], 4);
    return (bits >> 16) | (x & 0x80 ? 0x8000u : 0u);
  };
  for (int x = 0; x < c; ++x)
    if (word(x) == word(c)) return static_cast<uint8_t>(x);
  return c;
}

// Stored index within a 64-code chunk (one k-step of NR pairs) of pair position p = 2n + e
// (gemm.h, PackedB::codes: 128-bit lane L holds positions 8L..8L+7, then 32+8L..32+8L+7).
int64_t slot(int64_t p) { return p < 32 ? 16 * (p / 8) + p % 8 : 16 * ((p - 32) / 8) + 8 + p % 8; }

// The compact panels by definition: panel j, k-step (g, s), column n, pair element e holds
// op(B)(g·G + 2s + e, j·NR + n) if that is inside the group and N, else 0.
std::vector<uint8_t> reference_codes(const Matrix& B, const detail::KLayout& kl) {
  const int64_t N = B.op_cols(), panels = (N + kNR - 1) / kNR, steps = kl.steps_total();
  const uint8_t* d = static_cast<const uint8_t*>(B.data);
  std::vector<uint8_t> out(static_cast<size_t>(panels * steps * 64), 0);
  for (int64_t j = 0; j < panels; ++j)
    for (int64_t g = 0; g < kl.groups; ++g)
      for (int64_t s = 0; s < kl.group_steps(g); ++s)
        for (int64_t n = 0; n < kNR && j * kNR + n < N; ++n)
          for (int64_t e = 0; e < 2; ++e) {
            if (2 * s + e >= kl.group_len(g)) continue;
            const int64_t k = g * kl.G + 2 * s + e, col = j * kNR + n;
            const uint8_t c = B.trans ? d[col * B.ld + k] : d[k * B.ld + col];
            out[static_cast<size_t>((j * steps + g * kl.steps_full + s) * 64 + slot(2 * n + e))] = canonical(c, B.dtype);
          }
  return out;
}

struct Packed {
  AlignedBuffer<uint8_t> codes;
  AlignedBuffer<float> scales;
};
void pack(Packed& p, const Matrix& B, const detail::KLayout& kl) {
  const int64_t panels = (B.op_cols() + kNR - 1) / kNR;
  p.codes.resize(static_cast<size_t>(panels * kl.steps_total() * 64));
  p.scales.resize(static_cast<size_t>(panels * kl.groups * kNR));
  detail::pack_b_codes_avx512(p.codes.data(), p.scales.data(), B, kl);
}

// Every code value, pseudo-random, in B's stored elements (padding keeps its NaN codes).
void fill_all_codes(Operand& o, uint64_t seed) {
  for (int64_t i = 0; i < o.rows; ++i)
    for (int64_t c = 0; c < o.cols; ++c)
      o.codes[i * o.ld + c] = static_cast<uint8_t>((seed * 0x9E3779B97F4A7C15ull + (i * 131 + c) * 0xBF58476D1CE4E5B9ull) >> 56);
}

TEST(GemmPackCodes, DirectPackerWritesTheNarrowedPanelsBytes) {
  if (!cpu_has_avx512_bf16()) GTEST_SKIP() << "compact FP8 panels exist only for the AVX-512 kernels";
  const bool direct = detail::avx512_set_direct_codes(true);
  if (!direct) std::printf("  no AVX512-VBMI: the direct packer is not used; checking the fallback alone\n");
  int64_t cases = 0, direct_cases = 0, bytes = 0, vs_old = 0, vs_ref = 0, old_vs_ref = 0, scale_diff = 0;
  uint64_t seed = 1;
  for (const DType t : {DType::E4M3, DType::E5M2})
    for (const bool trans : {false, true})
      for (const int64_t N : {1, 17, 32, 33, 70})
        for (const int64_t K : {1, 2, 63, 64, 65, 129, 256, 300})
          for (const int64_t G : {128, 64, 7})
            for (const int64_t pad : {0, 3}) {
              // op(B) is [K, N]: stored [N, K] when transposed.
              const int64_t rows = trans ? N : K, cols = trans ? K : N;
              const Granularity gran = G == 128 ? Granularity::Block128x128 : Granularity::Tensor;
              Operand o = make_operand({t, gran}, rows, cols, pad, trans, 500 + seed);
              fill_all_codes(o, seed++);
              const Matrix B = o.view();
              const detail::KLayout kl = detail::make_klayout(K, std::min(G, K), 2);
              Packed fresh, old;
              detail::avx512_set_direct_codes(true);
              pack(fresh, B, kl);
              detail::avx512_set_direct_codes(false);
              pack(old, B, kl);
              detail::avx512_set_direct_codes(true);
              const std::vector<uint8_t> ref = reference_codes(B, kl);
              ASSERT_EQ(ref.size(), fresh.codes.size());
              int64_t d_old = 0, d_ref = 0, o_ref = 0;
              for (size_t i = 0; i < ref.size(); ++i) {
                d_old += fresh.codes[i] != old.codes[i];
                d_ref += fresh.codes[i] != ref[i];
                o_ref += old.codes[i] != ref[i];
              }
              for (size_t i = 0; i < fresh.scales.size(); ++i)
                scale_diff += std::memcmp(&fresh.scales[i], &old.scales[i], sizeof(float)) != 0;
              if (d_old + d_ref + o_ref > 0 && vs_old + vs_ref + old_vs_ref < 10)
                std::printf("  %s %s N %lld K %lld G %lld pad %lld: %lld bytes differ from the fallback, %lld from "
                            "the reference (fallback vs reference %lld) of %zu\n",
                            to_string(t), trans ? "B^T" : "B", static_cast<long long>(N), static_cast<long long>(K),
                            static_cast<long long>(G), static_cast<long long>(pad), static_cast<long long>(d_old),
                            static_cast<long long>(d_ref), static_cast<long long>(o_ref), ref.size());
              vs_old += d_old, vs_ref += d_ref, old_vs_ref += o_ref;
              bytes += static_cast<int64_t>(ref.size());
              ++cases;
              // The direct packer declines only B^T with an odd group inside K.
              direct_cases += direct && !(trans && kl.G % 2 == 1 && kl.groups > 1);
            }
  std::printf("  %lld cases (%lld on the direct packer), %lld panel bytes: direct vs fallback %lld differ, direct vs "
              "reference %lld, fallback vs reference %lld; scales differing %lld\n",
              static_cast<long long>(cases), static_cast<long long>(direct_cases), static_cast<long long>(bytes),
              static_cast<long long>(vs_old), static_cast<long long>(vs_ref), static_cast<long long>(old_vs_ref),
              static_cast<long long>(scale_diff));
  EXPECT_EQ(vs_old, 0);
  EXPECT_EQ(vs_ref, 0);
  EXPECT_EQ(old_vs_ref, 0);
  EXPECT_EQ(scale_diff, 0);
  if (direct) {
    EXPECT_GT(direct_cases, cases / 2);
  }
}

// Single-thread CPU time of pack_b_codes_avx512, direct vs fallback, interleaved, on the
// weight shapes of configs/base.json (Fprop: B = Wᵀ; Dgrad: B = W). Not part of the suite:
// run with --gtest_also_run_disabled_tests --gtest_filter='*Speed*'.
double thread_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

TEST(GemmPackCodes, DISABLED_Speed) {
  if (!cpu_has_avx512_bf16()) GTEST_SKIP();
  const int saved_threads = omp_get_max_threads();
  omp_set_num_threads(1);
  struct Shape {
    int64_t out, in;
  };
  for (const Shape w : {Shape{1536, 512}, Shape{512, 1536}, Shape{256, 512}, Shape{512, 256}, Shape{8192, 512}})
    for (const bool trans : {true, false}) {
      Operand o = make_operand({DType::E4M3, Granularity::Block128x128}, w.out, w.in, 0, false, 7);
      Matrix B = o.view();
      B.trans = trans;  // Fprop: op(B) = Wᵀ, [in, out]; Dgrad: op(B) = W as stored, [out, in]
      const detail::KLayout kl = detail::make_klayout(B.op_rows(), 128, 2);
      Packed p;
      const int reps = std::max<int64_t>(1, 20000000 / (w.out * w.in));
      std::vector<double> t_old, t_new;
      for (int round = 0; round < 15; ++round)
        for (const bool direct : {false, true}) {
          detail::avx512_set_direct_codes(direct);
          pack(p, B, kl);
          const double t0 = thread_seconds();
          for (int r = 0; r < reps; ++r) pack(p, B, kl);
          (direct ? t_new : t_old).push_back((thread_seconds() - t0) / reps);
        }
      detail::avx512_set_direct_codes(true);
      std::sort(t_old.begin(), t_old.end());
      std::sort(t_new.begin(), t_new.end());
      const double mo = t_old[t_old.size() / 2], mn = t_new[t_new.size() / 2];
      std::printf("  W [%lld, %lld] %s: fallback %.1f us, direct %.1f us (medians of 15, thread CPU): %.3fx\n",
                  static_cast<long long>(w.out), static_cast<long long>(w.in), trans ? "B = W^T" : "B = W  ",
                  1e6 * mo, 1e6 * mn, mn / mo);
    }
  omp_set_num_threads(saved_threads);
}

}  // namespace
}  // namespace tinyseek::gemm
