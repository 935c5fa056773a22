// Byte-level BPE tokenizer: vocabulary, merges, encode/decode and training.
//
// Token ids: a Tokenizer holds an arbitrary dense vocabulary (so Hugging Face files with
// any layout load). Tokenizers trained here use
//   [0, S)           special tokens (BOS first, EOS second by default)
//   [S, S + 256)     the 256 single bytes, in byte order
//   [S + 256, V)     merged tokens, in the order they were learned.
// Encoding: text -> pre-tokenizer pieces (pretokenize.h) -> each piece as bytes -> BPE:
// repeatedly merge the adjacent pair with the lowest merge rank (the leftmost one on a
// tie), exactly as Hugging Face's BPE model does. Special tokens are never produced from
// text (their literal text is encoded as ordinary bytes): tinyseek inserts BOS/EOS by id.
// Hugging Face's encode() would instead match added tokens inside the text unless
// split_special_tokens is set; corpora rarely contain "<|bos|>" literally.
// decode() concatenates token bytes, so decode(encode(x)) == x for every byte string x.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "tinyseek/data/pretokenize.h"

namespace tinyseek::data {

struct Merge {
  int32_t left, right, result;
};

class Tokenizer {
 public:
  struct Parts {
    std::vector<std::string> tokens;  // id -> raw bytes (special tokens: their text)
    std::vector<uint8_t> special;     // id -> 1 for special/added tokens
    std::vector<std::pair<int32_t, int32_t>> merges;  // by rank; results looked up by bytes
    PreTokenizer pre_tokenizer = PreTokenizer::Llama3;
    bool add_prefix_space = false;  // GPT-2-style files only: prepend ' ' to the text
    // Llama-3-style files: a piece that is itself a vocabulary entry becomes that token
    // without applying merges (Hugging Face's BPE `ignore_merges`).
    bool ignore_merges = false;
  };

  Tokenizer() = default;
  // Validates the parts (dense ids, all 256 bytes present, merges consistent, token
  // strings unique); throws tinyseek::Error naming the problem.
  explicit Tokenizer(Parts parts);

  int32_t vocab_size() const { return static_cast<int32_t>(tokens_.size()); }
  const std::string& token_bytes(int32_t id) const { return tokens_.at(static_cast<size_t>(id)); }
  bool is_special(int32_t id) const { return special_.at(static_cast<size_t>(id)) != 0; }
  int32_t byte_token(uint8_t b) const { return byte_to_id_[b]; }
  const std::vector<Merge>& merges() const { return merges_; }
  PreTokenizer pre_tokenizer() const { return pre_; }
  bool add_prefix_space() const { return add_prefix_space_; }
  bool ignore_merges() const { return ignore_merges_; }
  std::vector<int32_t> special_ids() const;
  int32_t find_special(std::string_view text) const;  // -1 if absent
  // BOS: "<|bos|>", "<|begin_of_text|>", "<s>" or "<|endoftext|>" if present, else the
  // special token with the lowest id. EOS: "<|eos|>", "<|end_of_text|>", "</s>" or
  // "<|endoftext|>", else the second special token (or the only one). -1 without specials.
  int32_t bos_id() const { return bos_id_; }
  int32_t eos_id() const { return eos_id_; }

  // Fingerprint of everything that affects encoding/decoding (vocab, specials, merges,
  // pre-tokenizer): two tokenizers with the same hash produce the same ids.
  uint64_t hash() const { return hash_; }

  // Encodes text (large inputs are split at safe boundaries and encoded in parallel; the
  // result does not depend on the thread count).
  std::vector<int32_t> encode(std::string_view text) const;
  // Encodes many documents in parallel (one result per document, in order).
  std::vector<std::vector<int32_t>> encode_batch(const std::vector<std::string_view>& docs) const;
  // BPE of one pre-tokenized piece, appended to out (no cache).
  void encode_piece(std::string_view piece, std::vector<int32_t>& out) const;

  std::string decode(const int32_t* ids, size_t n, bool skip_special = false) const;
  std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const {
    return decode(ids.data(), ids.size(), skip_special);
  }

 private:
  struct MergeInfo {
    int32_t rank, result;
  };
  struct WordCache;
  void encode_range(std::string_view text, WordCache& cache, std::vector<int32_t>& out) const;

  std::vector<std::string> tokens_;
  std::vector<uint8_t> special_;
  std::vector<Merge> merges_;
  std::unordered_map<uint64_t, MergeInfo> merge_index_;  // (left << 32 | right) -> rank, result
  int32_t byte_to_id_[256] = {};
  PreTokenizer pre_ = PreTokenizer::Llama3;
  bool add_prefix_space_ = false;
  bool ignore_merges_ = false;
  std::unordered_map<std::string, int32_t> whole_piece_ids_;  // only with ignore_merges
  int32_t bos_id_ = -1, eos_id_ = -1;
  uint64_t hash_ = 0;
};

// ---- Training ----

struct BpeTrainOptions {
  int32_t vocab_size = 8192;  // total, including special and byte tokens
  int64_t min_frequency = 2;  // stop when the best pair occurs fewer times than this
  // BOS/EOS are identified as described at Tokenizer::bos_id(); ids 0.. in this order.
  std::vector<std::string> special_tokens = {"<|bos|>", "<|eos|>"};
  PreTokenizer pre_tokenizer = PreTokenizer::Llama3;
  bool progress = true;  // progress line on stderr
};

struct BpeTrainStats {
  int64_t input_bytes = 0, words = 0, unique_words = 0;
  int32_t merges = 0, vocab_size = 0;
  int64_t last_merge_count = 0;  // occurrences of the last pair merged
  std::string stop_reason;       // "vocab size reached", "min frequency", "no pairs left"
  double count_seconds = 0, merge_seconds = 0;
};

// The smallest vocab that makes sense: 256 byte tokens + the special tokens + 1 merge.
int32_t min_vocab_size(size_t num_special_tokens);
// Throws tinyseek::Error if the options cannot work (vocab too small, bad special tokens).
void check_bpe_train_options(const BpeTrainOptions& options);

// Learns merges from `documents` (pieces never cross document boundaries). Merges are
// chosen by pair frequency over the word counts; ties go to the pair with the smaller
// (left id, right id), so the result is deterministic and thread-count independent.
// Pair counts are updated incrementally after each merge (only the words containing the
// merged pair are touched), with a lazily revalidated max-heap of candidate pairs.
Tokenizer train_bpe(const std::vector<std::string_view>& documents, const BpeTrainOptions& options,
                    BpeTrainStats* stats = nullptr);

}  // namespace tinyseek::data
