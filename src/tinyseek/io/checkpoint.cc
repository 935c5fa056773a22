#include "tinyseek/io/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "tinyseek/base/check.h"
#include "tinyseek/io/hf_export.h"
#include "tinyseek/io/safetensors.h"

namespace tinyseek::io {
namespace fs = std::filesystem;
namespace {

constexpr const char* kCurrentLink = "checkpoint";
constexpr const char* kStepPrefix = "step-";
constexpr const char* kTmpPrefix = ".tmp-";

std::string step_dir_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%s%08lld", kStepPrefix, static_cast<long long>(step));
  return buf;
}

// fsync of a directory makes the renames and creations inside it durable.
void fsync_dir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;  // best effort: some file systems refuse O_DIRECTORY opens
  ::fsync(fd);
  ::close(fd);
}

void make_run_dir(const std::string& run_dir) {
  std::error_code ec;
  fs::create_directories(run_dir, ec);
  TS_CHECK(!ec && fs::is_directory(run_dir), "cannot create the run directory " << run_dir << ": "
           << (ec ? ec.message() : "not a directory"), "choose another --out or fix the permissions");
  TS_CHECK(::access(run_dir.c_str(), W_OK | X_OK) == 0,
           "the run directory " << run_dir << " is not writable: " << std::strerror(errno),
           "choose another --out or fix the permissions");
}

// Points run_dir/checkpoint at `target` (a name inside run_dir) with one rename(2).
void swap_current_link(const std::string& run_dir, const std::string& target) {
  const fs::path link = fs::path(run_dir) / kCurrentLink;
  const fs::path tmp = fs::path(run_dir) / (std::string(kTmpPrefix) + "link-" + std::to_string(::getpid()));
  std::error_code ec;
  fs::remove(tmp, ec);
  TS_CHECK(::symlink(target.c_str(), tmp.c_str()) == 0,
           "cannot create a symlink in " << run_dir << ": " << std::strerror(errno),
           "the run directory must be on a file system with symlinks (not FAT)");
  TS_CHECK(::rename(tmp.c_str(), link.c_str()) == 0,
           "cannot replace " << link.string() << ": " << std::strerror(errno),
           "remove " << link.string() << " if it is not a symlink written by tinyseek");
  fsync_dir(run_dir);
}

// RUN/<file> -> checkpoint/<file>, created once; never touches a user's regular file.
void ensure_top_level_links(const std::string& run_dir) {
  for (const std::string& f : checkpoint_files()) {
    const fs::path p = fs::path(run_dir) / f;
    if (fs::is_symlink(p) || fs::exists(p)) continue;
    const std::string target = std::string(kCurrentLink) + "/" + f;
    if (::symlink(target.c_str(), p.c_str()) != 0 && errno != EEXIST)
      std::fprintf(stderr, "warning: cannot create %s -> %s: %s\n", p.c_str(), target.c_str(), std::strerror(errno));
  }
}

// Deletes temp directories and step directories other than `keep` (leftovers of crashes
// and the previous checkpoint).
void remove_stale(const std::string& run_dir, const std::string& keep) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(run_dir, ec)) {
    const std::string name = e.path().filename().string();
    const bool tmp = name.rfind(kTmpPrefix, 0) == 0;
    const bool old_step = name.rfind(kStepPrefix, 0) == 0 && name != keep && e.is_directory() && !e.is_symlink();
    if (tmp || old_step) fs::remove_all(e.path(), ec);
  }
}

std::string current_target(const std::string& run_dir) {
  const fs::path link = fs::path(run_dir) / kCurrentLink;
  std::error_code ec;
  if (!fs::is_symlink(link, ec)) return {};
  return fs::read_symlink(link, ec).string();
}

}  // namespace

std::string save_checkpoint_atomic(const std::string& run_dir, int64_t step,
                                   const std::function<void(const std::string& dir)>& write_files) {
  make_run_dir(run_dir);
  const std::string name = step_dir_name(step);
  const fs::path final_dir = fs::path(run_dir) / name;
  const fs::path tmp_dir = fs::path(run_dir) / (kTmpPrefix + name + "-" + std::to_string(::getpid()));
  std::error_code ec;
  fs::remove_all(tmp_dir, ec);
  fs::create_directory(tmp_dir, ec);
  TS_CHECK(!ec, "cannot create " << tmp_dir.string() << ": " << ec.message(), "check the free space and permissions");
  write_files(tmp_dir.string());
  fsync_dir(tmp_dir.string());
  // An existing step directory with this name is a crash leftover or the current
  // checkpoint of the same step: never delete the one `checkpoint` points at.
  if (fs::exists(final_dir)) {
    if (current_target(run_dir) == name) {
      // Same step saved twice (the state is the same): keep the current one.
      fs::remove_all(tmp_dir, ec);
      return final_dir.string();
    }
    fs::remove_all(final_dir, ec);
  }
  TS_CHECK(::rename(tmp_dir.c_str(), final_dir.c_str()) == 0,
           "cannot rename " << tmp_dir.string() << " to " << final_dir.string() << ": " << std::strerror(errno),
           "check the permissions of the run directory");
  fsync_dir(run_dir);
  swap_current_link(run_dir, name);
  ensure_top_level_links(run_dir);
  remove_stale(run_dir, name);
  return final_dir.string();
}

bool has_checkpoint(const std::string& run_dir) {
  std::error_code ec;
  return fs::is_symlink(fs::path(run_dir) / kCurrentLink, ec) &&
         fs::exists(fs::path(run_dir) / kCurrentLink / "model.safetensors", ec);
}

std::string resolve_checkpoint_dir(const std::string& path) {
  std::error_code ec;
  TS_CHECK(fs::is_directory(path, ec), "checkpoint " << path << " is not a directory",
           "pass the run directory given to `tinyseek train --out`");
  const fs::path link = fs::path(path) / kCurrentLink;
  if (fs::is_symlink(link, ec)) {
    const fs::path dir = fs::canonical(link, ec);
    TS_CHECK(!ec && fs::is_directory(dir), path << "/checkpoint points at a missing directory",
             "the run directory was modified by hand; restore the step-* directory");
    return dir.string();
  }
  TS_CHECK(fs::exists(fs::path(path) / "config.json") && fs::exists(fs::path(path) / "model.safetensors"),
           "no checkpoint in " << path << ": expected " << path << "/checkpoint (written by tinyseek train) or "
           "config.json + model.safetensors", "pass a run directory of `tinyseek train` that saved at least once");
  return fs::path(path).string();
}

void write_file_synced(const std::string& path, const std::string& bytes) {
  const std::string tmp = path + ".tmp" + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  TS_CHECK(fd >= 0, "cannot write " << path << ": " << std::strerror(errno), "check the directory's permissions");
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      TS_FAIL("cannot write " << path << ": " << std::strerror(err), "check the free disk space");
    }
    done += static_cast<size_t>(n);
  }
  const bool synced = ::fsync(fd) == 0;
  ::close(fd);
  TS_CHECK(synced && ::rename(tmp.c_str(), path.c_str()) == 0, "cannot write " << path << ": " << std::strerror(errno),
           "check the free disk space");
}

std::string read_text_file(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  TS_CHECK(in.good(), "cannot open " << what << " " << path, "check the path");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

nlohmann::json read_json_file(const std::string& path, const char* what) {
  const std::string text = read_text_file(path, what);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    TS_FAIL(what << " " << path << " is not valid JSON: " << e.what(), "the file is corrupt; restore it or start over");
  }
}

void write_model_safetensors(const model::Registry& reg, const std::string& path) {
  SafetensorsWriter w;
  for (size_t id = 0; id < reg.size(); ++id) {
    const model::TensorInfo& t = reg.info(static_cast<int>(id));
    w.add_f32(t.name, t.shape, reg.param(static_cast<int>(id)));
  }
  w.set_metadata("format", "pt");
  w.write(path);
}

namespace {
// "'a', 'b', 'c' and 4 more" (at most `shown` names) for error messages.
std::string name_list(const std::vector<std::string>& names, size_t shown = 4) {
  std::string s;
  for (size_t i = 0; i < names.size() && i < shown; ++i) s += (i ? ", '" : "'") + names[i] + "'";
  if (names.size() > shown) s += " and " + std::to_string(names.size() - shown) + " more";
  return s;
}
}  // namespace

void load_model_safetensors(model::Registry& reg, const std::string& path) {
  const SafetensorsReader r(path);
  std::vector<std::string> missing, used;
  for (size_t id = 0; id < reg.size(); ++id) {
    const model::TensorInfo& t = reg.info(static_cast<int>(id));
    if (const TensorView* v = r.find(t.name)) read_hf_tensor(r, *v, t.shape, reg.param(static_cast<int>(id)), &used);
    else missing.push_back(t.name);
  }
  TS_CHECK(missing.empty(), path << " lacks " << missing.size() << " tensor(s) that the config needs: " << name_list(missing),
           "the checkpoint was written for another config; use its config.json or train from scratch");
  // A Hugging Face export's MTP layer holds copies of the shared embedding and head
  // (hf_export.h); tinyseek shares them, so a copy must equal the original exactly.
  for (const auto& [name, source] : mtp_shared_copies(reg)) {
    const TensorView* v = r.find(name);
    if (v == nullptr) continue;
    const model::TensorInfo& t = reg.info(source);
    std::vector<float> copy(t.numel);
    read_hf_tensor(r, *v, t.shape, copy.data(), &used);
    TS_CHECK(std::memcmp(copy.data(), reg.param(source), t.numel * sizeof(float)) == 0,
             path << ": '" << name << "' differs from '" << t.name << "'",
             "tinyseek's MTP modules share the main model's embedding and head; the copies must be identical");
  }
  const std::set<std::string> known(used.begin(), used.end());
  std::vector<std::string> unknown;
  for (const TensorView& v : r.tensors())
    if (!known.count(v.name)) unknown.push_back(v.name);
  TS_CHECK(unknown.empty(), path << " has " << unknown.size() << " tensor(s) that the config does not have: "
           << name_list(unknown), "the checkpoint was written for another config; use its config.json");
  reg.params_changed();
}

std::vector<std::string> architecture_differences(const nlohmann::json& a, const nlohmann::json& b) {
  std::vector<std::string> out;
  std::set<std::string> keys;
  for (const auto& [k, v] : a.items()) keys.insert(k);
  for (const auto& [k, v] : b.items()) keys.insert(k);
  for (const std::string& k : keys) {
    if (k == "training" || k == "precision") continue;  // run choices, not the model's shape
    const nlohmann::json va = a.contains(k) ? a[k] : nlohmann::json(), vb = b.contains(k) ? b[k] : nlohmann::json();
    if (va != vb) out.push_back(k + ": " + va.dump() + " vs " + vb.dump());
  }
  return out;
}

}  // namespace tinyseek::io
