// The engine's two attention kernels (infer/attention_kernel.h) give the same bits: the
// AVX-512 one vectorises the portable loops across outputs without reordering any sum.
// Random heads over S = 1..70 positions (tails of the 16-position blocks), latent and rope
// widths that are and are not multiples of 16; every output float must match.
#include <gtest/gtest.h>

#include <bit>
#include <cstdio>
#include <vector>

#include "tinyseek/base/rng.h"
#include "tinyseek/infer/attention_kernel.h"
#include "tinyseek/numerics/simd.h"

namespace tinyseek::infer {
namespace {

TEST(AttentionKernel, Avx512EqualsScalarBitForBit) {
  if (!cpu_has_avx512_bf16()) GTEST_SKIP() << "no AVX-512 BF16 on this CPU";
  struct Dims {
    int64_t dn, dr, dc, dv;
  };
  const Dims dims[] = {{32, 16, 32, 32}, {16, 8, 40, 24}, {8, 4, 7, 5}};
  int64_t compared = 0, differ = 0;
  uint64_t ctr = 0;
  const Philox rng(99, 3);
  auto fill = [&](std::vector<float>& v) {
    for (float& x : v) x = static_cast<float>(rng.normal(ctr++));
  };
  for (const Dims& d : dims)
    for (int64_t S = 1; S <= 70; S += 3) {
      std::vector<float> qn(d.dn), qpe(d.dr), wuk(d.dn * d.dc), wuv(d.dc * d.dv), ckv(S * d.dc), kpe(S * d.dr);
      for (auto* v : {&qn, &qpe, &wuk, &wuv, &ckv, &kpe}) fill(*v);
      std::vector<float> out_s(d.dv), out_v(d.dv), work_s(S + 2 * d.dc), work_v(S + 2 * d.dc);
      detail::AttendArgs x;
      x.qn = qn.data(), x.qpe = qpe.data(), x.wuk = wuk.data(), x.wuv_t = wuv.data(), x.ckv = ckv.data();
      x.kpe = kpe.data(), x.S = S, x.dn = d.dn, x.dr = d.dr, x.dc = d.dc, x.dv = d.dv, x.p_len = S;
      x.scale = 0.125f;
      x.work = work_s.data(), x.out = out_s.data();
      detail::attend_scalar(x);
      x.work = work_v.data(), x.out = out_v.data();
      detail::attend_avx512(x);
      for (int64_t v = 0; v < d.dv; ++v) differ += std::bit_cast<uint32_t>(out_s[v]) != std::bit_cast<uint32_t>(out_v[v]);
      for (int64_t s = 0; s < S; ++s)  // the probabilities too
        differ += std::bit_cast<uint32_t>(work_s[s]) != std::bit_cast<uint32_t>(work_v[s]);
      compared += d.dv + S;
    }
  std::printf("attention kernels: %lld output and probability floats compared, %lld differ\n", (long long)compared,
              (long long)differ);
  EXPECT_EQ(differ, 0);
}

}  // namespace
}  // namespace tinyseek::infer
