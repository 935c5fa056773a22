#include "tinyseek/data/loader.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <numeric>

#include "tinyseek/base/check.h"
#include "tinyseek/base/rng.h"

namespace tinyseek::data {

std::shared_ptr<const TokenSplit> TokenSplit::load(const std::string& data_dir, const std::string& split) {
  auto s = std::make_shared<TokenSplit>();
  s->index_ = read_data_index(data_dir);
  const SplitInfo& info = s->index_.split(split);
  TS_CHECK(info.tokens > 0, "the " << split << " split of '" << data_dir << "' is empty",
           (split == "val" ? "re-run `tinyseek prepare` with --val-fraction > 0" : "prepare more text"));
  s->vocab_size_ = s->index_.vocab_size;
  s->text_bytes_ = info.bytes;
  for (size_t i = 0; i < info.shard_files.size(); ++i) {
    const std::string path = (std::filesystem::path(data_dir) / info.shard_files[i]).string();
    Shard shard = read_shard(path);
    TS_CHECK(static_cast<int64_t>(shard.header.vocab_size) == s->vocab_size_,
             "token shard '" << path << "' was made for vocab size " << shard.header.vocab_size << " but "
                             << data_dir << "/data.json says " << s->vocab_size_,
             "the data directory mixes two preparations: re-run `tinyseek prepare`");
    TS_CHECK(shard.size() == info.shard_tokens[i],
             "token shard '" << path << "' has " << shard.size() << " tokens but data.json lists "
                             << info.shard_tokens[i],
             "the data directory mixes two preparations: re-run `tinyseek prepare`");
    s->starts_.push_back(s->total_);
    s->total_ += shard.size();
    s->shards_.push_back(std::move(shard));
  }
  return s;
}

std::shared_ptr<const TokenSplit> TokenSplit::from_tokens(const std::vector<int32_t>& tokens, int64_t vocab_size) {
  auto s = std::make_shared<TokenSplit>();
  Shard shard;
  shard.path = "(memory)";
  shard.header.token_bytes = 4;
  shard.header.token_count = tokens.size();
  shard.header.vocab_size = static_cast<uint64_t>(vocab_size);
  shard.payload.resize(tokens.size() * 4);
  for (size_t i = 0; i < tokens.size(); ++i) {
    TS_CHECK(tokens[i] >= 0 && tokens[i] < vocab_size, "token " << tokens[i] << " at " << i << " is outside [0, "
                                                                << vocab_size << ")",
             "pass ids of this vocabulary");
    const auto v = static_cast<uint32_t>(tokens[i]);
    std::memcpy(shard.payload.data() + 4 * i, &v, 4);
  }
  s->vocab_size_ = vocab_size;
  s->starts_.push_back(0);
  s->total_ = static_cast<int64_t>(tokens.size());
  s->shards_.push_back(std::move(shard));
  return s;
}

void TokenSplit::copy(int64_t pos, int64_t n, int32_t* out) const {
  TS_ASSERT(pos >= 0 && n >= 0 && pos + n <= total_);
  // The shard holding pos: the last one starting at or before it.
  size_t k = static_cast<size_t>(std::upper_bound(starts_.begin(), starts_.end(), pos) - starts_.begin()) - 1;
  while (n > 0) {
    const Shard& sh = shards_[k];
    const int64_t local = pos - starts_[k];
    const int64_t take = std::min(n, sh.size() - local);
    sh.copy_tokens(local, take, out);
    out += take;
    pos += take;
    n -= take;
    ++k;
  }
}

WindowLoader::WindowLoader(std::shared_ptr<const TokenSplit> split, LoaderOptions options)
    : split_(std::move(split)), opt_(options) {
  TS_CHECK(split_ != nullptr, "no token split given to the loader", "load one with TokenSplit::load");
  TS_CHECK(opt_.window >= 2, "window length must be at least 2 tokens, got " << opt_.window,
           "the trainer passes seq_len + 1 (+ MTP depth)");
  if (opt_.stride == 0) opt_.stride = opt_.window - 1;
  TS_CHECK(opt_.stride >= 1, "window stride must be positive, got " << opt_.stride, "use 0 for the default W - 1");
  TS_CHECK(split_->size() >= opt_.window,
           "the split has " << split_->size() << " tokens, fewer than one window of " << opt_.window,
           "prepare more text (or a larger --val-fraction for val), or use a shorter sequence length");
  begin_epoch(0);
}

void WindowLoader::begin_epoch(uint64_t epoch) {
  const int64_t span = split_->size() - opt_.window;  // largest start
  epoch_ = epoch;
  index_ = 0;
  if (!opt_.shuffle) {
    offset_ = 0;
    count_ = static_cast<uint64_t>(span / opt_.stride + 1);
    return;
  }
  const Philox rng(opt_.seed, kLoaderStream + epoch);
  offset_ = static_cast<int64_t>(rng.u64(0) % static_cast<uint64_t>(std::min(opt_.stride, span + 1)));
  count_ = static_cast<uint64_t>((span - offset_) / opt_.stride + 1);
  TS_CHECK(count_ <= UINT32_MAX, "too many windows per epoch (" << count_ << ")", "use a longer window or stride");
  order_.resize(count_);
  std::iota(order_.begin(), order_.end(), 0u);
  // Fisher-Yates; j uniform in [0, i] by a 64x64->128-bit multiply (Lemire), bias < 2^-32.
  for (uint64_t i = count_ - 1; i > 0; --i) {
    const auto j = static_cast<uint64_t>((static_cast<unsigned __int128>(rng.u64(i)) * (i + 1)) >> 64);
    std::swap(order_[i], order_[j]);
  }
}

int64_t WindowLoader::window_start(uint64_t index) const {
  TS_ASSERT(index < count_);
  const uint64_t k = opt_.shuffle ? order_[index] : index;
  return offset_ + static_cast<int64_t>(k) * opt_.stride;
}

int64_t WindowLoader::next(int32_t* out, int64_t batch) {
  int64_t rows = 0;
  while (rows < batch) {
    if (index_ == count_) {
      if (!opt_.shuffle) break;
      begin_epoch(epoch_ + 1);
    }
    split_->copy(window_start(index_), opt_.window, out + rows * opt_.window);
    ++index_;
    ++rows;
  }
  return rows;
}

LoaderState WindowLoader::state() const {
  return {epoch_, index_, opt_.seed, opt_.window, opt_.stride, split_->size()};
}

void WindowLoader::restore(const LoaderState& s) {
  if (s.window != 0) {
    TS_CHECK(s.window == opt_.window && s.stride == opt_.stride && s.seed == opt_.seed && s.tokens == split_->size(),
             "saved data position was made for window " << s.window << ", stride " << s.stride << ", seed "
                 << s.seed << " over " << s.tokens << " tokens; this loader has window " << opt_.window
                 << ", stride " << opt_.stride << ", seed " << opt_.seed << " over " << split_->size()
                 << " tokens",
             "resume with the same data directory, sequence length, MTP depth and seed as the checkpoint");
  }
  TS_CHECK(opt_.shuffle || s.epoch == 0, "a sequential loader has no epoch " << s.epoch,
           "the saved position belongs to a training (shuffled) loader");
  begin_epoch(s.epoch);
  TS_CHECK(s.index <= count_,
           "loader position (epoch " << s.epoch << ", window " << s.index << ") is past the " << count_
                                     << " windows of that epoch",
           "the saved position belongs to other data or another window length");
  index_ = s.index;
}

nlohmann::json loader_state_to_json(const LoaderState& s) {
  return {{"epoch", s.epoch}, {"index", s.index},   {"seed", s.seed},
          {"window", s.window}, {"stride", s.stride}, {"tokens", s.tokens}};
}

LoaderState loader_state_from_json(const nlohmann::json& j) {
  TS_CHECK(j.is_object(), "data position is not a JSON object: " << j.dump(),
           "trainer_state.json is corrupt; resume from another checkpoint");
  LoaderState s;
  auto field = [&](const char* key, auto& dst) {
    auto it = j.find(key);
    TS_CHECK(it != j.end() && it->is_number_integer() && (it->is_number_unsigned() || it->template get<int64_t>() >= 0),
             "data position field \"" << key << "\" is missing or not a non-negative integer in " << j.dump(),
             "trainer_state.json is corrupt; resume from another checkpoint");
    dst = it->template get<std::remove_reference_t<decltype(dst)>>();
  };
  field("epoch", s.epoch);
  field("index", s.index);
  field("seed", s.seed);
  field("window", s.window);
  field("stride", s.stride);
  field("tokens", s.tokens);
  return s;
}

}  // namespace tinyseek::data
