// The engine's absorbed attention for one (token, head) pair (engine.h for the formulas):
// a portable kernel (attend_scalar, engine.cc) and an AVX-512 one (attention_avx512.cc)
// that give the same bits: every output value is the same sequence of rounded multiplies
// and adds, in index order from +0; the AVX-512 kernel only vectorises across outputs.
#pragma once
#include <cstdint>

namespace tinyseek::infer::detail {

struct AttendArgs {
  const float* qn = nullptr;     // [dn] q_nope of the head
  const float* qpe = nullptr;    // [dr] roped q_pe of the head
  const float* wuk = nullptr;    // [dn, dc] W_UK of the head
  const float* wuv_t = nullptr;  // [dc, dv] W_UV of the head, transposed
  const float* ckv = nullptr;    // [S, dc] cached latents
  const float* kpe = nullptr;    // [S, dr] cached roped keys
  int64_t S = 0, dn = 0, dr = 0, dc = 0, dv = 0;
  int64_t p_len = 0;             // floats reserved for the scores in work (>= S)
  float scale = 1.0f;            // 1 / sqrt(dn + dr)
  float* work = nullptr;         // [p_len + 2 dc]
  float* out = nullptr;          // [dv]
};

void attend_scalar(const AttendArgs& x);
void attend_avx512(const AttendArgs& x);

}  // namespace tinyseek::infer::detail
