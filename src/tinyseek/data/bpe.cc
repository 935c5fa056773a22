#include "tinyseek/data/bpe.h"

#include <algorithm>
#include <functional>

#include "tinyseek/base/check.h"
#include "tinyseek/base/parallel.h"
#include "tinyseek/data/byte_level.h"
#include "tinyseek/data/hash.h"

namespace tinyseek::data {

namespace {

uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

// Printable form of a token for error messages.
std::string show(const std::string& bytes) { return bytes_to_byte_level(bytes); }

// Encoding work is cut into pieces of about this many bytes: large enough that the
// per-chunk overhead is negligible, small enough to balance 2+ threads on ~1 MB inputs.
constexpr size_t kChunkBytes = 64 * 1024;
// Pieces longer than this (runs of '=' or whitespace, base64 blobs) are not cached.
constexpr size_t kMaxCachedPiece = 128;
// A per-thread cache is dropped when it holds this many words (bounds memory).
constexpr size_t kMaxCacheWords = 1 << 20;

}  // namespace

// word (raw bytes) -> its ids, stored as a slice of one arena to avoid a vector per word.
struct Tokenizer::WordCache {
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, std::pair<uint32_t, uint32_t>, Hash, std::equal_to<>> words;
  std::vector<int32_t> arena;
};

Tokenizer::Tokenizer(Parts parts)
    : tokens_(std::move(parts.tokens)),
      special_(std::move(parts.special)),
      pre_(parts.pre_tokenizer),
      add_prefix_space_(parts.add_prefix_space),
      ignore_merges_(parts.ignore_merges) {
  const size_t V = tokens_.size();
  TS_CHECK(V > 0, "the tokenizer vocabulary is empty", "train a tokenizer or load a non-empty tokenizer.json");
  TS_CHECK(special_.size() == V, "tokenizer parts disagree: " << V << " tokens but " << special_.size() << " flags",
           "this is a bug in the caller");
  TS_CHECK(V <= (size_t{1} << 31) - 1, "vocabulary too large: " << V, "use at most 2^31-1 tokens");
  std::fill(std::begin(byte_to_id_), std::end(byte_to_id_), -1);

  std::unordered_map<std::string, int32_t> normal_ids, special_ids_by_text;
  for (size_t i = 0; i < V; ++i) {
    const auto id = static_cast<int32_t>(i);
    TS_CHECK(!tokens_[i].empty(), "token id " << id << " is empty", "every vocabulary entry needs at least one byte");
    auto& index = special_[i] ? special_ids_by_text : normal_ids;
    auto [it, inserted] = index.emplace(tokens_[i], id);
    TS_CHECK(inserted,
             "token ids " << it->second << " and " << id << " are the same " << (special_[i] ? "special " : "")
                          << "token '" << show(tokens_[i]) << "'",
             "a vocabulary maps each string to one id; remove the duplicate");
    if (!special_[i] && tokens_[i].size() == 1) byte_to_id_[static_cast<uint8_t>(tokens_[i][0])] = id;
  }
  // In tokenizer.json a special token's text and a normal token's byte-level string share
  // one namespace (the "vocab" object), so they must differ.
  for (const auto& [text, id] : special_ids_by_text) {
    const auto raw = byte_level_to_bytes(text);
    if (!raw) continue;
    auto it = normal_ids.find(*raw);
    TS_CHECK(it == normal_ids.end() || bytes_to_byte_level(*raw) != text,
             "special token '" << text << "' (id " << id << ") has the same vocab string as token " << it->second,
             "choose a special token name that is not also a learned token, e.g. <|name|>");
  }
  for (int b = 0; b < 256; ++b) {
    TS_CHECK(byte_to_id_[b] >= 0,
             "the vocabulary has no token for byte 0x" << std::hex << b << std::dec
                                                       << ": it is not a complete byte-level vocabulary",
             "tinyseek needs all 256 single-byte tokens so that every input can be encoded");
  }

  merges_.reserve(parts.merges.size());
  merge_index_.reserve(parts.merges.size() * 2);
  for (size_t r = 0; r < parts.merges.size(); ++r) {
    const auto [l, rr] = parts.merges[r];
    TS_CHECK(l >= 0 && static_cast<size_t>(l) < V && rr >= 0 && static_cast<size_t>(rr) < V,
             "merge #" << r << " refers to token ids (" << l << ", " << rr << ") outside the vocabulary of size " << V,
             "the merges list does not belong to this vocabulary");
    TS_CHECK(!special_[l] && !special_[rr], "merge #" << r << " involves a special token",
             "special tokens cannot be merged");
    auto it = normal_ids.find(tokens_[l] + tokens_[rr]);
    TS_CHECK(it != normal_ids.end(),
             "merge #" << r << " '" << show(tokens_[l]) << " " << show(tokens_[rr]) << "' produces '"
                       << show(tokens_[l] + tokens_[rr]) << "', which is not in the vocabulary",
             "the merges list does not belong to this vocabulary");
    merges_.push_back({l, rr, it->second});
    // A repeated pair keeps its first (lowest) rank, as Hugging Face does.
    merge_index_.emplace(pair_key(l, rr), MergeInfo{static_cast<int32_t>(r), it->second});
  }

  if (ignore_merges_) whole_piece_ids_ = normal_ids;

  auto find_first = [&](std::initializer_list<const char*> names) -> int32_t {
    for (const char* n : names) {
      auto it = special_ids_by_text.find(n);
      if (it != special_ids_by_text.end()) return it->second;
    }
    return -1;
  };
  const std::vector<int32_t> specials = special_ids();
  bos_id_ = find_first({"<|bos|>", "<|begin_of_text|>", "<s>", "<|endoftext|>"});
  eos_id_ = find_first({"<|eos|>", "<|end_of_text|>", "</s>", "<|endoftext|>"});
  if (bos_id_ < 0 && !specials.empty()) bos_id_ = specials[0];
  if (eos_id_ < 0 && !specials.empty()) eos_id_ = specials.size() > 1 ? specials[1] : specials[0];

  uint64_t h = fnv1a64("tinyseek-bpe-v1");
  const uint64_t header[4] = {static_cast<uint64_t>(pre_), add_prefix_space_ ? 1u : 0u, ignore_merges_ ? 1u : 0u, V};
  h = fnv1a64(header, sizeof header, h);
  for (size_t i = 0; i < V; ++i) {
    const uint64_t meta[2] = {special_[i], tokens_[i].size()};
    h = fnv1a64(meta, sizeof meta, h);
    h = fnv1a64(tokens_[i], h);
  }
  for (const Merge& m : merges_) {
    const int32_t lr[2] = {m.left, m.right};
    h = fnv1a64(lr, sizeof lr, h);
  }
  hash_ = h;
}

std::vector<int32_t> Tokenizer::special_ids() const {
  std::vector<int32_t> out;
  for (size_t i = 0; i < special_.size(); ++i)
    if (special_[i]) out.push_back(static_cast<int32_t>(i));
  return out;
}

int32_t Tokenizer::find_special(std::string_view text) const {
  for (size_t i = 0; i < tokens_.size(); ++i)
    if (special_[i] && tokens_[i] == text) return static_cast<int32_t>(i);
  return -1;
}

void Tokenizer::encode_piece(std::string_view piece, std::vector<int32_t>& out) const {
  const size_t n = piece.size();
  if (n == 0) return;
  if (n == 1) {
    out.push_back(byte_to_id_[static_cast<uint8_t>(piece[0])]);
    return;
  }
  if (ignore_merges_) {
    auto it = whole_piece_ids_.find(std::string(piece));
    if (it != whole_piece_ids_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  // Symbols form a linked list over the piece's byte positions; a symbol absorbed by a
  // merge into its left neighbour is marked dead (id -1).
  std::vector<int32_t> ids(n), next(n), prev(n);
  for (size_t i = 0; i < n; ++i) {
    ids[i] = byte_to_id_[static_cast<uint8_t>(piece[i])];
    next[i] = i + 1 < n ? static_cast<int32_t>(i + 1) : -1;
    prev[i] = static_cast<int32_t>(i) - 1;
  }
  // Min-heap of candidate merges by (rank, position of the left symbol): the lowest
  // rank first, the leftmost occurrence on a tie (Hugging Face's order).
  using Candidate = std::pair<int32_t, int32_t>;
  std::vector<Candidate> heap;
  auto push = [&](int32_t pos) {
    const int32_t nx = next[pos];
    if (nx < 0) return;
    auto it = merge_index_.find(pair_key(ids[pos], ids[nx]));
    if (it == merge_index_.end()) return;
    heap.emplace_back(it->second.rank, pos);
    std::push_heap(heap.begin(), heap.end(), std::greater<>());
  };
  for (size_t i = 0; i + 1 < n; ++i) push(static_cast<int32_t>(i));
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), std::greater<>());
    const auto [rank, pos] = heap.back();
    heap.pop_back();
    const int32_t nx = next[pos];
    if (ids[pos] < 0 || nx < 0) continue;
    // Stale if the pair at pos changed since the candidate was pushed.
    auto it = merge_index_.find(pair_key(ids[pos], ids[nx]));
    if (it == merge_index_.end() || it->second.rank != rank) continue;
    ids[pos] = it->second.result;
    ids[nx] = -1;
    next[pos] = next[nx];
    if (next[pos] >= 0) prev[next[pos]] = pos;
    if (prev[pos] >= 0) push(prev[pos]);
    push(pos);
  }
  for (int32_t i = 0; i >= 0; i = next[i]) out.push_back(ids[i]);
}

void Tokenizer::encode_range(std::string_view text, WordCache& cache, std::vector<int32_t>& out) const {
  for_each_piece(text, pre_, [&](size_t b, size_t e) {
    const std::string_view piece = text.substr(b, e - b);
    if (piece.size() > kMaxCachedPiece) {
      encode_piece(piece, out);
      return;
    }
    auto it = cache.words.find(piece);
    if (it == cache.words.end()) {
      if (cache.words.size() >= kMaxCacheWords) {
        cache.words.clear();
        cache.arena.clear();
      }
      const size_t begin = cache.arena.size();
      encode_piece(piece, cache.arena);
      it = cache.words
               .emplace(std::string(piece), std::make_pair(static_cast<uint32_t>(begin),
                                                           static_cast<uint32_t>(cache.arena.size() - begin)))
               .first;
    }
    const int32_t* ids = cache.arena.data() + it->second.first;
    out.insert(out.end(), ids, ids + it->second.second);
  });
}

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  std::vector<std::vector<int32_t>> out = encode_batch({text});
  return std::move(out[0]);
}

std::vector<std::vector<int32_t>> Tokenizer::encode_batch(const std::vector<std::string_view>& docs_in) const {
  std::vector<std::string_view> docs = docs_in;
  std::vector<std::string> prefixed;  // only for add_prefix_space tokenizers
  if (add_prefix_space_) {
    prefixed.resize(docs.size());
    for (size_t d = 0; d < docs.size(); ++d) {
      if (docs[d].empty() || docs[d][0] == ' ') continue;
      prefixed[d] = " " + std::string(docs[d]);
      docs[d] = prefixed[d];
    }
  }
  // Work items: (document, byte range). Large documents are cut at safe boundaries.
  struct Item {
    size_t doc, begin, end;
  };
  std::vector<Item> items;
  for (size_t d = 0; d < docs.size(); ++d) {
    if (docs[d].size() <= kChunkBytes) {
      items.push_back({d, 0, docs[d].size()});
      continue;
    }
    size_t begin = 0;
    for (size_t end : safe_chunk_ends(docs[d], kChunkBytes)) {
      items.push_back({d, begin, end});
      begin = end;
    }
  }
  std::vector<std::vector<int32_t>> parts(items.size());
  if (items.size() == 1) {  // short text: no thread team (forking one costs more than the work)
    std::vector<std::vector<int32_t>> out(docs.size());
    WordCache cache;
    encode_range(docs[items[0].doc], cache, out[items[0].doc]);
    return out;
  }
  std::vector<WordCache> caches(static_cast<size_t>(max_threads()));
  parallel_for(static_cast<int64_t>(items.size()), [&](int64_t i) {
    const Item& it = items[static_cast<size_t>(i)];
    parts[static_cast<size_t>(i)].reserve((it.end - it.begin) / 3 + 8);
    encode_range(docs[it.doc].substr(it.begin, it.end - it.begin), caches[static_cast<size_t>(thread_id())],
                 parts[static_cast<size_t>(i)]);
  });
  std::vector<std::vector<int32_t>> out(docs.size());
  for (size_t i = 0; i < items.size(); ++i) {
    auto& dst = out[items[i].doc];
    if (dst.empty()) {
      dst = std::move(parts[i]);
    } else {
      dst.insert(dst.end(), parts[i].begin(), parts[i].end());
    }
  }
  return out;
}

std::string Tokenizer::decode(const int32_t* ids, size_t n, bool skip_special) const {
  std::string out;
  out.reserve(n * 4);
  for (size_t i = 0; i < n; ++i) {
    const int32_t id = ids[i];
    TS_CHECK(id >= 0 && id < vocab_size(), "cannot decode token id " << id << " at position " << i,
             "token ids must be in [0, " << vocab_size() << "); were they made with another tokenizer?");
    if (skip_special && special_[static_cast<size_t>(id)]) continue;
    out += tokens_[static_cast<size_t>(id)];
  }
  return out;
}

}  // namespace tinyseek::data
