// The peak microbenchmarks: kPeakChains independent vfmadd231ps / vdpbf16ps chains per
// thread, all operands in zmm registers (no loads in the loop), so only the FMA / BF16-dot
// pipes limit the rate. Compiled with AVX-512 flags (file name *_avx512.cc).
#include <immintrin.h>
#include <time.h>

#include <algorithm>

#include "tinyseek/base/parallel.h"
#include "tinyseek/bench/peak.h"

namespace tinyseek::bench::detail {

namespace {

// The accumulators' sum per thread, stored so the compiler cannot drop the loop.
volatile float g_sink;

void sink(const __m512 (&acc)[kPeakChains]) {
  __m512 s = acc[0];
  for (int c = 1; c < kPeakChains; ++c) s = _mm512_add_ps(s, acc[c]);
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, s);
  float total = 0;
  for (float v : lanes) total += v;
  g_sink = total;
}

void fp32_fma_chains(long long iterations) {
  __m512 acc[kPeakChains];
  for (int c = 0; c < kPeakChains; ++c) acc[c] = _mm512_set1_ps(static_cast<float>(c));
  // acc += x * y with tiny x*y: the sums stay finite and normal for any iteration count.
  const __m512 x = _mm512_set1_ps(1e-3f), y = _mm512_set1_ps(1e-3f);
  for (long long i = 0; i < iterations; ++i) {
#pragma GCC unroll 24
    for (int c = 0; c < kPeakChains; ++c) acc[c] = _mm512_fmadd_ps(x, y, acc[c]);
  }
  sink(acc);
}

void bf16_dot_chains(long long iterations) {
  __m512 acc[kPeakChains];
  for (int c = 0; c < kPeakChains; ++c) acc[c] = _mm512_set1_ps(static_cast<float>(c));
  // 0x3A83 is bf16(~1e-3): each step adds 2 * 1e-6 per lane.
  const __m512bh x = (__m512bh)_mm512_set1_epi16(0x3A83), y = (__m512bh)_mm512_set1_epi16(0x3A83);
  for (long long i = 0; i < iterations; ++i) {
#pragma GCC unroll 24
    for (int c = 0; c < kPeakChains; ++c) acc[c] = _mm512_dpbf16_ps(acc[c], x, y);
  }
  sink(acc);
}

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// Sum over threads of instructions per CPU-second of that thread. Per-thread CPU time,
// not wall time: on a shared machine a thread descheduled for a while would otherwise
// count as a slow core, and the peak is a property of the hardware, not of the load.
// (SMT siblings sharing one core each see half the rate, so the sum stays right.)
template <class Body>
double instructions_per_second(long long iterations, int* threads, Body body) {
  double total_rate = 0;
  int n = 1;
#pragma omp parallel reduction(+ : total_rate)
  {
#ifdef _OPENMP
#pragma omp single nowait
    n = omp_get_num_threads();
#endif
    const double t0 = thread_cpu_seconds();
    body(iterations);
    const double cpu = thread_cpu_seconds() - t0;
    total_rate += static_cast<double>(iterations) * kPeakChains / std::max(cpu, 1e-9);
  }
  if (threads) *threads = n;
  return total_rate;
}

}  // namespace

double fp32_fma_per_second_avx512(long long iterations, int* threads) {
  return instructions_per_second(iterations, threads, fp32_fma_chains);
}

double bf16_dot_per_second_avx512(long long iterations, int* threads) {
  return instructions_per_second(iterations, threads, bf16_dot_chains);
}

}  // namespace tinyseek::bench::detail
