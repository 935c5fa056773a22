#include "tinyseek/bench/peak.h"

#include <algorithm>

#include "tinyseek/base/check.h"
#include "tinyseek/base/parallel.h"
#include "tinyseek/numerics/simd.h"

namespace tinyseek::bench {

namespace {

// GFLOP/s of the best of `repeats` runs, after growing the iteration count until one run
// takes `seconds_per_run` of CPU time per thread (so the parallel region's start-up is noise).
double best_gflops(double (*rate_fn)(long long, int*), double flops_per_instruction, int repeats,
                   double seconds_per_run, int* threads) {
  long long iterations = 1 << 12;
  rate_fn(iterations, threads);  // wake the threads and raise the clocks
  auto seconds_per_thread = [&](long long it) {
    const double rate = rate_fn(it, threads);  // sets *threads
    return static_cast<double>(it) * kPeakChains * *threads / rate;
  };
  while (seconds_per_thread(iterations) < seconds_per_run && iterations < (1LL << 40)) iterations *= 2;
  double best = 0;
  for (int r = 0; r < repeats; ++r) best = std::max(best, rate_fn(iterations, threads) * flops_per_instruction * 1e-9);
  return best;
}

}  // namespace

PeakFlops measure_peaks(int repeats, double seconds_per_run) {
  TS_CHECK(repeats >= 1, "peak measurement needs at least one repeat, got " << repeats, "pass repeats >= 1");
  PeakFlops p;
  p.threads = max_threads();
  if (!cpu_has_avx512_bf16()) {
    p.note = "this CPU lacks AVX-512 with AVX512-BF16: no vfmadd231ps zmm / vdpbf16ps peak to measure";
    return p;
  }
  p.fp32_fma_gflops = best_gflops(detail::fp32_fma_per_second_avx512, 32.0, repeats, seconds_per_run, &p.threads);
  p.bf16_dot_gflops = best_gflops(detail::bf16_dot_per_second_avx512, 64.0, repeats, seconds_per_run, &p.threads);
  return p;
}

}  // namespace tinyseek::bench
