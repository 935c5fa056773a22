#include "tinyseek/model/registry.h"

#include "tinyseek/base/check.h"
#include "tinyseek/base/parallel.h"
#include "tinyseek/base/rng.h"

namespace tinyseek::model {

const char* to_string(Role r) {
  switch (r) {
    case Role::kLinear: return "linear";
    case Role::kEmbedding: return "embedding";
    case Role::kHead: return "head";
    case Role::kRouter: return "router";
    case Role::kRouterBias: return "router_bias";
    case Role::kNorm: return "norm";
    case Role::kMtpProj: return "mtp_proj";
  }
  return "?";
}

const char* to_string(Init i) {
  switch (i) {
    case Init::kNormal: return "normal";
    case Init::kOnes: return "ones";
    case Init::kZeros: return "zeros";
  }
  return "?";
}

namespace {
constexpr size_t kAlignFloats = kAlignment / sizeof(float);
size_t align_up(size_t n) { return (n + kAlignFloats - 1) / kAlignFloats * kAlignFloats; }
std::string layer_prefix(int64_t layer) { return "model.layers." + std::to_string(layer) + "."; }
}  // namespace

int Registry::add(std::string name, std::vector<int64_t> shape, Init init, Role role, int64_t layer) {
  TS_ASSERT(!by_name_.count(name));
  TensorInfo t;
  t.name = std::move(name);
  t.shape = std::move(shape);
  t.init = init;
  t.init_std = init == Init::kNormal ? cfg_.training.init_std : 0.0;
  t.role = role;
  t.layer = layer;
  t.numel = 1;
  for (int64_t d : t.shape) {
    TS_ASSERT(d > 0);
    t.numel *= static_cast<size_t>(d);
  }
  t.offset = tensors_.empty() ? 0 : align_up(tensors_.back().offset + tensors_.back().numel);
  const int id = static_cast<int>(tensors_.size());
  by_name_.emplace(t.name, id);
  tensors_.push_back(std::move(t));
  return id;
}

// SwiGLU FFN of width W: gate_proj, up_proj [W, D], down_proj [D, W].
FfnIds Registry::add_ffn(const std::string& prefix, int64_t width, int64_t layer) {
  const int64_t D = cfg_.hidden_size;
  FfnIds f;
  f.gate_proj = add(prefix + "gate_proj.weight", {width, D}, Init::kNormal, Role::kLinear, layer);
  f.up_proj = add(prefix + "up_proj.weight", {width, D}, Init::kNormal, Role::kLinear, layer);
  f.down_proj = add(prefix + "down_proj.weight", {D, width}, Init::kNormal, Role::kLinear, layer);
  return f;
}

// One decoder layer (MLA + dense FFN or MoE) at checkpoint layer `layer`.
BlockIds Registry::add_block(int64_t layer) {
  const ModelConfig& c = cfg_;
  const int64_t D = c.hidden_size, H = c.num_attention_heads, dqk = c.qk_head_dim();
  const std::string p = layer_prefix(layer);
  BlockIds b;
  b.layer = layer;
  b.input_layernorm = add(p + "input_layernorm.weight", {D}, Init::kOnes, Role::kNorm, layer);
  MlaIds& a = b.attn;
  const std::string sa = p + "self_attn.";
  if (c.has_q_lora()) {
    a.q_a_proj = add(sa + "q_a_proj.weight", {c.q_lora_rank, D}, Init::kNormal, Role::kLinear, layer);
    a.q_a_layernorm = add(sa + "q_a_layernorm.weight", {c.q_lora_rank}, Init::kOnes, Role::kNorm, layer);
    a.q_b_proj = add(sa + "q_b_proj.weight", {H * dqk, c.q_lora_rank}, Init::kNormal, Role::kLinear, layer);
  } else {
    a.q_proj = add(sa + "q_proj.weight", {H * dqk, D}, Init::kNormal, Role::kLinear, layer);
  }
  a.kv_a_proj_with_mqa = add(sa + "kv_a_proj_with_mqa.weight", {c.kv_lora_rank + c.qk_rope_head_dim, D},
                             Init::kNormal, Role::kLinear, layer);
  a.kv_a_layernorm = add(sa + "kv_a_layernorm.weight", {c.kv_lora_rank}, Init::kOnes, Role::kNorm, layer);
  a.kv_b_proj = add(sa + "kv_b_proj.weight", {H * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank},
                    Init::kNormal, Role::kLinear, layer);
  a.o_proj = add(sa + "o_proj.weight", {D, H * c.v_head_dim}, Init::kNormal, Role::kLinear, layer);
  b.post_attention_layernorm = add(p + "post_attention_layernorm.weight", {D}, Init::kOnes, Role::kNorm, layer);
  b.is_moe = c.is_moe_layer(layer);
  if (!b.is_moe) {
    b.dense = add_ffn(p + "mlp.", c.intermediate_size, layer);
    return b;
  }
  MoeIds& m = b.moe;
  m.gate = add(p + "mlp.gate.weight", {c.n_routed_experts, D}, Init::kNormal, Role::kRouter, layer);
  m.bias = add(p + "mlp.gate.e_score_correction_bias", {c.n_routed_experts}, Init::kZeros, Role::kRouterBias, layer);
  for (int64_t e = 0; e < c.n_routed_experts; ++e)
    m.experts.push_back(add_ffn(p + "mlp.experts." + std::to_string(e) + ".", c.moe_intermediate_size, layer));
  if (c.n_shared_experts > 0)
    m.shared = add_ffn(p + "mlp.shared_experts.", c.moe_intermediate_size * c.n_shared_experts, layer);
  return b;
}

Registry::Registry(const ModelConfig& cfg) : cfg_(cfg) {
  validate(cfg_);
  const int64_t D = cfg_.hidden_size, V = cfg_.vocab_size, L = cfg_.num_hidden_layers;
  ids_.embed_tokens = add("model.embed_tokens.weight", {V, D}, Init::kNormal, Role::kEmbedding, -1);
  for (int64_t l = 0; l < L; ++l) ids_.layers.push_back(add_block(l));
  for (int64_t k = 1; k <= cfg_.num_nextn_predict_layers; ++k) {
    const int64_t layer = L + k - 1;
    const std::string p = layer_prefix(layer);
    MtpIds m;
    m.enorm = add(p + "enorm.weight", {D}, Init::kOnes, Role::kNorm, layer);
    m.hnorm = add(p + "hnorm.weight", {D}, Init::kOnes, Role::kNorm, layer);
    m.eh_proj = add(p + "eh_proj.weight", {D, 2 * D}, Init::kNormal, Role::kMtpProj, layer);
    m.block = add_block(layer);
    m.shared_head_norm = add(p + "shared_head.norm.weight", {D}, Init::kOnes, Role::kNorm, layer);
    ids_.mtp.push_back(std::move(m));
  }
  ids_.norm = add("model.norm.weight", {D}, Init::kOnes, Role::kNorm, -1);
  ids_.lm_head = add("lm_head.weight", {V, D}, Init::kNormal, Role::kHead, -1);
  const size_t total = align_up(tensors_.back().offset + tensors_.back().numel);
  params_.resize(total);
  grads_.resize(total);
  // Padding stays zero forever, so whole-buffer reductions (norms, checksums) are exact.
  params_.zero();
  grads_.zero();
}

int Registry::find(std::string_view name) const {
  const auto it = by_name_.find(std::string(name));
  return it == by_name_.end() ? -1 : it->second;
}

int Registry::id(std::string_view name) const {
  const int i = find(name);
  TS_CHECK(i >= 0, "no tensor named '" << name << "' in this model (" << size() << " tensors)",
           "check the name against the model's config (layer count, q_lora_rank, experts)");
  return i;
}

int64_t Registry::num_parameters() const {
  int64_t n = 0;
  for (const TensorInfo& t : tensors_) n += static_cast<int64_t>(t.numel);
  return n;
}

void Registry::zero_grad() { grads_.zero(); }

void Registry::init(uint64_t seed) {
  params_changed();
  for (size_t id = 0; id < tensors_.size(); ++id) {
    const TensorInfo& t = tensors_[id];
    float* p = params_.data() + t.offset;
    switch (t.init) {
      case Init::kZeros: std::fill(p, p + t.numel, 0.0f); break;
      case Init::kOnes: std::fill(p, p + t.numel, 1.0f); break;
      case Init::kNormal: {
        const Philox rng(seed, id);
        const double std = t.init_std;
        parallel_ranges(static_cast<int64_t>(t.numel), 4096, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) p[i] = static_cast<float>(rng.normal(static_cast<uint64_t>(i)) * std);
        });
        break;
      }
    }
  }
}

}  // namespace tinyseek::model
