#include "tinyseek/io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <set>

#include <nlohmann/json.hpp>

#include "tinyseek/base/check.h"

namespace tinyseek::io {
namespace {

using nlohmann::json;

struct DtypeRow {
  Dtype dtype;
  const char* name;
  size_t size;
};
constexpr DtypeRow kDtypes[] = {
    {Dtype::BOOL, "BOOL", 1}, {Dtype::U8, "U8", 1},     {Dtype::I8, "I8", 1},   {Dtype::F8_E4M3, "F8_E4M3", 1},
    {Dtype::F8_E5M2, "F8_E5M2", 1}, {Dtype::I16, "I16", 2}, {Dtype::U16, "U16", 2}, {Dtype::F16, "F16", 2},
    {Dtype::BF16, "BF16", 2}, {Dtype::I32, "I32", 4},   {Dtype::U32, "U32", 4}, {Dtype::F32, "F32", 4},
    {Dtype::F64, "F64", 8},   {Dtype::I64, "I64", 8},   {Dtype::U64, "U64", 8},
};

// The safetensors reference implementation refuses headers above 100 MB; so do we, so a
// corrupt length cannot make us parse gigabytes.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

std::string known_dtypes() {
  std::string s;
  for (const DtypeRow& r : kDtypes) s += (s.empty() ? "" : ", ") + std::string(r.name);
  return s;
}

// numel · elem_size, or false on overflow / negative dims.
bool checked_bytes(const std::vector<int64_t>& shape, size_t elem, size_t* out) {
  size_t n = elem;
  for (int64_t d : shape) {
    if (d < 0) return false;
    if (d != 0 && n > SIZE_MAX / static_cast<size_t>(d)) return false;
    n *= static_cast<size_t>(d);
  }
  *out = n;
  return true;
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

const char* const kCorruptHint = "the file is corrupt or not a safetensors file; re-create it";

TensorView parse_entry(const std::string& name, const json& e, const uint8_t* data, size_t data_size,
                       const std::string& src) {
  TS_CHECK(e.is_object(), src << ": tensor '" << name << "': entry must be a JSON object, got " << e.type_name(),
           kCorruptHint);
  for (const auto& [key, v] : e.items())
    TS_CHECK(key == "dtype" || key == "shape" || key == "data_offsets",
             src << ": tensor '" << name << "': unknown field '" << key << "'",
             "a tensor entry has exactly dtype, shape and data_offsets");
  TensorView t;
  t.name = name;
  const auto dt = e.find("dtype");
  TS_CHECK(dt != e.end() && dt->is_string(), src << ": tensor '" << name << "': missing or non-string 'dtype'",
           kCorruptHint);
  TS_CHECK(parse_dtype(dt->get<std::string>(), &t.dtype),
           src << ": tensor '" << name << "': unknown dtype '" << dt->get<std::string>() << "'",
           "supported dtypes: " << known_dtypes());
  const auto sh = e.find("shape");
  TS_CHECK(sh != e.end() && sh->is_array(), src << ": tensor '" << name << "': missing or non-array 'shape'",
           kCorruptHint);
  for (const json& d : *sh) {
    TS_CHECK(d.is_number_unsigned() || (d.is_number_integer() && d.get<int64_t>() >= 0),
             src << ": tensor '" << name << "': shape entries must be non-negative integers, got " << sh->dump(),
             kCorruptHint);
    TS_CHECK(d.get<uint64_t>() <= static_cast<uint64_t>(INT64_MAX),
             src << ": tensor '" << name << "': shape entry too large: " << sh->dump(), kCorruptHint);
    t.shape.push_back(d.get<int64_t>());
  }
  const auto off = e.find("data_offsets");
  TS_CHECK(off != e.end() && off->is_array() && off->size() == 2 && (*off)[0].is_number_unsigned() &&
               (*off)[1].is_number_unsigned(),
           src << ": tensor '" << name << "': 'data_offsets' must be [begin, end] of non-negative integers",
           kCorruptHint);
  const uint64_t begin = (*off)[0].get<uint64_t>(), end = (*off)[1].get<uint64_t>();
  TS_CHECK(begin <= end && end <= data_size,
           src << ": tensor '" << name << "': data_offsets [" << begin << ", " << end
               << "] out of range (data section is " << data_size << " bytes)",
           "the file is truncated or corrupt; re-create it");
  size_t expect = 0;
  TS_CHECK(checked_bytes(t.shape, dtype_size(t.dtype), &expect),
           src << ": tensor '" << name << "': shape " << shape_str(t.shape) << " overflows", kCorruptHint);
  TS_CHECK(expect == end - begin,
           src << ": tensor '" << name << "': shape " << shape_str(t.shape) << " of " << to_string(t.dtype)
               << " needs " << expect << " bytes but data_offsets give " << end - begin,
           kCorruptHint);
  t.data = data + begin;
  t.nbytes = static_cast<size_t>(end - begin);
  return t;
}

}  // namespace

const char* to_string(Dtype d) {
  for (const DtypeRow& r : kDtypes)
    if (r.dtype == d) return r.name;
  return "?";
}
size_t dtype_size(Dtype d) {
  for (const DtypeRow& r : kDtypes)
    if (r.dtype == d) return r.size;
  return 0;
}
bool parse_dtype(const std::string& s, Dtype* out) {
  for (const DtypeRow& r : kDtypes)
    if (s == r.name) return *out = r.dtype, true;
  return false;
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

void parse_safetensors(const uint8_t* bytes, size_t size, const std::string& src, std::vector<TensorView>* tensors,
                       std::map<std::string, std::string>* metadata) {
  tensors->clear();
  metadata->clear();
  TS_CHECK(size >= 8, src << ": file is " << size << " bytes, shorter than the 8-byte header length", kCorruptHint);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];  // little-endian
  TS_CHECK(n <= size - 8, src << ": header length " << n << " exceeds the file size (" << size << " bytes)",
           "the file is truncated or not a safetensors file");
  TS_CHECK(n <= kMaxHeaderBytes, src << ": header length " << n << " exceeds the 100 MB limit", kCorruptHint);
  TS_CHECK(n >= 2 && bytes[8] == '{', src << ": header does not start with '{'", kCorruptHint);
  const char* h = reinterpret_cast<const char*>(bytes + 8);
  // Duplicate top-level names would silently shadow each other in a JSON object: reject.
  std::set<std::string> seen;
  std::string duplicate;
  const json::parser_callback_t cb = [&](int depth, json::parse_event_t ev, json& parsed) {
    if (depth == 1 && ev == json::parse_event_t::key && !seen.insert(parsed.get<std::string>()).second)
      duplicate = parsed.get<std::string>();
    return true;
  };
  json header;
  try {
    header = json::parse(h, h + n, cb);
  } catch (const json::parse_error& e) {
    TS_FAIL(src << ": header is not valid JSON: " << e.what(), kCorruptHint);
  }
  TS_CHECK(duplicate.empty(), src << ": tensor name '" << duplicate << "' appears twice in the header", kCorruptHint);
  TS_CHECK(header.is_object(), src << ": header must be a JSON object, got " << header.type_name(), kCorruptHint);
  const uint8_t* data = bytes + 8 + n;
  const size_t data_size = size - 8 - static_cast<size_t>(n);
  for (const auto& [name, e] : header.items()) {
    if (name == "__metadata__") {
      TS_CHECK(e.is_object(), src << ": __metadata__ must be an object of strings", kCorruptHint);
      for (const auto& [k, v] : e.items()) {
        TS_CHECK(v.is_string(), src << ": __metadata__['" << k << "'] must be a string, got " << v.type_name(),
                 kCorruptHint);
        (*metadata)[k] = v.get<std::string>();
      }
      continue;
    }
    tensors->push_back(parse_entry(name, e, data, data_size, src));
  }
  // The tensors must tile [0, data_size) exactly: sorted by begin, each starts where the
  // previous ended.
  std::stable_sort(tensors->begin(), tensors->end(), [](const TensorView& a, const TensorView& b) {
    return a.data != b.data ? a.data < b.data : a.nbytes < b.nbytes;
  });
  size_t expected_begin = 0;
  for (const TensorView& t : *tensors) {
    const size_t begin = static_cast<size_t>(t.data - data);
    TS_CHECK(begin >= expected_begin,
             src << ": tensor '" << t.name << "' at bytes [" << begin << ", " << begin + t.nbytes
                 << ") overlaps the previous tensor (which ends at " << expected_begin << ")", kCorruptHint);
    TS_CHECK(begin == expected_begin,
             src << ": gap of " << begin - expected_begin << " bytes before tensor '" << t.name << "' (data bytes ["
                 << expected_begin << ", " << begin << ") belong to no tensor)", kCorruptHint);
    expected_begin = begin + t.nbytes;
  }
  TS_CHECK(expected_begin == data_size,
           src << ": " << data_size - expected_begin << " trailing data bytes belong to no tensor", kCorruptHint);
}

SafetensorsReader::SafetensorsReader(const std::string& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  TS_CHECK(fd >= 0, "cannot open " << path << ": " << std::strerror(errno), "check the path and permissions");
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    TS_FAIL("cannot stat " << path << ": " << std::strerror(err), "check the path");
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0) {
    map_ = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    const int err = errno;
    ::close(fd);
    if (map_ == MAP_FAILED) {
      map_ = nullptr;
      TS_FAIL("cannot map " << path << " (" << size_ << " bytes): " << std::strerror(err), "check free memory");
    }
  } else {
    ::close(fd);
  }
  try {
    parse_safetensors(static_cast<const uint8_t*>(map_), size_, path, &tensors_, &metadata_);
  } catch (...) {
    if (map_) ::munmap(map_, size_);
    map_ = nullptr;
    throw;
  }
  for (size_t i = 0; i < tensors_.size(); ++i) index_[tensors_[i].name] = i;
}

SafetensorsReader::~SafetensorsReader() {
  if (map_) ::munmap(map_, size_);
}

const TensorView* SafetensorsReader::find(const std::string& name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const TensorView& SafetensorsReader::get(const std::string& name) const {
  const TensorView* t = find(name);
  TS_CHECK(t != nullptr, path_ << ": no tensor named '" << name << "' (" << tensors_.size() << " tensors)",
           "check that the file was written for this model");
  return *t;
}

void SafetensorsReader::read_into(const std::string& name, Dtype dtype, const std::vector<int64_t>& shape,
                                  void* dst) const {
  const TensorView& t = get(name);
  TS_CHECK(t.dtype == dtype, path_ << ": tensor '" << name << "' is " << to_string(t.dtype) << ", expected "
                                   << to_string(dtype), "convert the file or load it with the matching dtype");
  TS_CHECK(t.shape == shape, path_ << ": tensor '" << name << "' has shape " << shape_str(t.shape) << ", expected "
                                   << shape_str(shape), "check that the file was written for this model config");
  if (t.nbytes) std::memcpy(dst, t.data, t.nbytes);
}

std::vector<float> SafetensorsReader::read_f32(const std::string& name) const {
  const TensorView& t = get(name);
  std::vector<float> v(static_cast<size_t>(t.numel()));
  read_into(name, Dtype::F32, t.shape, v.data());
  return v;
}

void SafetensorsWriter::add(const std::string& name, Dtype dtype, std::vector<int64_t> shape, const void* data,
                            size_t nbytes) {
  TS_CHECK(!name.empty() && name != "__metadata__", "invalid tensor name '" << name << "'", "use another name");
  for (const Entry& e : entries_)
    TS_CHECK(e.name != name, "tensor '" << name << "' added twice", "each name must be unique in a file");
  size_t expect = 0;
  TS_CHECK(checked_bytes(shape, dtype_size(dtype), &expect) && expect == nbytes,
           "tensor '" << name << "': shape " << shape_str(shape) << " of " << to_string(dtype) << " needs " << expect
                      << " bytes, got " << nbytes, "this is a bug in the caller");
  TS_CHECK(nbytes == 0 || data != nullptr, "tensor '" << name << "' has no data", "this is a bug in the caller");
  entries_.push_back({name, dtype, std::move(shape), data, nbytes});
}

void SafetensorsWriter::add_f32(const std::string& name, std::vector<int64_t> shape, const float* data) {
  size_t n = 0;
  TS_CHECK(checked_bytes(shape, sizeof(float), &n), "tensor '" << name << "': bad shape " << shape_str(shape), "");
  add(name, Dtype::F32, std::move(shape), data, n);
}

void SafetensorsWriter::add_i32(const std::string& name, std::vector<int64_t> shape, const int32_t* data) {
  size_t n = 0;
  TS_CHECK(checked_bytes(shape, sizeof(int32_t), &n), "tensor '" << name << "': bad shape " << shape_str(shape), "");
  add(name, Dtype::I32, std::move(shape), data, n);
}

namespace {
void write_all(int fd, const void* p, size_t n, const std::string& tmp) {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    const ssize_t w = ::write(fd, c, n);
    if (w < 0 && errno == EINTR) continue;
    TS_CHECK(w > 0, "writing " << tmp << " failed: " << std::strerror(errno), "check free disk space");
    c += w;
    n -= static_cast<size_t>(w);
  }
}
}  // namespace

void SafetensorsWriter::write(const std::string& path) const {
  json header = json::object();
  if (!metadata_.empty()) header["__metadata__"] = metadata_;
  size_t offset = 0;
  for (const Entry& e : entries_) {
    header[e.name] = {{"dtype", to_string(e.dtype)}, {"shape", e.shape}, {"data_offsets", {offset, offset + e.nbytes}}};
    offset += e.nbytes;
  }
  std::string h = header.dump();
  // Pad with spaces so the data section starts 8-byte aligned (as the reference writer does).
  h.append((8 - h.size() % 8) % 8, ' ');
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(static_cast<uint64_t>(h.size()) >> (8 * i));

  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  TS_CHECK(fd >= 0, "cannot create " << tmp << ": " << std::strerror(errno),
           "check that the directory exists and is writable");
  bool closed = false;
  try {
    write_all(fd, len, 8, tmp);
    write_all(fd, h.data(), h.size(), tmp);
    for (const Entry& e : entries_) write_all(fd, e.data, e.nbytes, tmp);
    // fsync before rename: otherwise a crash can leave the new name pointing at an empty file.
    TS_CHECK(::fsync(fd) == 0, "fsync of " << tmp << " failed: " << std::strerror(errno), "check the disk");
    closed = true;  // close() releases the descriptor even when it reports an error
    TS_CHECK(::close(fd) == 0, "closing " << tmp << " failed: " << std::strerror(errno), "check the disk");
  } catch (...) {
    if (!closed) ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    TS_FAIL("cannot rename " << tmp << " to " << path << ": " << std::strerror(err), "check the target path");
  }
}

}  // namespace tinyseek::io
