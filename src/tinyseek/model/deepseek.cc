#include "tinyseek/model/deepseek.h"

#include <algorithm>

#include "tinyseek/base/check.h"
#include "tinyseek/ops/cross_entropy.h"
#include "tinyseek/ops/embedding.h"
#include "tinyseek/ops/linear_quant.h"
#include "tinyseek/ops/rmsnorm.h"

namespace tinyseek::model {

Model::Model(const ModelConfig& cfg)
    : reg_(cfg),
      rope_(ops::make_rope_table<float>(cfg.qk_rope_head_dim, cfg.max_position_embeddings, cfg.rope_theta)),
      lm_head_(reg_, reg_.ids().lm_head) {
  for (const BlockIds& b : reg_.ids().layers) blocks_.emplace_back(reg_, b);
  for (size_t k = 0; k < reg_.ids().mtp.size(); ++k)
    mtp_.emplace_back(reg_, reg_.ids().mtp[k], static_cast<int64_t>(k) + 1);
  resid_.resize(blocks_.size() + 1);
  d_hidden_.resize(mtp_.size() + 1);
  logits_.resize(mtp_.size() + 1);
}

double Model::head(int norm_id, const float* h, const ops::Index* targets, int64_t n, float* logits, bool backward,
                   double dloss, float* dh) {
  const ModelConfig& c = config();
  const int64_t D = c.hidden_size, V = c.vocab_size;
  // Grown, never shrunk: the main head (n = B·T) and the MTP heads (B·(T−k)) alternate, and
  // a reallocation per head would page-fault fresh memory every step.
  if (head_normed_.size() < static_cast<size_t>(n * D)) head_normed_.resize(static_cast<size_t>(n * D));
  if (head_rstd_.size() < static_cast<size_t>(n)) head_rstd_.resize(static_cast<size_t>(n));
  if (head_lse_.size() < static_cast<size_t>(n)) head_lse_.resize(static_cast<size_t>(n));
  ops::rmsnorm_forward(head_normed_.data(), head_rstd_.data(), h, reg_.param(norm_id), n, D, c.rms_norm_eps);
  lm_head_.forward(reg_, logits, head_normed_.data(), n);
  const double ce = ops::cross_entropy_forward(head_lse_.data(), logits, targets, n, V);
  if (!backward) return ce;
  // The loss is the end of the graph, so the head's backward runs right away and one
  // [n, V] buffer serves every head (its logits become their gradient in place).
  ops::cross_entropy_backward(logits, dloss, logits, head_lse_.data(), targets, n, V);
  float* d_normed = ws_.zeroed(Slot::kDNormOut, static_cast<size_t>(n * D));
  lm_head_.backward(reg_, d_normed, logits, head_normed_.data(), n);
  ops::rmsnorm_backward(dh, reg_.grad(norm_id), d_normed, h, reg_.param(norm_id), head_rstd_.data(), n, D);
  return ce;
}

bool Model::head_chunkable(bool backward) const {
  return backward && head_chunk_rows_ >= 0 && lm_head_.call_precision(false).saved_x == gemm::DType::F32 &&
         ops::accepts_bf16_dy(lm_head_.precision, *lm_head_.state);
}

int64_t Model::head_stream_rows() const {
  // Streaming splits Wgrad's K (the tokens) between calls; that keeps the bits only with
  // exact FP32 accumulation and calls of exactly one promotion group G (gemm.h: per group
  // P = Σ a·b from +0, then acc + P, then C = acc + β·C; with BF16 operands G = promote_every).
  if (head_chunk_rows_ != 0 || lm_head_.precision.accumulation != gemm::Accumulation::kFp32) return 0;
  if (gemm::is_fp8(lm_head_.precision.wgrad_dy) || gemm::is_fp8(lm_head_.precision.wgrad_x)) return 0;
  // Groups of fewer rows would make the head GEMMs too small to run well.
  return lm_head_.precision.promote_every >= 64 ? lm_head_.precision.promote_every : 0;
}

double Model::head_chunked(int norm_id, const float* h, const ops::Index* targets, int64_t n, double dloss,
                           float* dh) {
  const ModelConfig& c = config();
  const int64_t D = c.hidden_size, V = c.vocab_size;
  if (head_normed_.size() < static_cast<size_t>(n * D)) head_normed_.resize(static_cast<size_t>(n * D));
  if (head_rstd_.size() < static_cast<size_t>(n)) head_rstd_.resize(static_cast<size_t>(n));
  if (head_lse_.size() < static_cast<size_t>(n)) head_lse_.resize(static_cast<size_t>(n));
  // Streamed (the default): each chunk of G rows runs its Dgrad and Wgrad right away, so no
  // [n, V] gradient is ever held: Dgrad is row by row; the chunks' Wgrads sum into a zeroed
  // [V, D] FP32 buffer P_1 + P_2 + ... in row order, which is the GEMM's own accumulator of
  // the one-call Wgrad (one promotion group per chunk), then dW += it as the one call's
  // epilogue does (C = acc + C): the same bits. Else (set_head_chunk_rows > 0, or an
  // accumulation that this does not hold for) the BF16 gradient [n, V] is filled chunk by
  // chunk and Dgrad and Wgrad run once over it.
  const int64_t stream = head_stream_rows();
  // ~8 MiB of FP32 logits per chunk: small next to the [n, V] BF16 gradient, large enough
  // that the head GEMM keeps its efficiency.
  const int64_t chunk = stream > 0 ? stream
                        : head_chunk_rows_ > 0 ? head_chunk_rows_
                                               : std::max<int64_t>(64, (int64_t{2} << 20) / V);
  const int64_t rows_max = std::min(chunk, n);
  const size_t dl_size = static_cast<size_t>((stream > 0 ? rows_max : n) * V);
  if (head_dlogits_bf16_.size() < dl_size) head_dlogits_bf16_.resize(dl_size);
  if (logits_[0].size() < static_cast<size_t>(rows_max * V)) logits_[0].resize(static_cast<size_t>(rows_max * V));
  float* logits = logits_[0].data();
  ops::rmsnorm_forward(head_normed_.data(), head_rstd_.data(), h, reg_.param(norm_id), n, D, c.rms_norm_eps);
  float* d_normed = ws_.zeroed(Slot::kDNormOut, static_cast<size_t>(n * D));
  float* dw = stream > 0 ? ws_.zeroed(Slot::kDHeadW, static_cast<size_t>(V * D)) : nullptr;
  const int64_t n_valid_total = ops::count_valid_targets(targets, n);
  double total = 0.0;
  int64_t n_valid = 0;
  // Every row's logits, lse, loss term and gradient depend on that row alone; the loss sum
  // runs over rows in ascending order as in one call.
  for (int64_t r0 = 0; r0 < n; r0 += chunk) {
    const int64_t rows = std::min(chunk, n - r0);
    lm_head_.forward(reg_, logits, head_normed_.data() + r0 * D, rows);
    ops::cross_entropy_forward_rows(head_lse_.data() + r0, logits, targets + r0, rows, V, total, n_valid);
    ops::cross_entropy_backward_rows(logits, dloss, n_valid_total, logits, head_lse_.data() + r0, targets + r0, rows,
                                     V);
    uint16_t* dl = head_dlogits_bf16_.data() + (stream > 0 ? 0 : r0 * V);
    ops::bf16_encode_parallel(dl, logits, static_cast<size_t>(rows * V));
    if (stream > 0)
      ops::linear_backward_bf16_dy(d_normed + r0 * D, dw, dl, head_normed_.data() + r0 * D,
                                   reg_.param(lm_head_.weight), reg_.params_version(), rows, D, V,
                                   lm_head_.call_precision(false), *lm_head_.state);
  }
  if (stream > 0) {
    float* grad = reg_.grad(lm_head_.weight);
    const int64_t nw = V * D;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < nw; ++i) grad[i] += dw[i];
  } else {
    ops::linear_backward_bf16_dy(d_normed, reg_.grad(lm_head_.weight), head_dlogits_bf16_.data(),
                                 head_normed_.data(), reg_.param(lm_head_.weight), reg_.params_version(), n, D, V,
                                 lm_head_.call_precision(false), *lm_head_.state);
  }
  ops::rmsnorm_backward(dh, reg_.grad(norm_id), d_normed, h, reg_.param(norm_id), head_rstd_.data(), n, D);
  return n_valid ? total / static_cast<double>(n_valid) : 0.0;
}

Losses Model::run(const ops::Index* tokens, int64_t B, int64_t T, bool backward) {
  const ModelConfig& c = config();
  const int64_t D = c.hidden_size, V = c.vocab_size, L = c.num_hidden_layers, Dmtp = c.num_nextn_predict_layers;
  TS_CHECK(B > 0 && T > 0, "batch needs B > 0 sequences of T > 0 tokens, got B " << B << ", T " << T,
           "check --batch-size and --seq-len");
  TS_CHECK(T > Dmtp, "sequence length T = " << T << " must exceed num_nextn_predict_layers = " << Dmtp
           << " (MTP depth k predicts over T-k positions)", "use a longer sequence");
  TS_CHECK(T <= c.max_position_embeddings, "sequence length T = " << T << " exceeds max_position_embeddings = "
           << c.max_position_embeddings, "use a shorter sequence or raise max_position_embeddings");
  const int64_t N = B * T;
  const size_t nd = static_cast<size_t>(N * D);
  inputs_.resize(static_cast<size_t>(N));
  targets_.resize(static_cast<size_t>(N));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t) {
      inputs_[static_cast<size_t>(b * T + t)] = tokens[b * (T + 1) + t];
      targets_[static_cast<size_t>(b * T + t)] = tokens[b * (T + 1) + t + 1];
    }
  for (auto& r : resid_) r.resize(nd);

  Losses out;
  out.loss_mtp.assign(static_cast<size_t>(Dmtp), 0.0);
  const double alpha = c.training.balance_alpha;
  const double mtp_weight = Dmtp > 0 ? c.training.mtp_lambda / static_cast<double>(Dmtp) : 0.0;

  // Forward only keeps nothing for backward (every intermediate transient).
  const ActContext ctx{KeepPolicy::of(backward ? recompute_ : Recompute::kFull), arena_};
  arena_.set_share_attention(backward && recompute_ != Recompute::kFull);

  // Forward through the main blocks.
  ops::embedding_forward(resid_[0].data(), inputs_.data(), reg_.param(reg_.ids().embed_tokens), N, D, V);
  for (int64_t l = 0; l < L; ++l)
    out.loss_balance += blocks_[size_t(l)].forward(reg_, ctx, resid_[size_t(l + 1)].data(), resid_[size_t(l)].data(), B,
                                                   T, rope_);
  // Main head on h^0 = the last block's output (before the final norm, which the head applies).
  const float* h0 = resid_[size_t(L)].data();
  const bool chunked = head_chunkable(backward);
  float* logits0 = nullptr;
  if (backward) {
    d_hidden_[0].resize(nd);
    d_hidden_[0].zero();
  }
  if (!chunked) {
    logits_[0].resize(static_cast<size_t>(N * V));  // the shared scratch of every head
    logits0 = logits_[0].data();
    out.loss_main = head(reg_.ids().norm, h0, targets_.data(), N, logits0, backward, 1.0, d_hidden_[0].data());
  } else {
    out.loss_main = head_chunked(reg_.ids().norm, h0, targets_.data(), N, 1.0, d_hidden_[0].data());
  }

  // MTP depths, each on the previous depth's hidden states.
  const float* h_prev = h0;
  for (int64_t k = 1; k <= Dmtp; ++k) {
    MtpModule& m = mtp_[size_t(k - 1)];
    out.loss_balance += m.forward(reg_, ctx, h_prev, tokens, B, T, rope_);
    const int64_t Nk = B * (T - k);
    float* lg = logits0;
    if (!backward) {
      logits_[size_t(k)].resize(static_cast<size_t>(Nk * V));
      lg = logits_[size_t(k)].data();
    } else {
      d_hidden_[size_t(k)].resize(static_cast<size_t>(Nk * D));
      d_hidden_[size_t(k)].zero();
    }
    out.loss_mtp[size_t(k - 1)] =
        chunked ? head_chunked(m.ids().shared_head_norm, m.hidden(), m.targets(), Nk, mtp_weight,
                               d_hidden_[size_t(k)].data())
                : head(m.ids().shared_head_norm, m.hidden(), m.targets(), Nk, lg, backward, mtp_weight,
                       backward ? d_hidden_[size_t(k)].data() : nullptr);
    h_prev = m.hidden();
  }
  out.loss = out.loss_main + alpha * out.loss_balance;
  for (double l : out.loss_mtp) out.loss += mtp_weight * l;
  if (!backward) return out;

  // Backward: deepest MTP module first (each feeds the gradient of the depth before it).
  for (int64_t k = Dmtp; k >= 1; --k)
    mtp_[size_t(k - 1)].backward(reg_, ws_, ctx, d_hidden_[size_t(k)].data(), d_hidden_[size_t(k - 1)].data(), rope_,
                                 alpha);
  float* d = d_hidden_[0].data();
  for (int64_t l = L - 1; l >= 0; --l) blocks_[size_t(l)].backward(reg_, ws_, ctx, d, resid_[size_t(l)].data(), rope_, alpha);
  ops::embedding_backward(reg_.grad(reg_.ids().embed_tokens), d, inputs_.data(), N, D, V);
  return out;
}

void Model::set_recompute(Recompute policy) { recompute_ = policy; }

void Model::set_norm_up_recompute(bool on) {
  norm_up_recompute_ = on;
  for (Block& b : blocks_) b.set_norm_up_recompute(on);
  for (MtpModule& m : mtp_) m.block().set_norm_up_recompute(on);
}

void Model::set_expert_dispatch(dist::ExpertDispatch* d) {
  for (Block& b : blocks_) b.set_expert_dispatch(d);
  for (MtpModule& m : mtp_) m.block().set_expert_dispatch(d);
}

Losses Model::forward_backward(const ops::Index* tokens, int64_t B, int64_t T) {
  // Training from now on: the Linears may keep their weight copies in scratch only.
  for (size_t id = 0; id < reg_.size(); ++id)
    if (auto s = reg_.find_linear_state(static_cast<int>(id))) s->pack_dgrad_with_fprop = true;
  return run(tokens, B, T, true);
}
Losses Model::forward(const ops::Index* tokens, int64_t B, int64_t T) { return run(tokens, B, T, false); }

const Block* Model::block_of_layer(int64_t layer) const {
  for (const Block& b : blocks_)
    if (b.layer() == layer) return &b;
  for (const MtpModule& m : mtp_)
    if (m.block().layer() == layer) return &m.block();
  return nullptr;
}

std::vector<int64_t> Model::moe_layers() const {
  std::vector<int64_t> layers;
  for (int64_t l = 0; l < config().num_total_layers(); ++l)
    if (config().is_moe_layer(l)) layers.push_back(l);
  return layers;
}

const int32_t* Model::load_counts(int64_t layer) const {
  const Block* b = block_of_layer(layer);
  TS_CHECK(b != nullptr && b->is_moe(), "layer " << layer << " is not a MoE layer",
           "use one of Model::moe_layers()");
  return b->moe()->load();
}

int64_t Model::head_bytes() const {
  int64_t n = static_cast<int64_t>((head_normed_.size() + head_rstd_.size() + head_lse_.size()) * sizeof(float) +
                                   head_dlogits_bf16_.size() * sizeof(uint16_t));
  for (const auto& l : logits_) n += static_cast<int64_t>(l.size() * sizeof(float));
  return n;
}

Model::SavedBytes Model::saved_bytes_by_kind() const {
  SavedBytes s;
  s.linear_cache = linear_cache_bytes(reg_);
  const auto add_block = [&](const Block& b) {
    s.attention += b.attention_saved_bytes();
    (b.is_moe() ? s.moe : s.ffn_dense) += b.ffn_saved_bytes();
    s.block_norms += b.saved_bytes() - b.attention_saved_bytes() - b.ffn_saved_bytes();
  };
  for (const Block& b : blocks_) add_block(b);
  for (const MtpModule& m : mtp_) {
    add_block(m.block());
    s.mtp_other += m.saved_bytes();
  }
  for (const auto& r : resid_) s.residual += static_cast<int64_t>(r.size() * sizeof(float));
  return s;
}

int64_t Model::saved_activation_bytes() const {
  int64_t n = linear_cache_bytes(reg_);
  for (const Block& b : blocks_) n += b.saved_bytes();
  for (const MtpModule& m : mtp_) n += m.block().saved_bytes() + m.saved_bytes();
  for (const auto& r : resid_) n += static_cast<int64_t>(r.size() * sizeof(float));
  return n;
}

}  // namespace tinyseek::model
