// The tensor registry: the ONE list of every model parameter (Hugging Face name, shape,
// initialisation, precision role), built from the config (DESIGN.md §3). It drives the
// contiguous FP32 parameter and gradient buffers, zero-grad, initialisation, checkpoint
// order, the reference dump and (later) the optimizer and export. The names are spelled
// once, in registry.cc's builder; the model finds its tensors through the integer ids in
// ModelIds, never by re-spelling a name.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tinyseek/base/aligned.h"
#include "tinyseek/model/config.h"

namespace tinyseek::ops {
struct LinearState;  // ops/linear.h
}

namespace tinyseek::model {

// How a tensor enters the computation; the precision recipes (FP8 per GEMM role) key on it.
enum class Role : uint8_t {
  kLinear,      // attention and FFN/expert projections: FP8-eligible GEMMs
  kEmbedding,   // model.embed_tokens (gather, not a GEMM)
  kHead,        // lm_head (kept in high precision, DeepSeek-V3 §3.3)
  kRouter,      // mlp.gate.weight (FP32 gating)
  kRouterBias,  // mlp.gate.e_score_correction_bias: selection only, updated by the balancer
  kNorm,        // RMSNorm weights
  kMtpProj,     // MTP eh_proj [D, 2D]
};
const char* to_string(Role r);
// The router bias has no gradient and is moved by the aux-loss-free balancer, not AdamW.
inline bool trained_by_optimizer(Role r) { return r != Role::kRouterBias; }

enum class Init : uint8_t { kNormal, kOnes, kZeros };
const char* to_string(Init i);

struct TensorInfo {
  std::string name;            // Hugging Face name, e.g. "model.layers.0.self_attn.q_a_proj.weight"
  std::vector<int64_t> shape;  // [out, in] for linear weights
  Init init = Init::kZeros;
  double init_std = 0;         // for Init::kNormal
  Role role = Role::kLinear;
  int64_t layer = -1;          // checkpoint layer (MTP module k: L+k-1), -1 for global tensors
  size_t offset = 0;           // in floats into the params/grads buffers; 64-byte aligned
  size_t numel = 0;
};

// Tensor ids (indices into the registry) of each module; -1 = absent.
struct FfnIds {
  int gate_proj = -1, up_proj = -1, down_proj = -1;  // [W,D], [W,D], [D,W]
  bool present() const { return gate_proj >= 0; }
};
struct MlaIds {
  int q_a_proj = -1, q_a_layernorm = -1, q_b_proj = -1;  // dq > 0
  int q_proj = -1;                                        // dq == 0
  int kv_a_proj_with_mqa = -1, kv_a_layernorm = -1, kv_b_proj = -1, o_proj = -1;
};
struct MoeIds {
  int gate = -1, bias = -1;    // router weight [E,D], e_score_correction_bias [E]
  std::vector<FfnIds> experts; // E routed experts, width Fe
  FfnIds shared;               // width Fe·Es (absent if Es = 0)
};
struct BlockIds {
  int64_t layer = 0;
  int input_layernorm = -1, post_attention_layernorm = -1;
  MlaIds attn;
  bool is_moe = false;
  FfnIds dense;  // !is_moe
  MoeIds moe;    // is_moe
};
struct MtpIds {
  int enorm = -1, hnorm = -1, eh_proj = -1, shared_head_norm = -1;
  BlockIds block;
};
struct ModelIds {
  int embed_tokens = -1, norm = -1, lm_head = -1;
  std::vector<BlockIds> layers;  // L main blocks
  std::vector<MtpIds> mtp;       // Dmtp modules
};

class Registry {
 public:
  // Lists every tensor of `cfg` and allocates params and grads (contents unspecified until
  // init() / zero_grad()).
  explicit Registry(const ModelConfig& cfg);
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;
  Registry(Registry&&) = default;

  const ModelConfig& config() const { return cfg_; }
  // The MTP loss weight λ is the one config value that may change during a run (its
  // schedule, train/hyper.h); every shape stays as built.
  void set_mtp_lambda(double lambda) { cfg_.training.mtp_lambda = lambda; }
  const ModelIds& ids() const { return ids_; }

  // Tensors in checkpoint order: embed_tokens, layers 0..L+Dmtp-1, norm, lm_head.
  size_t size() const { return tensors_.size(); }
  const TensorInfo& info(int id) const { return tensors_[static_cast<size_t>(id)]; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  int find(std::string_view name) const;  // -1 if absent
  int id(std::string_view name) const;    // throws naming the tensor if absent

  float* param(int id) { return params_.data() + info(id).offset; }
  const float* param(int id) const { return params_.data() + info(id).offset; }
  float* grad(int id) { return grads_.data() + info(id).offset; }
  const float* grad(int id) const { return grads_.data() + info(id).offset; }

  // The whole buffers (padding between tensors is kept at zero).
  AlignedBuffer<float>& params() { return params_; }
  const AlignedBuffer<float>& params() const { return params_; }
  AlignedBuffer<float>& grads() { return grads_; }
  const AlignedBuffer<float>& grads() const { return grads_; }
  int64_t num_parameters() const;  // Σ numel (without padding)

  void zero_grad();
  // Version of the parameter values. Call params_changed() after every write to params()
  // (optimizer step, checkpoint load; init() calls it): the Linears rebuild their BF16/FP8
  // weight copies when the version moved, so all micro-batches of a step share one copy.
  uint64_t params_version() const { return params_version_; }
  void params_changed() { ++params_version_; }
  // The mutable state of the Linear whose weight is `id` (low-precision weight copies,
  // activation cache, delayed-scaling histories, telemetry), created on first request and
  // null-free thereafter (model/linear_site.cc). Kept here, beside the parameters it is
  // derived from, so the trainer finds every Linear's state by tensor id.
  std::shared_ptr<ops::LinearState> linear_state(int id) const;
  std::shared_ptr<ops::LinearState> find_linear_state(int id) const;  // null if never requested
  // Every tensor from its Init: kNormal draws Philox(seed, stream = tensor id).normal(i) ·
  // init_std for element i, so the values depend only on (seed, tensor, element), never on
  // the thread count.
  void init(uint64_t seed);

 private:
  int add(std::string name, std::vector<int64_t> shape, Init init, Role role, int64_t layer);
  FfnIds add_ffn(const std::string& prefix, int64_t width, int64_t layer);
  BlockIds add_block(int64_t layer);

  ModelConfig cfg_;
  ModelIds ids_;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, int> by_name_;
  AlignedBuffer<float> params_, grads_;
  uint64_t params_version_ = 0;
  mutable std::vector<std::shared_ptr<ops::LinearState>> linear_states_;  // by tensor id
};

}  // namespace tinyseek::model
