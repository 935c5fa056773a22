// The MLA latent KV cache of the absorbed decode path (docs/architecture.md "Inference").
//
// Per token and per layer it stores only what attention needs once W_UK is folded into the
// query and W_UV into the output (DeepSeek-V2 §2.1.2):
//   c_kv [dc]  the normalised latent (after kv_a_layernorm), as the up-projection reads it
//              (rounded to kv_b_proj's Fprop input format: identical for FP32, BF16-rounded
//              or FP8-quantized-and-decoded otherwise), so decode scores equal the trainer's
//   k_pe [dr]  the shared RoPE key, after rotation
// in FP32, i.e. 4·(dc + dr) bytes per token per layer, against 4·H·(dn + dr + dv) for the
// keys and values standard multi-head attention would keep.
//
// One KvCache serves one stack of layers (the main blocks, or one MTP module's block). All
// layers hold the same positions 0..length()-1; truncate() rolls rejected speculative
// tokens back (their rows are simply overwritten by the next append).
#pragma once
#include <cstdint>
#include <vector>

#include "tinyseek/base/aligned.h"
#include "tinyseek/model/config.h"

namespace tinyseek::infer {

class KvCache {
 public:
  KvCache() = default;
  // `layers` layers of capacity max_pos tokens each.
  KvCache(int64_t layers, int64_t max_pos, int64_t dc, int64_t dr);

  int64_t layers() const { return static_cast<int64_t>(ckv_.size()); }
  int64_t capacity() const { return max_pos_; }
  int64_t length() const { return length_; }
  // Positions [0, len) stay; len <= length().
  void truncate(int64_t len);
  // Marks positions [length(), length() + n) filled (after the layers wrote their rows).
  void advance(int64_t n);

  // Row of position `pos` in layer `layer`: c_kv [dc], k_pe [dr] (rows contiguous, so
  // positions 0..p of a layer are the matrices ckv(l, 0) [p+1, dc] and kpe(l, 0) [p+1, dr]).
  float* ckv(int64_t layer, int64_t pos) { return ckv_[size_t(layer)].data() + pos * dc_; }
  float* kpe(int64_t layer, int64_t pos) { return kpe_[size_t(layer)].data() + pos * dr_; }
  const float* ckv(int64_t layer, int64_t pos) const { return ckv_[size_t(layer)].data() + pos * dc_; }
  const float* kpe(int64_t layer, int64_t pos) const { return kpe_[size_t(layer)].data() + pos * dr_; }

  // What one token costs in this cache, all its layers: layers · (dc + dr) · sizeof(float).
  int64_t bytes_per_token() const { return layers() * (dc_ + dr_) * static_cast<int64_t>(sizeof(float)); }

 private:
  int64_t max_pos_ = 0, dc_ = 0, dr_ = 0, length_ = 0;
  std::vector<AlignedBuffer<float>> ckv_, kpe_;  // per layer [max_pos, dc], [max_pos, dr]
};

// KV bytes per token of the main model's L layers: the latent cache (FP32 c_kv and k_pe)
// and, for comparison, standard multi-head attention's FP32 keys [H, dn+dr] and values
// [H, dv] (what the un-absorbed MLA would have to cache).
int64_t latent_kv_bytes_per_token(const model::ModelConfig& c);
int64_t mha_kv_bytes_per_token(const model::ModelConfig& c);

}  // namespace tinyseek::infer
