#include "tinyseek/data/shards.h"

#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "tinyseek/base/check.h"
#include "tinyseek/data/hash.h"
#include "tinyseek/data/tokenizer_json.h"

namespace tinyseek::data {

namespace {

static_assert(std::endian::native == std::endian::little, "shards are little-endian; port the I/O first");

template <class T>
void put(std::string& out, size_t offset, T v) {
  std::memcpy(out.data() + offset, &v, sizeof v);
}
template <class T>
T get(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

const char* kRemedy = "the file is truncated or corrupt: re-run `tinyseek prepare` to rebuild the data directory";

ShardHeader parse_header(const std::string& path, const uint8_t* h, uint64_t file_bytes) {
  TS_CHECK(file_bytes >= kShardHeaderBytes,
           "token shard '" << path << "' is " << file_bytes << " bytes, shorter than its " << kShardHeaderBytes
                           << "-byte header",
           kRemedy);
  TS_CHECK(std::memcmp(h, kShardMagic, 8) == 0,
           "'" << path << "' is not a tinyseek token shard (bad magic; expected \"TSKTOK\")",
           "pass a data directory written by `tinyseek prepare`");
  ShardHeader hd;
  hd.version = get<uint32_t>(h + 8);
  const uint32_t header_bytes = get<uint32_t>(h + 12);
  hd.token_bytes = get<uint32_t>(h + 16);
  hd.token_count = get<uint64_t>(h + 24);
  hd.vocab_size = get<uint64_t>(h + 32);
  hd.doc_count = get<uint64_t>(h + 40);
  hd.checksum = get<uint64_t>(h + 48);
  TS_CHECK(hd.version == kShardVersion,
           "token shard '" << path << "' has format version " << hd.version << "; this tinyseek reads version "
                           << kShardVersion,
           "re-run `tinyseek prepare` with this tinyseek");
  TS_CHECK(header_bytes == kShardHeaderBytes,
           "token shard '" << path << "' declares a " << header_bytes << "-byte header, expected " << kShardHeaderBytes,
           kRemedy);
  TS_CHECK(hd.token_bytes == 2 || hd.token_bytes == 4,
           "token shard '" << path << "' has " << hd.token_bytes << " bytes per token (expected 2 or 4)", kRemedy);
  TS_CHECK(hd.vocab_size > 0 && hd.token_bytes >= token_bytes_for_vocab(hd.vocab_size),
           "token shard '" << path << "' has vocab size " << hd.vocab_size << ", which does not fit "
                           << hd.token_bytes << "-byte tokens",
           kRemedy);
  const uint64_t payload = file_bytes - kShardHeaderBytes;
  TS_CHECK(hd.token_count <= payload / hd.token_bytes && payload == hd.token_count * hd.token_bytes,
           "token shard '" << path << "' holds " << payload << " payload bytes but its header says "
                           << hd.token_count << " tokens x " << hd.token_bytes << " bytes = "
                           << hd.token_count * hd.token_bytes,
           kRemedy);
  return hd;
}

uint64_t file_size_of(const std::string& path) {
  std::error_code ec;
  TS_CHECK(std::filesystem::exists(path, ec), "token shard '" << path << "' does not exist",
           "the data directory is incomplete: re-run `tinyseek prepare`");
  const uint64_t n = std::filesystem::file_size(path, ec);
  TS_CHECK(!ec, "cannot stat token shard '" << path << "': " << ec.message(), "check its permissions");
  return n;
}

}  // namespace

uint32_t token_bytes_for_vocab(uint64_t vocab_size) { return vocab_size <= 65536 ? 2 : 4; }

void write_shard(const std::string& path, const std::vector<int32_t>& tokens, uint64_t vocab_size,
                 uint64_t doc_count) {
  const uint32_t tb = token_bytes_for_vocab(vocab_size);
  std::string bytes(kShardHeaderBytes + tokens.size() * tb, '\0');
  uint8_t* payload = reinterpret_cast<uint8_t*>(bytes.data()) + kShardHeaderBytes;
  for (size_t i = 0; i < tokens.size(); ++i) {
    TS_ASSERT(tokens[i] >= 0 && static_cast<uint64_t>(tokens[i]) < vocab_size);
    if (tb == 2) {
      const auto v = static_cast<uint16_t>(tokens[i]);
      std::memcpy(payload + 2 * i, &v, 2);
    } else {
      const auto v = static_cast<uint32_t>(tokens[i]);
      std::memcpy(payload + 4 * i, &v, 4);
    }
  }
  std::memcpy(bytes.data(), kShardMagic, 8);
  put<uint32_t>(bytes, 8, kShardVersion);
  put<uint32_t>(bytes, 12, kShardHeaderBytes);
  put<uint32_t>(bytes, 16, tb);
  put<uint64_t>(bytes, 24, tokens.size());
  put<uint64_t>(bytes, 32, vocab_size);
  put<uint64_t>(bytes, 40, doc_count);
  put<uint64_t>(bytes, 48, fnv1a64(payload, tokens.size() * tb));
  write_file_atomic(path, bytes, "token shard");
}

ShardHeader read_shard_header(const std::string& path) {
  const uint64_t size = file_size_of(path);
  uint8_t h[kShardHeaderBytes] = {};
  std::ifstream in(path, std::ios::binary);
  TS_CHECK(in.good(), "cannot open token shard '" << path << "': " << std::strerror(errno), "check its permissions");
  in.read(reinterpret_cast<char*>(h), std::min<uint64_t>(size, kShardHeaderBytes));
  return parse_header(path, h, size);
}

Shard read_shard(const std::string& path) {
  const uint64_t size = file_size_of(path);
  Shard s;
  s.path = path;
  std::ifstream in(path, std::ios::binary);
  TS_CHECK(in.good(), "cannot open token shard '" << path << "': " << std::strerror(errno), "check its permissions");
  uint8_t h[kShardHeaderBytes] = {};
  in.read(reinterpret_cast<char*>(h), std::min<uint64_t>(size, kShardHeaderBytes));
  s.header = parse_header(path, h, size);
  s.payload.resize(size - kShardHeaderBytes);
  in.read(reinterpret_cast<char*>(s.payload.data()), static_cast<std::streamsize>(s.payload.size()));
  TS_CHECK(in.good() || s.payload.empty(), "error reading token shard '" << path << "'", kRemedy);
  const uint64_t sum = fnv1a64(s.payload.data(), s.payload.size());
  TS_CHECK(sum == s.header.checksum,
           "token shard '" << path << "' fails its checksum (stored " << hex64(s.header.checksum) << ", computed "
                           << hex64(sum) << ")",
           kRemedy);
  // Token range: a corrupt id would otherwise index past the embedding table.
  const uint64_t n = s.header.token_count, V = s.header.vocab_size;
  for (uint64_t i = 0; i < n; ++i) {
    const uint64_t t = s.header.token_bytes == 2 ? get<uint16_t>(s.payload.data() + 2 * i)
                                                  : get<uint32_t>(s.payload.data() + 4 * i);
    TS_CHECK(t < V, "token shard '" << path << "' has token id " << t << " at position " << i
                                    << ", outside its vocab size " << V,
             kRemedy);
  }
  return s;
}

void Shard::copy_tokens(int64_t begin, int64_t n, int32_t* out) const {
  const uint8_t* p = payload.data();
  if (header.token_bytes == 2) {
    for (int64_t i = 0; i < n; ++i) out[i] = get<uint16_t>(p + 2 * (begin + i));
  } else {
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<int32_t>(get<uint32_t>(p + 4 * (begin + i)));
  }
}

}  // namespace tinyseek::data
