// Scalar bulk codecs, decode tables and SIMD dispatch.
#include <array>
#include <cmath>

#include "tinyseek/base/check.h"
#include "tinyseek/numerics/bf16.h"
#include "tinyseek/numerics/codec_avx512.h"
#include "tinyseek/numerics/fp8.h"
#include "tinyseek/numerics/simd.h"

namespace tinyseek::numerics {

namespace {
template <Fp8Format F>
std::array<float, 256> build_table() {
  std::array<float, 256> t{};
  for (int c = 0; c < 256; ++c) t[c] = fp8_decode_formula<F>(static_cast<uint8_t>(c));
  return t;
}
const std::array<float, 256> kE4M3 = build_table<Fp8Format::E4M3>();
const std::array<float, 256> kE5M2 = build_table<Fp8Format::E5M2>();
bool use_avx512() { return simd_path() == SimdPath::Avx512Bf16; }
}  // namespace

const float* fp8_decode_table(Fp8Format f) { return f == Fp8Format::E4M3 ? kE4M3.data() : kE5M2.data(); }

uint8_t e8m0_encode_pow2(float p) {
  const uint32_t b = std::bit_cast<uint32_t>(p);
  if (p == 0x1p-127f) return 0;
  TS_CHECK(p > 0 && std::isfinite(p) && (b & 0x7FFFFFu) == 0,
           "E8M0 can only hold a positive power of two, got " << p, "round the scale with ScaleType::Pow2");
  return static_cast<uint8_t>(b >> 23);
}

void fp8_encode_bulk_scalar(uint8_t* out, const float* in, size_t n, Fp8Format f, Overflow ov) {
  if (f == Fp8Format::E4M3)
    for (size_t i = 0; i < n; ++i) out[i] = fp8_encode_t<Fp8Format::E4M3>(in[i], ov);
  else
    for (size_t i = 0; i < n; ++i) out[i] = fp8_encode_t<Fp8Format::E5M2>(in[i], ov);
}
void fp8_encode_div_bulk_scalar(uint8_t* out, const float* in, size_t n, float s, Fp8Format f, Overflow ov) {
  if (f == Fp8Format::E4M3)
    for (size_t i = 0; i < n; ++i) out[i] = fp8_encode_t<Fp8Format::E4M3>(in[i] / s, ov);
  else
    for (size_t i = 0; i < n; ++i) out[i] = fp8_encode_t<Fp8Format::E5M2>(in[i] / s, ov);
}
void fp8_decode_bulk_scalar(float* out, const uint8_t* in, size_t n, Fp8Format f) {
  const float* t = fp8_decode_table(f);
  for (size_t i = 0; i < n; ++i) out[i] = t[in[i]];
}
void fp8_to_bf16_bulk_scalar(uint16_t* out, const uint8_t* in, size_t n, Fp8Format f) {
  const float* t = fp8_decode_table(f);
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint16_t>(std::bit_cast<uint32_t>(t[in[i]]) >> 16);
}
void bf16_encode_bulk_scalar(uint16_t* out, const float* in, size_t n, Overflow ov) {
  for (size_t i = 0; i < n; ++i) out[i] = bf16_encode(in[i], ov);
}
void bf16_decode_bulk_scalar(float* out, const uint16_t* in, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = bf16_decode(in[i]);
}

void fp8_encode_bulk(uint8_t* out, const float* in, size_t n, Fp8Format f, Overflow ov) {
  if (use_avx512()) return avx512::fp8_encode_div(out, in, n, 1.0f, false, f, ov);
  fp8_encode_bulk_scalar(out, in, n, f, ov);
}
void fp8_encode_div_bulk(uint8_t* out, const float* in, size_t n, float s, Fp8Format f, Overflow ov) {
  if (use_avx512()) return avx512::fp8_encode_div(out, in, n, s, true, f, ov);
  fp8_encode_div_bulk_scalar(out, in, n, s, f, ov);
}
void fp8_decode_bulk(float* out, const uint8_t* in, size_t n, Fp8Format f) {
  if (use_avx512()) return avx512::fp8_decode(out, in, n, f);
  fp8_decode_bulk_scalar(out, in, n, f);
}
void fp8_to_bf16_bulk(uint16_t* out, const uint8_t* in, size_t n, Fp8Format f) {
  if (use_avx512()) return avx512::fp8_to_bf16(out, in, n, f);
  fp8_to_bf16_bulk_scalar(out, in, n, f);
}
void bf16_encode_bulk(uint16_t* out, const float* in, size_t n, Overflow ov) {
  if (use_avx512()) return avx512::bf16_encode(out, in, n, ov);
  bf16_encode_bulk_scalar(out, in, n, ov);
}
void bf16_decode_bulk(float* out, const uint16_t* in, size_t n) {
  if (use_avx512()) return avx512::bf16_decode(out, in, n);
  bf16_decode_bulk_scalar(out, in, n);
}

}  // namespace tinyseek::numerics
