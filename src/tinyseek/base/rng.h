// Counter-based random numbers (Philox4x32-10, Salmon et al., SC'11). The value at
// index i depends only on (seed, stream, i), so a tensor initialised in parallel gets
// the same numbers for any thread count and any chunking, and a run can be resumed by
// storing just (seed, counter).
#pragma once
#include <array>
#include <cmath>
#include <cstdint>

namespace tinyseek {

class Philox {
 public:
  Philox(uint64_t seed, uint64_t stream = 0) : seed_(seed), stream_(stream) {}

  // Four 32-bit random words for counter value `i`.
  std::array<uint32_t, 4> block(uint64_t i) const {
    uint32_t c0 = static_cast<uint32_t>(i), c1 = static_cast<uint32_t>(i >> 32);
    uint32_t c2 = static_cast<uint32_t>(stream_), c3 = static_cast<uint32_t>(stream_ >> 32);
    uint32_t k0 = static_cast<uint32_t>(seed_), k1 = static_cast<uint32_t>(seed_ >> 32);
    for (int r = 0; r < 10; ++r) {
      const uint64_t p0 = uint64_t{0xD2511F53u} * c0;
      const uint64_t p1 = uint64_t{0xCD9E8D57u} * c2;
      const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
      const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
      c1 = static_cast<uint32_t>(p1);
      c3 = static_cast<uint32_t>(p0);
      c0 = n0;
      c2 = n2;
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    return {c0, c1, c2, c3};
  }

  uint64_t u64(uint64_t i) const {
    auto b = block(i);
    return (uint64_t{b[0]} << 32) | b[1];
  }
  // Uniform in [0, 1) with 24 random bits (exactly representable as float).
  float uniform(uint64_t i) const { return (block(i)[0] >> 8) * (1.0f / 16777216.0f); }
  // Uniform in (0, 1] as double with 53 bits (safe for log()).
  double uniform_open(uint64_t i, int word = 0) const {
    auto b = block(i);
    uint64_t v = ((uint64_t{b[word & 2]} << 32) | b[(word & 2) + 1]) >> 11;
    return (static_cast<double>(v) + 1.0) * (1.0 / 9007199254740992.0);
  }
  // Standard normal via Box-Muller on one counter block.
  double normal(uint64_t i) const {
    auto b = block(i);
    const double u1 = ((static_cast<double>((uint64_t{b[0]} << 32 | b[1]) >> 11)) + 1.0) *
                      (1.0 / 9007199254740992.0);
    const double u2 = static_cast<double>((uint64_t{b[2]} << 32 | b[3]) >> 11) *
                      (1.0 / 9007199254740992.0);
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }

  uint64_t seed() const { return seed_; }
  uint64_t stream() const { return stream_; }

 private:
  uint64_t seed_, stream_;
};

}  // namespace tinyseek
