#include "tinyseek/dist/data_parallel.h"

#include <algorithm>
#include <cstring>

#include "tinyseek/base/check.h"
#include "tinyseek/base/timer.h"
#include "tinyseek/train/clip.h"

namespace tinyseek::dist {

std::vector<Range> zero_shards(const model::Registry& reg, int ranks) {
  TS_ASSERT(ranks >= 1);
  const size_t buffer = reg.params().size();
  const std::vector<train::OptimizerChunk> chunks = train::optimizer_chunks(reg);
  size_t total = 0;
  for (const train::OptimizerChunk& c : chunks) total += c.size;
  // begin[r] = the offset of the first chunk assigned to rank >= r (owner of chunk i:
  // floor(elements before i · ranks / total), non-decreasing in i).
  std::vector<size_t> begin(size_t(ranks) + 1, buffer);
  begin[0] = 0;
  size_t before = 0, prev_offset = 0;
  for (const train::OptimizerChunk& c : chunks) {
    TS_ASSERT(c.offset >= prev_offset);  // registry order is buffer order
    prev_offset = c.offset;
    const size_t owner = total > 0 ? std::min(size_t(ranks) - 1, before * size_t(ranks) / total) : 0;
    for (size_t r = owner; r >= 1 && begin[r] == buffer; --r) begin[r] = c.offset;
    before += c.size;
  }
  // Ranks without chunks get empty ranges at the next rank's start.
  for (size_t r = size_t(ranks) - 1; r >= 1; --r) begin[r] = std::min(begin[r], begin[r + 1]);
  std::vector<Range> shards(static_cast<size_t>(ranks));
  for (size_t r = 0; r < shards.size(); ++r) shards[r] = {begin[r], begin[r + 1]};
  return shards;
}

DataParallel::DataParallel(const Comm& comm, const model::Registry& reg)
    : comm_(comm), shards_(zero_shards(reg, comm.size())), chunks_(train::optimizer_chunks(reg)) {
  chunks_per_rank_.assign(shards_.size(), 0);
  for (const train::OptimizerChunk& c : chunks_)
    for (size_t r = 0; r < shards_.size(); ++r)
      if (c.offset >= shards_[r].begin && c.offset < shards_[r].end) ++chunks_per_rank_[r];
  for (int r = 0; r < comm_.rank(); ++r) my_first_chunk_ += size_t(chunks_per_rank_[size_t(r)]);
}

void DataParallel::reduce_gradients(model::Registry& reg) {
  const Timer t;
  AlignedBuffer<float>& g = reg.grads();
  bytes_sent_ += comm_.reduce_scatter_sum({g.data(), g.size()}, shards_, kBucketElems);
  comm_seconds_ += t.seconds();
}

size_t DataParallel::bytes_per_step() const {
  if (!comm_.distributed()) return 0;
  size_t others = 0;
  for (size_t r = 0; r < shards_.size(); ++r)
    if (r != size_t(comm_.rank())) others += shards_[r].size();
  return (others + my_shard().size() * (shards_.size() - 1)) * sizeof(float);
}

double DataParallel::grad_norm(const model::Registry& reg) const {
  const size_t mine = size_t(chunks_per_rank_[size_t(comm_.rank())]);
  const std::vector<double> local = train::chunk_sum_squares(reg, chunks_, my_first_chunk_, my_first_chunk_ + mine);
  // Shards are in rank order and chunks in buffer order: the gathered vector is in chunk order.
  return train::norm_from_chunk_sums(comm_.allgatherv(local, chunks_per_rank_));
}

void DataParallel::allgather_params(model::Registry& reg) {
  const Timer t;
  AlignedBuffer<float>& p = reg.params();
  bytes_sent_ += comm_.allgather_inplace({p.data(), p.size()}, shards_);
  comm_seconds_ += t.seconds();
}

void DataParallel::gather_optimizer(const train::AdamW& sharded, train::AdamW* full) const {
  TS_ASSERT(sharded.shard() == my_shard());
  TS_ASSERT(comm_.is_root() == (full != nullptr));
  std::vector<int64_t> counts(shards_.size());
  for (size_t r = 0; r < shards_.size(); ++r) counts[r] = int64_t(shards_[r].size() * sharded.moment_bytes());
  for (int which = 0; which < 2; ++which) {
    std::span<std::byte> out;
    if (full) {
      TS_ASSERT(full->moment_precision() == sharded.moment_precision() && full->shard().begin == 0);
      out = full->shard_moment_bytes(which);
    }
    comm_.gatherv_bytes(sharded.shard_moment_bytes(which), counts, out, 0);
  }
  if (full) full->set_step_count(sharded.step_count());
}

void DataParallel::scatter_optimizer(const train::AdamW& full, train::AdamW& sharded) {
  TS_ASSERT(full.shard().begin == 0 && full.moment_precision() == sharded.moment_precision());
  const size_t mb = sharded.moment_bytes();
  for (int which = 0; which < 2; ++which) {
    const std::span<const std::byte> src = full.shard_moment_bytes(which);
    const std::span<std::byte> dst = sharded.shard_moment_bytes(which);
    TS_ASSERT(sharded.shard().end * mb <= src.size());
    if (!dst.empty()) std::memcpy(dst.data(), src.data() + sharded.shard().begin * mb, dst.size());
  }
  sharded.set_step_count(full.step_count());
}

}  // namespace tinyseek::dist
