#include "tinyseek/infer/kv_cache.h"

#include "tinyseek/base/check.h"

namespace tinyseek::infer {

KvCache::KvCache(int64_t layers, int64_t max_pos, int64_t dc, int64_t dr) : max_pos_(max_pos), dc_(dc), dr_(dr) {
  TS_CHECK(layers >= 0 && max_pos > 0 && dc > 0 && dr > 0,
           "invalid KV cache shape: layers " << layers << ", max_pos " << max_pos << ", dc " << dc << ", dr " << dr,
           "this is a bug");
  ckv_.resize(static_cast<size_t>(layers));
  kpe_.resize(static_cast<size_t>(layers));
  for (int64_t l = 0; l < layers; ++l) {
    ckv_[size_t(l)].resize(static_cast<size_t>(max_pos * dc));
    kpe_[size_t(l)].resize(static_cast<size_t>(max_pos * dr));
  }
}

void KvCache::truncate(int64_t len) {
  TS_CHECK(len >= 0 && len <= length_, "cannot truncate a KV cache of " << length_ << " positions to " << len,
           "this is a bug");
  length_ = len;
}

void KvCache::advance(int64_t n) {
  TS_CHECK(n >= 0 && length_ + n <= max_pos_, "KV cache of capacity " << max_pos_ << " cannot grow from " << length_
           << " by " << n << " positions", "keep prompt + generated tokens within max_position_embeddings");
  length_ += n;
}

int64_t latent_kv_bytes_per_token(const model::ModelConfig& c) {
  return c.num_hidden_layers * (c.kv_lora_rank + c.qk_rope_head_dim) * static_cast<int64_t>(sizeof(float));
}

int64_t mha_kv_bytes_per_token(const model::ModelConfig& c) {
  return c.num_hidden_layers * c.num_attention_heads * (c.qk_head_dim() + c.v_head_dim) *
         static_cast<int64_t>(sizeof(float));
}

}  // namespace tinyseek::infer
