// ZeRO-1 sharding without MPI: the shards tile the buffer at optimizer-chunk boundaries,
// and N sharded AdamW optimizers stepping their shards of one registry give the same bits
// as one unsharded optimizer (the per-element arithmetic ignores the split); the sharded
// norm's fold equals the unsharded norm; an unsharded optimizer scattered to shards
// continues identically (what a resume on another rank count does).
#include <gtest/gtest.h>

#include <cstring>
#include <ostream>
#include <vector>

#include "tinyseek/base/rng.h"
#include "tinyseek/dist/data_parallel.h"
#include "tinyseek/train/clip.h"
#include "../train/trainer_test_util.h"

namespace tinyseek::train {
// ctest lists the moment format instead of the enum's byte.
inline void PrintTo(MomentPrecision p, std::ostream* os) { *os << to_string(p); }
}  // namespace tinyseek::train

namespace tinyseek::dist {
namespace {

using train::AdamW;
using train::AdamWConfig;
using train::MomentPrecision;

// A tiny model (hidden 256 so tensors span several 16384-element chunks) with random grads.
model::ModelConfig config() {
  return train::testing::tiny_run_config({"hidden_size=256", "intermediate_size=512", "vocab_size=512"}).model;
}

void random_grads(model::Registry& reg, uint64_t seed) {
  const Philox rng(seed, 77);
  float* g = reg.grads().data();
  for (size_t i = 0; i < reg.grads().size(); ++i) g[i] = static_cast<float>(rng.normal(i) * 1e-2);
}

TEST(Zero, ShardsTileTheBufferAtChunkBoundaries) {
  model::Model m(config());
  const model::Registry& reg = m.registry();
  const std::vector<train::OptimizerChunk> chunks = train::optimizer_chunks(reg);
  for (int N : {1, 2, 3, 7, 1000}) {
    const std::vector<Range> s = zero_shards(reg, N);
    ASSERT_EQ(s.size(), size_t(N));
    EXPECT_EQ(s.front().begin, 0u);
    EXPECT_EQ(s.back().end, reg.params().size());
    size_t largest = 0, owned_total = 0;
    for (int r = 0; r < N; ++r) {
      if (r > 0) {
        EXPECT_EQ(s[r].begin, s[r - 1].end) << "rank " << r;
      }
      size_t owned = 0;
      for (const train::OptimizerChunk& c : chunks) {
        const bool starts = c.offset >= s[r].begin && c.offset < s[r].end;
        if (starts) {
          EXPECT_LE(c.offset + c.size, s[r].end) << "chunk at " << c.offset << " straddles rank " << r;
          owned += c.size;
        }
      }
      largest = std::max(largest, owned);
      owned_total += owned;
    }
    size_t total = 0;
    for (const train::OptimizerChunk& c : chunks) total += c.size;
    EXPECT_EQ(owned_total, total);
    std::printf("  N=%d: %zu chunks, %zu trained elements, largest shard %zu (ideal %zu)\n", N, chunks.size(), total,
                largest, total / size_t(N));
    // Balanced to within one chunk when there are more chunks than ranks.
    if (size_t(N) <= chunks.size()) {
      EXPECT_LE(largest, total / size_t(N) + train::kOptimizerChunk);
    }
  }
}

class ZeroAdamW : public ::testing::TestWithParam<MomentPrecision> {};

TEST_P(ZeroAdamW, ShardedStepsEqualUnshardedBitwise) {
  model::Model full_m(config()), shard_m(config());
  full_m.init(5);
  shard_m.init(5);
  AdamWConfig cfg;
  cfg.moments = GetParam();
  AdamW full(full_m.registry(), cfg);
  for (int N : {2, 3}) {
    const std::vector<Range> shards = zero_shards(shard_m.registry(), N);
    std::vector<std::unique_ptr<AdamW>> opts;
    // A resume onto N ranks: scatter the unsharded state (after the previous N's steps).
    for (const Range& s : shards) {
      opts.push_back(std::make_unique<AdamW>(shard_m.registry(), cfg, s));
      DataParallel::scatter_optimizer(full, *opts.back());
    }
    for (int step = 0; step < 3; ++step) {
      const uint64_t seed = uint64_t(N * 10 + step);
      random_grads(full_m.registry(), seed);
      random_grads(shard_m.registry(), seed);
      const double norm = train::global_grad_norm(full_m.registry());
      const std::vector<train::OptimizerChunk> chunks = train::optimizer_chunks(shard_m.registry());
      std::vector<double> sums;
      for (const Range& s : shards) {  // each rank's chunks, gathered in rank order
        size_t first = 0;
        while (first < chunks.size() && chunks[first].offset < s.begin) ++first;
        size_t last = first;
        while (last < chunks.size() && chunks[last].offset < s.end) ++last;
        const std::vector<double> part = train::chunk_sum_squares(shard_m.registry(), chunks, first, last);
        sums.insert(sums.end(), part.begin(), part.end());
      }
      const double sharded_norm = train::norm_from_chunk_sums(sums);
      EXPECT_EQ(norm, sharded_norm) << "N=" << N;
      const float scale = train::clip_factor(norm, 1.0);
      full.step(full_m.registry(), 1e-3, scale);
      for (auto& o : opts) o->step(shard_m.registry(), 1e-3, scale);
    }
    const auto& a = full_m.registry().params();
    const auto& b = shard_m.registry().params();
    size_t differ = 0;
    for (size_t i = 0; i < a.size(); ++i) differ += std::memcmp(&a[i], &b[i], sizeof(float)) != 0;
    std::printf("  moments %s, N=%d: %zu of %zu parameters differ after 3 steps (want 0)\n",
                train::to_string(GetParam()), N, differ, a.size());
    EXPECT_EQ(differ, 0u);
    for (auto& o : opts) EXPECT_EQ(o->step_count(), full.step_count());
  }
}

INSTANTIATE_TEST_SUITE_P(Moments, ZeroAdamW, ::testing::Values(MomentPrecision::kFp32, MomentPrecision::kBf16),
                         [](const auto& i) { return std::string(train::to_string(i.param)); });

TEST(Zero, ShardedOptimizerRefusesForeignTensors) {
  model::Model m(config());
  const std::vector<Range> shards = zero_shards(m.registry(), 2);
  AdamW second(m.registry(), AdamWConfig{}, shards[1]);
  // Tensor 0 (the embedding) lies in rank 0's shard.
  EXPECT_THROW(second.exp_avg(0), Error);
}

}  // namespace
}  // namespace tinyseek::dist
