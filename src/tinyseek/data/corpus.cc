#include "tinyseek/data/corpus.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unordered_set>

#include "tinyseek/base/check.h"
#include "tinyseek/base/progress.h"

namespace tinyseek::data {

namespace fs = std::filesystem;

namespace {

bool is_hidden(const fs::path& p) {
  const std::string name = p.filename().string();
  return !name.empty() && name[0] == '.';
}

void list_directory(const fs::path& dir, std::vector<std::string>& out) {
  std::vector<std::string> found;
  std::error_code ec;
  fs::recursive_directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec), end;
  TS_CHECK(!ec, "cannot read directory '" << dir.string() << "': " << ec.message(), "check its permissions");
  for (; it != end; it.increment(ec)) {
    if (ec) break;
    const fs::directory_entry& e = *it;
    if (is_hidden(e.path())) {
      if (e.is_directory(ec)) it.disable_recursion_pending();
      continue;
    }
    if (e.is_symlink(ec) && e.is_directory(ec)) {
      it.disable_recursion_pending();
      continue;
    }
    if (e.is_regular_file(ec)) found.push_back(e.path().string());
  }
  std::sort(found.begin(), found.end());
  out.insert(out.end(), found.begin(), found.end());
}

}  // namespace

bool looks_binary(std::string_view bytes) {
  return bytes.substr(0, 8192).find('\0') != std::string_view::npos;
}

std::vector<std::string> list_input_files(const std::vector<std::string>& inputs, const std::string& exclude_dir) {
  TS_CHECK(!inputs.empty(), "no input paths given", "pass text files or directories, e.g. --input data/");
  std::vector<std::string> files;
  for (const std::string& in : inputs) {
    TS_CHECK(!in.empty(), "an input path is the empty string", "pass text files or directories");
    std::error_code ec;
    const fs::file_status st = fs::status(in, ec);
    TS_CHECK(fs::exists(st), "input path '" << in << "' does not exist", "check the spelling, or pass a directory");
    if (fs::is_directory(st)) {
      list_directory(in, files);
    } else {
      files.push_back(in);
    }
  }
  // The same file named twice (directly or through two inputs) is read once.
  std::string excluded;
  if (!exclude_dir.empty()) {
    std::error_code ec;
    const fs::path canon = fs::weakly_canonical(exclude_dir, ec);
    if (!ec) excluded = (canon / "").string();  // with a trailing separator
  }
  std::unordered_set<std::string> seen;
  std::vector<std::string> unique;
  for (std::string& f : files) {
    std::error_code ec;
    const fs::path canon = fs::weakly_canonical(f, ec);
    const std::string key = ec ? f : canon.string();
    if (!excluded.empty() && key.compare(0, excluded.size(), excluded) == 0) continue;
    if (seen.insert(key).second) unique.push_back(std::move(f));
  }
  return unique;
}

std::vector<Document> read_corpus(const std::vector<std::string>& inputs, CorpusInfo* info_out, bool progress_on,
                                  const std::string& exclude_dir) {
  const std::vector<std::string> files = list_input_files(inputs, exclude_dir);
  CorpusInfo info;
  std::vector<Document> docs;
  Progress progress("reading files", static_cast<int64_t>(files.size()), progress_on && files.size() > 1000);
  for (const std::string& f : files) {
    ++info.files_seen;
    std::ifstream in(f, std::ios::binary);
    if (!in.good()) {
      ++info.skipped_unreadable;
      continue;
    }
    std::ostringstream ss;
    ss << in.rdbuf();
    std::string text = ss.str();
    if (in.bad()) {
      ++info.skipped_unreadable;
    } else if (text.empty()) {
      ++info.skipped_empty;
    } else if (looks_binary(text)) {
      ++info.skipped_binary;
    } else {
      info.bytes += static_cast<int64_t>(text.size());
      docs.push_back({f, std::move(text)});
    }
    if ((info.files_seen & 255) == 0) progress.update(info.files_seen);
  }
  progress.finish();
  if (info_out) *info_out = info;
  std::string listed;
  for (size_t i = 0; i < inputs.size() && i < 3; ++i) listed += (i ? ", " : "") + inputs[i];
  if (inputs.size() > 3) listed += ", ...";
  TS_CHECK(!docs.empty(),
           "empty corpus: no text in " << listed << " (" << info.files_seen << " files: " << info.skipped_empty
                                       << " empty, " << info.skipped_binary << " binary, "
                                       << info.skipped_unreadable << " unreadable)",
           "pass files or directories that contain text");
  return docs;
}

}  // namespace tinyseek::data
