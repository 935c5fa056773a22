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
// slot_bits[t] = max(slot_bits[t], |x(i, j)| as int32 bits) over rows [r0, r1), t = j / tile_cols
// (the amax pass of quantize; integer max on the bit patterns, as quant.cc's scalar loop).
void amax_bits_rows(int32_t* slot_bits, const float* x, int64_t r0, int64_t r1, int64_t cols, int64_t ld,
                    int64_t tile_cols);
// One row: out[j] = encode(in[j] / scales[j / tile_cols]) for j < n (fp8_encode_div per tile).
void fp8_encode_div_tiles(uint8_t* out, const float* in, int64_t n, const float* scales, int64_t tile_cols,
                          Fp8Format f, Overflow ov);
}  // namespace tinyseek::numerics::avx512
