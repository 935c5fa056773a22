// Aligned, owning, move-only buffers. 64-byte alignment = one cache line = one zmm
// register, so vector loads never split lines and buffers never share lines across
// threads (no false sharing between per-thread partials).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

#include "tinyseek/base/check.h"

namespace tinyseek {

inline constexpr size_t kAlignment = 64;

inline void* aligned_alloc_bytes(size_t bytes) {
  if (bytes == 0) return nullptr;
  TS_CHECK(bytes <= SIZE_MAX - kAlignment, "cannot allocate " << bytes << " bytes (size overflows)",
           "this is a bug in the caller's size computation");
  size_t rounded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
  void* p = std::aligned_alloc(kAlignment, rounded);
  TS_CHECK(p != nullptr, "out of memory allocating " << bytes << " bytes",
           "reduce the batch size, sequence length or model size");
  return p;
}

template <class T>
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(size_t n) { resize(n); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  AlignedBuffer(AlignedBuffer&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  AlignedBuffer& operator=(AlignedBuffer&& o) noexcept {
    if (this != &o) {
      std::free(p_);
      p_ = std::exchange(o.p_, nullptr);
      n_ = std::exchange(o.n_, 0);
    }
    return *this;
  }
  ~AlignedBuffer() { std::free(p_); }

  // Contents are unspecified after a resize that changes the size (no copy is made:
  // callers of this project always overwrite).
  void resize(size_t n) {
    if (n == n_) return;
    // Release first and leave the buffer empty, so a failed allocation below leaves no
    // dangling pointer for the destructor to free twice.
    std::free(std::exchange(p_, nullptr));
    n_ = 0;
    TS_CHECK(n <= SIZE_MAX / sizeof(T), "cannot allocate " << n << " elements of " << sizeof(T)
             << " bytes (size overflows)", "this is a bug in the caller's size computation");
    p_ = static_cast<T*>(aligned_alloc_bytes(n * sizeof(T)));
    n_ = n;
  }
  void zero() {
    if (n_) std::memset(static_cast<void*>(p_), 0, n_ * sizeof(T));
  }
  T* data() { return p_; }
  const T* data() const { return p_; }
  size_t size() const { return n_; }
  bool empty() const { return n_ == 0; }
  T& operator[](size_t i) { return p_[i]; }
  const T& operator[](size_t i) const { return p_[i]; }
  T* begin() { return p_; }
  T* end() { return p_ + n_; }
  const T* begin() const { return p_; }
  const T* end() const { return p_ + n_; }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

}  // namespace tinyseek
