#include "tinyseek/numerics/simd.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "tinyseek/base/check.h"

namespace tinyseek {

namespace {
// -1: no override; otherwise a SimdPath value.
std::atomic<int> g_override{-1};

SimdPath detect() {
  const char* env = std::getenv("TINYSEEK_SIMD");
  if (env && *env) {
    if (std::strcmp(env, "portable") == 0) return SimdPath::Portable;
    TS_CHECK(std::strcmp(env, "avx512") == 0 || std::strcmp(env, "auto") == 0,
             "TINYSEEK_SIMD='" << env << "' is not a known SIMD path",
             "use TINYSEEK_SIMD=portable, avx512 or auto (or unset it)");
    if (std::strcmp(env, "avx512") == 0)
      TS_CHECK(cpu_has_avx512_bf16(), "TINYSEEK_SIMD=avx512 but this CPU lacks AVX512-BF16",
               "unset TINYSEEK_SIMD to use the portable path");
  }
  return cpu_has_avx512_bf16() ? SimdPath::Avx512Bf16 : SimdPath::Portable;
}
}  // namespace

bool cpu_has_avx512_bf16() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                          __builtin_cpu_supports("avx512bf16");
  return has;
#else
  return false;
#endif
}

SimdPath simd_path() {
  const int o = g_override.load(std::memory_order_relaxed);
  if (o >= 0) return static_cast<SimdPath>(o);
  static const SimdPath detected = detect();
  return detected;
}

void set_simd_override(SimdPath p) {
  TS_CHECK(p == SimdPath::Portable || cpu_has_avx512_bf16(),
           "cannot force the AVX512-BF16 path: this CPU lacks it", "force SimdPath::Portable instead");
  g_override.store(static_cast<int>(p));
}
void clear_simd_override() { g_override.store(-1); }

const char* to_string(SimdPath p) { return p == SimdPath::Portable ? "portable" : "avx512-bf16"; }

}  // namespace tinyseek
