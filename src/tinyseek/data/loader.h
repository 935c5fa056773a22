// Batches of token windows for training and evaluation.
//
// A split (train or val) is read as one stream: its shards concatenated in order. A
// window is W consecutive tokens (the trainer uses W = T + 1 + D: inputs, next-token
// targets and D extra MTP targets). Window k of an epoch starts at offset + k * S, where
// the stride S defaults to W - 1 (consecutive windows share one token, so each token is
// a next-token target once per epoch).
//
// Shuffled mode (training): each epoch e draws an offset in [0, S) and a permutation of
// its windows from Philox(seed, stream = kLoaderStream + e), so epochs differ and never
// depend on thread count or on how many batches were asked for at a time. The position
// is (epoch, index of the next window in that epoch's order); restoring it with
// restore() continues with exactly the windows an uninterrupted run would have served.
// Batches wrap across epochs.
//
// Sequential mode (validation): windows 0, 1, ... at offset 0, in order, once; tokens
// after the last full window are not served. next() returns fewer rows (then 0) at the
// end; reset() starts over.
#pragma once
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tinyseek/data/prepare.h"
#include "tinyseek/data/shards.h"

namespace tinyseek::data {

// A validated split: data.json + every shard (magic, version, size, checksum, token
// range, vocab size and token counts consistent with the index).
class TokenSplit {
 public:
  static std::shared_ptr<const TokenSplit> load(const std::string& data_dir, const std::string& split);
  // From tokens in memory (tests, tools).
  static std::shared_ptr<const TokenSplit> from_tokens(const std::vector<int32_t>& tokens, int64_t vocab_size);

  int64_t size() const { return total_; }  // tokens
  int64_t vocab_size() const { return vocab_size_; }
  int64_t text_bytes() const { return text_bytes_; }  // UTF-8 bytes of the split's text
  const DataIndex& index() const { return index_; }
  // out[i] = token (pos + i), i < n; requires 0 <= pos, pos + n <= size().
  void copy(int64_t pos, int64_t n, int32_t* out) const;

 private:
  std::vector<Shard> shards_;
  std::vector<int64_t> starts_;  // stream offset of each shard
  int64_t total_ = 0, vocab_size_ = 0, text_bytes_ = 0;
  DataIndex index_;
};

struct LoaderOptions {
  int64_t window = 0;   // W tokens per row (the trainer: T + 1 + D)
  // Distance between window starts; 0 means W - 1. With MTP depth D > 0 the trainer
  // should pass T, so that every token is a main next-token target once per epoch.
  int64_t stride = 0;
  uint64_t seed = 0;
  bool shuffle = true;  // false: sequential (validation)
};

// The exact position of a WindowLoader: everything needed to continue bit-identically
// (epoch, index) plus what it was computed for (seed, window, stride, split size), which
// restore() checks so a checkpoint is never resumed on other data or another shape.
// Saved in trainer_state.json as
//   {"epoch": 0, "index": 12, "seed": 1234, "window": 258, "stride": 256, "tokens": 1003520}
struct LoaderState {
  uint64_t epoch = 0;
  uint64_t index = 0;   // windows already served in this epoch
  uint64_t seed = 0;
  int64_t window = 0;   // 0 in a default-constructed state: restore() skips the checks
  int64_t stride = 0;
  int64_t tokens = 0;   // size of the split
  bool operator==(const LoaderState&) const = default;
};

nlohmann::json loader_state_to_json(const LoaderState& s);
// Throws tinyseek::Error naming the missing or malformed field.
LoaderState loader_state_from_json(const nlohmann::json& j);

inline constexpr uint64_t kLoaderStream = 0xDA7A000000000000ull;

class WindowLoader {
 public:
  WindowLoader(std::shared_ptr<const TokenSplit> split, LoaderOptions options);

  // Fills out[B, W] (int32, row-major) with the next B windows; returns the number of rows
  // written (always B in shuffled mode; fewer, then 0, at the end in sequential mode).
  int64_t next(int32_t* out, int64_t batch);

  LoaderState state() const;
  // Continues from a state() of a loader over the same split with the same options.
  void restore(const LoaderState& s);
  void reset() { begin_epoch(0); }  // back to the first window of epoch 0

  int64_t window() const { return opt_.window; }
  int64_t stride() const { return opt_.stride; }
  int64_t windows_in_epoch() const { return static_cast<int64_t>(count_); }
  // Start of window `index` of the current epoch (for tests and diagnostics).
  int64_t window_start(uint64_t index) const;

 private:
  void begin_epoch(uint64_t epoch);

  std::shared_ptr<const TokenSplit> split_;
  LoaderOptions opt_;
  uint64_t epoch_ = 0, index_ = 0;
  int64_t offset_ = 0;
  uint64_t count_ = 0;
  std::vector<uint32_t> order_;  // shuffled mode: permutation of [0, count_)
};

}  // namespace tinyseek::data
