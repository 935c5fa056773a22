// Hugging Face tokenizer.json for byte-level BPE: write ours, read ours and others'.
//
// Written form (a file HF `tokenizers` loads and encodes with identically, except for
// special-token text inside the input, see bpe.h):
//   {"version": "1.0", "truncation": null, "padding": null,
//    "added_tokens": [{"id": 0, "content": "<|bos|>", ..., "special": true}, ...],
//    "normalizer": null,
//    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
//        {"type": "Split", "pattern": {"Regex": <pretokenize.h regex>},
//         "behavior": "Isolated", "invert": false},
//        {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
//         "use_regex": false}]},
//    "post_processor": null,
//    "decoder": {"type": "ByteLevel", ...},
//    "model": {"type": "BPE", "dropout": null, "unk_token": null, ..., "byte_fallback": false,
//              "ignore_merges": false, "vocab": {token: id, ...}, "merges": ["a b", ...]}}
// This is the layout of Llama-3's tokenizer.json. Merges are written as "a b" strings,
// which every tokenizers version reads (byte-level tokens never contain a space).
//
// Read: model type BPE (or no type with vocab + merges), byte_fallback false, no
// normalizer, pre-tokenizer either ByteLevel(use_regex=true) (GPT-2/RoBERTa, honouring
// add_prefix_space) or Sequence[Split(one of the regexes in pretokenize.h, Isolated),
// ByteLevel(use_regex=false)]; merges as "a b" strings or ["a", "b"] pairs; added tokens
// become special tokens. Anything else is rejected with a message saying what and why.
#pragma once
#include <string>

#include "tinyseek/data/bpe.h"

namespace tinyseek::data {

std::string tokenizer_to_json(const Tokenizer& tok);
// Writes atomically (temporary file + rename).
void write_tokenizer_json(const Tokenizer& tok, const std::string& path);

// `source` names the origin in error messages (usually the path).
Tokenizer tokenizer_from_json(const std::string& text, const std::string& source);
Tokenizer read_tokenizer_json(const std::string& path);

// Whole-file helpers shared by data/ (errors name the path).
std::string read_file_bytes(const std::string& path, const char* what);
void write_file_atomic(const std::string& path, const std::string& bytes, const char* what);

}  // namespace tinyseek::data
