#include "tinyseek/io/hf_export.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "tinyseek/base/check.h"
#include "tinyseek/data/tokenizer_json.h"
#include "tinyseek/io/checkpoint.h"
#include "tinyseek/numerics/bf16.h"
#include "tinyseek/numerics/fp8.h"
#include "tinyseek/numerics/quant.h"

namespace tinyseek::io {
namespace fs = std::filesystem;
using nlohmann::json;

HfStorage hf_storage(model::Role role, bool fp8) {
  switch (role) {
    case model::Role::kLinear: return fp8 ? HfStorage::kFp8Block : HfStorage::kBf16;
    // Released DeepSeek-V3 keeps e_score_correction_bias in F32: it is added to sigmoid
    // scores in (0, 1) to pick experts, and BF16 (8 bits) would flip near-tie selections.
    case model::Role::kRouterBias: return HfStorage::kF32;
    // model.layers.61.eh_proj.weight is BF16 in the released weights (vLLM and SGLang build
    // it as a plain nn.Linear), so it stays BF16 in an FP8 export too.
    case model::Role::kMtpProj:
    case model::Role::kEmbedding:
    case model::Role::kHead:
    case model::Role::kRouter:
    case model::Role::kNorm: return HfStorage::kBf16;
  }
  return HfStorage::kBf16;
}

const char* to_string(HfStorage s) {
  switch (s) {
    case HfStorage::kBf16: return "BF16";
    case HfStorage::kF32: return "F32";
    case HfStorage::kFp8Block: return "F8_E4M3 + F32 scale_inv per 128x128 block";
  }
  return "?";
}

std::vector<std::pair<std::string, int>> mtp_shared_copies(const model::Registry& reg) {
  std::vector<std::pair<std::string, int>> out;
  const model::ModelIds& ids = reg.ids();
  for (const model::MtpIds& m : ids.mtp) {
    const std::string p = "model.layers." + std::to_string(m.block.layer) + ".";
    out.emplace_back(p + "embed_tokens.weight", ids.embed_tokens);
    out.emplace_back(p + "shared_head.head.weight", ids.lm_head);
  }
  return out;
}

json hf_config_json(const model::ModelConfig& cfg, const json& run_config, bool fp8, int64_t bos_id, int64_t eos_id) {
  json j = model::to_json(cfg);  // HF keys (nullable q_lora_rank / n_routed_experts as null)
  j.erase("training");
  j.erase("precision");
  // The remaining keys of the released DeepSeek-V3 config.json. aux_loss_alpha is the
  // sequence-wise balance-loss weight α, initializer_range the init std.
  j["attention_dropout"] = 0.0;
  j["aux_loss_alpha"] = cfg.training.balance_alpha;
  j["ep_size"] = 1;
  j["initializer_range"] = cfg.training.init_std;
  j["pretraining_tp"] = 1;
  j["seq_aux"] = true;
  j["torch_dtype"] = "bfloat16";
  j["use_cache"] = true;
  if (bos_id >= 0) j["bos_token_id"] = bos_id;
  if (eos_id >= 0) j["eos_token_id"] = eos_id;
  if (fp8)
    j["quantization_config"] = {{"quant_method", "fp8"}, {"fmt", "e4m3"}, {"weight_block_size", {kHfFp8Block, kHfFp8Block}},
                                {"activation_scheme", "dynamic"}};
  for (const char* section : {"training", "precision"})
    if (run_config.is_object() && run_config.contains(section)) j[section] = run_config[section];
  return j;
}

namespace {

// Owns the encoded bytes until SafetensorsWriter::write (moving a vector keeps its data).
struct Encoded {
  std::vector<std::vector<uint8_t>> buffers;
  const std::vector<uint8_t>& keep(std::vector<uint8_t> b) {
    buffers.push_back(std::move(b));
    return buffers.back();
  }
};

std::vector<uint8_t> to_bf16_bytes(const float* x, size_t n) {
  std::vector<uint16_t> h(n);
  numerics::bf16_encode_bulk(h.data(), x, n);
  std::vector<uint8_t> b(n * 2);
  std::memcpy(b.data(), h.data(), b.size());
  return b;
}

// Weight [rows, cols] → E4M3 codes and one FP32 scale per 128×128 block, with the trainer's
// quantizer (online amax/448 scales, saturating), so dequantized = code × scale_inv.
void add_fp8(SafetensorsWriter& w, Encoded& enc, const model::TensorInfo& t, const float* x) {
  TS_CHECK(t.shape.size() == 2, "cannot store " << t.name << " as block FP8: it is not a matrix",
           "only Linear weights are exported in FP8");
  const int64_t rows = t.shape[0], cols = t.shape[1];
  numerics::QuantSpec spec;
  spec.format = numerics::Fp8Format::E4M3;
  spec.granularity = numerics::Granularity::Block128x128;
  spec.scale_type = numerics::ScaleType::Fp32;
  spec.overflow = numerics::Overflow::Saturate;
  numerics::QTensor q;
  numerics::quantize(q, x, rows, cols, cols, spec);
  const std::vector<uint8_t>& codes = enc.keep(std::vector<uint8_t>(q.codes.data(), q.codes.data() + rows * cols));
  w.add(t.name, Dtype::F8_E4M3, t.shape, codes.data(), codes.size());
  std::vector<uint8_t> s(static_cast<size_t>(q.grid.count()) * sizeof(float));
  std::memcpy(s.data(), q.scales.data(), s.size());
  const std::vector<uint8_t>& scales = enc.keep(std::move(s));
  w.add(scale_inv_name(t.name), Dtype::F32, {q.grid.grid_rows, q.grid.grid_cols}, scales.data(), scales.size());
}

void add_tensor(SafetensorsWriter& w, Encoded& enc, const model::TensorInfo& t, const float* x, bool fp8) {
  switch (hf_storage(t.role, fp8)) {
    case HfStorage::kF32: w.add_f32(t.name, t.shape, x); break;
    case HfStorage::kBf16: {
      const std::vector<uint8_t>& b = enc.keep(to_bf16_bytes(x, t.numel));
      w.add(t.name, Dtype::BF16, t.shape, b.data(), b.size());
      break;
    }
    case HfStorage::kFp8Block: add_fp8(w, enc, t, x); break;
  }
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

void decode_fp8_block(const SafetensorsReader& r, const TensorView& v, float* dst, std::vector<std::string>* used) {
  TS_CHECK(v.shape.size() == 2, r.path() << ": F8_E4M3 tensor '" << v.name << "' has " << v.shape.size()
           << " dimensions; block FP8 weights are matrices", "re-export the checkpoint with `tinyseek export --fp8`");
  const std::string sname = scale_inv_name(v.name);
  const TensorView* s = r.find(sname);
  TS_CHECK(s != nullptr, r.path() << ": F8_E4M3 tensor '" << v.name << "' has no '" << sname << "'",
           "an FP8 weight needs its per-block dequantization scales (weight_block_size [128, 128])");
  const int64_t rows = v.shape[0], cols = v.shape[1];
  const int64_t gr = ceil_div(rows, kHfFp8Block), gc = ceil_div(cols, kHfFp8Block);
  TS_CHECK(s->dtype == Dtype::F32 && s->shape == std::vector<int64_t>({gr, gc}),
           r.path() << ": '" << sname << "' must be F32 [" << gr << ", " << gc << "] (one scale per 128x128 block of ["
           << rows << ", " << cols << "]), got " << to_string(s->dtype) << " with " << s->shape.size() << " dims",
           "only weight_block_size [128, 128] is supported");
  const std::vector<float> scale = r.read_f32(sname);
  numerics::fp8_decode_bulk(dst, v.data, static_cast<size_t>(rows * cols), numerics::Fp8Format::E4M3);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) dst[i * cols + j] *= scale[static_cast<size_t>((i / kHfFp8Block) * gc + j / kHfFp8Block)];
  used->push_back(sname);
}

}  // namespace

void write_hf_model_safetensors(const model::Registry& reg, const std::string& path, bool fp8) {
  SafetensorsWriter w;
  Encoded enc;
  for (size_t id = 0; id < reg.size(); ++id) {
    const model::TensorInfo& t = reg.info(static_cast<int>(id));
    add_tensor(w, enc, t, reg.param(static_cast<int>(id)), fp8);
  }
  // The MTP layer's own copies of the shared embedding and head, stored like the originals.
  for (const auto& [name, source] : mtp_shared_copies(reg)) {
    model::TensorInfo copy = reg.info(source);
    copy.name = name;
    add_tensor(w, enc, copy, reg.param(source), fp8);
  }
  w.set_metadata("format", "pt");
  w.write(path);
}

void read_hf_tensor(const SafetensorsReader& r, const TensorView& v, const std::vector<int64_t>& shape, float* dst,
                    std::vector<std::string>* used) {
  TS_CHECK(v.shape == shape, r.path() << ": tensor '" << v.name << "' has " << v.shape.size()
           << " dims / " << v.numel() << " elements, the config needs " << shape.size() << " dims",
           "the checkpoint was written for another config; use its config.json");
  const size_t n = static_cast<size_t>(v.numel());
  switch (v.dtype) {
    case Dtype::F32: std::memcpy(dst, v.data, n * sizeof(float)); break;
    case Dtype::BF16: {
      std::vector<uint16_t> h(n);
      std::memcpy(h.data(), v.data, n * 2);  // the mapping need not be 2-byte aligned
      numerics::bf16_decode_bulk(dst, h.data(), n);
      break;
    }
    case Dtype::F8_E4M3: decode_fp8_block(r, v, dst, used); break;
    default:
      TS_FAIL(r.path() << ": tensor '" << v.name << "' has dtype " << to_string(v.dtype),
              "tinyseek reads weights stored as F32, BF16 or F8_E4M3 with weight_scale_inv");
  }
  for (size_t i = 0; i < n; ++i)
    TS_CHECK(std::isfinite(dst[i]), r.path() << ": tensor '" << v.name << "' holds a non-finite value at element " << i,
             "the file is corrupt or was written from a diverged run");
  used->push_back(v.name);
}

std::vector<std::string> export_hf(const std::string& checkpoint, const std::string& out_dir, const ExportOptions& opt) {
  const std::string src = resolve_checkpoint_dir(checkpoint);
  const json run_config = read_json_file(src + "/config.json", "checkpoint config");
  const model::ModelConfig cfg = model::config_from_json(run_config, src + "/config.json");

  std::error_code ec;
  TS_CHECK(!fs::exists(out_dir, ec) || fs::is_directory(out_dir, ec), "--out " << out_dir << " exists and is not a directory",
           "choose another --out");
  TS_CHECK(opt.force || !fs::exists(out_dir, ec) || fs::is_empty(out_dir, ec),
           "--out " << out_dir << " is not empty", "choose an empty or new directory, or pass --force to overwrite the export files in it");
  fs::create_directories(out_dir, ec);
  TS_CHECK(fs::is_directory(out_dir), "cannot create " << out_dir << (ec ? ": " + ec.message() : std::string()),
           "check the path and permissions");

  model::Registry reg(cfg);
  load_model_safetensors(reg, src + "/model.safetensors");

  std::vector<std::string> written;
  int64_t bos = -1, eos = -1;
  const std::string tok_path = src + "/tokenizer.json";
  if (fs::exists(tok_path)) {
    const data::Tokenizer tok = data::read_tokenizer_json(tok_path);
    bos = tok.bos_id();
    eos = tok.eos_id();
    write_file_synced(out_dir + "/tokenizer.json", data::read_file_bytes(tok_path, "tokenizer"));
    written.push_back("tokenizer.json");
  } else {
    std::fprintf(stderr, "warning: %s has no tokenizer.json; the export has none either\n", src.c_str());
  }
  write_file_synced(out_dir + "/config.json", hf_config_json(cfg, run_config, opt.fp8, bos, eos).dump(2) + "\n");
  written.push_back("config.json");
  json gen = {{"_from_model_config", true}};
  if (bos >= 0) gen["bos_token_id"] = bos;
  if (eos >= 0) gen["eos_token_id"] = eos;
  write_file_synced(out_dir + "/generation_config.json", gen.dump(2) + "\n");
  written.push_back("generation_config.json");
  write_hf_model_safetensors(reg, out_dir + "/model.safetensors", opt.fp8);
  written.push_back("model.safetensors");
  return written;
}

}  // namespace tinyseek::io
