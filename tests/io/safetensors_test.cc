// Tests of io/safetensors: byte-exact layout of a written file, round trip of every dtype,
// reading hand-made files, one test per corruption the reader must reject (with the
// message it gives), and atomic writing.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "tinyseek/base/check.h"
#include "tinyseek/io/safetensors.h"

namespace tinyseek::io {
namespace {

namespace fs = std::filesystem;

std::string temp_path(const std::string& name) { return ::testing::TempDir() + "/tinyseek_st_" + name; }

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// A file = 8-byte little-endian header length + header + data.
std::string make_file_bytes(const std::string& header, const std::string& data, uint64_t len_override = ~0ull) {
  const uint64_t n = len_override == ~0ull ? header.size() : len_override;
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(n >> (8 * i));
  return s + header + data;
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

void expect_rejected(const std::string& label, const std::string& bytes, const std::string& fragment) {
  const std::string path = temp_path("corrupt.safetensors");
  write_bytes(path, bytes);
  try {
    SafetensorsReader r(path);
    ADD_FAILURE() << label << ": accepted";
  } catch (const Error& e) {
    std::printf("  %-28s -> %s\n", label.c_str(), e.message().c_str());
    EXPECT_NE(e.message().find(fragment), std::string::npos) << label << ": message lacks '" << fragment << "'";
  }
  fs::remove(path);
}

TEST(Safetensors, WrittenBytesMatchTheFormat) {
  const float a[2] = {1.0f, -2.5f};
  const int32_t b[3] = {7, -1, 65536};
  SafetensorsWriter w;
  w.add_f32("a", {2}, a);
  w.add_i32("b.x", {1, 3}, b);
  const std::string path = temp_path("kat.safetensors");
  w.write(path);
  // nlohmann sorts object keys; the header is padded with spaces to a multiple of 8.
  std::string header =
      R"({"a":{"data_offsets":[0,8],"dtype":"F32","shape":[2]},"b.x":{"data_offsets":[8,20],"dtype":"I32","shape":[1,3]}})";
  header.append((8 - header.size() % 8) % 8, ' ');
  std::string data(reinterpret_cast<const char*>(a), 8);
  data.append(reinterpret_cast<const char*>(b), 12);
  const std::string want = make_file_bytes(header, data);
  const std::string got = slurp(path);
  std::printf("file %zu bytes (header %zu), expected %zu\n", got.size(), header.size(), want.size());
  EXPECT_EQ(got, want);
  fs::remove(path);
}

TEST(Safetensors, RoundTripEveryDtypeAndMetadata) {
  const Dtype all[] = {Dtype::BOOL, Dtype::U8,   Dtype::I8,  Dtype::F8_E4M3, Dtype::F8_E5M2,
                       Dtype::I16,  Dtype::U16,  Dtype::F16, Dtype::BF16,    Dtype::I32,
                       Dtype::U32,  Dtype::F32,  Dtype::F64, Dtype::I64,     Dtype::U64};
  std::vector<std::vector<uint8_t>> payloads;
  SafetensorsWriter w;
  for (size_t i = 0; i < std::size(all); ++i) {
    const std::vector<int64_t> shape = {2, static_cast<int64_t>(i) + 1};
    std::vector<uint8_t> p(static_cast<size_t>(shape[0] * shape[1]) * dtype_size(all[i]));
    for (size_t j = 0; j < p.size(); ++j) p[j] = static_cast<uint8_t>(31 * i + 7 * j);
    payloads.push_back(std::move(p));
    w.add(std::string("t.") + to_string(all[i]), all[i], shape, payloads.back().data(), payloads.back().size());
  }
  w.add_f32("empty", {0, 4}, nullptr);
  w.set_metadata("format", "pt");
  const std::string path = temp_path("all.safetensors");
  w.write(path);
  SafetensorsReader r(path);
  EXPECT_EQ(r.tensors().size(), std::size(all) + 1);
  EXPECT_EQ(r.metadata().at("format"), "pt");
  for (size_t i = 0; i < std::size(all); ++i) {
    const TensorView& t = r.get(std::string("t.") + to_string(all[i]));
    Dtype parsed;
    ASSERT_TRUE(parse_dtype(to_string(all[i]), &parsed));
    EXPECT_EQ(parsed, all[i]);
    EXPECT_EQ(t.dtype, all[i]);
    EXPECT_EQ(t.shape, (std::vector<int64_t>{2, static_cast<int64_t>(i) + 1}));
    ASSERT_EQ(t.nbytes, payloads[i].size());
    EXPECT_EQ(std::memcmp(t.data, payloads[i].data(), t.nbytes), 0) << to_string(all[i]);
  }
  EXPECT_EQ(r.get("empty").nbytes, 0u);
  EXPECT_EQ(r.find("missing"), nullptr);
  EXPECT_THROW(r.get("missing"), Error);
  // Typed reads check dtype and shape.
  std::vector<uint8_t> buf(64);
  EXPECT_THROW(r.read_into("t.F32", Dtype::F32, {2, 13}, buf.data()), Error);  // wrong shape
  EXPECT_THROW(r.read_into("t.F32", Dtype::I32, {2, 12}, buf.data()), Error);  // wrong dtype
  EXPECT_THROW(r.read_f32("t.BF16"), Error);
  EXPECT_EQ(r.read_f32("t.F32").size(), 24u);
  fs::remove(path);
}

TEST(Safetensors, ReadsHandMadeFile) {
  // Offsets in the header need not follow the order of the keys.
  const float x[3] = {0.5f, 1.5f, -3.0f};
  const uint16_t y[2] = {0x3f80, 0xc000};  // BF16 1.0, -2.0
  std::string data(reinterpret_cast<const char*>(y), 4);
  data.append(reinterpret_cast<const char*>(x), 12);
  const std::string header =
      R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[4,16]},"y":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]},"__metadata__":{"k":"v"}}   )";
  const std::string path = temp_path("hand.safetensors");
  write_bytes(path, make_file_bytes(header, data));
  SafetensorsReader r(path);
  EXPECT_EQ(r.tensors()[0].name, "y");  // data order
  EXPECT_EQ(r.read_f32("x"), (std::vector<float>{0.5f, 1.5f, -3.0f}));
  uint16_t yy[2];
  r.read_into("y", Dtype::BF16, {2}, yy);
  EXPECT_EQ(yy[1], 0xc000);
  EXPECT_EQ(r.metadata().at("k"), "v");
  fs::remove(path);
}

TEST(Safetensors, RejectsCorruptFiles) {
  const std::string d12(12, '\x01');
  auto entry = [](const char* name, const char* dtype, const char* shape, const char* offsets) {
    return std::string("\"") + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape +
           ",\"data_offsets\":" + offsets + "}";
  };
  const std::string good = "{" + entry("a", "F32", "[3]", "[0,12]") + "}";
  // Sanity: the good file is accepted.
  write_bytes(temp_path("good.safetensors"), make_file_bytes(good, d12));
  EXPECT_NO_THROW(SafetensorsReader(temp_path("good.safetensors")));
  fs::remove(temp_path("good.safetensors"));

  expect_rejected("empty file", "", "shorter than the 8-byte header length");
  expect_rejected("5 bytes", std::string("\x05\x00\x00\x00\x00", 5), "shorter than the 8-byte header length");
  expect_rejected("header length > file", make_file_bytes(good, d12, 1000), "exceeds the file size");
  expect_rejected("header length huge", make_file_bytes(good, d12, ~0ull - 1), "exceeds the file size");
  expect_rejected("not JSON", make_file_bytes("{\"a\": [1, 2", d12), "not valid JSON");
  expect_rejected("not starting with {", make_file_bytes("[1,2,3]     ", ""), "does not start with '{'");
  expect_rejected("entry not object", make_file_bytes("{\"a\":3}", ""), "must be a JSON object");
  expect_rejected("unknown dtype", make_file_bytes("{" + entry("a", "F12", "[3]", "[0,12]") + "}", d12),
                  "unknown dtype 'F12'");
  expect_rejected("missing dtype", make_file_bytes(R"({"a":{"shape":[3],"data_offsets":[0,12]}})", d12),
                  "missing or non-string 'dtype'");
  expect_rejected("unknown field",
                  make_file_bytes(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,12],"x":1}})", d12),
                  "unknown field 'x'");
  expect_rejected("negative shape", make_file_bytes("{" + entry("a", "F32", "[-3]", "[0,12]") + "}", d12),
                  "non-negative integers");
  expect_rejected("shape overflow",
                  make_file_bytes("{" + entry("a", "F32", "[4294967296,4294967296]", "[0,12]") + "}", d12),
                  "overflows");
  expect_rejected("size mismatch", make_file_bytes("{" + entry("a", "F32", "[4]", "[0,12]") + "}", d12),
                  "needs 16 bytes but data_offsets give 12");
  expect_rejected("offsets past end", make_file_bytes("{" + entry("a", "F32", "[4]", "[0,16]") + "}", d12),
                  "out of range");
  expect_rejected("offsets reversed", make_file_bytes("{" + entry("a", "F32", "[0]", "[12,0]") + "}", d12),
                  "out of range");
  expect_rejected("offsets malformed", make_file_bytes("{" + entry("a", "F32", "[3]", "[0]") + "}", d12),
                  "'data_offsets' must be [begin, end]");
  expect_rejected("overlap",
                  make_file_bytes("{" + entry("a", "F32", "[2]", "[0,8]") + "," + entry("b", "F32", "[2]", "[4,12]") +
                                      "}", d12),
                  "overlaps the previous tensor");
  expect_rejected("gap",
                  make_file_bytes("{" + entry("a", "F32", "[1]", "[0,4]") + "," + entry("b", "F32", "[1]", "[8,12]") +
                                      "}", d12),
                  "gap of 4 bytes before tensor 'b'");
  expect_rejected("not starting at 0", make_file_bytes("{" + entry("a", "F32", "[2]", "[4,12]") + "}", d12),
                  "gap of 4 bytes");
  expect_rejected("trailing bytes", make_file_bytes("{" + entry("a", "F32", "[2]", "[0,8]") + "}", d12),
                  "4 trailing data bytes");
  expect_rejected("duplicate name",
                  make_file_bytes("{" + entry("a", "F32", "[1]", "[0,4]") + "," + entry("a", "F32", "[2]", "[4,12]") +
                                      "}", d12),
                  "appears twice");
  expect_rejected("metadata not strings", make_file_bytes("{\"__metadata__\":{\"k\":1}," + entry("a", "F32", "[3]", "[0,12]") + "}", d12),
                  "must be a string");
  EXPECT_THROW(SafetensorsReader(temp_path("does-not-exist")), Error);
}

TEST(Safetensors, WriterRejectsBadInput) {
  const float x[4] = {};
  SafetensorsWriter w;
  w.add_f32("x", {4}, x);
  EXPECT_THROW(w.add_f32("x", {4}, x), Error);                              // duplicate
  EXPECT_THROW(w.add("y", Dtype::F32, {4}, x, 12), Error);                  // size mismatch
  EXPECT_THROW(w.add_f32("__metadata__", {4}, x), Error);                   // reserved name
  EXPECT_THROW(w.write(temp_path("no/such/dir/file.safetensors")), Error);  // missing directory
}

TEST(Safetensors, WriteIsAtomicAndReplaces) {
  const std::string path = temp_path("atomic.safetensors");
  const float a[2] = {1, 2}, b[3] = {3, 4, 5};
  SafetensorsWriter w1;
  w1.add_f32("v", {2}, a);
  w1.write(path);
  SafetensorsWriter w2;
  w2.add_f32("v", {3}, b);
  w2.write(path);  // replaces the old file
  EXPECT_EQ(SafetensorsReader(path).read_f32("v"), (std::vector<float>{3, 4, 5}));
  // No temporary file is left beside it.
  int others = 0;
  for (const auto& e : fs::directory_iterator(fs::path(path).parent_path()))
    if (e.path().filename().string().rfind("tinyseek_st_atomic.safetensors.tmp", 0) == 0) ++others;
  EXPECT_EQ(others, 0);
  // A failed write (target is a directory: rename fails) leaves no temp file either.
  const std::string dir = temp_path("atomic_dir");
  fs::create_directories(dir + "/sub");
  EXPECT_THROW(w2.write(dir), Error);
  for (const auto& e : fs::directory_iterator(fs::path(dir).parent_path()))
    EXPECT_EQ(e.path().filename().string().rfind("tinyseek_st_atomic_dir.tmp", 0), std::string::npos);
  fs::remove_all(dir);
  fs::remove(path);
}

}  // namespace
}  // namespace tinyseek::io
