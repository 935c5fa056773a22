// Tests of model/registry: the tensor list (names, shapes, roles) against docs/model.md,
// buffer layout (aligned, disjoint, in order), init statistics and thread independence.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "tinyseek/base/check.h"
#include "tinyseek/model/config.h"
#include "tinyseek/model/registry.h"

namespace tinyseek::model {
namespace {

ModelConfig tiny_config(int64_t q_lora_rank, int64_t mtp) {
  ModelConfig c;
  c.vocab_size = 50;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.moe_intermediate_size = 8;
  c.num_hidden_layers = 2;
  c.num_nextn_predict_layers = mtp;
  c.num_attention_heads = 2;
  c.n_shared_experts = 2;
  c.n_routed_experts = 4;
  c.num_experts_per_tok = 2;
  c.kv_lora_rank = 8;
  c.q_lora_rank = q_lora_rank;
  c.qk_rope_head_dim = 4;
  c.qk_nope_head_dim = 6;
  c.v_head_dim = 5;
  c.first_k_dense_replace = 1;
  c.max_position_embeddings = 32;
  c.training.init_std = 0.5;
  return c;
}

// Parameter count written from docs/model.md's table, independently of the builder.
int64_t expected_params(const ModelConfig& c) {
  const int64_t D = c.hidden_size, H = c.num_attention_heads, dqk = c.qk_head_dim(), V = c.vocab_size;
  const int64_t attn = (c.q_lora_rank ? c.q_lora_rank * D + c.q_lora_rank + H * dqk * c.q_lora_rank : H * dqk * D) +
                       (c.kv_lora_rank + c.qk_rope_head_dim) * D + c.kv_lora_rank +
                       H * (c.qk_nope_head_dim + c.v_head_dim) * c.kv_lora_rank + D * H * c.v_head_dim;
  const int64_t dense = 3 * c.intermediate_size * D;
  const int64_t moe = c.n_routed_experts * D + c.n_routed_experts + c.n_routed_experts * 3 * c.moe_intermediate_size * D +
                      3 * c.moe_intermediate_size * c.n_shared_experts * D;
  int64_t n = 2 * V * D + D;
  for (int64_t l = 0; l < c.num_total_layers(); ++l) n += 2 * D + attn + (c.is_moe_layer(l) ? moe : dense);
  n += c.num_nextn_predict_layers * (3 * D + 2 * D * D);
  return n;
}

TEST(Registry, TensorListMatchesDocs) {
  for (int64_t dq : {0, 12}) {
    const ModelConfig c = tiny_config(dq, 2);
    const Registry r(c);
    std::printf("dq %ld: %zu tensors, %ld parameters (expected %ld), buffer %zu floats\n", long(dq), r.size(),
                long(r.num_parameters()), long(expected_params(c)), r.params().size());
    EXPECT_EQ(r.num_parameters(), expected_params(c));
    std::set<std::string> names;
    for (const TensorInfo& t : r.tensors()) EXPECT_TRUE(names.insert(t.name).second) << t.name;
    // Spot-check names, shapes and roles of each kind.
    auto shape = [&](const char* name) { return r.info(r.id(name)).shape; };
    using S = std::vector<int64_t>;
    EXPECT_EQ(shape("model.embed_tokens.weight"), (S{50, 16}));
    EXPECT_EQ(shape("lm_head.weight"), (S{50, 16}));
    EXPECT_EQ(shape("model.norm.weight"), (S{16}));
    if (dq) {
      EXPECT_EQ(shape("model.layers.0.self_attn.q_a_proj.weight"), (S{12, 16}));
      EXPECT_EQ(shape("model.layers.0.self_attn.q_a_layernorm.weight"), (S{12}));
      EXPECT_EQ(shape("model.layers.0.self_attn.q_b_proj.weight"), (S{20, 12}));
      EXPECT_EQ(r.find("model.layers.0.self_attn.q_proj.weight"), -1);
    } else {
      EXPECT_EQ(shape("model.layers.0.self_attn.q_proj.weight"), (S{20, 16}));
      EXPECT_EQ(r.find("model.layers.0.self_attn.q_a_proj.weight"), -1);
    }
    EXPECT_EQ(shape("model.layers.1.self_attn.kv_a_proj_with_mqa.weight"), (S{12, 16}));
    EXPECT_EQ(shape("model.layers.1.self_attn.kv_a_layernorm.weight"), (S{8}));
    EXPECT_EQ(shape("model.layers.1.self_attn.kv_b_proj.weight"), (S{22, 8}));
    EXPECT_EQ(shape("model.layers.1.self_attn.o_proj.weight"), (S{16, 10}));
    EXPECT_EQ(shape("model.layers.0.mlp.gate_proj.weight"), (S{24, 16}));
    EXPECT_EQ(shape("model.layers.0.mlp.down_proj.weight"), (S{16, 24}));
    EXPECT_EQ(r.find("model.layers.0.mlp.gate.weight"), -1);
    EXPECT_EQ(shape("model.layers.1.mlp.gate.weight"), (S{4, 16}));
    EXPECT_EQ(shape("model.layers.1.mlp.gate.e_score_correction_bias"), (S{4}));
    EXPECT_EQ(shape("model.layers.1.mlp.experts.3.up_proj.weight"), (S{8, 16}));
    EXPECT_EQ(shape("model.layers.1.mlp.experts.3.down_proj.weight"), (S{16, 8}));
    EXPECT_EQ(shape("model.layers.1.mlp.shared_experts.gate_proj.weight"), (S{16, 16}));
    EXPECT_EQ(shape("model.layers.1.mlp.shared_experts.down_proj.weight"), (S{16, 16}));
    // MTP modules are checkpoint layers L and L+1, MoE like the last main layer.
    for (int layer : {2, 3}) {
      const std::string p = "model.layers." + std::to_string(layer) + ".";
      EXPECT_EQ(shape((p + "eh_proj.weight").c_str()), (S{16, 32}));
      EXPECT_EQ(shape((p + "enorm.weight").c_str()), (S{16}));
      EXPECT_EQ(shape((p + "hnorm.weight").c_str()), (S{16}));
      EXPECT_EQ(shape((p + "shared_head.norm.weight").c_str()), (S{16}));
      EXPECT_EQ(shape((p + "mlp.experts.0.gate_proj.weight").c_str()), (S{8, 16}));
      EXPECT_EQ(r.info(r.id(p + "eh_proj.weight")).role, Role::kMtpProj);
      EXPECT_EQ(r.info(r.id(p + "eh_proj.weight")).layer, layer);
    }
    EXPECT_EQ(r.find("model.layers.4.enorm.weight"), -1);
    EXPECT_EQ(r.info(r.id("model.layers.1.mlp.gate.weight")).role, Role::kRouter);
    EXPECT_EQ(r.info(r.id("model.layers.1.mlp.gate.e_score_correction_bias")).role, Role::kRouterBias);
    EXPECT_EQ(r.info(r.id("lm_head.weight")).role, Role::kHead);
    EXPECT_EQ(r.info(r.id("model.embed_tokens.weight")).role, Role::kEmbedding);
    EXPECT_EQ(r.info(r.id("model.norm.weight")).role, Role::kNorm);
    EXPECT_EQ(r.info(r.id("model.layers.0.mlp.up_proj.weight")).role, Role::kLinear);
    // The ids the model uses point at the tensors of the same names.
    EXPECT_EQ(r.ids().embed_tokens, r.id("model.embed_tokens.weight"));
    EXPECT_EQ(r.ids().layers[1].moe.experts[2].down_proj, r.id("model.layers.1.mlp.experts.2.down_proj.weight"));
    EXPECT_EQ(r.ids().mtp[1].block.attn.o_proj, r.id("model.layers.3.self_attn.o_proj.weight"));
    EXPECT_TRUE(r.ids().layers[1].is_moe);
    EXPECT_FALSE(r.ids().layers[0].is_moe);
  }
}

TEST(Registry, BuffersAlignedDisjointInCheckpointOrder) {
  const Registry r(tiny_config(12, 1));
  size_t end = 0;
  for (const TensorInfo& t : r.tensors()) {
    EXPECT_EQ(t.offset % 16, 0u) << t.name;
    EXPECT_GE(t.offset, end) << t.name;
    end = t.offset + t.numel;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(r.param(r.id(t.name))) % 64, 0u);
  }
  EXPECT_LE(end, r.params().size());
  EXPECT_EQ(r.params().size(), r.grads().size());
  EXPECT_EQ(r.tensors().front().name, "model.embed_tokens.weight");
  EXPECT_EQ(r.tensors().back().name, "lm_head.weight");
  EXPECT_THROW(r.id("model.layers.9.mlp.gate.weight"), Error);
}

TEST(Registry, InitStatisticsAndZeroGrad) {
  Registry r(tiny_config(12, 1));
  r.init(42);
  double s2 = 0;
  int64_t n = 0;
  for (size_t i = 0; i < r.size(); ++i) {
    const TensorInfo& t = r.info(int(i));
    const float* p = r.param(int(i));
    for (size_t j = 0; j < t.numel; ++j) {
      if (t.init == Init::kOnes) {
        ASSERT_EQ(p[j], 1.0f) << t.name;
      } else if (t.init == Init::kZeros) {
        ASSERT_EQ(p[j], 0.0f) << t.name;
      } else {
        s2 += double(p[j]) * p[j];
        ++n;
      }
    }
    if (t.role == Role::kNorm) {
      EXPECT_EQ(t.init, Init::kOnes);
    } else if (t.role == Role::kRouterBias) {
      EXPECT_EQ(t.init, Init::kZeros);
    } else {
      EXPECT_EQ(t.init, Init::kNormal) << t.name;
    }
  }
  const double std_measured = std::sqrt(s2 / double(n));
  std::printf("normal init: %ld values, measured std %.4f (configured 0.5)\n", long(n), std_measured);
  EXPECT_NEAR(std_measured, 0.5, 0.5 * 6.0 / std::sqrt(2.0 * double(n)));  // 6 sigma of the sample std
  // Two tensors of the same shape get different values (stream = tensor id).
  const auto& ids = r.ids().layers[1].moe.experts;
  EXPECT_NE(std::memcmp(r.param(ids[0].gate_proj), r.param(ids[1].gate_proj), 8 * 16 * sizeof(float)), 0);
  for (float& g : r.grads()) g = 3.0f;
  r.zero_grad();
  for (float g : r.grads()) ASSERT_EQ(g, 0.0f);
}

TEST(Registry, InitIsThreadCountIndependentAndSeeded) {
  Registry a(tiny_config(0, 1)), b(tiny_config(0, 1)), c(tiny_config(0, 1));
#ifdef _OPENMP
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  a.init(5);
  omp_set_num_threads(2);
  b.init(5);
  omp_set_num_threads(saved);
#else
  a.init(5);
  b.init(5);
#endif
  c.init(6);
  EXPECT_EQ(std::memcmp(a.params().data(), b.params().data(), a.params().size() * sizeof(float)), 0);
  EXPECT_NE(std::memcmp(a.params().data(), c.params().data(), a.params().size() * sizeof(float)), 0);
  std::printf("init 1 vs 2 threads: identical over %zu floats\n", a.params().size());
}

}  // namespace
}  // namespace tinyseek::model
