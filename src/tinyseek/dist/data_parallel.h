// Data parallelism with a ZeRO-1 sharded optimizer (docs/architecture.md "Data parallel").
//
// Every rank holds the full FP32 parameters (forward and backward need them) and a full
// gradient buffer for its own slice of the batch. A step then:
//   1. reduce-scatters the gradients: rank r receives Σ over ranks of its shard, summed in
//      rank order (Comm::reduce_scatter_sum), in buckets;
//   2. computes the global norm from every shard's per-chunk Σg² (all-gathered, folded in
//      chunk order: the same bits an unsharded optimizer would compute from the same sums);
//   3. runs AdamW on its shard only (FP32 master slice + moments for the shard: ZeRO-1);
//   4. all-gathers the updated parameters.
// The shards are contiguous element ranges of the registry buffer, cut at optimizer-chunk
// boundaries (train/adamw.h) so each chunk's update happens on exactly one rank, balanced
// by element count.
#pragma once
#include <cstddef>
#include <vector>

#include "tinyseek/dist/comm.h"
#include "tinyseek/model/registry.h"
#include "tinyseek/train/adamw.h"

namespace tinyseek::dist {

// Rank r's element range [begin, end) of the registry buffers for `ranks` ranks: the ranges
// tile [0, params size) in rank order; each holds the optimizer chunks whose first element
// lies at or after r/ranks of the optimizer-trained elements (possibly none).
std::vector<Range> zero_shards(const model::Registry& reg, int ranks);

class DataParallel {
 public:
  // Bucket of the gradient reduce-scatter, in floats per peer message (4 MiB).
  static constexpr size_t kBucketElems = size_t(1) << 20;

  DataParallel(const Comm& comm, const model::Registry& reg);

  const Comm& comm() const { return comm_; }
  const std::vector<Range>& shards() const { return shards_; }
  Range my_shard() const { return shards_[size_t(comm_.rank())]; }

  // Step 1: afterwards the grads of my_shard() are the sum over ranks (the rest stale).
  void reduce_gradients(model::Registry& reg);
  // Step 2: the global L2 norm of the summed gradients (needs step 1 first).
  double grad_norm(const model::Registry& reg) const;
  // Step 4: every rank's parameters = the shard owners' values.
  void allgather_params(model::Registry& reg);

  // Checkpoints hold the unsharded optimizer. gather: rank 0's `full` (unsharded, same
  // config; null elsewhere) receives every shard's moments and the step count. scatter:
  // `sharded` takes its shard's moments and step count from `full` (every rank loads it).
  void gather_optimizer(const train::AdamW& sharded, train::AdamW* full) const;
  static void scatter_optimizer(const train::AdamW& full, train::AdamW& sharded);

  // Bytes this rank sent since construction (gradients + parameters), and the wall seconds
  // spent in those two collectives (includes waiting for slower ranks), for logs and benches.
  size_t bytes_sent() const { return bytes_sent_; }
  double comm_seconds() const { return comm_seconds_; }
  // What reduce_gradients + allgather_params send from this rank per step.
  size_t bytes_per_step() const;

 private:
  const Comm& comm_;
  std::vector<Range> shards_;
  std::vector<train::OptimizerChunk> chunks_;
  std::vector<int64_t> chunks_per_rank_;
  size_t my_first_chunk_ = 0;
  size_t bytes_sent_ = 0;
  double comm_seconds_ = 0;
};

}  // namespace tinyseek::dist
