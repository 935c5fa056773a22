// FNV-1a, 64-bit: the checksum of shard payloads and the tokenizer fingerprint. Chosen
// for being trivial to reproduce outside tinyseek (five lines of Python), not for speed
// (~1 GB/s, far more than the data sizes here need).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace tinyseek::data {

inline constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ull;

inline uint64_t fnv1a64(const void* data, size_t n, uint64_t h = kFnvOffset) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

inline uint64_t fnv1a64(std::string_view s, uint64_t h = kFnvOffset) { return fnv1a64(s.data(), s.size(), h); }

inline std::string hex64(uint64_t v) {
  char buf[19];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace tinyseek::data
