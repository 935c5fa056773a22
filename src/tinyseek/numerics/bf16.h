// BF16 (1 sign, 8 exponent, 7 mantissa: the top half of an FP32). Encoding rounds to
// nearest, ties to even; NaN stays a (quiet) NaN with its sign; subnormals are kept.
// Overflow::Saturate clamps finite overflow and +-Inf to +-max finite (0x7F7F);
// NonSaturate gives +-Inf as IEEE rounding does.
#pragma once
#include <bit>
#include <cstddef>
#include <cstdint>

#include "tinyseek/numerics/formats.h"

namespace tinyseek::numerics {

inline uint16_t bf16_encode(float x, Overflow ov = Overflow::NonSaturate) {
  const uint32_t b = std::bit_cast<uint32_t>(x);
  if ((b & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((b >> 16) | 0x0040u);
  const uint32_t r = (b + 0x7FFFu + ((b >> 16) & 1u)) >> 16;
  if (ov == Overflow::Saturate && (r & 0x7FFFu) == 0x7F80u)
    return static_cast<uint16_t>((r & 0x8000u) | 0x7F7Fu);
  return static_cast<uint16_t>(r);
}
inline float bf16_decode(uint16_t h) { return std::bit_cast<float>(static_cast<uint32_t>(h) << 16); }
// Round an FP32 value to the nearest BF16 value (returned as FP32).
inline float bf16_round(float x) { return bf16_decode(bf16_encode(x)); }

void bf16_encode_bulk(uint16_t* out, const float* in, size_t n, Overflow ov = Overflow::NonSaturate);
void bf16_decode_bulk(float* out, const uint16_t* in, size_t n);
void bf16_encode_bulk_scalar(uint16_t* out, const float* in, size_t n, Overflow ov = Overflow::NonSaturate);
void bf16_decode_bulk_scalar(float* out, const uint16_t* in, size_t n);

}  // namespace tinyseek::numerics
