// Which SIMD path runs. Detected once from CPUID; TINYSEEK_SIMD=portable (or
// set_simd_override) forces the portable path so tests can run both on one machine.
#pragma once
#include <string>

namespace tinyseek {

enum class SimdPath { Portable, Avx512Bf16 };

// The path in use: the CPU's best, unless overridden by the environment or a call below.
SimdPath simd_path();
bool cpu_has_avx512_bf16();
// Force a path (tests); forcing Avx512Bf16 on a CPU without it throws.
void set_simd_override(SimdPath p);
void clear_simd_override();
const char* to_string(SimdPath p);  // "portable" / "avx512-bf16"

}  // namespace tinyseek
