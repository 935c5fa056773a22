// Multi-token prediction module k (docs/model.md "Multi-token prediction"):
//   h'^k_i = eh_proj([enorm(Emb(t_{i+k})) ; hnorm(h^{k-1}_i)])     i < T−k  (embedding first)
//   h^k    = Block_k(h'^k), causal over the T−k positions of each sequence
// The output head (shared_head.norm, then the shared lm_head) is applied by the model.
#pragma once
#include <cstdint>

#include "tinyseek/base/aligned.h"
#include "tinyseek/model/block.h"
#include "tinyseek/model/linear_site.h"
#include "tinyseek/model/registry.h"
#include "tinyseek/ops/dims.h"
#include "tinyseek/ops/rope.h"

namespace tinyseek::model {

class MtpModule {
 public:
  MtpModule(const Registry& r, const MtpIds& ids, int64_t depth);

  // h_prev [B, T−k+1, D]: the previous depth's hidden states (h^0 = last main block output,
  // before the final norm). tokens [B, T+1]. Computes h^k [B, T−k, D]; returns the block's
  // balance loss (0 if dense).
  double forward(const Registry& r, const ActContext& ctx, const float* h_prev, const ops::Index* tokens, int64_t B,
                 int64_t T, const ops::RopeTable<float>& rope);
  const float* hidden() const { return out_.data(); }        // h^k [B·(T−k), D]
  const ops::Index* targets() const { return targets_.data(); }  // t_{i+k+1} [B·(T−k)]
  int64_t tokens_per_sequence() const { return Tk_; }        // T − k

  // d_hidden [B·(T−k), D] = ∂L/∂h^k on entry (overwritten); d_prev [B, T−k+1, D] +=
  // ∂L/∂h_prev. balance_coef = α.
  void backward(Registry& r, Workspace& ws, const ActContext& ctx, float* d_hidden, float* d_prev,
                const ops::RopeTable<float>& rope, double balance_coef);

  const Block& block() const { return block_; }
  Block& block() { return block_; }
  // Bytes this module keeps besides its block (norm statistics, concatenation, h'^k, h^k).
  int64_t saved_bytes() const {
    return static_cast<int64_t>(sizeof(float)) *
           (static_cast<int64_t>(rstd_e_.size() + rstd_h_.size() + x_in_.size() + out_.size()) + concat_.saved_floats());
  }
  const MtpIds& ids() const { return ids_; }

 private:
  MtpIds ids_;
  int64_t k_, D_, V_;
  double eps_;
  int embed_id_;
  LinearSite eh_proj_;
  Block block_;
  // The norm inputs emb (rows of the embedding table) and prev (rows of h_prev, which the
  // caller keeps) are copies: gathered again in backward, never kept. The concatenation is
  // read in backward only by eh_proj's Wgrad: dropped when eh_proj keeps its own copy.
  // (Transient buffers: the arena's kMtp* keys.)
  void gather_inputs(const Registry& r, float* emb, float* prev) const;

  int64_t B_ = 0, Tk_ = 0;
  const float* h_prev_ = nullptr;               // [B, T−k+1, D] the last forward's h_prev (caller-kept)
  bool concat_dropped_ = false;
  AlignedBuffer<ops::Index> tokens_, targets_;  // [Nk] t_{i+k}, t_{i+k+1}
  AlignedBuffer<float> rstd_e_, rstd_h_;        // [Nk]
  Act concat_;                                  // [Nk, 2D] = [enorm(emb) | hnorm(prev)]
  AlignedBuffer<float> x_in_, out_;             // [Nk, D] block input h'^k, output h^k
};

}  // namespace tinyseek::model
