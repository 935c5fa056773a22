// Internal: AVX-512 twins of the bulk codecs (codec_avx512.cc, compiled with AVX-512
// flags). Only called after simd_path() said the CPU has them.
#pragma once
#include <cstddef>
#include <cstdint>

#include "tinyseek/numerics/formats.h"

namespace tinyseek::numerics::avx512 {
void fp8_encode_div(uint8_t* out, const float* in, size_t n, float s, bool divide, Fp8Format f, Overflow ov);
void fp8_decode(float* out, const uint8_t* in, size_t n, Fp8Format f);
void fp8_to_bf16(uint16_t* out, const uint8_t* in, size_t n, Fp8Format f);
void bf16_encode(uint16_t* out, const float* in, size_t n, Overflow ov);
void bf16_decode(float* out, const uint16_t* in, size_t n);
}  // namespace tinyseek::numerics::avx512
