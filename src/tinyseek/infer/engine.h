// The decode engine: DeepSeek-V3 inference over a trained model's weights with the MLA
// latent KV cache (kv_cache.h), absorbed attention, and the MTP modules as drafters.
//
// Every call runs n new tokens at positions cache.length() .. cache.length()+n-1 through a
// stack of layers, attending to the cached positions and to each other causally, and
// appends their c_kv / k_pe rows: n = prompt length for prefill, 1 for plain decoding,
// 1 + drafts for speculative verification. Each row is computed exactly as if it were
// decoded alone (per-row RMSNorm, 1x128 activation tiles, GEMMs whose per-element order
// depends only on K, attention one row at a time), so batching never changes a bit.
//
// Weights: the model's own Linears (model::LinearSite), so every projection runs in the
// precision map's format with the trainer's Fprop GEMM (FP8 E4M3 128x128 blocks with 1x128
// activation tiles in the fp8 recipe, BF16 head, FP32 router). Absorbed MLA, per head h:
//   q_c[h]   = W_UK[h]ᵀ q_nope[h]                          [dc]   (W_UK[h] = kv_b rows h·(dn+dv) .. +dn)
//   score(s) = (q_c[h]·c_kv[s] + q_pe[h]·k_pe[s]) / sqrt(dn + dr)
//   o_c[h]   = Σ_s softmax(score)(s) c_kv[s]                 [dc]
//   o[h]     = W_UV[h] o_c[h]                                [dv]   (W_UV[h] = the next dv rows)
// W_UK and W_UV are kv_b_proj's weight exactly as its GEMM reads it (the decoded FP8 or BF16
// copy), and c_kv is cached as that GEMM reads its input, so the absorbed scores and outputs
// equal the trainer's up-projected ones up to FP32 summation order.
//
// Small batches (n <= gemm::kSmallMaxM: decode steps, speculative verification, drafts):
// per-call overhead, not arithmetic, set the time of a decode step (~50 GEMMs of 1-8 rows,
// each paying an OpenMP region, A packing, and the widening of compact FP8 weight panels).
// So each projection keeps its Fprop weight packed and widened (Proj::packed, made once),
// its input is rounded to the Fprop operand exactly as ops::linear_forward rounds it (once
// for projections reading the same input: q_a and kv_a, gate and up), and the product runs
// through gemm::gemm_small_m, which gives the blocked kernels' bits; the step runs in the
// calling thread (the ops' parallel regions would each cost more than their work). Larger n
// (prefill) goes through the Linears themselves. Either way a row gets the same bits.
#pragma once
#include <cstdint>
#include <optional>
#include <vector>

#include "tinyseek/base/aligned.h"
#include "tinyseek/gemm/gemm.h"
#include "tinyseek/infer/kv_cache.h"
#include "tinyseek/model/deepseek.h"
#include "tinyseek/model/ffn.h"
#include "tinyseek/model/linear_site.h"
#include "tinyseek/model/precision.h"
#include "tinyseek/ops/dims.h"
#include "tinyseek/ops/rope.h"
#include "tinyseek/ops/router.h"

namespace tinyseek::infer {

class Engine {
 public:
  // Reads `m`'s weights (which must outlive the engine and not change while it is used).
  explicit Engine(const model::Model& m);

  const model::ModelConfig& config() const { return reg_.config(); }
  int64_t mtp_depth() const { return static_cast<int64_t>(mtp_.size()); }
  int64_t max_positions() const { return config().max_position_embeddings; }

  // Empty caches for the main blocks and for MTP module k (1-based).
  KvCache main_cache() const;
  KvCache mtp_cache(int64_t k) const;

  // Main model on tokens [n] at positions cache.length()..: hidden [n, D] = h^0, the last
  // block's output before the final norm (what MTP module 1 reads). Appends n positions.
  void forward_main(KvCache& cache, const ops::Index* tokens, int64_t n, float* hidden);
  // MTP module k (1-based) on its sequence positions cache.length()..: row i combines the
  // previous depth's hidden state h_prev [n, D] (h^{k-1} of the same position) with the
  // embedding of tokens[i] (the token k places ahead: t_{j+k} for position j), as in
  // training. hidden [n, D] = h^k. Appends n positions.
  void forward_mtp(int64_t k, KvCache& cache, const float* h_prev, const ops::Index* tokens, int64_t n,
                   float* hidden);
  // logits [n, V] = lm_head(RMSNorm(hidden; main norm or MTP module k's shared_head.norm)).
  void logits_main(float* logits, const float* hidden, int64_t n);
  void logits_mtp(int64_t k, float* logits, const float* hidden, int64_t n);

 private:
  // One projection: the model's Linear, and (when the precision allows a bit-identical
  // small-M path: online scaling, FP32 accumulation, per-row activation scales, no
  // telemetry) its Fprop Wᵀ packed with widened panels.
  struct Proj {
    model::LinearSite site;
    ops::LinearPrecision p;   // the precision of a forward call that keeps x
    gemm::GemmOptions opt;    // Fprop's GEMM options (beta 0)
    gemm::PackedB packed;     // empty: every call goes through site.forward
    int64_t in = 0, out = 0;
  };
  struct Ffn {  // SwiGLU: down(silu(x gateᵀ) ⊙ x upᵀ)
    Proj gate, up, down;
    int64_t width = 0;
  };
  struct Attention {
    Proj q_a, q_b, q, kv_a, o;
    int q_norm = -1, kv_norm = -1;
    ops::LinearPrecision ckv_format;     // kv_b_proj's: how its input c_kv is rounded
    AlignedBuffer<float> w_uk, w_uv_t;   // [H, dn, dc], [H, dc, dv] decoded kv_b_proj rows (W_UV transposed)
  };
  struct Layer {
    int64_t index = 0;  // position in its KvCache
    int in_norm = -1, post_norm = -1;
    Attention attn;
    std::optional<Ffn> dense;
    // MoE
    bool moe = false;
    Proj router;
    int bias = -1;
    ops::RouterConfig rc;
    std::vector<Ffn> experts;
    std::optional<Ffn> shared;
    model::StoreFormat combine = model::StoreFormat::kFp32;
  };
  struct Mtp {
    int enorm = -1, hnorm = -1, head_norm = -1;
    Proj eh_proj;
    Layer block;
  };

  Proj make_proj(int weight_id);
  Ffn make_ffn(const model::FfnIds& ids);
  // y [n, out] (= or +=) x [n, in] Wᵀ, bit-identical to pr.site.forward.
  void linear(const Proj& pr, float* y, const float* x, int64_t n, bool accumulate = false);
  // Two projections of the same input x [n, in] (the input rounded once when both round it
  // alike).
  void linear2(const Proj& a, float* ya, const Proj& b, float* yb, const float* x, int64_t n);
  // y [n, D] (= or +=) SwiGLU(x); g, u, a: [n, width] scratch.
  void swiglu(const Ffn& f, float* y, bool accumulate, const float* x, float* g, float* u, float* a, int64_t n);
  Layer make_layer(const model::BlockIds& ids, int64_t index);
  void absorb(Attention& a, int kv_b_id);
  // x [n, D] ← block(x), attending over cache layer `l.index` (positions pos0 + i).
  void block(const Layer& l, KvCache& cache, float* x, int64_t n, int64_t pos0);
  // out [n, D] += MLA(h) for the normalised block input h [n, D].
  void attention(const Attention& a, int64_t layer, KvCache& cache, float* out, const float* h, int64_t n,
                 int64_t pos0);
  // out [n, D] += FFN(h) (dense SwiGLU or DeepSeekMoE).
  void ffn(const Layer& l, float* out, const float* h, int64_t n);
  void head(int norm_id, float* logits, const float* hidden, int64_t n);
  float* scratch(int slot, size_t n);

  const model::Registry& reg_;
  int64_t D_, H_, dq_, dc_, dn_, dr_, dv_, V_;
  double eps_;
  ops::RopeTable<float> rope_;
  Proj lm_head_;
  std::vector<Layer> layers_;
  std::vector<Mtp> mtp_;
  std::vector<AlignedBuffer<float>> scratch_;  // grown on demand, never shrunk
  AlignedBuffer<ops::Index> indices_, row_token_;
  AlignedBuffer<int64_t> offsets_, row_of_;
  AlignedBuffer<int32_t> load_;
};

}  // namespace tinyseek::infer
