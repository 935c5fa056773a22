#include "tinyseek/data/tokenizer_json.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_map>

#include "tinyseek/base/check.h"
#include "tinyseek/data/byte_level.h"

namespace tinyseek::data {

namespace {

using nlohmann::json;

std::string quoted(const std::string& s) { return json(s).dump(); }

std::string pre_tokenizer_json(const Tokenizer& tok) {
  if (tok.pre_tokenizer() == PreTokenizer::Gpt2) {
    return std::string("{\"type\": \"ByteLevel\", \"add_prefix_space\": ") +
           (tok.add_prefix_space() ? "true" : "false") + ", \"trim_offsets\": true, \"use_regex\": true}";
  }
  return "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": " +
         quoted(pre_tokenizer_regex(tok.pre_tokenizer())) +
         "}, \"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": "
         "false, \"trim_offsets\": true, \"use_regex\": false}]}";
}

// The string under which token `id` appears in "vocab" and "merges".
std::string vocab_string(const Tokenizer& tok, int32_t id) {
  return tok.is_special(id) ? tok.token_bytes(id) : bytes_to_byte_level(tok.token_bytes(id));
}

[[noreturn]] void fail(const std::string& source, const std::string& what, const std::string& hint) {
  TS_FAIL(source << ": " << what, hint);
}

const json& require(const json& obj, const char* key, const std::string& where, const std::string& source) {
  auto it = obj.find(key);
  if (it == obj.end()) fail(source, where + " has no \"" + key + "\" field", "is this a Hugging Face tokenizer.json?");
  return *it;
}

bool is_null_or_absent(const json& obj, const char* key) {
  auto it = obj.find(key);
  return it == obj.end() || it->is_null();
}

bool bool_field(const json& obj, const char* key, bool fallback) {
  auto it = obj.find(key);
  return it != obj.end() && it->is_boolean() ? it->get<bool>() : fallback;
}

struct PreTokenizerChoice {
  PreTokenizer kind;
  bool add_prefix_space;
};

std::string type_of(const json& j) {
  auto it = j.find("type");
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string("?");
}

const char* kSupportedPre =
    "supported: ByteLevel(use_regex=true) as in GPT-2, or Sequence[Split(Regex: the GPT-2, Llama-3/cl100k or "
    "Qwen2 pattern), ByteLevel(use_regex=false)]";

PreTokenizerChoice parse_pre_tokenizer_json(const json& root, const std::string& source) {
  auto it = root.find("pre_tokenizer");
  if (it == root.end() || it->is_null())
    fail(source, "has no pre_tokenizer, so it is not a byte-level BPE tokenizer", kSupportedPre);
  const json& pre = *it;
  if (!pre.is_object()) fail(source, "pre_tokenizer is not an object", kSupportedPre);
  std::vector<json> steps;
  if (type_of(pre) == "Sequence") {
    const json& list = require(pre, "pretokenizers", "the Sequence pre_tokenizer", source);
    if (!list.is_array()) fail(source, "pre_tokenizer.pretokenizers is not an array", kSupportedPre);
    steps.assign(list.begin(), list.end());
  } else {
    steps.push_back(pre);
  }
  if (steps.size() == 1 && type_of(steps[0]) == "ByteLevel") {
    if (!bool_field(steps[0], "use_regex", true))
      fail(source, "pre_tokenizer ByteLevel(use_regex=false) without a Split would BPE the whole text as one word",
           kSupportedPre);
    return {PreTokenizer::Gpt2, bool_field(steps[0], "add_prefix_space", false)};
  }
  if (steps.size() == 2 && type_of(steps[0]) == "Split" && type_of(steps[1]) == "ByteLevel") {
    const json& split = steps[0];
    const json& bl = steps[1];
    if (bool_field(bl, "use_regex", true))
      fail(source, "pre_tokenizer Split followed by ByteLevel(use_regex=true) (two regex passes)", kSupportedPre);
    if (bool_field(bl, "add_prefix_space", false))
      fail(source, "pre_tokenizer Split + ByteLevel(add_prefix_space=true) is not supported", kSupportedPre);
    auto behavior = split.find("behavior");
    if (behavior == split.end() || *behavior != "Isolated" || bool_field(split, "invert", false))
      fail(source, "pre_tokenizer Split must have behavior \"Isolated\" and invert false", kSupportedPre);
    auto pattern = split.find("pattern");
    if (pattern == split.end() || !pattern->is_object() || !pattern->contains("Regex") ||
        !(*pattern)["Regex"].is_string())
      fail(source, "pre_tokenizer Split has no {\"Regex\": ...} pattern", kSupportedPre);
    const std::string regex = (*pattern)["Regex"].get<std::string>();
    for (PreTokenizer p : {PreTokenizer::Llama3, PreTokenizer::Qwen2, PreTokenizer::Gpt2})
      if (regex == pre_tokenizer_regex(p)) return {p, false};
    fail(source, "pre_tokenizer Split regex is not one tinyseek implements: " + regex,
         std::string(kSupportedPre) + " (regexes are implemented by hand, so only known ones are accepted)");
  }
  std::string types;
  for (const json& s : steps) types += (types.empty() ? "" : ", ") + type_of(s);
  fail(source, "unsupported pre_tokenizer [" + types + "]", kSupportedPre);
}

int32_t token_id(const json& v, const std::string& what, const std::string& source) {
  if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > INT32_MAX)
    fail(source, what + " has id " + v.dump() + ", expected a non-negative integer", "the file is malformed");
  return static_cast<int32_t>(v.get<int64_t>());
}

}  // namespace

std::string read_file_bytes(const std::string& path, const char* what) {
  std::error_code ec;
  TS_CHECK(std::filesystem::exists(path, ec), what << " '" << path << "' does not exist", "check the path");
  TS_CHECK(!std::filesystem::is_directory(path, ec), what << " '" << path << "' is a directory, not a file",
           "pass the file itself");
  std::ifstream in(path, std::ios::binary);
  TS_CHECK(in.good(), "cannot open " << what << " '" << path << "': " << std::strerror(errno),
           "check the file's permissions");
  std::ostringstream ss;
  ss << in.rdbuf();
  TS_CHECK(!in.bad(), "error reading " << what << " '" << path << "'", "check the file system");
  return ss.str();
}

void write_file_atomic(const std::string& path, const std::string& bytes, const char* what) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    TS_CHECK(out.good(), "cannot write " << what << " '" << path << "': " << std::strerror(errno),
             "check that the directory exists and is writable");
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    TS_CHECK(out.good(), "error writing " << what << " '" << tmp << "' (disk full?)", "free disk space and retry");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  TS_CHECK(!ec, "cannot rename '" << tmp << "' to '" << path << "': " << ec.message(),
           "check that the directory is writable");
}

std::string tokenizer_to_json(const Tokenizer& tok) {
  std::string s;
  s.reserve(static_cast<size_t>(tok.vocab_size()) * 40);
  s += "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [";
  bool first = true;
  for (int32_t id : tok.special_ids()) {
    s += first ? "\n    " : ",\n    ";
    first = false;
    s += "{\"id\": " + std::to_string(id) + ", \"content\": " + quoted(tok.token_bytes(id)) +
         ", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true}";
  }
  s += "\n  ],\n  \"normalizer\": null,\n  \"pre_tokenizer\": " + pre_tokenizer_json(tok) +
       ",\n  \"post_processor\": null,\n"
       "  \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, "
       "\"use_regex\": true},\n"
       "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": null,\n"
       "    \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n    \"fuse_unk\": false,\n"
       "    \"byte_fallback\": false,\n    \"ignore_merges\": " +
       std::string(tok.ignore_merges() ? "true" : "false") + ",\n    \"vocab\": {";
  for (int32_t id = 0; id < tok.vocab_size(); ++id) {
    s += id ? ",\n      " : "\n      ";
    s += quoted(vocab_string(tok, id)) + ": " + std::to_string(id);
  }
  s += "\n    },\n    \"merges\": [";
  first = true;
  for (const Merge& m : tok.merges()) {
    s += first ? "\n      " : ",\n      ";
    first = false;
    s += quoted(vocab_string(tok, m.left) + " " + vocab_string(tok, m.right));
  }
  s += "\n    ]\n  }\n}\n";
  return s;
}

void write_tokenizer_json(const Tokenizer& tok, const std::string& path) {
  write_file_atomic(path, tokenizer_to_json(tok), "tokenizer file");
}

Tokenizer tokenizer_from_json(const std::string& text, const std::string& source) {
  json root;
  try {
    root = json::parse(text);
  } catch (const json::parse_error& e) {
    fail(source, std::string("is not valid JSON (") + e.what() + ")", "the file is truncated or corrupt; re-create it");
  }
  if (!root.is_object()) fail(source, "is not a JSON object", "expected a Hugging Face tokenizer.json");
  const json& model = require(root, "model", "the file", source);
  if (!model.is_object()) fail(source, "\"model\" is not an object", "expected a Hugging Face tokenizer.json");
  if (model.contains("type") && type_of(model) != "BPE")
    fail(source, "model type '" + type_of(model) + "' is not supported",
         "tinyseek reads byte-level BPE tokenizers only (GPT-2, Llama-3, Qwen2 style)");
  if (bool_field(model, "byte_fallback", false))
    fail(source, "model.byte_fallback is true (a SentencePiece-style BPE)", "tinyseek reads byte-level BPE only");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    auto it = model.find(key);
    if (it != model.end() && !it->is_null() && !(it->is_string() && it->get<std::string>().empty()))
      fail(source, std::string("model.") + key + " is set; byte-level BPE does not use it",
           "tinyseek reads byte-level BPE only");
  }
  if (!is_null_or_absent(model, "dropout") && model["dropout"].is_number() && model["dropout"].get<double>() > 0)
    fail(source, "model.dropout is set (BPE dropout makes encoding random)", "set \"dropout\": null");
  if (!is_null_or_absent(root, "normalizer")) {
    const json& norm = root["normalizer"];
    const bool empty_sequence =
        type_of(norm) == "Sequence" && norm.contains("normalizers") && norm["normalizers"].empty();
    if (!empty_sequence)
      fail(source, "normalizer '" + type_of(norm) + "' is not supported", "tinyseek applies no normalization");
  }
  const PreTokenizerChoice pre = parse_pre_tokenizer_json(root, source);

  const json& vocab = require(model, "vocab", "\"model\"", source);
  if (!vocab.is_object()) fail(source, "model.vocab is not an object {token: id}", "the file is malformed");
  const json& merges = require(model, "merges", "\"model\"", source);
  if (!merges.is_array()) fail(source, "model.merges is not an array", "the file is malformed");

  // Added tokens (kept as raw text), then the vocab; ids must be dense.
  std::unordered_map<int32_t, std::string> added;
  auto added_it = root.find("added_tokens");
  if (added_it != root.end() && !added_it->is_null()) {
    if (!added_it->is_array()) fail(source, "added_tokens is not an array", "the file is malformed");
    for (const json& t : *added_it) {
      if (!t.is_object() || !t.contains("id") || !t.contains("content") || !t["content"].is_string())
        fail(source, "an added_tokens entry lacks \"id\" or \"content\": " + t.dump(), "the file is malformed");
      const int32_t id = token_id(t["id"], "added token " + t["content"].dump(), source);
      if (!added.emplace(id, t["content"].get<std::string>()).second)
        fail(source, "two added tokens have id " + std::to_string(id), "the file is malformed");
    }
  }
  std::unordered_map<std::string, int32_t> id_of;
  int64_t max_id = -1;
  for (const auto& [id, content] : added) max_id = std::max<int64_t>(max_id, id);
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    const int32_t id = token_id(it.value(), "vocab entry " + json(it.key()).dump(), source);
    id_of[it.key()] = id;
    max_id = std::max<int64_t>(max_id, id);
  }
  if (max_id < 0) fail(source, "the vocabulary is empty", "the file is malformed");
  Tokenizer::Parts parts;
  parts.tokens.resize(static_cast<size_t>(max_id + 1));
  parts.special.assign(static_cast<size_t>(max_id + 1), 0);
  std::vector<uint8_t> filled(static_cast<size_t>(max_id + 1), 0);
  for (const auto& [id, content] : added) {
    parts.tokens[id] = content;
    parts.special[id] = 1;
    filled[id] = 1;
  }
  for (const auto& [str, id] : id_of) {
    if (parts.special[id]) {
      if (parts.tokens[id] != str)
        fail(source, "id " + std::to_string(id) + " is both added token " + json(parts.tokens[id]).dump() +
                         " and vocab entry " + json(str).dump(),
             "the file is malformed");
      continue;
    }
    if (filled[id])
      fail(source, "id " + std::to_string(id) + " is used by two vocab entries, " + json(str).dump() + " and " +
                       json(bytes_to_byte_level(parts.tokens[id])).dump(),
           "the file is malformed");
    auto raw = byte_level_to_bytes(str);
    if (!raw)
      fail(source, "vocab entry " + json(str).dump() + " (id " + std::to_string(id) +
                       ") is not a byte-level token (it has characters outside GPT-2's byte alphabet)",
           "tinyseek reads byte-level BPE tokenizers only");
    parts.tokens[id] = std::move(*raw);
    filled[id] = 1;
  }
  for (size_t id = 0; id < filled.size(); ++id)
    if (!filled[id])
      fail(source, "token ids are not dense: no token has id " + std::to_string(id) + " (largest id " +
                       std::to_string(max_id) + ")",
           "tinyseek needs ids 0..N-1 without gaps");

  parts.merges.reserve(merges.size());
  for (size_t r = 0; r < merges.size(); ++r) {
    const json& m = merges[r];
    std::string left, right;
    if (m.is_string()) {
      const std::string s = m.get<std::string>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || sp == 0 || sp + 1 >= s.size() || s.find(' ', sp + 1) != std::string::npos)
        fail(source, "merge #" + std::to_string(r) + " " + m.dump() + " is not of the form \"left right\"",
             "the file is malformed");
      left = s.substr(0, sp);
      right = s.substr(sp + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      left = m[0].get<std::string>();
      right = m[1].get<std::string>();
    } else {
      fail(source, "merge #" + std::to_string(r) + " " + m.dump() + " is neither \"a b\" nor [\"a\", \"b\"]",
           "the file is malformed");
    }
    auto l = id_of.find(left), rr = id_of.find(right);
    if (l == id_of.end() || rr == id_of.end())
      fail(source, "merge #" + std::to_string(r) + " " + m.dump() + " uses a token that is not in the vocab",
           "the file is malformed");
    parts.merges.emplace_back(l->second, rr->second);
  }
  parts.pre_tokenizer = pre.kind;
  parts.add_prefix_space = pre.add_prefix_space;
  parts.ignore_merges = bool_field(model, "ignore_merges", false);
  try {
    return Tokenizer(std::move(parts));
  } catch (const Error& e) {
    fail(source, e.message(), e.hint());
  }
}

Tokenizer read_tokenizer_json(const std::string& path) {
  return tokenizer_from_json(read_file_bytes(path, "tokenizer file"), path);
}

}  // namespace tinyseek::data
