// Token shard files (*.tok): a 64-byte little-endian header, then the tokens.
//
//   offset  size  field
//        0     8  magic "TSKTOK\0\0"
//        8     4  format version (1)
//       12     4  header size in bytes (64)
//       16     4  bytes per token: 2 (uint16, vocab <= 65536) or 4 (uint32)
//       20     4  reserved (0)
//       24     8  token count N
//       32     8  vocabulary size V (every token is < V)
//       40     8  number of documents that start in this shard
//       48     8  FNV-1a 64 checksum of the N * bytes-per-token payload bytes (hash.h)
//       56     8  reserved (0)
//       64         payload: N tokens
// Reading validates magic, version, header size, dtype, file size == 64 + N * bytes,
// checksum and token range, and names the file and the remedy in every error.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace tinyseek::data {

inline constexpr char kShardMagic[8] = {'T', 'S', 'K', 'T', 'O', 'K', '\0', '\0'};
inline constexpr uint32_t kShardVersion = 1;
inline constexpr uint32_t kShardHeaderBytes = 64;

struct ShardHeader {
  uint32_t version = kShardVersion;
  uint32_t token_bytes = 2;
  uint64_t token_count = 0;
  uint64_t vocab_size = 0;
  uint64_t doc_count = 0;
  uint64_t checksum = 0;
};

// 2 if every id of a vocab of this size fits in uint16, else 4.
uint32_t token_bytes_for_vocab(uint64_t vocab_size);

// Writes tokens (all < vocab_size) atomically (temporary file + rename).
void write_shard(const std::string& path, const std::vector<int32_t>& tokens, uint64_t vocab_size,
                 uint64_t doc_count);

// A validated shard in memory: the raw little-endian payload.
struct Shard {
  std::string path;
  ShardHeader header;
  std::vector<uint8_t> payload;
  int64_t size() const { return static_cast<int64_t>(header.token_count); }
  // out[i] = token (begin + i) for i < n (range checked by the caller).
  void copy_tokens(int64_t begin, int64_t n, int32_t* out) const;
};

// Reads and validates a shard; throws tinyseek::Error naming the file and the problem.
Shard read_shard(const std::string& path);
ShardHeader read_shard_header(const std::string& path);  // header checks only

}  // namespace tinyseek::data
