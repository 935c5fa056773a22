// Activation recomputation policy (DeepSeek-V3 §3.2.3 "Recomputation of RMSNorm and MLA
// Up-Projection"): what a block keeps from forward for backward, and what backward
// recomputes instead. Every policy gives bit-identical losses and gradients (recomputation
// repeats the same deterministic kernels on the same inputs); they differ in memory and time.
//
//   none       keep every intermediate backward reads
//   selective  drop the RMSNorm outputs (block norms, q_a / kv_a latent norms), the MLA
//              up-projection outputs (q = q_b_proj(c_q) with RoPE, kv = kv_b_proj(c_kv))
//              and the SwiGLU outputs silu(g)·u; backward recomputes them one block at a
//              time
//   full       keep only each block's input (the residual stream); backward re-runs the
//              whole block forward, then its backward, one block at a time
#pragma once
#include <string>

namespace tinyseek::model {

enum class Recompute : unsigned char { kNone, kSelective, kFull };

const char* to_string(Recompute r);  // "none" / "selective" / "full"
// Parses "none" | "selective" | "full"; throws tinyseek::Error naming the valid values.
Recompute parse_recompute(const std::string& s);

}  // namespace tinyseek::model
