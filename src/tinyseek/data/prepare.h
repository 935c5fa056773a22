// `tinyseek prepare`: text files -> token shards + data.json index.
//
// Documents: every input file is one document, stored as  <|bos|> tokens <|eos|>  (BOS
// so every training window can see where a document starts, as generation prompts do;
// EOS so the model learns to stop). Documents are concatenated; a shard may end inside a
// document (the loader reads a split as one stream).
//
// Train/val split (deterministic, independent of thread count and file system order):
//   document: whole documents go to val, taken in order of FNV-1a hash of their content
//             (ties by corpus position) until val holds val_fraction of the bytes; a
//             document that would push val past 1.5 x the target is skipped. Stable when
//             files are added and never splits a file.
//   tail:     the last val_fraction of each document's bytes (cut after a newline when
//             there is one) goes to val, the rest to train; each part is its own document.
//             Right for one big file such as tinyshakespeare.
//   auto:     document when there are at least 20 documents (and some fit in val), else tail.
//
// data.json (written last, atomically, so its presence means the directory is complete):
//   {"format": "tinyseek-tokens", "version": 1,
//    "tokenizer": {"file": "tokenizer.json", "hash": "<fnv hex>", "vocab_size": V,
//                  "bos_id": 0, "eos_id": 1},
//    "dtype": "uint16" | "uint32", "document_layout": "bos text eos",
//    "split": {"method": "document" | "tail", "val_fraction": 0.05},
//    "inputs": {"files": n, "documents": d, "skipped_binary": b, "skipped_empty": e, ...},
//    "splits": {"train": {"documents": d, "bytes": B, "tokens": N,
//                         "shards": [{"file": "train_000000.tok", "tokens": N}, ...]},
//               "val": {...}}}
// "bytes" counts the UTF-8 text bytes of a split (without BOS/EOS), for bits-per-byte.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tinyseek/data/bpe.h"

namespace tinyseek::data {

enum class SplitMethod { Auto, Document, Tail };
SplitMethod parse_split_method(const std::string& s);  // "auto", "document", "tail"

struct PrepareOptions {
  std::vector<std::string> inputs;
  std::string out_dir;
  double val_fraction = 0.05;
  int64_t shard_tokens = int64_t{1} << 26;  // 64 Mi tokens (128 MiB as uint16)
  SplitMethod split = SplitMethod::Auto;
  bool progress = true;
};

struct SplitInfo {
  int64_t documents = 0, bytes = 0, tokens = 0;
  std::vector<std::string> shard_files;  // relative to the data directory
  std::vector<int64_t> shard_tokens;
};

struct DataIndex {
  std::string dir;
  std::string tokenizer_file;  // relative to dir
  uint64_t tokenizer_hash = 0;
  int64_t vocab_size = 0;
  int32_t bos_id = -1, eos_id = -1;
  std::string dtype;         // "uint16" | "uint32"
  std::string split_method;  // "document" | "tail"
  double val_fraction = 0;
  int64_t files = 0, skipped_binary = 0, skipped_empty = 0, skipped_unreadable = 0;
  SplitInfo train, val;
  const SplitInfo& split(const std::string& name) const;  // "train" | "val"; throws otherwise
};

// Tokenizes `opt.inputs` into `opt.out_dir` (created if needed; an existing tinyseek data
// directory is replaced, any other non-empty directory is refused). Also writes
// out_dir/tokenizer.json so the directory is self-contained. Files inside out_dir are
// never read as input.
DataIndex prepare_data(const Tokenizer& tok, const PrepareOptions& opt);

// One step from raw text to a data directory (`tinyseek train --data TEXT...`): reads the
// text of `text_paths` once, trains a byte-level BPE tokenizer on all of it (vocab_size
// includes <|bos|>, <|eos|> and the 256 bytes; the result is smaller if the text runs out
// of pairs seen twice, see Tokenizer::vocab_size()), then writes shards exactly as
// prepare_data does. Bad inputs (missing/empty paths, empty corpus, vocab_size too small,
// unusable out_dir) throw tinyseek::Error before any long work.
DataIndex prepare_from_text(const std::vector<std::string>& text_paths, const std::string& out_dir,
                            int32_t vocab_size, double val_fraction = 0.05, bool progress = true);
// The same with every option (opt.inputs are the text paths).
DataIndex prepare_from_text(const PrepareOptions& opt, const BpeTrainOptions& tokenizer_options);

// Reads and checks dir/data.json (not the shards; see loader.h).
DataIndex read_data_index(const std::string& dir);

// The data directory's tokenizer (dir/tokenizer.json), checked against the fingerprint in
// data.json so shards are never decoded with another vocabulary.
Tokenizer read_data_tokenizer(const DataIndex& index);

}  // namespace tinyseek::data
