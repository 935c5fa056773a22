// Tests of the Hugging Face DeepSeek-V3 export (io/hf_export.h) and of loading it back:
// config.json keys, which tensors are BF16 / F32 / block-FP8, the scale_inv layout and the
// FP8 rounding bound, byte-level round trips, errors naming missing/unknown tensors, the
// independent PyTorch reference reproducing tinyseek's logits from the exported files, and
// through the CLI: --force and the eval loss of an export vs its run.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tinyseek/base/check.h"
#include "tinyseek/io/checkpoint.h"
#include "tinyseek/io/hf_export.h"
#include "tinyseek/io/safetensors.h"
#include "tinyseek/numerics/bf16.h"
#include "tinyseek/numerics/fp8.h"

#include "../model/tiny_model.h"
#include "../train/cli_util.h"

namespace tinyseek::io {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;
using model::Model;
using model::Registry;
using model::Role;
using model::TensorInfo;

std::string fresh(const std::string& name) {
  const fs::path p = fs::path(::testing::TempDir()) / ("tinyseek_export_" + name);
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

std::string bytes_of(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// The tiny test model (MoE with top-2 of 4 experts in 2 groups, one MTP module, D = 160 so
// FP8 blocks have partial edges); init std 0.03 (0.1 makes the random model chaotic: BF16
// rounding alone then moves logits by 8% on average).
json tiny_json() {
  json j = model::tiny::tiny_config("", 2);
  j["n_group"] = 2;
  j["topk_group"] = 1;
  j["training"]["init_std"] = 0.03;
  return j;
}

// A checkpoint directory (config.json + F32 model.safetensors), as `export` reads it.
std::string write_checkpoint(const std::string& name, const json& cfg_json, const Registry& reg) {
  const std::string dir = fresh(name);
  write_file_synced(dir + "/config.json", cfg_json.dump(2));
  write_model_safetensors(reg, dir + "/model.safetensors");
  return dir;
}

struct Fixture {
  json cfg_json = tiny_json();
  model::ModelConfig cfg = model::config_from_json(cfg_json);
  Model m{cfg};
  std::string ckpt;
  explicit Fixture(const std::string& name) {
    model::tiny::prepare(m, 7);
    ckpt = write_checkpoint(name + "_ckpt", cfg_json, m.registry());
  }
  std::string export_to(const std::string& name, bool fp8) const {
    const std::string out = fresh(name);
    ExportOptions o;
    o.fp8 = fp8;
    o.force = true;  // fresh() created it (empty, so --force is not what lets it pass)
    export_hf(ckpt, out, o);
    return out;
  }
};

Registry load_back(const model::ModelConfig& cfg, const std::string& dir) {
  Registry r(cfg);
  load_model_safetensors(r, resolve_checkpoint_dir(dir) + "/model.safetensors");
  return r;
}

// ---------------------------------------------------------------------------------------

TEST(HfExport, ConfigJsonHasEveryDeepSeekV3Key) {
  const Fixture f("config");
  for (const bool fp8 : {false, true}) {
    const json j = read_json_file(f.export_to(fp8 ? "config_fp8" : "config_bf16", fp8) + "/config.json", "export");
    // The keys of the released DeepSeek-V3 config.json (minus auto_map, transformers_version;
    // rope_scaling is null: no YaRN).
    for (const char* k : {"architectures", "attention_bias", "attention_dropout", "aux_loss_alpha", "ep_size",
                          "first_k_dense_replace", "hidden_act", "hidden_size", "initializer_range",
                          "intermediate_size", "kv_lora_rank", "max_position_embeddings", "model_type",
                          "moe_intermediate_size", "moe_layer_freq", "n_group", "n_routed_experts", "n_shared_experts",
                          "norm_topk_prob", "num_attention_heads", "num_experts_per_tok", "num_hidden_layers",
                          "num_key_value_heads", "num_nextn_predict_layers", "pretraining_tp", "q_lora_rank",
                          "qk_nope_head_dim", "qk_rope_head_dim", "rms_norm_eps", "rope_scaling", "rope_theta",
                          "routed_scaling_factor", "scoring_func", "seq_aux", "tie_word_embeddings", "topk_group",
                          "topk_method", "torch_dtype", "use_cache", "v_head_dim", "vocab_size"})
      EXPECT_TRUE(j.contains(k)) << "config.json lacks " << k;
    EXPECT_EQ(j["architectures"], json::array({"DeepseekV3ForCausalLM"}));
    EXPECT_EQ(j["model_type"], "deepseek_v3");
    EXPECT_EQ(j["scoring_func"], "sigmoid");
    EXPECT_EQ(j["topk_method"], "noaux_tc");
    EXPECT_EQ(j["torch_dtype"], "bfloat16");
    EXPECT_TRUE(j["rope_scaling"].is_null());
    EXPECT_EQ(j["num_nextn_predict_layers"], 1);
    EXPECT_EQ(j["n_group"], 2);
    EXPECT_EQ(j["topk_group"], 1);
    EXPECT_EQ(j["num_key_value_heads"], j["num_attention_heads"]);
    if (fp8)
      EXPECT_EQ(j["quantization_config"], json::parse(R"({"quant_method": "fp8", "fmt": "e4m3",
                 "weight_block_size": [128, 128], "activation_scheme": "dynamic"})"));
    else
      EXPECT_FALSE(j.contains("quantization_config"));
    // The same model comes back from it.
    EXPECT_TRUE(architecture_differences(model::to_json(model::config_from_json(j)), model::to_json(f.cfg)).empty());
    std::printf("%s config.json: %zu keys\n", fp8 ? "fp8" : "bf16", j.size());
  }
}

// Per tensor: Linear weights F8_E4M3 + F32 scale_inv (fp8 only), router bias F32, everything
// else (embedding, head, norms, router weight, eh_proj, MTP copies) BF16; released layout.
TEST(HfExport, TensorDtypesFollowTheReleasedLayout) {
  const Fixture f("dtypes");
  const Registry& reg = f.m.registry();
  for (const bool fp8 : {false, true}) {
    const SafetensorsReader r(f.export_to(fp8 ? "dtypes_fp8" : "dtypes_bf16", fp8) + "/model.safetensors");
    std::set<std::string> expected;
    int n_fp8 = 0;
    for (const TensorInfo& t : reg.tensors()) {
      const TensorView& v = r.get(t.name);
      expected.insert(t.name);
      Dtype want = Dtype::BF16;
      if (t.role == Role::kRouterBias) want = Dtype::F32;
      if (t.role == Role::kLinear && fp8) want = Dtype::F8_E4M3;
      EXPECT_EQ(v.dtype, want) << t.name << " (" << model::to_string(t.role) << ")";
      EXPECT_EQ(v.shape, t.shape) << t.name;
      if (want == Dtype::F8_E4M3) {
        ++n_fp8;
        expected.insert(scale_inv_name(t.name));
        EXPECT_EQ(r.get(scale_inv_name(t.name)).dtype, Dtype::F32);
      }
    }
    for (const auto& [name, source] : mtp_shared_copies(reg)) {
      expected.insert(name);
      EXPECT_EQ(r.get(name).dtype, Dtype::BF16) << name;
    }
    EXPECT_EQ(r.get("model.layers.3.eh_proj.weight").dtype, Dtype::BF16);
    EXPECT_TRUE(r.find("model.layers.3.embed_tokens.weight") && r.find("model.layers.3.shared_head.head.weight"));
    std::set<std::string> present;
    for (const TensorView& v : r.tensors()) present.insert(v.name);
    EXPECT_EQ(present, expected);
    std::printf("%s export: %zu tensors, %d F8_E4M3 weights with scale_inv\n", fp8 ? "fp8" : "bf16", present.size(), n_fp8);
  }
}

// scale_inv is [ceil(N/128), ceil(K/128)], every block's max |code| is 448 (scale = amax/448),
// and every dequantized element is within half an E4M3 ulp (at its magnitude) of the FP32
// master weight, times the block's scale.
TEST(HfExport, Fp8ScaleInvLayoutAndRoundingBound) {
  const Fixture f("fp8");
  const Registry& reg = f.m.registry();
  const std::string out = f.export_to("fp8_out", true);
  const SafetensorsReader r(out + "/model.safetensors");
  const Registry back = load_back(f.cfg, out);
  double worst_ratio = 0;
  int64_t blocks = 0, partial = 0;
  for (size_t id = 0; id < reg.size(); ++id) {
    const TensorInfo& t = reg.info(int(id));
    if (t.role != Role::kLinear) continue;
    const int64_t N = t.shape[0], K = t.shape[1], gr = (N + 127) / 128, gc = (K + 127) / 128;
    const TensorView& s = r.get(scale_inv_name(t.name));
    ASSERT_EQ(s.shape, std::vector<int64_t>({gr, gc})) << t.name;
    const std::vector<float> scale = r.read_f32(s.name);
    const uint8_t* codes = r.get(t.name).data;
    const float* x = reg.param(int(id));
    const float* deq = back.param(int(id));
    std::vector<float> block_max(size_t(gr * gc), 0.0f);
    for (int64_t i = 0; i < N; ++i)
      for (int64_t j = 0; j < K; ++j) {
        const size_t b = size_t((i / 128) * gc + j / 128);
        const float sc = scale[b];
        const float code = numerics::fp8_decode(codes[i * K + j], numerics::Fp8Format::E4M3);
        ASSERT_EQ(deq[i * K + j], code * sc) << t.name << " (dequantized = fp8 x scale_inv)";
        block_max[b] = std::max(block_max[b], std::fabs(code));
        const double ratio = std::fabs(x[i * K + j]) / sc;
        const int e = std::max(static_cast<int>(std::floor(std::log2(std::max(ratio, 1e-30)))), -6);
        const double half_ulp = std::ldexp(1.0, e - 4);  // E4M3: 3 mantissa bits, min exponent -6
        const double bound = half_ulp * sc * (1 + 1e-6) + std::fabs(x[i * K + j]) * 0x1p-23;
        worst_ratio = std::max(worst_ratio, std::fabs(double(x[i * K + j]) - deq[i * K + j]) / bound);
      }
    for (int64_t b = 0; b < gr * gc; ++b) EXPECT_EQ(block_max[size_t(b)], 448.0f) << t.name << " block " << b;
    blocks += gr * gc;
    partial += gr * gc - (N / 128) * (K / 128);
  }
  std::printf("fp8 blocks %lld (%lld partial): max |w - fp8*scale_inv| / half-ulp bound = %.4f (tolerance 1)\n",
              static_cast<long long>(blocks), static_cast<long long>(partial), worst_ratio);
  EXPECT_GT(partial, 0);
  EXPECT_LE(worst_ratio, 1.0);
  EXPECT_GT(worst_ratio, 0.5);  // the bound is tight: some element rounds by nearly half an ulp
}

// export -> load -> export. BF16: the files are byte-identical (BF16 values load exactly).
// FP8: codes, names, dtypes, shapes identical; a scale may move by one FP32 ulp because
// fl(448·s)/448 need not round back to s.
TEST(HfExport, RoundTripExportLoadExport) {
  const Fixture f("roundtrip");
  for (const bool fp8 : {false, true}) {
    const std::string tag = fp8 ? "fp8" : "bf16";
    const std::string a = f.export_to("rt_a_" + tag, fp8);
    const std::string b = fresh("rt_b_" + tag);
    ExportOptions o;
    o.fp8 = fp8;
    export_hf(a, b, o);  // the export itself as the checkpoint
    EXPECT_EQ(bytes_of(a + "/config.json"), bytes_of(b + "/config.json")) << tag;
    const std::string fa = bytes_of(a + "/model.safetensors"), fb = bytes_of(b + "/model.safetensors");
    if (!fp8) {
      EXPECT_EQ(fa, fb) << "BF16 export -> load -> export is not byte-identical";
      const Registry back = load_back(f.cfg, a);
      size_t differ = 0, n = 0;
      for (size_t id = 0; id < back.size(); ++id) {
        const TensorInfo& t = back.info(int(id));
        const bool f32 = hf_storage(t.role, false) == HfStorage::kF32;  // the router bias
        for (size_t i = 0; i < t.numel; ++i, ++n) {
          const float x = f.m.registry().param(int(id))[i];
          differ += back.param(int(id))[i] != (f32 ? x : numerics::bf16_round(x));
        }
      }
      EXPECT_EQ(differ, 0u) << "loaded values are not the BF16 rounding (F32 for the router bias) of the originals";
      std::printf("bf16 round trip: %zu bytes identical, loaded = bf16_round(original) (router bias exact) for all %zu "
                  "floats\n", fa.size(), n);
      continue;
    }
    const SafetensorsReader ra(a + "/model.safetensors"), rb(b + "/model.safetensors");
    ASSERT_EQ(ra.tensors().size(), rb.tensors().size());
    int64_t scales = 0, moved = 0, other_bytes = 0;
    for (size_t i = 0; i < ra.tensors().size(); ++i) {
      const TensorView &va = ra.tensors()[i], &vb = rb.tensors()[i];
      ASSERT_EQ(va.name, vb.name);
      ASSERT_EQ(va.dtype, vb.dtype);
      ASSERT_EQ(va.shape, vb.shape);
      if (va.name.ends_with("_scale_inv")) {
        const std::vector<float> sa = ra.read_f32(va.name), sb = rb.read_f32(vb.name);
        for (size_t k = 0; k < sa.size(); ++k) {
          ++scales;
          moved += sa[k] != sb[k];
          EXPECT_LE(std::fabs(sa[k] - sb[k]), std::nextafter(sa[k], INFINITY) - sa[k]) << va.name;
        }
      } else {
        EXPECT_EQ(std::memcmp(va.data, vb.data, va.nbytes), 0) << va.name << " changed in the round trip";
        other_bytes += int64_t(va.nbytes);
      }
    }
    std::printf("fp8 round trip: %lld bytes of codes/BF16/F32 tensors identical; %lld of %lld scales moved by 1 ulp\n",
                static_cast<long long>(other_bytes), static_cast<long long>(moved), static_cast<long long>(scales));
  }
}

// Rewrites `src` keeping every tensor except `drop`, adding `extra` (an F32 [1] tensor) and
// replacing the data of `corrupt` (BF16) by ones.
std::string rewrite(const std::string& src, const std::string& name, const std::string& drop, const std::string& extra,
                    const std::string& corrupt = "") {
  const SafetensorsReader r(src + "/model.safetensors");
  const std::string dir = fresh(name);
  fs::copy_file(src + "/config.json", dir + "/config.json");
  SafetensorsWriter w;
  const std::vector<uint8_t> ones(1 << 20, 0x3F);
  for (const TensorView& v : r.tensors()) {
    if (v.name == drop) continue;
    w.add(v.name, v.dtype, v.shape, v.name == corrupt ? ones.data() : v.data, v.nbytes);
  }
  const float one = 1;
  if (!extra.empty()) w.add_f32(extra, {1}, &one);
  w.write(dir + "/model.safetensors");
  return dir;
}

std::string load_error(const model::ModelConfig& cfg, const std::string& dir) {
  try {
    load_back(cfg, dir);
  } catch (const Error& e) {
    std::printf("  error: %s\n", std::string(e.what()).substr(0, 200).c_str());
    return e.what();
  }
  return "(no error)";
}

TEST(HfExport, MissingUnknownAndInconsistentTensorsAreNamed) {
  const Fixture f("errors");
  const std::string fp8 = f.export_to("errors_fp8", true);
  const std::string q = "model.layers.1.self_attn.q_b_proj.weight";
  EXPECT_NE(load_error(f.cfg, rewrite(fp8, "e_missing", q, "")).find(q), std::string::npos);
  EXPECT_NE(load_error(f.cfg, rewrite(fp8, "e_scale", scale_inv_name(q), "")).find(scale_inv_name(q)), std::string::npos);
  EXPECT_NE(load_error(f.cfg, rewrite(fp8, "e_extra", "", "model.layers.9.mlp.gate.weight"))
                .find("model.layers.9.mlp.gate.weight"), std::string::npos);
  const std::string copy = "model.layers.3.shared_head.head.weight";
  EXPECT_NE(load_error(f.cfg, rewrite(fp8, "e_copy", "", "", copy)).find(copy), std::string::npos);
  // Another config (one more layer): every missing tensor counts, the first ones are named.
  json bigger = f.cfg_json;
  bigger["num_hidden_layers"] = 4;
  EXPECT_NE(load_error(model::config_from_json(bigger), fp8).find("model.layers.4."), std::string::npos);
}

// ---------------------------------------------------------------------------------------
// The independent PyTorch reference on the exported directory.

struct Logits {
  std::vector<float> main, mtp;
};

Logits tinyseek_logits(Model& m, const std::vector<ops::Index>& tokens, int64_t B, int64_t T) {
  m.forward(tokens.data(), B, T);
  const int64_t V = m.config().vocab_size;
  Logits l;
  l.main.assign(m.logits(0), m.logits(0) + B * T * V);
  l.mtp.assign(m.logits(1), m.logits(1) + B * (T - 1) * V);
  return l;
}

// max |a - b| / max |b|
double rel_diff(const float* a, const double* b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    num = std::max(num, std::fabs(double(a[i]) - b[i]));
    den = std::max(den, std::fabs(b[i]));
  }
  return num / den;
}
// Σ|a - b| / Σ|b|: robust to the few tokens whose top-2 expert choice flips when the weights
// are rounded (one flip moves that token's logits by O(1), i.e. the max by O(1)).
double mean_rel_diff(const float* a, const double* b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    num += std::fabs(double(a[i]) - b[i]);
    den += std::fabs(b[i]);
  }
  return num / den;
}

std::vector<double> read_f64(const SafetensorsReader& r, const std::string& name, size_t n) {
  std::vector<double> v(n);
  const TensorView& t = r.get(name);
  EXPECT_EQ(t.dtype, Dtype::F64);
  EXPECT_EQ(t.nbytes, n * sizeof(double));
  std::memcpy(v.data(), t.data, std::min(t.nbytes, n * sizeof(double)));
  return v;
}

TEST(HfExport, PyTorchReferenceReproducesLogitsOfTheExport) {
  Fixture f("torch");
  constexpr int64_t B = 2, T = 12;
  const std::vector<ops::Index> tokens = model::tiny::tokens(B, T, f.cfg.vocab_size, 3);
  const std::string tok_path = fresh("torch_tokens") + "/tokens.safetensors";
  SafetensorsWriter tw;
  tw.add_i32("tokens", {B, T + 1}, tokens.data());
  tw.write(tok_path);
  const Logits original = tinyseek_logits(f.m, tokens, B, T);
  const int64_t V = f.cfg.vocab_size;
  // FP32 forward vs float64 on identical weights: ~1e-6 relative (tests/reference/README.md).
  constexpr double kTol = 2e-5;
  for (const bool fp8 : {false, true}) {
    const std::string tag = fp8 ? "fp8" : "bf16";
    const std::string dir = f.export_to("torch_" + tag, fp8);
    Model loaded(f.cfg);
    load_model_safetensors(loaded.registry(), dir + "/model.safetensors");
    const Logits mine = tinyseek_logits(loaded, tokens, B, T);
    const std::string out = dir + "/ref_logits.safetensors", log = dir + "/ref.log";
    const std::string cmd = std::string(TINYSEEK_PYTHON) + " " + TINYSEEK_SOURCE_DIR + "/tests/reference/hf_logits.py '" +
                            dir + "' '" + tok_path + "' '" + out + "' > '" + log + "' 2>&1";
    const int status = std::system(cmd.c_str());
    std::printf("%s", bytes_of(log).c_str());
    ASSERT_EQ(status, 0) << bytes_of(log);
    const SafetensorsReader r(out);
    const std::vector<double> ref = read_f64(r, "logits", size_t(B * T * V));
    const std::vector<double> ref_mtp = read_f64(r, "logits_mtp.1", size_t(B * (T - 1) * V));
    const double d_main = rel_diff(mine.main.data(), ref.data(), ref.size());
    const double d_mtp = rel_diff(mine.mtp.data(), ref_mtp.data(), ref_mtp.size());
    const double d_orig = rel_diff(original.main.data(), ref.data(), ref.size());
    const double d_orig_mtp = rel_diff(original.mtp.data(), ref_mtp.data(), ref_mtp.size());
    const double m_orig = mean_rel_diff(original.main.data(), ref.data(), ref.size());
    std::printf("%s export: torch(float64) vs tinyseek on the loaded export: logits max rel %.3g, mtp logits %.3g "
                "(tolerance %.0e); torch on the export vs tinyseek on the original FP32 weights: max rel %.3g, "
                "mtp %.3g, mean rel %.3g\n", tag.c_str(), d_main, d_mtp, kTol, d_orig, d_orig_mtp, m_orig);
    EXPECT_LE(d_main, kTol);
    EXPECT_LE(d_mtp, kTol);
    // The export itself is lossy (BF16: 2^-9 relative per weight; E4M3: 2^-4), and the reference
    // must see that, i.e. it did read the exported values and not some FP32 copy.
    EXPECT_GT(d_orig, 10 * kTol);
    EXPECT_LE(m_orig, fp8 ? 0.1 : 0.02);
  }
}

// ---------------------------------------------------------------------------------------
// Through the CLI: a trained run, export with/without --force, eval of the export.

double eval_loss(const std::string& args) {
  const testing::CliRun r = testing::run_cli("eval " + args + " --json");
  EXPECT_EQ(r.status, 0) << r.err;
  return r.status == 0 ? json::parse(r.out)["val_loss"].get<double>() : NAN;
}

TEST(ExportCli, ForceAndEvalOfTheExportMatchesTheRun) {
  const std::string data = train::testing::tiny_data().data_dir;
  const std::string root = fresh("cli");
  const std::string run = root + "/run", out = root + "/hf", out8 = root + "/hf8";
  testing::CliRun r = testing::run_cli("train --config '" + std::string(TINYSEEK_SOURCE_DIR) + "/configs/tiny.json' --data '" +
                                       data + "' --out '" + run + "' --steps 3 eval_every=0 --quiet");
  ASSERT_EQ(r.status, 0) << r.err;
  r = testing::run_cli("export --checkpoint '" + run + "' --out '" + out + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  for (const char* file : {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json"})
    EXPECT_TRUE(fs::exists(out + "/" + file)) << file;
  EXPECT_EQ(bytes_of(out + "/tokenizer.json"), bytes_of(run + "/tokenizer.json"));
  const json gen = read_json_file(out + "/generation_config.json", "generation config");
  EXPECT_EQ(read_json_file(out + "/config.json", "config")["eos_token_id"], gen["eos_token_id"]);

  r = testing::run_cli("export --checkpoint '" + run + "' --out '" + out + "' --fp8");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("not empty"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--force"), std::string::npos) << r.err;
  EXPECT_FALSE(read_json_file(out + "/config.json", "config").contains("quantization_config")) << "refused but wrote";
  r = testing::run_cli("export --checkpoint '" + run + "' --out '" + out + "' --fp8 --force");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(read_json_file(out + "/config.json", "config").contains("quantization_config"));
  r = testing::run_cli("export --checkpoint '" + run + "' --out '" + out + "' --force");  // back to BF16
  EXPECT_EQ(r.status, 0) << r.err;
  r = testing::run_cli("export --checkpoint '" + root + "/no_such_run' --out '" + root + "/x'");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("no_such_run"), std::string::npos) << r.err;
  r = testing::run_cli("export --checkpoint '" + run + "' --out '" + out8 + "' --fp8");
  ASSERT_EQ(r.status, 0) << r.err;

  const std::string d = " --data '" + data + "' --batches 4";
  const double loss_run = eval_loss("--checkpoint '" + run + "'" + d);
  const double loss_bf16 = eval_loss("--checkpoint '" + out + "'" + d);
  const double loss_fp8 = eval_loss("--checkpoint '" + out8 + "'" + d);
  const double rel_bf16 = std::fabs(loss_bf16 - loss_run) / loss_run, rel_fp8 = std::fabs(loss_fp8 - loss_run) / loss_run;
  // BF16 rounds each weight by <= 2^-9 relative; the loss moves far less than that.
  std::printf("eval loss: run %.6f, bf16 export %.6f (rel %.2e, tolerance 2e-3), fp8 export %.6f (rel %.2e, tolerance 2e-2)\n",
              loss_run, loss_bf16, rel_bf16, loss_fp8, rel_fp8);
  EXPECT_LE(rel_bf16, 2e-3);
  EXPECT_LE(rel_fp8, 2e-2);
}

}  // namespace
}  // namespace tinyseek::io
