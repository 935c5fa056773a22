// Measured peak arithmetic throughput of this machine, for "percent of peak" in benchmarks.
//
//   FP32 FMA peak : vfmadd231ps zmm    (16 lanes x 2 flops = 32 flops per instruction)
//   BF16 dot peak : vdpbf16ps zmm      (16 lanes x 2 pairs x 2 flops = 64 flops per instruction)
//
// Each thread of one OpenMP parallel region (threads follow OMP_NUM_THREADS) runs
// kPeakChains independent accumulator chains, enough to cover latency x issue width of
// current cores (Zen 4/5: 2 pipes x <= 6 cycles = 12 chains; Sapphire Rapids: 2 x 4), so the
// loop is throughput-bound. Measured, not taken from a spec sheet (turbo and AVX-512 clocks
// show up in the number, as they do in the GEMMs), and timed with each thread's own CPU
// clock so that other processes on a shared machine do not lower it: the peak is a
// property of the cores. Measured on this machine (Zen 5, 2 threads): FP32 ~450, BF16 ~900
// GFLOP/s, stable to ~1% across runs while other jobs were compiling.
#pragma once
#include <optional>
#include <string>

namespace tinyseek::bench {

inline constexpr int kPeakChains = 24;

struct PeakFlops {
  int threads = 1;
  // Absent on CPUs without AVX-512 + AVX512-BF16 (then `note` says why).
  std::optional<double> fp32_fma_gflops, bf16_dot_gflops;
  std::string note;
};

// Best of `repeats` timed runs of about `seconds_per_run` each, per instruction kind. The
// best, not the median: interference only ever lowers throughput, so the maximum is the
// closest estimate of what the core can do.
PeakFlops measure_peaks(int repeats = 5, double seconds_per_run = 0.02);

namespace detail {
// Instructions per second summed over the threads of one parallel region, each thread
// running `iterations` x kPeakChains instructions and timed by its own CPU clock (AVX-512
// builds only; callers check cpu_has_avx512_bf16() first). `threads` receives the region's
// thread count.
double fp32_fma_per_second_avx512(long long iterations, int* threads);
double bf16_dot_per_second_avx512(long long iterations, int* threads);
}  // namespace detail

}  // namespace tinyseek::bench
