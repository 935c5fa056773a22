// The whole DeepSeek-V3 model (docs/model.md): embedding, L main blocks, final norm and
// output head, Dmtp MTP modules sharing the embedding and the head, the losses
//   L = CE_main + λ/Dmtp Σ_k CE_k + α Σ_ℓ mean_b L_bal(ℓ, b)
// and the backward pass into the registry's FP32 gradients (accumulated, so micro-batches
// add up; the caller zeroes). Deterministic: identical bits for any thread count.
#pragma once
#include <cstdint>
#include <vector>

#include "tinyseek/base/aligned.h"
#include "tinyseek/model/block.h"
#include "tinyseek/model/config.h"
#include "tinyseek/model/linear_site.h"
#include "tinyseek/model/mtp.h"
#include "tinyseek/model/recompute.h"
#include "tinyseek/model/registry.h"
#include "tinyseek/ops/dims.h"
#include "tinyseek/ops/rope.h"

namespace tinyseek::model {

struct Losses {
  double loss = 0;                // the total L
  double loss_main = 0;           // CE_main, mean over B·T positions
  std::vector<double> loss_mtp;   // CE_k, k = 1..Dmtp, mean over B·(T−k) positions each
  double loss_balance = 0;        // Σ_ℓ mean_b L_ℓ,b (without α), over main and MTP MoE layers
};

class Model {
 public:
  // Builds the registry (parameters uninitialised: call init() or load them).
  explicit Model(const ModelConfig& cfg);

  const ModelConfig& config() const { return reg_.config(); }
  // λ of the MTP loss, read at every forward (the trainer follows its schedule).
  void set_mtp_lambda(double lambda) { reg_.set_mtp_lambda(lambda); }
  Registry& registry() { return reg_; }
  const Registry& registry() const { return reg_; }
  void init(uint64_t seed) { reg_.init(seed); }

  // What forward keeps for backward (recompute.h). Any policy gives the same bits; set it
  // before forward_backward (the trainer reads the `recompute` key of the run config).
  void set_recompute(Recompute policy);
  Recompute recompute() const { return recompute_; }
  // Under `none`, whether backward recomputes what is cheap to recompute instead of keeping
  // it (DeepSeek-V3 §3.2.3, "Recomputation of RMSNorm and MLA Up-Projection"): every block's
  // norm outputs h1, h2, from x / mid (Block::forward), and MLA's latent norms c_q, c_kv,
  // their rstd and the up-projections q, kv, from the kept c_q_raw and kv_a (Mla::
  // keep_policy). Kept neither in FP32 nor as the Linears' BF16/FP8 copies: the Linears
  // reading them get the recomputed FP32 values in backward and round them as the copy
  // would have (LinearSite::call_precision), so every recipe keeps the same bits (the same
  // kernels on the same inputs and weights). On `base` (B8×T256) about 14 MiB less per
  // layer plus the norm outputs, for about 2% more GEMM work. Default true (the trainer
  // reads training.recompute_norm_up); false keeps them (the layout before 2026-12-08). No
  // effect under `selective` / `full`, which recompute these anyway.
  void set_norm_up_recompute(bool on);
  // Expert parallelism for every MoE layer, main and MTP (dist/expert_parallel.h, which sets
  // it in its constructor and clears it in its destructor): the layers run only the experts
  // `d` assigns to this rank and exchange token rows with the other ranks. nullptr (the
  // default): every expert runs here. Not owned; set between steps.
  void set_expert_dispatch(dist::ExpertDispatch* d);
  bool norm_up_recompute() const { return norm_up_recompute_; }

  // tokens [B, T+1] (int32): inputs tokens[:, 0:T], targets tokens[:, 1:T+1]; MTP depth k
  // uses tokens[:, k:T−k+k] and predicts tokens[:, k+1:]. Requires Dmtp < T <=
  // max_position_embeddings. Adds every parameter's gradient into registry().grads().
  Losses forward_backward(const ops::Index* tokens, int64_t B, int64_t T);
  // The same forward without gradients; keeps the logits of every head for logits().
  Losses forward(const ops::Index* tokens, int64_t B, int64_t T);
  // After forward(): depth 0 = main head [B, T, V], depth k = MTP head [B, T−k, V].
  const float* logits(int64_t depth) const { return logits_[static_cast<size_t>(depth)].data(); }

  // Checkpoint layers with a MoE FFN (main and MTP), ascending, and the number of tokens that
  // selected each expert [E] in the last forward (input of the aux-loss-free bias update).
  std::vector<int64_t> moe_layers() const;
  const int32_t* load_counts(int64_t layer) const;

  // Bytes held as saved activations for backward by the last forward (for logs and tests):
  // the residual stream, every layer's kept intermediates (FP32, and the BF16/FP8 SwiGLU
  // inputs) and routing state, and every Linear's own BF16/FP8 copy of its input
  // (linear_cache_bytes: shown separately by saved_linear_cache_bytes()).
  int64_t saved_activation_bytes() const;
  int64_t saved_linear_cache_bytes() const { return linear_cache_bytes(reg_); }
  // saved_activation_bytes() in FP32-float units (rounded up), for logs written in floats.
  int64_t saved_activation_floats() const { return (saved_activation_bytes() + 3) / 4; }
  // Bytes and floats of the shared transient buffers (one layer's worth of the dropped
  // intermediates; activations.h). The memory a policy needs is about saved + transient.
  int64_t transient_activation_bytes() const { return arena_.bytes(); }
  int64_t transient_activation_floats() const { return (arena_.bytes() + 3) / 4; }
  // Bytes of the shared gradient temporaries (linear_site.h Workspace) and of the output
  // head's buffers (logits [N, V] and the norm temporaries).
  int64_t workspace_bytes() const { return ws_.bytes(); }
  int64_t head_bytes() const;
  // Rows of logits the output head computes at a time in forward_backward when its dY is
  // BF16 (bf16 and fp8 recipes, telemetry off): logits and their FP32 gradient exist for one
  // chunk only (the same bits as the whole batch at once). 0 (default): streamed, chunks of
  // one promotion group (promote_every rows) each running its own Dgrad and Wgrad (the
  // Wgrads summed in a [V, D] workspace slot), so no [N, V] buffer exists (from 2026-12-08;
  // FP32 accumulation only, else as > 0 with ~8 MiB chunks); > 0: chunks of that many rows
  // filling a BF16 gradient [N, V] that Dgrad and Wgrad then read at once (2026-11-23);
  // -1: never chunk (all [N, V] FP32 logits at once, the layout before 2026-11-23).
  void set_head_chunk_rows(int64_t rows) { head_chunk_rows_ = rows; }

  // The bytes behind saved_activation_bytes(), by kind, as the buffers hold them now (for
  // the memory breakdown of `bench step`).
  struct SavedBytes {
    int64_t residual = 0;      // the L+1 residual streams
    int64_t attention = 0;     // MLA intermediates (q, kv, c_q, c_kv, k_pe, o, lse, ...)
    int64_t ffn_dense = 0;     // dense FFN g, u, a (FP32 or their BF16/FP8 copies)
    int64_t moe = 0;           // MoE routing state, expert outputs, experts' and shared g, u, a
    int64_t block_norms = 0;   // block norm outputs, rstd and mid
    int64_t mtp_other = 0;     // MTP norm statistics, concatenation, h'^k and h^k
    int64_t linear_cache = 0;  // every Linear's BF16/FP8 copy of its input
  };
  SavedBytes saved_bytes_by_kind() const;

 private:
  Losses run(const ops::Index* tokens, int64_t B, int64_t T, bool backward);
  // RMSNorm(h; norm_id) → lm_head → cross-entropy with `targets` over n rows; logits [n, V]
  // written to `logits`. With backward: the loss gradient (weight dloss) flows back through
  // the head into dh [n, D] (accumulated) and the norm and head weights; logits are then
  // overwritten by their gradient.
  double head(int norm_id, const float* h, const ops::Index* targets, int64_t n, float* logits, bool backward,
              double dloss, float* dh);
  // head() in row chunks (set_head_chunk_rows); the same contract.
  double head_chunked(int norm_id, const float* h, const ops::Index* targets, int64_t n, double dloss, float* dh);
  bool head_chunkable(bool backward) const;
  // Rows per streamed chunk of head_chunked (one promotion group), 0 when not streamed.
  int64_t head_stream_rows() const;
  const Block* block_of_layer(int64_t layer) const;

  Registry reg_;
  Recompute recompute_ = Recompute::kNone;
  bool norm_up_recompute_ = true;  // set_norm_up_recompute
  Workspace ws_;
  ActivationArena arena_;
  ops::RopeTable<float> rope_;
  LinearSite lm_head_;
  std::vector<Block> blocks_;
  std::vector<MtpModule> mtp_;
  AlignedBuffer<ops::Index> inputs_, targets_;   // [N] main tokens and targets
  std::vector<AlignedBuffer<float>> resid_;      // L+1 residual streams [N, D]: input, after each block
  std::vector<AlignedBuffer<float>> d_hidden_;   // Dmtp+1 gradients ∂L/∂h^k [B·(T−k), D]
  std::vector<AlignedBuffer<float>> logits_;     // forward(): per head; forward_backward: [0] scratch
  AlignedBuffer<float> head_normed_, head_rstd_, head_lse_;  // [n, D], [n], [n] head temporaries
  AlignedBuffer<uint16_t> head_dlogits_bf16_;               // [n or chunk, V] chunked head: BF16 ∂L/∂logits
  int64_t head_chunk_rows_ = 0;
};

}  // namespace tinyseek::model
