// AdamW over the tensor registry: FP32 master weights (the registry's params buffer), the
// two moments in FP32 or BF16 (DeepSeek-V3 §3.3.3 tracks them in BF16 "without observable
// performance degradation"), decoupled weight decay, bias correction.
//
// Per element, in FP32 and in this order (torch.optim.AdamW's order, so the FP32 path
// agrees with PyTorch to rounding; t = step_count after the increment):
//   g  = grad · grad_scale                       (grad_scale = the clip factor)
//   p  = p · (1 − lr·wd)                         only for roles that decay (decays())
//   m  = m·β1 + (1−β1)·g
//   v  = v·β2 + ((1−β2)·g)·g
//   BF16 moments: m, v ← RNE(m), RNE(v); the update below uses the rounded values, so
//   the result equals an optimizer whose moment tensors *are* BF16.
//   p  = p + (−lr/(1−β1^t) · m) / (sqrt(v)/sqrt(1−β2^t) + eps)
// Scalars (1−β1, lr/(1−β1^t), ...) are computed in double and rounded to FP32 once.
// The router bias (Role::kRouterBias) is never read or written: the aux-loss-free
// balancer (balance.h) owns it.
//
// The work is split into fixed chunks of at most kChunk elements inside each tensor and
// the chunks run in parallel; every element's arithmetic is independent of the split, so
// the result is bit-identical for any thread count.
//
// ZeRO-1 (dist/data_parallel.h): an AdamW built for a shard — a chunk-aligned element range
// of the registry buffers — keeps moments for that range only and updates only its chunks.
// Per-element arithmetic does not depend on the split, so N shard optimizers stepped with
// the same gradients and scale give the same parameters as one unsharded optimizer.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "tinyseek/base/aligned.h"
#include "tinyseek/dist/comm.h"
#include "tinyseek/model/registry.h"

namespace tinyseek::train {

enum class MomentPrecision : uint8_t { kFp32, kBf16 };
const char* to_string(MomentPrecision p);  // "fp32" / "bf16"

// Whether decoupled weight decay applies: linear weights, embedding, head, router gate
// weight and the MTP projection decay; RMSNorm weights (and the router bias, which AdamW
// does not touch at all) do not.
bool decays(model::Role r);

struct AdamWConfig {
  double beta1 = 0.9;          // DeepSeek-V3 §4.2
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
  MomentPrecision moments = MomentPrecision::kFp32;
};

// One contiguous run of elements of one tensor that AdamW updates as a unit.
struct OptimizerChunk {
  size_t offset = 0;  // in elements into the registry buffers (and the moment buffers)
  size_t size = 0;    // <= kChunk
  bool decay = false;
};
inline constexpr size_t kOptimizerChunk = 16384;
// Every tensor trained by the optimizer (trained_by_optimizer), cut into chunks of at most
// kOptimizerChunk elements, in registry order. The split depends only on the registry, so
// reductions over it (clip.h) are thread-count independent.
std::vector<OptimizerChunk> optimizer_chunks(const model::Registry& reg);

class AdamW {
 public:
  // Moments sized like the registry's buffers (same offsets), zero; step count 0.
  AdamW(const model::Registry& reg, const AdamWConfig& cfg);
  // Sharded: moments and updates for the elements in `shard` only (its ends must fall on
  // optimizer-chunk boundaries or the buffer's ends; see dist::zero_shards).
  AdamW(const model::Registry& reg, const AdamWConfig& cfg, dist::Range shard);

  // One update of every optimizer-trained tensor of `reg` (a registry with the layout given
  // at construction) with learning rate `lr`; gradients are multiplied by `grad_scale` as
  // they are read (pass the clip factor; the grads buffer is not modified). A sharded
  // optimizer reads and writes only its shard's parameters and gradients.
  void step(model::Registry& reg, double lr, float grad_scale = 1.0f);

  const AdamWConfig& config() const { return cfg_; }
  int64_t step_count() const { return step_count_; }  // updates done so far (t of the last one)

  // Checkpoint state: the step count and the moments, as raw little-endian bytes of
  // moment_precision() (FP32 or BF16 bit patterns), per registry tensor id (numel ·
  // moment_bytes() bytes; tensors not trained by the optimizer stay all-zero). Restoring =
  // copying the saved bytes into the mutable spans and calling set_step_count(); the
  // following steps are then bit-identical to an uninterrupted run.
  MomentPrecision moment_precision() const { return cfg_.moments; }
  size_t moment_bytes() const { return cfg_.moments == MomentPrecision::kBf16 ? 2 : 4; }
  std::span<const std::byte> exp_avg(int id) const { return moment_span(0, id); }
  std::span<const std::byte> exp_avg_sq(int id) const { return moment_span(1, id); }
  std::span<std::byte> mutable_exp_avg(int id) { return moment_span(0, id); }
  std::span<std::byte> mutable_exp_avg_sq(int id) { return moment_span(1, id); }
  // (A sharded optimizer hands out spans only for tensors lying wholly inside its shard.)
  void set_step_count(int64_t t);
  void reset();  // zero moments, step count 0

  // The element range this optimizer owns ([0, params size) when unsharded), and its raw
  // moment bytes (which = 0: exp_avg, 1: exp_avg_sq) for the range, element `shard().begin`
  // first: what dist gathers into / scatters from an unsharded optimizer at checkpoints.
  dist::Range shard() const { return shard_; }
  std::span<std::byte> shard_moment_bytes(int which);
  std::span<const std::byte> shard_moment_bytes(int which) const;

 private:
  std::span<std::byte> moment_span(int which, int id) const;
  void check_layout(const model::Registry& reg) const;

  AdamWConfig cfg_;
  std::vector<OptimizerChunk> chunks_;
  std::vector<std::pair<size_t, size_t>> tensor_ranges_;  // (offset, numel) per tensor id
  size_t buffer_size_ = 0;                                 // registry params().size()
  dist::Range shard_;                                      // the elements owned
  AlignedBuffer<float> m32_, v32_;                         // kFp32, [shard size]
  AlignedBuffer<uint16_t> m16_, v16_;                      // kBf16, [shard size]
  int64_t step_count_ = 0;
};

}  // namespace tinyseek::train
