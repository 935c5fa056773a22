// Shared helpers for the data/ tests: temporary directories, files, subprocesses, and
// small deterministic corpora.
#pragma once
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tinyseek/base/rng.h"
#include "tinyseek/data/unicode.h"

namespace tinyseek::data::testing {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "tinyseek-data-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string operator/(const std::string& name) const { return (std::filesystem::path(path_) / name).string(); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline void write_file(const std::string& path, const std::string& bytes) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << bytes;
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct RunResult {
  int status = -1;
  std::string out, err;
};

// Runs `cmd` through the shell; captures stdout and stderr.
inline RunResult run(const std::string& cmd) {
  static int counter = 0;
  const std::string base = (std::filesystem::temp_directory_path() /
                            ("tinyseek-data-run-" + std::to_string(getpid()) + "-" + std::to_string(counter++)))
                               .string();
  const int raw = std::system((cmd + " >" + base + ".out 2>" + base + ".err").c_str());
  RunResult r;
  r.status = (raw != -1 && WIFEXITED(raw)) ? WEXITSTATUS(raw) : -1;
  r.out = read_file(base + ".out");
  r.err = read_file(base + ".err");
  std::remove((base + ".out").c_str());
  std::remove((base + ".err").c_str());
  return r;
}

inline bool python_has_regex() {
  static const int ok = std::system(TINYSEEK_PYTHON " -c 'import regex' >/dev/null 2>&1") == 0 ? 1 : 0;
  return ok != 0;
}

inline std::string reference_script() {
  return std::string(TINYSEEK_SOURCE_DIR) + "/tests/data/reference_tokenizer.py";
}

// A few paragraphs of prose and code: the "embedded corpus" for tokenizer tests.
inline const char* embedded_corpus() {
  return R"(The river ran past the old mill, and the miller's daughter watched it every morning.
She counted the boats: one, two, three... sometimes 12 or 13 on a busy day in 1893.
"We'll see," her father said. "They're coming back, and they've got the grain we need."
It's a long way to the sea, and the water doesn't hurry; it takes its time, as rivers do.

In the evening the lamps were lit, one after another, along the whole length of the quay.
The children ran between them, shouting the names of the ships they knew by heart.
Nobody could remember when the mill had been built, but everybody remembered the flood.

def count_words(text: str) -> dict[str, int]:
    """Count how often each word occurs in text."""
    counts = {}
    for word in text.split():
        counts[word] = counts.get(word, 0) + 1
    return counts


class Mill:
    def __init__(self, name, capacity=1200):
        self.name = name
        self.capacity = capacity
        self._stock = []

    def grind(self, sacks):
        if len(self._stock) + sacks > self.capacity:
            raise ValueError(f"too many sacks: {sacks}")
        self._stock.extend([1] * sacks)
        return len(self._stock)

Prices in 2024: flour 3.25, bread 1.10, milk 0.89 -- up 12% since 2023 (see table 4).
Ünïcödé: naïve café, Straße, Ελληνικά, русский язык, 日本語のテキスト, emoji 🙂🚀.
)";
}

// Deterministic pseudo-text of about `bytes` bytes: Zipf-like words, numbers,
// punctuation and line breaks, so merges have realistic frequency structure.
inline std::string synthetic_corpus(size_t bytes, uint64_t seed) {
  static const char* words[] = {
      "the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "as", "was", "with", "be", "by", "on",
      "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an", "had", "they",
      "you", "were", "their", "one", "all", "we", "can", "her", "has", "there", "been", "if", "more", "when",
      "will", "would", "who", "so", "no", "river", "mill", "water", "stone", "grain", "harbour", "morning",
      "evening", "lantern", "children", "tokenizer", "merge", "vocabulary", "sequence", "gradient"};
  const size_t nw = sizeof(words) / sizeof(words[0]);
  Philox rng(seed, 7);
  std::string s;
  uint64_t i = 0;
  while (s.size() < bytes) {
    const double u = rng.uniform_open(i++);
    const size_t w = static_cast<size_t>(static_cast<double>(nw) * u * u * u) % nw;  // skewed to common words
    if (!s.empty() && s.back() != '\n') s += ' ';
    s += words[w];
    const uint32_t r = rng.block(i++)[0] % 100;
    if (r < 6) s += ',';
    else if (r < 9) s += ".\n";
    else if (r < 11) s += " " + std::to_string(rng.block(i++)[1] % 100000);
    else if (r < 12) s += "'s";
  }
  return s;
}

// Random valid-UTF-8 text from a pool of characters whose Unicode category has been
// stable for many versions (so any regex engine's tables agree on them).
inline std::string random_unicode_text(Philox& rng, uint64_t& counter, size_t max_chars) {
  static const uint32_t pool[] = {
      'a', 'b', 'z', 'A', 'Q', 'e', 's', 't', 'S', 'T', 'l', 'L', 'r', 'v', 'm', 'd', 'D', '0', '1', '7', '9',
      ' ', ' ', ' ', ' ', '\n', '\n', '\r', '\t', '\'', '\'', '"', '.', ',', '!', '?', '(', ')', '_', '-', '=',
      '#', '/', '\\', '{', '}', 0x0B, 0x0C, 0x1C, 0x85, 0xA0, 0x2003, 0x2028, 0x3000, 0x17F /* long s */,
      0xE9 /* e acute */, 0xDF, 0x3B1 /* alpha */, 0x416 /* Zhe */, 0x5D0 /* alef */, 0x627, 0x4E2D, 0x65E5,
      0x3042, 0xAC00, 0x301 /* combining acute */, 0x660 /* arabic-indic 0 */, 0x966, 0xB2 /* superscript 2 */,
      0xBD /* one half */, 0x2167 /* roman 8 */, 0x20AC /* euro */, 0xA9, 0x2014, 0x1F642 /* emoji */, 0x1F680,
      0x10400 /* deseret */, 0x1D400 /* math bold A */};
  const size_t np = sizeof(pool) / sizeof(pool[0]);
  const size_t n = rng.block(counter++)[0] % (max_chars + 1);
  std::string s;
  for (size_t k = 0; k < n; ++k) append_utf8(s, pool[rng.block(counter++)[0] % np]);
  return s;
}

}  // namespace tinyseek::data::testing
