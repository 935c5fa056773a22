#include "tinyseek/dist/expert_parallel.h"

#include <algorithm>
#include <cstring>

#include "tinyseek/base/check.h"
#include "tinyseek/base/timer.h"
#include "tinyseek/model/deepseek.h"
#include "tinyseek/train/clip.h"

namespace tinyseek::dist {

// ---- ExpertDispatch

ExpertDispatch::ExpertDispatch(const Comm& comm, int64_t experts, bool fp8, numerics::ScaleType scale_type)
    : comm_(comm), per_rank_(experts / comm.size()), fp8_(fp8), scale_type_(scale_type) {
  TS_ASSERT(experts % comm.size() == 0);
}

numerics::QuantSpec ExpertDispatch::fp8_spec() const {
  numerics::QuantSpec s;
  s.format = numerics::Fp8Format::E4M3;
  s.granularity = numerics::Granularity::Tile1x128;
  s.scale_type = scale_type_;
  return s;
}

std::vector<int64_t> ExpertDispatch::exchange_counts(std::span<const int64_t> per_expert) {
  TS_ASSERT(int64_t(per_expert.size()) == per_rank_ * ranks());
  const Timer t;
  std::vector<int64_t> recv(per_expert.size());
  comm_.alltoall(per_expert, recv);
  bytes_sent_ += size_t(per_rank_) * sizeof(int64_t) * size_t(ranks() - 1);
  seconds_ += t.seconds();
  return recv;
}

void ExpertDispatch::exchange(const void* send, std::span<const int64_t> send_rows, void* recv,
                              std::span<const int64_t> recv_rows, size_t row_bytes) {
  const Timer t;
  std::vector<int64_t> sb(send_rows.size()), rb(recv_rows.size());
  for (size_t q = 0; q < sb.size(); ++q) sb[q] = send_rows[q] * int64_t(row_bytes);
  for (size_t q = 0; q < rb.size(); ++q) rb[q] = recv_rows[q] * int64_t(row_bytes);
  bytes_sent_ += comm_.alltoallv_bytes(send, sb, recv, rb);
  seconds_ += t.seconds();
}

void check_expert_parallel(int expert_parallel, int world_size, int64_t experts) {
  TS_CHECK(expert_parallel >= 1, "--expert-parallel " << expert_parallel << " is not a rank count",
           "pass --expert-parallel N with N >= 1 (1 = off)");
  if (expert_parallel == 1) return;
  TS_CHECK(world_size > 1, "--expert-parallel " << expert_parallel << " needs " << expert_parallel
           << " MPI ranks but this process runs alone", "launch with mpirun -np " << expert_parallel << " tinyseek train ...");
  TS_CHECK(expert_parallel == world_size, "--expert-parallel " << expert_parallel << " under " << world_size
           << " ranks: the expert-parallel group must be all ranks (expert parallelism inside data-parallel groups "
           "is not implemented)", "pass --expert-parallel " << world_size << " or launch with mpirun -np "
           << expert_parallel);
  TS_CHECK(experts > 0, "--expert-parallel " << expert_parallel << " but the model has no routed experts",
           "drop --expert-parallel (plain data parallelism), or use a MoE config");
  TS_CHECK(experts % expert_parallel == 0, "n_routed_experts " << experts << " cannot be split evenly over "
           << expert_parallel << " ranks (each rank owns n_routed_experts / ranks experts)",
           "use a rank count that divides " << experts << ", or set n_routed_experts to a multiple of "
           << expert_parallel);
}

// ---- ExpertParallel

ExpertParallel::ExpertParallel(const Comm& comm, const model::Registry& reg, const train::AdamWConfig& adamw,
                               bool fp8_dispatch)
    : comm_(comm), reg_(reg),
      dispatch_(comm, reg.config().n_routed_experts, fp8_dispatch, reg.config().precision.scale_type) {
  const size_t P = size_t(comm.size()), buffer = reg.params().size();
  const int64_t per_rank = dispatch_.experts_per_rank();
  // Owner of every tensor: the expert's owner for routed-expert weights, -1 otherwise.
  std::vector<int> owner(reg.size(), -1);
  const model::ModelIds& ids = reg.ids();
  std::vector<const model::BlockIds*> blocks;
  for (const model::BlockIds& b : ids.layers) blocks.push_back(&b);
  for (const model::MtpIds& m : ids.mtp) blocks.push_back(&m.block);
  for (const model::BlockIds* b : blocks) {
    if (!b->is_moe) continue;
    for (size_t e = 0; e < b->moe.experts.size(); ++e)
      for (int id : {b->moe.experts[e].gate_proj, b->moe.experts[e].up_proj, b->moe.experts[e].down_proj})
        owner[size_t(id)] = int(int64_t(e) / per_rank);
  }
  // Dense segments: every non-expert tensor with its trailing padding, merged when adjacent.
  expert_ranges_.assign(P, {});
  for (size_t id = 0; id < reg.size(); ++id) {
    const model::TensorInfo& t = reg.info(int(id));
    if (owner[id] >= 0) {
      expert_ranges_[size_t(owner[id])].push_back({t.offset, t.offset + t.numel});
      continue;
    }
    const size_t end = id + 1 < reg.size() ? reg.info(int(id + 1)).offset : buffer;
    TS_ASSERT(end >= t.offset + t.numel);  // registry order is buffer order
    if (!dense_segments_.empty() && dense_segments_.back().end == t.offset) dense_segments_.back().end = end;
    else dense_segments_.push_back({t.offset, end});
  }
  for (const Range& s : dense_segments_) packed_size_ += s.size();
  const auto packed_of = [&](size_t offset) {
    size_t before = 0;
    for (const Range& s : dense_segments_) {
      if (offset >= s.begin && offset < s.end) return before + (offset - s.begin);
      before += s.size();
    }
    TS_ASSERT(false);
    return size_t(0);
  };

  // Chunk owners: experts' chunks on the expert's owner, dense chunks in ZeRO-1 shards
  // balanced by element count (as zero_shards, over the dense chunks only).
  chunks_ = train::optimizer_chunks(reg);
  chunk_owner_.assign(chunks_.size(), -1);
  size_t dense_total = 0;
  std::vector<int> chunk_tensor(chunks_.size());
  {
    size_t id = 0;
    for (size_t c = 0; c < chunks_.size(); ++c) {
      while (!(chunks_[c].offset >= reg.info(int(id)).offset &&
               chunks_[c].offset < reg.info(int(id)).offset + reg.info(int(id)).numel))
        ++id;
      chunk_tensor[c] = int(id);
      if (owner[id] < 0) dense_total += chunks_[c].size;
    }
  }
  std::vector<size_t> begin(P + 1, packed_size_);
  begin[0] = 0;
  size_t before = 0;
  for (size_t c = 0; c < chunks_.size(); ++c) {
    const int o = owner[size_t(chunk_tensor[c])];
    if (o >= 0) {
      chunk_owner_[c] = o;
      continue;
    }
    const size_t r = dense_total > 0 ? std::min(P - 1, before * P / dense_total) : 0;
    chunk_owner_[c] = int(r);
    for (size_t q = r; q >= 1 && begin[q] == packed_size_; --q) begin[q] = packed_of(chunks_[c].offset);
    before += chunks_[c].size;
  }
  for (size_t r = P - 1; r >= 1; --r) begin[r] = std::min(begin[r], begin[r + 1]);
  packed_shards_.resize(P);
  for (size_t r = 0; r < P; ++r) packed_shards_[r] = {begin[r], begin[r + 1]};

  // Pieces: maximal runs of consecutive chunks with the same owner (a router bias or padding
  // between them is inside the range; AdamW never touches either).
  pieces_.assign(P, {});
  for (size_t c = 0; c < chunks_.size(); ++c) {
    std::vector<Range>& p = pieces_[size_t(chunk_owner_[c])];
    const bool continues = c > 0 && chunk_owner_[c - 1] == chunk_owner_[c];
    if (continues) p.back().end = chunks_[c].offset + chunks_[c].size;
    else p.push_back({chunks_[c].offset, chunks_[c].offset + chunks_[c].size});
  }
  for (const Range& p : pieces_[size_t(comm.rank())])
    optimizers_.push_back(std::make_unique<train::AdamW>(reg, adamw, p));
}

ExpertParallel::~ExpertParallel() {
  if (model_) model_->set_expert_dispatch(nullptr);
}

void ExpertParallel::attach(model::Model& model) {
  TS_CHECK(&model.registry() == &reg_, "expert parallel: attach() got a model other than the one whose registry "
           "this ExpertParallel was built for", "attach the model whose registry() was passed to the constructor");
  model.set_expert_dispatch(&dispatch_);
  model_ = &model;
}

size_t ExpertParallel::my_expert_elements() const {
  size_t n = 0;
  for (const Range& r : expert_ranges_[size_t(comm_.rank())]) n += r.size();
  return n;
}

void ExpertParallel::pack(std::span<float> packed, const float* buf) const {
  size_t at = 0;
  for (const Range& s : dense_segments_) {
    std::memcpy(packed.data() + at, buf + s.begin, s.size() * sizeof(float));
    at += s.size();
  }
}

void ExpertParallel::unpack(float* buf, std::span<const float> packed, Range packed_range) const {
  size_t at = 0;
  for (const Range& s : dense_segments_) {
    const size_t b = std::max(at, packed_range.begin), e = std::min(at + s.size(), packed_range.end);
    if (b < e) std::memcpy(buf + s.begin + (b - at), packed.data() + b, (e - b) * sizeof(float));
    at += s.size();
  }
}

void ExpertParallel::reduce_gradients(model::Registry& reg) {
  TS_CHECK(model_ != nullptr, "expert parallel: the model's MoE layers have no expert dispatch (ExpertParallel::"
           "attach(model) was not called), so this rank ran every expert on its own tokens",
           "call attach(model) right after constructing the ExpertParallel (train/trainer.cc does)");
  const Timer t;
  packed_.resize(packed_size_);
  pack(packed_, reg.grads().data());
  bytes_sent_ += comm_.reduce_scatter_sum(packed_, packed_shards_, kBucketElems);
  unpack(reg.grads().data(), packed_, packed_shards_[size_t(comm_.rank())]);
  comm_seconds_ += t.seconds();
}

double ExpertParallel::grad_norm(const model::Registry& reg) const {
  const int me = comm_.rank();
  std::vector<train::OptimizerChunk> mine;
  for (size_t c = 0; c < chunks_.size(); ++c)
    if (chunk_owner_[c] == me) mine.push_back(chunks_[c]);
  const std::vector<double> local = train::chunk_sum_squares(reg, mine, 0, mine.size());
  std::vector<int64_t> counts(size_t(comm_.size()), 0);
  for (int o : chunk_owner_) ++counts[size_t(o)];
  const std::vector<double> all = comm_.allgatherv(local, counts);
  // Back into chunk order: rank r's values are its chunks in chunk order.
  std::vector<size_t> next(counts.size(), 0);
  for (size_t r = 1; r < counts.size(); ++r) next[r] = next[r - 1] + size_t(counts[r - 1]);
  std::vector<double> ordered(chunks_.size());
  for (size_t c = 0; c < chunks_.size(); ++c) ordered[c] = all[next[size_t(chunk_owner_[c])]++];
  return train::norm_from_chunk_sums(ordered);
}

void ExpertParallel::step(model::Registry& reg, double lr, float grad_scale) {
  for (auto& o : optimizers_) o->step(reg, lr, grad_scale);
}

void ExpertParallel::allgather_params(model::Registry& reg) {
  const Timer t;
  packed_.resize(packed_size_);
  // Only this rank's shard needs packing: the all-gather overwrites the rest.
  const Range mine = packed_shards_[size_t(comm_.rank())];
  size_t at = 0;
  for (const Range& s : dense_segments_) {
    const size_t b = std::max(at, mine.begin), e = std::min(at + s.size(), mine.end);
    if (b < e) std::memcpy(packed_.data() + b, reg.params().data() + s.begin + (b - at), (e - b) * sizeof(float));
    at += s.size();
  }
  bytes_sent_ += comm_.allgather_inplace(packed_, packed_shards_);
  unpack(reg.params().data(), packed_, {0, packed_size_});
  comm_seconds_ += t.seconds();
}

void ExpertParallel::reset_optimizer() {
  for (auto& o : optimizers_) o->reset();
}

int64_t ExpertParallel::step_count() const { return optimizers_.empty() ? 0 : optimizers_.front()->step_count(); }

size_t ExpertParallel::dense_bytes_per_step() const {
  if (!comm_.distributed()) return 0;
  const size_t me = size_t(comm_.rank());
  size_t others = 0;
  for (size_t r = 0; r < packed_shards_.size(); ++r)
    if (r != me) others += packed_shards_[r].size();
  return (others + packed_shards_[me].size() * (packed_shards_.size() - 1)) * sizeof(float);
}

void ExpertParallel::gather_checkpoint(model::Registry& reg, train::AdamW* full) const {
  TS_ASSERT(comm_.is_root() == (full != nullptr));
  const size_t P = size_t(comm_.size()), me = size_t(comm_.rank());
  // The owners' expert weights (rank 0's own copies of other ranks' experts are stale).
  std::vector<int64_t> counts(P, 0);
  for (size_t r = 0; r < P; ++r)
    for (const Range& x : expert_ranges_[r]) counts[r] += int64_t(x.size() * sizeof(float));
  {
    std::vector<std::byte> local(static_cast<size_t>(counts[me]));
    size_t at = 0;
    for (const Range& x : expert_ranges_[me]) {
      std::memcpy(local.data() + at, reg.params().data() + x.begin, x.size() * sizeof(float));
      at += x.size() * sizeof(float);
    }
    std::vector<std::byte> all;
    if (full) {
      size_t total = 0;
      for (int64_t c : counts) total += size_t(c);
      all.resize(total);
    }
    comm_.gatherv_bytes(local, counts, all, 0);
    if (full) {
      size_t at2 = 0;
      for (size_t r = 0; r < P; ++r)
        for (const Range& x : expert_ranges_[r]) {
          std::memcpy(reg.params().data() + x.begin, all.data() + at2, x.size() * sizeof(float));
          at2 += x.size() * sizeof(float);
        }
      reg.params_changed();
    }
  }
  // Every piece's moments, rank by rank, piece by piece.
  const size_t mb = optimizers_.empty() ? 4 : optimizers_.front()->moment_bytes();
  for (size_t r = 0; r < P; ++r) {
    counts[r] = 0;
    for (const Range& p : pieces_[r]) counts[r] += int64_t(p.size() * mb);
  }
  for (int which = 0; which < 2; ++which) {
    std::vector<std::byte> local;
    for (const auto& o : optimizers_) {
      const std::span<const std::byte> b = std::as_const(*o).shard_moment_bytes(which);
      local.insert(local.end(), b.begin(), b.end());
    }
    std::vector<std::byte> all;
    if (full) {
      TS_ASSERT(full->shard().begin == 0 && full->moment_bytes() == mb);
      size_t total = 0;
      for (int64_t c : counts) total += size_t(c);
      all.resize(total);
    }
    comm_.gatherv_bytes(local, counts, all, 0);
    if (full) {
      const std::span<std::byte> dst = full->shard_moment_bytes(which);
      size_t at = 0;
      for (size_t r = 0; r < P; ++r)
        for (const Range& p : pieces_[r]) {
          std::memcpy(dst.data() + p.begin * mb, all.data() + at, p.size() * mb);
          at += p.size() * mb;
        }
    }
  }
  if (full) full->set_step_count(step_count());
}

void ExpertParallel::scatter_optimizer(const train::AdamW& full) {
  TS_ASSERT(full.shard().begin == 0);
  for (auto& o : optimizers_) {
    TS_ASSERT(o->moment_precision() == full.moment_precision());
    const size_t mb = o->moment_bytes();
    for (int which = 0; which < 2; ++which) {
      const std::span<const std::byte> src = full.shard_moment_bytes(which);
      const std::span<std::byte> dst = o->shard_moment_bytes(which);
      if (!dst.empty()) std::memcpy(dst.data(), src.data() + o->shard().begin * mb, dst.size());
    }
    o->set_step_count(full.step_count());
  }
}

}  // namespace tinyseek::dist
