// Text inputs for tokenizer training and `prepare`: files and directories.
//
// Each input path is a file (always used, unless binary) or a directory, walked
// recursively in sorted path order (so the corpus order, and everything derived from
// it, is the same on every machine). Inside directories, hidden entries (names starting
// with '.') are skipped, symlinked directories are not followed, and only regular files
// are read. A file is binary, and skipped, if its first 8 KiB contain a NUL byte (git's
// heuristic; catches .pyc, images, archives); empty files are skipped too. Each file is
// one document.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tinyseek::data {

struct Document {
  std::string path;  // as found (input path joined with the relative path)
  std::string text;
};

struct CorpusInfo {
  int64_t files_seen = 0, skipped_binary = 0, skipped_empty = 0, skipped_unreadable = 0;
  int64_t bytes = 0;  // text bytes of the documents kept
};

// Expands inputs into the list of candidate files (sorted per input, duplicates removed).
// Files under `exclude_dir` (if not empty) are left out, so that `prepare --input data/
// --out data/tokens` does not read its own output on a second run. Throws if an input
// does not exist.
std::vector<std::string> list_input_files(const std::vector<std::string>& inputs,
                                          const std::string& exclude_dir = "");

// Reads the text documents of `inputs`. Throws if no inputs are given, an input does not
// exist, or no text is found (the message lists what was skipped).
std::vector<Document> read_corpus(const std::vector<std::string>& inputs, CorpusInfo* info = nullptr,
                                  bool progress = true, const std::string& exclude_dir = "");

// True if the first 8 KiB of `bytes` contain a NUL byte.
bool looks_binary(std::string_view bytes);

}  // namespace tinyseek::data
