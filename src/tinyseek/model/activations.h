// Where the modules keep the intermediate activations that backward reads, under the
// recompute policy (recompute.h) and the precision map's cache fields (precision.h).
//
// Each intermediate is an Act: either saved in its module's own buffer (kept from forward
// to backward), or transient in the shared ActivationArena, one buffer per ActKey shared by
// all layers (valid only until the next layer's forward or recompute overwrites it; backward
// recomputes it right before use, or does not need it at all: a Linear input whose Linear
// keeps its own BF16/FP8 copy, linear_site.h). The arena holds one layer's worth, so
// dropping an activation from "saved" to "transient" is what lowers the memory of the
// whole model. A LowAct is an intermediate kept rounded to BF16 or FP8 (the SwiGLU inputs
// under swiglu_cache bf16/fp8), decoded when backward needs it.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>

#include "tinyseek/base/aligned.h"
#include "tinyseek/model/precision.h"
#include "tinyseek/model/recompute.h"
#include "tinyseek/numerics/quant.h"

namespace tinyseek::model {

enum class ActKey : int {
  // Block
  kH1, kRstd1, kMid, kH2, kRstd2, kBlockOut,
  // MLA
  kCqRaw, kCq, kRstdQ, kQ, kKvA, kCkv, kRstdKv, kKpe, kKv, kO, kLse,
  // Dense SwiGLU
  kFfnG, kFfnU, kFfnA,
  // MoE
  kXe, kYe, kGe, kUe, kAe, kSharedG, kSharedU, kSharedA,
  // MTP module
  kMtpEmb, kMtpPrev, kMtpNormed, kMtpConcat,
  kCount
};

class ActivationArena {
 public:
  // n floats of key k, contents unspecified; grown on demand, never shrunk (steady-state
  // training allocates nothing).
  float* get(ActKey k, size_t n) {
    AlignedBuffer<float>& b = buffers_[storage(k)];
    if (b.size() < n) b.resize(n);
    return b.data();
  }
  // The BF16 / FP8 transient storage of key k (LowAct).
  AlignedBuffer<uint16_t>& halves(ActKey k) { return halves_[storage(k)]; }
  numerics::QTensor& quantized(ActKey k) { return quantized_[storage(k)]; }
  int64_t floats() const {
    int64_t n = 0;
    for (const auto& b : buffers_) n += static_cast<int64_t>(b.size());
    return n;
  }
  int64_t bytes() const;  // everything the arena holds

  // Keys whose contents are never needed at the same time share one buffer: the dense
  // FFN's and MoE's intermediates (a layer has one or the other), and the MTP module's
  // inputs, which are dead before its block runs forward and gathered again only after the
  // block's backward.
  //
  // With set_share_attention(true) also MLA's transients (q, kv, c_q, c_kv and their rstd)
  // and the block's h1 take the FFN/MoE buffers: MLA forward is done with them before the
  // FFN runs, and MLA backward (after the FFN's) recomputes them first. Only when backward
  // recomputes them, i.e. not under `full`, whose re-run forward leaves them for MLA backward
  // after the FFN's backward (Model::run sets it per step).
  void set_share_attention(bool on) { share_attention_ = on; }
  size_t storage(ActKey k) const {
    if (share_attention_) switch (k) {
        case ActKey::kQ: return static_cast<size_t>(ActKey::kXe);
        case ActKey::kKv: return static_cast<size_t>(ActKey::kYe);
        case ActKey::kCq: return static_cast<size_t>(ActKey::kGe);
        case ActKey::kCkv: return static_cast<size_t>(ActKey::kUe);
        case ActKey::kH1: return static_cast<size_t>(ActKey::kAe);
        case ActKey::kRstdQ: return static_cast<size_t>(ActKey::kSharedG);
        case ActKey::kRstdKv: return static_cast<size_t>(ActKey::kSharedU);
        default: break;
      }
    switch (k) {
      case ActKey::kFfnG: return static_cast<size_t>(ActKey::kGe);
      case ActKey::kFfnU: return static_cast<size_t>(ActKey::kUe);
      case ActKey::kFfnA: return static_cast<size_t>(ActKey::kAe);
      case ActKey::kMtpEmb: return static_cast<size_t>(ActKey::kH1);
      case ActKey::kMtpPrev: return static_cast<size_t>(ActKey::kH2);
      case ActKey::kMtpNormed: return static_cast<size_t>(ActKey::kMid);
      case ActKey::kMtpConcat: return static_cast<size_t>(ActKey::kXe);
      default: return static_cast<size_t>(k);
    }
  }

 private:
  static constexpr size_t kKeys = static_cast<size_t>(ActKey::kCount);
  std::array<AlignedBuffer<float>, kKeys> buffers_;
  std::array<AlignedBuffer<uint16_t>, kKeys> halves_;
  std::array<numerics::QTensor, kKeys> quantized_;
  bool share_attention_ = false;
};

// One intermediate activation of one module.
class Act {
 public:
  // Points at n floats: the module's own buffer if `keep` (saved for backward), else the
  // arena's buffer for `key` (and the own buffer is released).
  float* place(size_t n, bool keep, ActivationArena& arena, ActKey key) {
    if (keep) {
      own_.resize(n);
      ptr_ = own_.data();
    } else {
      own_.resize(0);
      ptr_ = arena.get(key, n);
    }
    return ptr_;
  }
  float* data() const { return ptr_; }
  int64_t saved_floats() const { return static_cast<int64_t>(own_.size()); }

 private:
  AlignedBuffer<float> own_;
  float* ptr_ = nullptr;
};

// An intermediate kept rounded for backward: BF16, or FP8 with 1x128 tiles along its rows
// (ActStore::spec). store() writes it from FP32 x; load() decodes it.
class LowAct {
 public:
  // x [rows, cols] (ld = cols) into c.format (kBf16 or kFp8): own storage if keep, else the
  // arena's storage for key (and the own storage is released).
  void store(const float* x, int64_t rows, int64_t cols, const ActStore& c, bool keep, ActivationArena& arena,
             ActKey key);
  // out [rows, cols] = the stored values decoded to FP32 (parallel; same bits for any thread count).
  void load(float* out) const;
  int64_t saved_bytes() const;  // own storage only

 private:
  StoreFormat format_ = StoreFormat::kFp32;
  int64_t rows_ = 0, cols_ = 0;
  AlignedBuffer<uint16_t> own_halves_;
  numerics::QTensor own_q_;
  const AlignedBuffer<uint16_t>* halves_ = nullptr;
  const numerics::QTensor* q_ = nullptr;
};

// What a module keeps, by kind of intermediate (recompute.h).
//   normed:   RMSNorm outputs (and their rstd)          dropped by selective and full
//   upproj:   MLA up-projections q, kv                   dropped by selective and full
//   swiglu:   SwiGLU outputs silu(g)·u                   dropped by selective and full
//   other:    everything else (projections, o, lse, g, u, mid, expert outputs)  dropped by full
// Under every policy, a kept intermediate that only Linears read goes when those Linears
// keep their own BF16/FP8 copies (linear_site.h), and copies of kept tensors (the MoE
// expert-input gather, the MTP module's inputs) are gathered again instead of kept.
struct KeepPolicy {
  bool normed = true, upproj = true, swiglu = true, other = true;
  static KeepPolicy of(Recompute r) {
    switch (r) {
      case Recompute::kNone: return {};
      case Recompute::kSelective: return {false, false, false, true};
      case Recompute::kFull: return {false, false, false, false};
    }
    return {};
  }
};

// The context the modules' forward/backward need to place and recompute activations.
struct ActContext {
  KeepPolicy keep;
  ActivationArena& arena;
  // The module's transient activations are still valid (full: its block was re-run just
  // now), so backward must not recompute them again.
  bool fresh = false;
  // This forward repeats one already done for the same batch (recomputation in backward):
  // its Linears record no amaxes and no telemetry, so recomputation changes no FP8 state.
  bool repeat = false;
};

}  // namespace tinyseek::model
