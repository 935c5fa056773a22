// Expert parallelism (docs/architecture.md "Expert parallel (MPI)"): `--expert-parallel N`
// with N = the world size. Rank q owns routed experts [q·E/N, (q+1)·E/N) of every MoE layer
// (main and MTP); everything else stays data parallel (ZeRO-1, as dist/data_parallel.h).
//
// A MoE layer on rank r (model/moe.cc) routes its own tokens (its data-parallel rows), groups
// the (token, k) pairs by expert (ops/moe_dispatch.h: experts in order, tokens ascending),
// so each owner's rows are one contiguous block, and then:
//   1. exchanges the per-expert row counts (MPI_Alltoall),
//   2. dispatches the rows to the owners (MPI_Alltoallv): FP8 E4M3 codes + one FP32 (or
//      pow2) scale per 1x128 tile when fp8() (DeepSeek-V3 §3.3.4), else FP32;
//   3. the owner reorders what it received from [source rank][expert][token] to
//      [expert][source rank][token] — for the global batch in one process this is exactly
//      each expert's token order, so the experts see their rows in the single-process order —
//      and runs its experts;
//   4. combine: the outputs go back in the layer's moe_combine format (BF16 under the bf16
//      and fp8 recipes, as DeepSeek-V3; FP32 under fp32, where the local path keeps FP32 too),
//      so the combine adds no rounding the single-process layer does not have.
// Backward mirrors it: ∂L/∂ye goes to the owners and ∂L/∂xe comes back, both in the
// moe_combine format (BF16 under bf16/fp8: DeepSeek-V3 keeps its backward combine in BF16;
// we also send the down projection's output gradient in BF16 rather than FP8, one rounding
// less than the paper's FP8 backward dispatch for the same bytes as the forward combine).
//
// Parameters: an expert's gradient exists only on its owner (the other ranks never run it);
// it is not reduced, its AdamW moments live on the owner, and the other ranks' copies of its
// weights go stale (they never read them). The non-expert parameters are packed into one
// contiguous buffer, reduce-scattered (Σ in rank order), updated in ZeRO-1 shards and
// all-gathered. The gradient norm folds every optimizer chunk's Σg² in chunk order (the
// unsharded fold). Checkpoints gather the owners' experts and all moments on rank 0, so a
// checkpoint is the full single-process state and loads on any rank count.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "tinyseek/dist/comm.h"
#include "tinyseek/model/registry.h"
#include "tinyseek/numerics/quant.h"
#include "tinyseek/train/adamw.h"

namespace tinyseek::model {
class Model;  // model/deepseek.h
}

namespace tinyseek::dist {

// The token exchange of every MoE layer (model/moe.cc calls it; one per run).
class ExpertDispatch {
 public:
  ExpertDispatch(const Comm& comm, int64_t experts, bool fp8, numerics::ScaleType scale_type);

  int ranks() const { return comm_.size(); }
  int rank() const { return comm_.rank(); }
  int64_t experts_per_rank() const { return per_rank_; }
  int64_t first_expert() const { return int64_t(comm_.rank()) * per_rank_; }
  bool fp8() const { return fp8_; }
  // The dispatch quantization: E4M3, 1x128 tiles along the hidden dimension.
  numerics::QuantSpec fp8_spec() const;

  // per_expert [E]: this rank's rows for every expert. Returns [ranks · E/ranks]: entry
  // s·(E/ranks) + j = rank s's rows for my local expert j.
  std::vector<int64_t> exchange_counts(std::span<const int64_t> per_expert);
  // Rows of row_bytes bytes: send_rows[q] rows to rank q (back to back in rank order),
  // recv_rows[s] rows from rank s into recv (likewise).
  void exchange(const void* send, std::span<const int64_t> send_rows, void* recv, std::span<const int64_t> recv_rows,
                size_t row_bytes);

  // Bytes this rank sent to other ranks in exchanges (rows and counts) and the wall seconds
  // in them (waiting for slower ranks included), since construction.
  size_t bytes_sent() const { return bytes_sent_; }
  double seconds() const { return seconds_; }

 private:
  const Comm& comm_;
  int64_t per_rank_ = 0;
  bool fp8_ = false;
  numerics::ScaleType scale_type_;
  size_t bytes_sent_ = 0;
  double seconds_ = 0;
};

// Refuses (with the way out) an expert-parallel setup this implementation cannot run.
void check_expert_parallel(int expert_parallel, int world_size, int64_t experts);

// The trainer's side: which rank owns which parameter elements, the packed data-parallel
// reduction of the rest, the optimizer pieces and the checkpoint gather/scatter.
class ExpertParallel {
 public:
  // Bucket of the packed reduce-scatter, in floats per peer message (as DataParallel).
  static constexpr size_t kBucketElems = size_t(1) << 20;

  ExpertParallel(const Comm& comm, const model::Registry& reg, const train::AdamWConfig& adamw, bool fp8_dispatch);
  // Clears the attached model's dispatch (the model must outlive this object).
  ~ExpertParallel();
  // Hands every MoE layer of `model` (whose registry is the constructor's) this run's
  // dispatch (Model::set_expert_dispatch), so its layers run only this rank's experts. Call
  // once, before the first step; reduce_gradients refuses to run without it (every rank
  // would have run every expert, and the experts' gradients would be wrong).
  void attach(model::Model& model);
  ExpertParallel(const ExpertParallel&) = delete;
  ExpertParallel& operator=(const ExpertParallel&) = delete;

  const Comm& comm() const { return comm_; }
  ExpertDispatch& dispatch() { return dispatch_; }
  const ExpertDispatch& dispatch() const { return dispatch_; }

  // Non-expert gradients: Σ over ranks (rank order) of this rank's ZeRO shard.
  void reduce_gradients(model::Registry& reg);
  // The global L2 norm: every chunk's Σg² on its owner, folded in chunk order.
  double grad_norm(const model::Registry& reg) const;
  // AdamW on this rank's pieces (its dense shard and its experts).
  void step(model::Registry& reg, double lr, float grad_scale);
  // Every rank's non-expert parameters = the shard owners' values (experts stay on owners).
  void allgather_params(model::Registry& reg);
  void reset_optimizer();
  int64_t step_count() const;

  // Checkpoints. gather: rank 0's registry receives every owner's expert parameters and its
  // `full` (unsharded AdamW, null elsewhere) every piece's moments and the step count; a
  // collective. scatter: this rank's pieces take their moments from `full`.
  void gather_checkpoint(model::Registry& reg, train::AdamW* full) const;
  void scatter_optimizer(const train::AdamW& full);

  size_t bytes_sent() const { return bytes_sent_ + dispatch_.bytes_sent(); }
  double comm_seconds() const { return comm_seconds_ + dispatch_.seconds(); }
  // The parameter/gradient collectives' bytes per step from this rank (token exchanges
  // depend on the routing: dispatch().bytes_sent()).
  size_t dense_bytes_per_step() const;
  size_t dense_elements() const { return packed_size_; }
  // ZeRO-1 shards of the packed non-expert elements, per rank.
  const std::vector<Range>& dense_shards() const { return packed_shards_; }
  size_t my_expert_elements() const;

 private:
  void pack(std::span<float> packed, const float* buf) const;
  void unpack(float* buf, std::span<const float> packed, Range packed_range) const;

  const Comm& comm_;
  const model::Registry& reg_;
  model::Model* model_ = nullptr;  // attach()
  ExpertDispatch dispatch_;
  std::vector<Range> dense_segments_;     // buffer ranges of the non-expert elements, in order
  size_t packed_size_ = 0;
  std::vector<Range> packed_shards_;      // ZeRO shards of the packed space, per rank
  std::vector<std::vector<Range>> pieces_;  // per rank: buffer ranges it updates (dense + experts)
  std::vector<std::vector<Range>> expert_ranges_;  // per rank: buffer ranges of its experts
  std::vector<train::OptimizerChunk> chunks_;
  std::vector<int> chunk_owner_;          // per chunk
  std::vector<std::unique_ptr<train::AdamW>> optimizers_;  // one per piece of this rank
  std::vector<float> packed_;
  size_t bytes_sent_ = 0;
  double comm_seconds_ = 0;
};

}  // namespace tinyseek::dist
