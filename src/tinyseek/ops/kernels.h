// Internal helpers shared by the ops: fixed-order vector kernels and reusable scratch memory.
// Not part of the op API.
//
// The reductions below keep kLanes independent partial sums (lane l takes elements
// i ≡ l mod kLanes) and combine the lanes in a fixed tree order. The compiler can keep the
// lanes in vector registers (it may not reorder a single scalar sum, -ffp-contract=off and
// no -ffast-math), and the result depends only on the data, never on threads.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>

#include "tinyseek/base/aligned.h"
#include "tinyseek/base/parallel.h"

namespace tinyseek::ops::detail {

inline constexpr int kLanes = 16;

template <class T>
inline T combine_lanes(T* acc) {
  for (int w = kLanes / 2; w > 0; w /= 2)
    for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
  return acc[0];
}

// Σ a[i] b[i]
template <class T>
inline T dot(const T* __restrict a, const T* __restrict b, int64_t n) {
  T acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += a[i + l] * b[i + l];
  for (int l = 0; i + l < n; ++l) acc[l] += a[i + l] * b[i + l];
  return combine_lanes(acc);
}

// Σ a[i]²
template <class T>
inline T sum_squares(const T* __restrict a, int64_t n) {
  return dot(a, a, n);
}

// Σ a[i]
template <class T>
inline T sum(const T* __restrict a, int64_t n) {
  T acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += a[i + l];
  for (int l = 0; i + l < n; ++l) acc[l] += a[i + l];
  return combine_lanes(acc);
}

// y[i] += alpha x[i]
template <class T>
inline void axpy(T* __restrict y, T alpha, const T* __restrict x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

// y[i] = 0 + alpha x[i]: axpy's bits on a zero-filled y (a -0 product becomes +0) without
// reading y, so callers skip the zero fill.
template <class T>
inline void axpy_into_zero(T* __restrict y, T alpha, const T* __restrict x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = T(0) + alpha * x[i];
}

// Working memory reused across calls: one thread_local buffer per slot, owned by the calling
// thread, grown on demand and never shrunk, so steady-state training allocates nothing.
// Use from the calling thread (outside parallel regions); slices may be handed to workers.
inline constexpr int kScratchSlots = 4;

template <class T>
T* scratch(int slot, size_t n) {
  static thread_local std::array<AlignedBuffer<T>, kScratchSlots> buffers;
  AlignedBuffer<T>& b = buffers[static_cast<size_t>(slot)];
  if (b.size() < n) b.resize(n);
  return b.data();
}

// Per-thread slices of `per_thread` elements from scratch slot `slot`, each starting on its own
// cache line (no false sharing). slice() is called inside the parallel region.
template <class T>
class ThreadSlices {
 public:
  ThreadSlices(int slot, size_t per_thread)
      : stride_((per_thread * sizeof(T) + kAlignment - 1) / kAlignment * kAlignment / sizeof(T)),
        base_(scratch<T>(slot, stride_ * static_cast<size_t>(max_threads()) + 1)) {}
  T* slice() const { return base_ + stride_ * static_cast<size_t>(thread_id()); }

 private:
  size_t stride_;
  T* base_;
};

}  // namespace tinyseek::ops::detail
