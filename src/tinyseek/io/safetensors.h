// safetensors files (https://github.com/huggingface/safetensors): 8-byte little-endian
// header length n, n bytes of JSON header {name: {dtype, shape, data_offsets: [begin, end]},
// "__metadata__": {str: str}}, then the raw little-endian tensor bytes; offsets are
// relative to the start of the data section.
//
// Reading maps the file (no copy) and checks everything before handing out a pointer:
// header length vs file size, JSON validity, known dtypes, shape × dtype size == byte
// length, offsets in range, and that the tensors tile the data section exactly (no gaps,
// no overlaps, as the format requires). Writing is atomic: a temporary file in the same
// directory is written, flushed to disk and renamed over the target, so a crash never
// leaves a half-written checkpoint under the real name.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace tinyseek::io {

enum class Dtype : uint8_t { BOOL, U8, I8, F8_E4M3, F8_E5M2, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64 };
const char* to_string(Dtype d);  // the safetensors spelling, e.g. "F8_E4M3"
size_t dtype_size(Dtype d);      // bytes per element
bool parse_dtype(const std::string& s, Dtype* out);

struct TensorView {
  std::string name;
  Dtype dtype = Dtype::F32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // inside the mapping; NOT necessarily aligned for the dtype
  size_t nbytes = 0;
  int64_t numel() const;
};

class SafetensorsReader {
 public:
  // Maps and validates `path`; throws tinyseek::Error naming the file and the problem.
  explicit SafetensorsReader(const std::string& path);
  ~SafetensorsReader();
  SafetensorsReader(const SafetensorsReader&) = delete;
  SafetensorsReader& operator=(const SafetensorsReader&) = delete;

  const std::string& path() const { return path_; }
  // In data order (ascending offsets).
  const std::vector<TensorView>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const TensorView* find(const std::string& name) const;  // null if absent
  const TensorView& get(const std::string& name) const;   // throws if absent

  // Copies tensor `name` into dst after checking dtype and shape (memcpy: the mapped data
  // need not be aligned).
  void read_into(const std::string& name, Dtype dtype, const std::vector<int64_t>& shape, void* dst) const;
  std::vector<float> read_f32(const std::string& name) const;  // any shape, dtype must be F32

 private:
  std::string path_;
  void* map_ = nullptr;
  size_t size_ = 0;
  std::vector<TensorView> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// Validates an in-memory safetensors image (what SafetensorsReader does after mapping);
// `source` names it in errors. The views point into `bytes`.
void parse_safetensors(const uint8_t* bytes, size_t size, const std::string& source,
                       std::vector<TensorView>* tensors, std::map<std::string, std::string>* metadata);

class SafetensorsWriter {
 public:
  // Registers a tensor; `data` (nbytes = numel · dtype_size) must stay valid until write().
  // Tensors are laid out in the order added. Throws on duplicate names or a size mismatch.
  void add(const std::string& name, Dtype dtype, std::vector<int64_t> shape, const void* data, size_t nbytes);
  void add_f32(const std::string& name, std::vector<int64_t> shape, const float* data);
  void add_i32(const std::string& name, std::vector<int64_t> shape, const int32_t* data);
  void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }
  // Writes atomically (temp file + fsync + rename). Throws naming the path on I/O failure.
  void write(const std::string& path) const;

 private:
  struct Entry {
    std::string name;
    Dtype dtype;
    std::vector<int64_t> shape;
    const void* data;
    size_t nbytes;
  };
  std::vector<Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace tinyseek::io
