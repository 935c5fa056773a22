// `tinyseek tokenizer train|encode` and `tinyseek prepare` end to end through the binary:
// outputs, --json results, training speed on ~1 MB of real text, and bad inputs (clear
// message on stderr, non-zero exit, nothing written).
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "data_test_util.h"
#include "tinyseek/base/timer.h"
#include "tinyseek/data/hash.h"
#include "tinyseek/data/loader.h"
#include "tinyseek/data/prepare.h"
#include "tinyseek/data/tokenizer_json.h"

namespace tinyseek::data {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::TempDir;

testing::RunResult tinyseek(const std::string& args) {
  testing::RunResult r = testing::run(std::string(TINYSEEK_BINARY) + " " + args);
  std::printf("$ tinyseek %s -> exit %d%s%s\n", args.c_str(), r.status, r.err.empty() ? "" : ", stderr: ",
              r.err.empty() ? "" : r.err.substr(0, r.err.find('\n')).c_str());
  return r;
}

std::string make_corpus(const TempDir& dir) {
  for (int i = 0; i < 4; ++i)
    testing::write_file(dir / ("corpus/part" + std::to_string(i) + ".txt"),
                        testing::synthetic_corpus(30000, 50 + static_cast<uint64_t>(i)) + testing::embedded_corpus());
  return dir / "corpus";
}

TEST(DataCli, TrainEncodePrepare) {
  TempDir dir;
  const std::string corpus = make_corpus(dir);
  auto r = tinyseek("tokenizer train --input " + corpus + " --vocab-size 600 --out " + (dir / "tok.json") + " --json");
  ASSERT_EQ(r.status, 0) << r.err;
  const json res = json::parse(r.out);
  EXPECT_EQ(res["files"], 4);
  EXPECT_LE(res["vocab_size"].get<int>(), 600);
  EXPECT_GT(res["bytes_per_token"].get<double>(), 2.0);
  const Tokenizer tok = read_tokenizer_json(dir / "tok.json");
  EXPECT_EQ(data::hex64(tok.hash()), res["hash"]);

  r = tinyseek("tokenizer encode --tokenizer " + (dir / "tok.json") + " --text 'the river, 12345!' --json");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(tok.decode(json::parse(r.out)["ids"].get<std::vector<int32_t>>()), "the river, 12345!");

  r = tinyseek("prepare --tokenizer " + (dir / "tok.json") + " --input " + corpus + " --out " + (dir / "data") +
               " --val-fraction 0.1 --json");
  ASSERT_EQ(r.status, 0) << r.err;
  const json prep = json::parse(r.out);
  EXPECT_GT(prep["train"]["tokens"].get<int64_t>(), 0);
  EXPECT_GT(prep["val"]["tokens"].get<int64_t>(), 0);
  const auto split = TokenSplit::load(dir / "data", "train");
  EXPECT_EQ(split->size(), prep["train"]["tokens"].get<int64_t>());
  EXPECT_EQ(read_data_tokenizer(read_data_index(dir / "data")).hash(), tok.hash());
  // Plain-text output mentions what was written.
  r = tinyseek("prepare --tokenizer " + (dir / "tok.json") + " --input " + corpus + " --out " + (dir / "data") +
               " --quiet");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("data.json"), std::string::npos) << r.out;
  // Without --tokenizer, prepare trains one itself.
  r = tinyseek("prepare --vocab-size 500 --input " + corpus + " --out " + (dir / "data2") + " --json");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_LE(json::parse(r.out)["vocab_size"].get<int>(), 500);
  EXPECT_EQ(read_data_tokenizer(read_data_index(dir / "data2")).vocab_size(), json::parse(r.out)["vocab_size"]);
}

TEST(DataCli, TrainsAnEightThousandVocabOnOneMegabyteInSeconds) {
  // Real text: the Python standard library, present wherever python3 is (Debian).
  std::string text;
  for (const char* dir : {"/usr/lib/python3.11", "/usr/lib/python3.12", "/usr/lib/python3.13", "/usr/lib/python3"}) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) continue;
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(dir, ec))
      if (e.path().extension() == ".py") files.push_back(e.path().string());
    std::sort(files.begin(), files.end());
    for (const std::string& f : files) {
      if (text.size() >= 1000000) break;
      text += testing::read_file(f);
    }
    if (text.size() >= 1000000) break;
  }
  if (text.size() < 1000000) GTEST_SKIP() << "no Python standard library sources found";
  TempDir dir;
  testing::write_file(dir / "py.txt", text.substr(0, 1000000));
  Timer t;
  const auto r = tinyseek("tokenizer train --input " + (dir / "py.txt") + " --vocab-size 8192 --out " +
                          (dir / "tok.json") + " --json");
  const double s = t.seconds();
  ASSERT_EQ(r.status, 0) << r.err;
  const json res = json::parse(r.out);
  std::printf("1 MB of Python sources: vocab %d in %.2f s wall (BPE %.2f s), %.3f bytes/token\n",
              res["vocab_size"].get<int>(), s, res["train_seconds"].get<double>(),
              res["bytes_per_token"].get<double>());
  EXPECT_EQ(res["vocab_size"], 8192);
  EXPECT_LT(res["train_seconds"].get<double>(), 10.0);
  EXPECT_GT(res["bytes_per_token"].get<double>(), 3.5);  // code compresses well with 8k merges
}

TEST(DataCli, BadInputsExitNonZeroWithClearMessages) {
  TempDir dir;
  const std::string corpus = make_corpus(dir);
  testing::write_file(dir / "empty/a.txt", "");
  testing::write_file(dir / "empty/b.bin", std::string("\0\1\2", 3));
  const std::string tok = dir / "tok.json";
  ASSERT_EQ(tinyseek("tokenizer train --input " + corpus + " --vocab-size 600 --out " + tok + " --quiet").status, 0);
  struct Case {
    std::string args, message;
  };
  const std::vector<Case> cases = {
      {"tokenizer train --input " + (dir / "nope") + " --vocab-size 600 --out " + (dir / "t1.json"),
       "does not exist"},
      {"tokenizer train --input " + (dir / "empty") + " --vocab-size 600 --out " + (dir / "t2.json"),
       "empty corpus"},
      {"tokenizer train --input " + corpus + " --vocab-size 100 --out " + (dir / "t3.json"), "too small"},
      {"tokenizer train --input " + corpus + " --vocab-size 600 --out " + (dir / "no/such/dir/t.json"),
       "does not exist"},
      {"tokenizer train --input " + corpus + " --vocab-size 600 --out " + (dir / "t5.json") + " --pre-tokenizer bert",
       "unknown pre-tokenizer"},
      {"tokenizer train --vocab-size 600 --out " + (dir / "t6.json"), "--input"},
      {"prepare --tokenizer " + (dir / "missing.json") + " --input " + corpus + " --out " + (dir / "d1"),
       "does not exist"},
      {"prepare --tokenizer " + tok + " --input " + (dir / "empty") + " --out " + (dir / "d2"), "empty corpus"},
      {"prepare --tokenizer " + tok + " --input " + (dir / "nope") + " --out " + (dir / "d3"), "does not exist"},
      {"prepare --tokenizer " + tok + " --input " + corpus + " --out " + corpus, "not a tinyseek data directory"},
      {"prepare --tokenizer " + tok + " --input " + corpus + " --out " + (dir / "d5") + " --val-fraction 2",
       "--val-fraction"},
      {"prepare --input " + corpus + " --out " + (dir / "d7"), "pass --tokenizer or --vocab-size"},
      {"prepare --vocab-size 100 --input " + corpus + " --out " + (dir / "d8"), "too small"},
      {"prepare --tokenizer " + (dir / "corpus/part0.txt") + " --input " + corpus + " --out " + (dir / "d6"),
       "not valid JSON"},
  };
  for (const Case& c : cases) {
    const auto r = tinyseek(c.args);
    EXPECT_NE(r.status, 0) << c.args;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << c.args << "\nstderr: " << r.err;
  }
  for (const char* f : {"t1.json", "t2.json", "t3.json", "t5.json", "t6.json", "d1", "d2", "d3", "d5", "d6", "d7", "d8"})
    EXPECT_FALSE(fs::exists(dir / f)) << f << " was created by a failing command";
}

}  // namespace
}  // namespace tinyseek::data
