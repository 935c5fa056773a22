// BPE training (declared in bpe.h).
#include <algorithm>
#include <queue>
#include <unordered_set>

#include "tinyseek/base/check.h"
#include "tinyseek/base/parallel.h"
#include "tinyseek/base/progress.h"
#include "tinyseek/base/timer.h"
#include "tinyseek/data/bpe.h"
#include "tinyseek/data/byte_level.h"
#include "tinyseek/data/unicode.h"

namespace tinyseek::data {

namespace {

uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}
int32_t key_left(uint64_t k) { return static_cast<int32_t>(k >> 32); }
int32_t key_right(uint64_t k) { return static_cast<int32_t>(k & 0xFFFFFFFFu); }

struct StringViewHash {
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using WordCounts = std::unordered_map<std::string_view, int64_t, StringViewHash>;

}  // namespace

void check_bpe_train_options(const BpeTrainOptions& o) {
  TS_CHECK(!o.special_tokens.empty(), "no special tokens given",
           "tinyseek needs at least a BOS/EOS token, e.g. --special-tokens '<|bos|>' '<|eos|>'");
  std::unordered_set<std::string> seen;
  for (const std::string& s : o.special_tokens) {
    TS_CHECK(!s.empty(), "a special token is the empty string", "give each special token a name like <|bos|>");
    TS_CHECK(is_valid_utf8(s), "special token '" << s << "' is not valid UTF-8", "use a UTF-8 name");
    TS_CHECK(seen.insert(s).second, "special token '" << s << "' is listed twice", "list each special token once");
  }
  const int32_t min_v = min_vocab_size(o.special_tokens.size());
  TS_CHECK(o.vocab_size >= min_v,
           "vocab size " << o.vocab_size << " is too small: byte-level BPE needs 256 byte tokens + "
                         << o.special_tokens.size() << " special tokens + at least one merge = " << min_v,
           "use e.g. --vocab-size 4096 (8192 for a few MB of text)");
  TS_CHECK(o.min_frequency >= 1, "min frequency must be at least 1, got " << o.min_frequency,
           "use e.g. --min-frequency 2");
}

namespace {

// Counts pre-tokenizer pieces over all documents. Documents are cut at safe boundaries
// into work items; each thread counts into its own map and the maps are summed, so the
// counts do not depend on the thread count.
WordCounts count_words(const std::vector<std::string_view>& docs, PreTokenizer pre) {
  std::vector<std::string_view> items;
  for (std::string_view d : docs) {
    size_t begin = 0;
    for (size_t end : safe_chunk_ends(d, 256 * 1024)) {
      items.push_back(d.substr(begin, end - begin));
      begin = end;
    }
  }
  std::vector<WordCounts> per_thread(static_cast<size_t>(max_threads()));
  parallel_for(static_cast<int64_t>(items.size()), [&](int64_t i) {
    WordCounts& counts = per_thread[static_cast<size_t>(thread_id())];
    const std::string_view text = items[static_cast<size_t>(i)];
    for_each_piece(text, pre, [&](size_t b, size_t e) { ++counts[text.substr(b, e - b)]; });
  });
  WordCounts total = std::move(per_thread[0]);
  for (size_t t = 1; t < per_thread.size(); ++t)
    for (const auto& [w, c] : per_thread[t]) total[w] += c;
  return total;
}

struct HeapEntry {
  int64_t count;
  uint64_t key;
  // Max-heap order: more occurrences first; on a tie the smaller (left, right) pair.
  bool operator<(const HeapEntry& o) const { return count != o.count ? count < o.count : key > o.key; }
};

}  // namespace

int32_t min_vocab_size(size_t num_special_tokens) { return static_cast<int32_t>(256 + num_special_tokens + 1); }

Tokenizer train_bpe(const std::vector<std::string_view>& documents, const BpeTrainOptions& opt,
                    BpeTrainStats* stats_out) {
  check_bpe_train_options(opt);
  BpeTrainStats stats;
  Timer timer;
  for (std::string_view d : documents) stats.input_bytes += static_cast<int64_t>(d.size());
  TS_CHECK(stats.input_bytes > 0, "the training corpus is empty (0 bytes of text)",
           "pass files or directories that contain text");

  // Vocabulary: special tokens, then the 256 bytes, then merges.
  const auto num_special = static_cast<int32_t>(opt.special_tokens.size());
  std::vector<std::string> tokens(opt.special_tokens.begin(), opt.special_tokens.end());
  std::vector<uint8_t> special(tokens.size(), 1);
  std::unordered_map<std::string, int32_t> token_ids;  // normal tokens only
  for (int b = 0; b < 256; ++b) {
    token_ids.emplace(std::string(1, static_cast<char>(b)), static_cast<int32_t>(tokens.size()));
    tokens.emplace_back(1, static_cast<char>(b));
    special.push_back(0);
  }
  // Learned tokens whose vocab string would equal a special token's text are not allowed
  // (tokenizer.json keys both by string).
  std::unordered_set<std::string> forbidden_tokens;
  for (const std::string& s : opt.special_tokens) {
    auto raw = byte_level_to_bytes(s);
    if (raw && bytes_to_byte_level(*raw) == s) forbidden_tokens.insert(*raw);
  }
  for (const std::string& f : forbidden_tokens)
    TS_CHECK(f.size() > 1, "special token '" << bytes_to_byte_level(f) << "' is the vocab string of a byte token",
             "choose a longer special token name, e.g. <|name|>");

  // Unique words in byte order (deterministic indices), each as a symbol sequence.
  const WordCounts counts = count_words(documents, opt.pre_tokenizer);
  std::vector<std::pair<std::string_view, int64_t>> sorted(counts.begin(), counts.end());
  std::sort(sorted.begin(), sorted.end());
  std::vector<std::vector<int32_t>> words(sorted.size());
  std::vector<int64_t> word_count(sorted.size());
  for (size_t w = 0; w < sorted.size(); ++w) {
    for (char c : sorted[w].first) words[w].push_back(num_special + static_cast<uint8_t>(c));
    word_count[w] = sorted[w].second;
    stats.words += sorted[w].second;
  }
  stats.unique_words = static_cast<int64_t>(sorted.size());

  // Pair statistics over the word counts, and which words contain each pair.
  std::unordered_map<uint64_t, int64_t> pair_count;
  std::unordered_map<uint64_t, std::vector<uint32_t>> pair_words;
  for (size_t w = 0; w < words.size(); ++w) {
    const auto& s = words[w];
    for (size_t i = 0; i + 1 < s.size(); ++i) {
      const uint64_t k = pair_key(s[i], s[i + 1]);
      pair_count[k] += word_count[w];
      auto& list = pair_words[k];
      if (list.empty() || list.back() != w) list.push_back(static_cast<uint32_t>(w));
    }
  }
  std::priority_queue<HeapEntry> heap;
  for (const auto& [k, c] : pair_count) heap.push({c, k});
  stats.count_seconds = timer.seconds();

  Timer merge_timer;
  const int32_t target_merges = opt.vocab_size - static_cast<int32_t>(tokens.size());
  Progress progress("bpe merges", target_merges, opt.progress);
  std::vector<std::pair<int32_t, int32_t>> merges;
  std::unordered_set<uint64_t> forbidden_pairs;
  std::vector<uint64_t> touched;
  stats.stop_reason = "vocab size reached";
  while (static_cast<int32_t>(tokens.size()) < opt.vocab_size) {
    if (heap.empty()) {
      stats.stop_reason = "no pairs left";
      break;
    }
    const HeapEntry top = heap.top();
    heap.pop();
    auto pc = pair_count.find(top.key);
    const int64_t current = pc == pair_count.end() ? 0 : pc->second;
    if (current != top.count) {  // stale entry: requeue with the true count
      if (current > 0) heap.push({current, top.key});
      continue;
    }
    if (current < opt.min_frequency) {
      stats.stop_reason = "min frequency";
      break;
    }
    if (forbidden_pairs.count(top.key)) continue;
    const int32_t a = key_left(top.key), b = key_right(top.key);
    std::string merged = tokens[a] + tokens[b];
    if (forbidden_tokens.count(merged)) {
      forbidden_pairs.insert(top.key);
      continue;
    }
    // The same string can arise from two different merges; it keeps its first id.
    int32_t n;
    auto found = token_ids.find(merged);
    if (found != token_ids.end()) {
      n = found->second;
    } else {
      n = static_cast<int32_t>(tokens.size());
      token_ids.emplace(merged, n);
      tokens.push_back(std::move(merged));
      special.push_back(0);
    }
    merges.emplace_back(a, b);
    stats.last_merge_count = current;

    auto add = [&](int32_t x, int32_t y, int64_t delta, uint32_t w) {
      const uint64_t k = pair_key(x, y);
      int64_t& c = pair_count[k];
      c += delta;
      if (delta > 0) {
        auto& list = pair_words[k];
        if (list.empty() || list.back() != w) list.push_back(w);
        touched.push_back(k);
      } else if (c == 0) {
        pair_count.erase(k);
      }
    };
    std::vector<uint32_t> containing = std::move(pair_words[top.key]);
    pair_words.erase(top.key);
    touched.clear();
    for (uint32_t w : containing) {
      auto& s = words[w];
      const int64_t c = word_count[w];
      // Left-to-right, non-overlapping replacement; neighbours' pair counts move from
      // (prev, a) / (b, next) to (prev, n) / (n, next). prev is the already rewritten
      // symbol, so "a b a b" correctly yields the pair (n, n).
      size_t j = 0;
      for (size_t i = 0; i < s.size();) {
        if (i + 1 < s.size() && s[i] == a && s[i + 1] == b) {
          if (j > 0) {
            add(s[j - 1], a, -c, w);
            add(s[j - 1], n, c, w);
          }
          if (i + 2 < s.size()) {
            add(b, s[i + 2], -c, w);
            add(n, s[i + 2], c, w);
          }
          s[j++] = n;
          i += 2;
        } else {
          s[j++] = s[i++];
        }
      }
      s.resize(j);
    }
    pair_count.erase(top.key);  // every occurrence was merged
    std::sort(touched.begin(), touched.end());
    touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
    for (uint64_t k : touched) {
      auto it = pair_count.find(k);
      if (it != pair_count.end() && it->second > 0) heap.push({it->second, k});
    }
    if ((merges.size() & 63) == 0) progress.update(static_cast<int64_t>(merges.size()));
  }
  progress.finish(std::to_string(merges.size()) + " merges, " + stats.stop_reason);
  stats.merge_seconds = merge_timer.seconds();
  stats.merges = static_cast<int32_t>(merges.size());
  stats.vocab_size = static_cast<int32_t>(tokens.size());
  if (stats_out) *stats_out = stats;

  Tokenizer::Parts parts;
  parts.tokens = std::move(tokens);
  parts.special = std::move(special);
  parts.merges = std::move(merges);
  parts.pre_tokenizer = opt.pre_tokenizer;
  return Tokenizer(std::move(parts));
}

}  // namespace tinyseek::data
