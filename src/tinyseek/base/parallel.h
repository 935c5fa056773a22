// OpenMP helpers. Work is split into contiguous, statically assigned chunks so that
// which thread computes which element never affects the result: reductions are done
// per chunk (fixed boundaries independent of the thread count) and then combined in
// chunk order. No atomics anywhere.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace tinyseek {

inline int max_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

inline int thread_id() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

// Calls f(i) for i in [0, n) across threads, static schedule.
template <class F>
void parallel_for(int64_t n, F&& f) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) f(i);
}

// Calls f(begin, end) on contiguous ranges of at most `grain` items; range boundaries
// depend only on n and grain, never on the thread count.
template <class F>
void parallel_ranges(int64_t n, int64_t grain, F&& f) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t chunks = (n + grain - 1) / grain;
  // One chunk: call it here. Opening a region (even of one thread) costs a fork/join and a
  // futex call in libgomp, more than the few rows of a decode step it would run.
  if (chunks == 1) return f(int64_t{0}, n);
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < chunks; ++c) f(c * grain, std::min(n, (c + 1) * grain));
}

// Deterministic parallel sum: partial(begin, end) is evaluated on fixed chunks and the
// partials are added in chunk order, so the result is identical for any thread count.
template <class T, class F>
T deterministic_sum(int64_t n, int64_t grain, F&& partial) {
  if (n <= 0) return T{};
  grain = std::max<int64_t>(grain, 1);
  const int64_t chunks = (n + grain - 1) / grain;
  if (chunks == 1) {  // as below, without the region: the one part added to T{}
    T total{};
    total += partial(int64_t{0}, n);
    return total;
  }
  std::vector<T> parts(static_cast<size_t>(chunks));
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < chunks; ++c) parts[c] = partial(c * grain, std::min(n, (c + 1) * grain));
  T total{};
  for (const T& p : parts) total += p;
  return total;
}

}  // namespace tinyseek
