#include "tinyseek/infer/engine.h"

#include <algorithm>
#include <cmath>

#include "tinyseek/base/check.h"
#include "tinyseek/base/parallel.h"
#include "tinyseek/gemm/gemm_small_m.h"
#include "tinyseek/infer/attention_kernel.h"
#include "tinyseek/numerics/simd.h"
#include "tinyseek/numerics/bf16.h"
#include "tinyseek/numerics/quant.h"
#include "tinyseek/ops/embedding.h"
#include "tinyseek/ops/linear_quant.h"
#include "tinyseek/ops/moe_dispatch.h"
#include "tinyseek/ops/rmsnorm.h"
#include "tinyseek/ops/swiglu.h"

namespace tinyseek::infer {
namespace {

// Named scratch buffers (Engine::scratch). Buffers live only within one call.
enum Slot : int {
  kNormOut, kRstd, kCqRaw, kCq, kQ, kKvA, kAttnO, kAttnWork, kG, kU, kA, kRouterLogits, kScores, kGates,
  kXe, kYe, kGe, kUe, kAe, kEmb, kConcat, kHeadNormed, kRowBuf, kSlotCount
};

// Rounds c_kv rows [n, dc] in place to what a Linear of precision p reads as its input: the
// FP8 codes times their scales (the same quantizer and grid as ops/linear's Fprop X), the
// BF16 value, or the FP32 value itself.
void round_as_linear_input(float* x, int64_t n, int64_t cols, const ops::LinearPrecision& p) {
  using gemm::DType;
  if (p.fprop_x == DType::F32) return;
  const size_t count = static_cast<size_t>(n * cols);
  if (p.fprop_x == DType::BF16) {
    for (size_t i = 0; i < count; ++i) x[i] = numerics::bf16_round(x[i]);
    return;
  }
  numerics::QuantSpec spec;
  spec.format = p.fprop_x == DType::E4M3 ? numerics::Fp8Format::E4M3 : numerics::Fp8Format::E5M2;
  spec.granularity = ops::operand_granularity(p.granularity, false, true);
  spec.scale_type = p.scale_type;
  spec.amax_floor = p.amax_floor;
  numerics::QTensor q;
  numerics::quantize(q, x, n, cols, cols, spec);
  numerics::dequantize(x, cols, q);
}

// Runs a scope in the calling thread: every OpenMP region inside it gets one thread. For
// the few-row calls of decoding, whose regions (norms, rope, quantization, experts) each
// cost more to fork and join than their work.
class SerialScope {
 public:
  explicit SerialScope(bool on) : on_(on) {
#ifdef _OPENMP
    if (on_) {
      saved_ = omp_get_max_threads();
      omp_set_num_threads(1);
    }
#endif
  }
  ~SerialScope() {
#ifdef _OPENMP
    if (on_) omp_set_num_threads(saved_);
#endif
  }
  SerialScope(const SerialScope&) = delete;
  SerialScope& operator=(const SerialScope&) = delete;

 private:
  bool on_;
  int saved_ = 1;
};

// Rounded Fprop inputs of the small-M path, per thread (experts may run concurrently) and
// per operand slot (two projections' inputs can be live at once).
struct OperandBuffers {
  numerics::QTensor q[2];
  AlignedBuffer<uint16_t> bf[2];
};
OperandBuffers& operand_buffers() {
  thread_local OperandBuffers b;
  return b;
}

// x [n, in] rounded to Fprop's A operand of a Linear of precision p, exactly as
// ops::linear_forward rounds it for a call that keeps x: F32 as is, BF16 (RNE), or FP8 on
// the activation grid with online scales.
gemm::Matrix fprop_operand(const ops::LinearPrecision& p, const float* x, int64_t n, int64_t in, int slot) {
  using gemm::DType;
  OperandBuffers& b = operand_buffers();
  const size_t count = static_cast<size_t>(n * in);
  switch (p.fprop_x) {
    case DType::F32: return gemm::view_f32(x, n, in, in);
    case DType::BF16: {
      AlignedBuffer<uint16_t>& bf = b.bf[slot];
      if (bf.size() < count) bf.resize(count);
      ops::bf16_encode_parallel(bf.data(), x, count);
      return gemm::view_bf16(bf.data(), n, in, in);
    }
    default: break;
  }
  numerics::QuantSpec spec;
  spec.format = p.fprop_x == DType::E4M3 ? numerics::Fp8Format::E4M3 : numerics::Fp8Format::E5M2;
  spec.granularity = ops::operand_granularity(p.granularity, false, true);
  spec.scale_type = p.scale_type;
  spec.amax_floor = p.amax_floor;
  numerics::QTensor& q = b.q[slot];
  if (spec.granularity != numerics::Granularity::Tile1x128) {
    numerics::quantize(q, x, n, in, in, spec);
    return gemm::view_fp8(q);
  }
  ops::quantize_tiles(&q, nullptr, x, n, in, spec);
  return gemm::view_fp8(q);
}

// Whether two projections round the same input to the same operand.
bool same_rounding(const ops::LinearPrecision& a, const ops::LinearPrecision& b) {
  if (a.fprop_x != b.fprop_x) return false;
  if (!gemm::is_fp8(a.fprop_x)) return true;
  return a.granularity == b.granularity && a.scale_type == b.scale_type && a.amax_floor == b.amax_floor;
}

}  // namespace

namespace detail {

void attend_scalar(const AttendArgs& x) {
  float* p = x.work;        // [S] scores, then probabilities
  float* qc = p + x.p_len;  // [dc] W_UKᵀ q_nope
  float* oc = qc + x.dc;    // [dc] Σ_s p_s c_kv[s]
  std::fill(qc, qc + x.dc, 0.0f);
  for (int64_t j = 0; j < x.dn; ++j) {
    const float qj = x.qn[j];
    const float* wr = x.wuk + j * x.dc;
    for (int64_t c = 0; c < x.dc; ++c) qc[c] += qj * wr[c];
  }
  float mx = -INFINITY;
  for (int64_t s = 0; s < x.S; ++s) {
    const float* cs = x.ckv + s * x.dc;
    const float* ks = x.kpe + s * x.dr;
    float dot = 0.0f;
    for (int64_t c = 0; c < x.dc; ++c) dot += qc[c] * cs[c];
    float dot_pe = 0.0f;
    for (int64_t r = 0; r < x.dr; ++r) dot_pe += x.qpe[r] * ks[r];
    p[s] = (dot + dot_pe) * x.scale;
    mx = std::max(mx, p[s]);
  }
  float sum = 0.0f;
  for (int64_t s = 0; s < x.S; ++s) sum += p[s] = std::exp(p[s] - mx);
  std::fill(oc, oc + x.dc, 0.0f);
  for (int64_t s = 0; s < x.S; ++s) {
    const float ps = p[s];
    const float* cs = x.ckv + s * x.dc;
    for (int64_t c = 0; c < x.dc; ++c) oc[c] += ps * cs[c];
  }
  const float inv = 1.0f / sum;
  for (int64_t v = 0; v < x.dv; ++v) {
    float acc = 0.0f;
    for (int64_t c = 0; c < x.dc; ++c) acc += x.wuv_t[c * x.dv + v] * oc[c];
    x.out[v] = acc * inv;
  }
}

}  // namespace detail

Engine::Proj Engine::make_proj(int weight_id) {
  using gemm::DType;
  Proj pr;
  pr.site = model::LinearSite(reg_, weight_id);
  pr.in = pr.site.in;
  pr.out = pr.site.out;
  pr.p = pr.site.call_precision(/*x_dropped=*/false);
  const ops::LinearPrecision& p = pr.p;
  const bool plain = p.plain_fp32();  // ops::linear_forward's plain FP32 pair (default options)
  if (!plain) {
    pr.opt.promote_every = p.promote_every;
    pr.opt.accumulation = p.accumulation;
    pr.opt.backend = p.backend;
  }
  // The small-M path reproduces Fprop only where each row's operand depends on that row
  // alone (no per-tensor activation scale, no amax history) and the blocked kernels run.
  const bool row_local = !gemm::is_fp8(p.fprop_x) || p.granularity != ops::LinearGranularity::kTensor;
  const bool eligible = plain || (p.amax_history == 0 && p.accumulation == gemm::Accumulation::kFp32 &&
                                  p.backend != gemm::Backend::kReference && row_local);
  if (!eligible || pr.site.state->telemetry_enabled) return pr;
  // One forward makes the Linear build its BF16/FP8 copy of the current weights.
  AlignedBuffer<float> zero_row(static_cast<size_t>(pr.in)), y(static_cast<size_t>(pr.out));
  zero_row.zero();
  pr.site.forward(reg_, y.data(), zero_row.data(), 1);
  const ops::LinearState& st = *pr.site.state;
  gemm::Matrix wt;
  if (plain || p.weight == DType::F32) {
    wt = gemm::view_f32(reg_.param(weight_id), pr.out, pr.in, pr.in, /*trans=*/true);
  } else if (p.weight == DType::BF16) {
    if (st.w_bf16.empty()) return pr;  // released (a training model packs from scratch)
    wt = gemm::view_bf16(st.w_bf16.data(), pr.out, pr.in, pr.in, /*trans=*/true);
  } else {
    if (st.w_q.codes.empty()) return pr;
    wt = gemm::view_fp8(st.w_q, /*trans=*/true);
  }
  // Widened panels: compact FP8 ones would be widened again on every call.
  gemm::GemmOptions po = pr.opt;
  po.compact_fp8 = false;
  pr.packed = gemm::pack_b(wt, po);
  return pr;
}

Engine::Ffn Engine::make_ffn(const model::FfnIds& ids) {
  Ffn f;
  f.gate = make_proj(ids.gate_proj);
  f.up = make_proj(ids.up_proj);
  f.down = make_proj(ids.down_proj);
  f.width = f.gate.out;
  return f;
}

void Engine::linear(const Proj& pr, float* y, const float* x, int64_t n, bool accumulate) {
  if (pr.packed.empty() || n > gemm::kSmallMaxM) {
    pr.site.forward(reg_, y, x, n, {.accumulate = accumulate});
    return;
  }
  gemm::GemmOptions opt = pr.opt;
  opt.beta = accumulate ? 1.0f : 0.0f;
  gemm::gemm_small_m(y, pr.out, fprop_operand(pr.p, x, n, pr.in, 0), pr.packed, opt);
}

void Engine::linear2(const Proj& a, float* ya, const Proj& b, float* yb, const float* x, int64_t n) {
  if (a.packed.empty() || b.packed.empty() || n > gemm::kSmallMaxM || a.in != b.in || !same_rounding(a.p, b.p)) {
    linear(a, ya, x, n);
    linear(b, yb, x, n);
    return;
  }
  const gemm::Matrix A = fprop_operand(a.p, x, n, a.in, 0);
  gemm::gemm_small_m(ya, a.out, A, a.packed, a.opt);
  gemm::gemm_small_m(yb, b.out, A, b.packed, b.opt);
}

void Engine::swiglu(const Ffn& f, float* y, bool accumulate, const float* x, float* g, float* u, float* a,
                    int64_t n) {
  // As model::Swiglu::forward: gate and up, a = silu(g)·u, down.
  linear2(f.gate, g, f.up, u, x, n);
  ops::swiglu_forward(a, g, u, n * f.width);
  linear(f.down, y, a, n, accumulate);
}

Engine::Engine(const model::Model& m)
    : reg_(m.registry()),
      D_(m.config().hidden_size),
      H_(m.config().num_attention_heads),
      dq_(m.config().q_lora_rank),
      dc_(m.config().kv_lora_rank),
      dn_(m.config().qk_nope_head_dim),
      dr_(m.config().qk_rope_head_dim),
      dv_(m.config().v_head_dim),
      V_(m.config().vocab_size),
      eps_(m.config().rms_norm_eps),
      rope_(ops::make_rope_table<float>(dr_, m.config().max_position_embeddings, m.config().rope_theta)),
      lm_head_() {
  // Delayed scaling: decoding must not move the amax histories the checkpoint carries.
  model::set_linear_amax_recording(reg_, false);
  lm_head_ = make_proj(reg_.ids().lm_head);
  const model::ModelIds& ids = reg_.ids();
  for (size_t l = 0; l < ids.layers.size(); ++l) layers_.push_back(make_layer(ids.layers[l], static_cast<int64_t>(l)));
  for (const model::MtpIds& t : ids.mtp) {
    Mtp mt;
    mt.enorm = t.enorm;
    mt.hnorm = t.hnorm;
    mt.head_norm = t.shared_head_norm;
    mt.eh_proj = make_proj(t.eh_proj);
    mt.block = make_layer(t.block, 0);  // each module's block has a KvCache of its own
    mtp_.push_back(std::move(mt));
  }
  scratch_.resize(kSlotCount);
  const int64_t E = std::max<int64_t>(config().n_routed_experts, 1);
  offsets_.resize(static_cast<size_t>(E + 1));
  load_.resize(static_cast<size_t>(E));
}

Engine::Layer Engine::make_layer(const model::BlockIds& ids, int64_t index) {
  Layer l;
  l.index = index;
  l.in_norm = ids.input_layernorm;
  l.post_norm = ids.post_attention_layernorm;
  const model::MlaIds& a = ids.attn;
  if (dq_ > 0) {
    l.attn.q_a = make_proj(a.q_a_proj);
    l.attn.q_b = make_proj(a.q_b_proj);
    l.attn.q_norm = a.q_a_layernorm;
  } else {
    l.attn.q = make_proj(a.q_proj);
  }
  l.attn.kv_a = make_proj(a.kv_a_proj_with_mqa);
  l.attn.kv_norm = a.kv_a_layernorm;
  l.attn.o = make_proj(a.o_proj);
  absorb(l.attn, a.kv_b_proj);
  if (!ids.is_moe) {
    l.dense = make_ffn(ids.dense);
    return l;
  }
  const model::ModelConfig& c = config();
  l.moe = true;
  l.router = make_proj(ids.moe.gate);
  l.bias = ids.moe.bias;
  l.rc.E = c.n_routed_experts;
  l.rc.K = c.num_experts_per_tok;
  l.rc.n_group = c.n_group;
  l.rc.topk_group = c.topk_group;
  l.rc.norm_topk_prob = c.norm_topk_prob;
  l.rc.routed_scaling_factor = c.routed_scaling_factor;
  ops::validate(l.rc);
  for (const model::FfnIds& e : ids.moe.experts) l.experts.push_back(make_ffn(e));
  if (ids.moe.shared.present()) l.shared = make_ffn(ids.moe.shared);
  l.combine = model::moe_combine(c.precision).format;
  return l;
}

void Engine::absorb(Attention& a, int kv_b_id) {
  const model::LinearSite kv_b(reg_, kv_b_id);
  a.ckv_format = kv_b.precision;
  const int64_t rows = kv_b.out, dc = kv_b.in;  // [H(dn+dv), dc]
  TS_ASSERT(rows == H_ * (dn_ + dv_) && dc == dc_);
  // The weight exactly as kv_b_proj's Fprop GEMM reads it: one forward makes the Linear
  // build (or reuse) its BF16/FP8 copy of the current weights, which is then decoded.
  AlignedBuffer<float> w(static_cast<size_t>(rows * dc)), zero_row(static_cast<size_t>(dc)), y(static_cast<size_t>(rows));
  zero_row.zero();
  kv_b.forward(reg_, y.data(), zero_row.data(), 1);
  switch (kv_b.precision.weight) {
    case gemm::DType::F32:
      std::copy(reg_.param(kv_b_id), reg_.param(kv_b_id) + rows * dc, w.data());
      break;
    case gemm::DType::BF16:
      numerics::bf16_decode_bulk(w.data(), kv_b.state->w_bf16.data(), static_cast<size_t>(rows * dc));
      break;
    default:
      numerics::dequantize(w.data(), dc, kv_b.state->w_q);
      break;
  }
  a.w_uk.resize(static_cast<size_t>(H_ * dn_ * dc));
  a.w_uv_t.resize(static_cast<size_t>(H_ * dc * dv_));
  for (int64_t h = 0; h < H_; ++h) {
    const float* src = w.data() + h * (dn_ + dv_) * dc;
    std::copy(src, src + dn_ * dc, a.w_uk.data() + h * dn_ * dc);
    float* wt = a.w_uv_t.data() + h * dc * dv_;
    for (int64_t v = 0; v < dv_; ++v)
      for (int64_t c = 0; c < dc; ++c) wt[c * dv_ + v] = src[(dn_ + v) * dc + c];
  }
}

KvCache Engine::main_cache() const {
  return KvCache(static_cast<int64_t>(layers_.size()), max_positions(), dc_, dr_);
}

KvCache Engine::mtp_cache(int64_t k) const {
  TS_CHECK(k >= 1 && k <= mtp_depth(), "MTP module " << k << " does not exist (the model has " << mtp_depth() << ")",
           "this is a bug");
  return KvCache(1, max_positions(), dc_, dr_);
}

float* Engine::scratch(int slot, size_t n) {
  AlignedBuffer<float>& b = scratch_[static_cast<size_t>(slot)];
  if (b.size() < n) b.resize(n);
  return b.data();
}

void Engine::attention(const Attention& a, int64_t layer, KvCache& cache, float* out, const float* h, int64_t n,
                       int64_t pos0) {
  const int64_t dqk = dn_ + dr_, dkva = dc_ + dr_;
  const auto sz = [](int64_t v) { return static_cast<size_t>(v); };
  float* q = scratch(kQ, sz(n * H_ * dqk));
  if (dq_ > 0) {
    float* cq_raw = scratch(kCqRaw, sz(n * dq_));
    float* cq = scratch(kCq, sz(n * dq_));
    float* kv_a = scratch(kKvA, sz(n * dkva));
    linear2(a.q_a, cq_raw, a.kv_a, kv_a, h, n);  // both read h: rounded once
    ops::rmsnorm_forward(cq, scratch(kRstd, sz(n)), cq_raw, reg_.param(a.q_norm), n, dq_, eps_);
    linear(a.q_b, q, cq, n);
  } else {
    linear2(a.q, q, a.kv_a, scratch(kKvA, sz(n * dkva)), h, n);
  }
  ops::rope_forward(q + dn_, q + dn_, rope_, n, H_, n, pos0, dqk, dqk);

  const float* kv_a = scratch(kKvA, sz(n * dkva));
  float* ckv_new = cache.ckv(layer, pos0);
  ops::rmsnorm_forward(ckv_new, scratch(kRstd, sz(n)), kv_a, reg_.param(a.kv_norm), n, dc_, eps_, dkva);
  round_as_linear_input(ckv_new, n, dc_, a.ckv_format);
  ops::rope_forward(cache.kpe(layer, pos0), kv_a + dc_, rope_, n, 1, n, pos0, dr_, dkva);

  // One (token, head) pair per task: its scores over the S = pos0 + i + 1 visible positions,
  // then the latent output. Each pair is computed by one thread in a fixed order.
  const float* ckv = cache.ckv(layer, 0);
  const float* kpe = cache.kpe(layer, 0);
  float* o = scratch(kAttnO, sz(n * H_ * dv_));
  const int64_t work_ld = pos0 + n + 2 * dc_;
  float* work = scratch(kAttnWork, sz(n * H_ * work_ld));
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(dqk)));
  const int64_t tasks = n * H_;
  const bool parallel = tasks > 1 && (pos0 + n) * dkva * tasks > 16384;
  const auto attend = simd_path() == SimdPath::Avx512Bf16 ? detail::attend_avx512
                                                                              : detail::attend_scalar;
  auto task = [&](int64_t t) {
    const int64_t i = t / H_, hd = t % H_;
    detail::AttendArgs x;
    x.qn = q + (i * H_ + hd) * dqk;
    x.qpe = x.qn + dn_;
    x.wuk = a.w_uk.data() + hd * dn_ * dc_;
    x.wuv_t = a.w_uv_t.data() + hd * dc_ * dv_;
    x.ckv = ckv;
    x.kpe = kpe;
    x.S = pos0 + i + 1;
    x.dn = dn_, x.dr = dr_, x.dc = dc_, x.dv = dv_;
    x.p_len = pos0 + n;
    x.scale = scale;
    x.work = work + t * work_ld;
    x.out = o + (i * H_ + hd) * dv_;
    attend(x);
  };
  if (parallel) {
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < tasks; ++t) task(t);
  } else {
    for (int64_t t = 0; t < tasks; ++t) task(t);  // no region: its fork/join would cost more
  }
  linear(a.o, out, o, n, /*accumulate=*/true);
}

void Engine::ffn(const Layer& l, float* out, const float* h, int64_t n) {
  const auto sz = [](int64_t v) { return static_cast<size_t>(v); };
  if (l.dense) {
    const int64_t W = l.dense->width;
    swiglu(*l.dense, out, /*accumulate=*/true, h, scratch(kG, sz(n * W)), scratch(kU, sz(n * W)),
           scratch(kA, sz(n * W)), n);
    return;
  }
  const int64_t E = l.rc.E, K = l.rc.K, NK = n * K;
  const int64_t Fe = l.experts.front().width;
  float* logits = scratch(kRouterLogits, sz(n * E));
  float* scores = scratch(kScores, sz(n * E));
  float* gates = scratch(kGates, sz(NK));
  indices_.resize(sz(NK));
  row_token_.resize(sz(NK));
  row_of_.resize(sz(NK));
  linear(l.router, logits, h, n);
  ops::router_forward(indices_.data(), gates, scores, load_.data(), logits, reg_.param(l.bias), n, l.rc);
  if (l.shared) {
    const int64_t W = l.shared->width;
    swiglu(*l.shared, out, /*accumulate=*/true, h, scratch(kG, sz(n * W)), scratch(kU, sz(n * W)),
           scratch(kA, sz(n * W)), n);
  }
  ops::moe_plan(offsets_.data(), row_token_.data(), row_of_.data(), indices_.data(), n, K, E);
  float* xe = scratch(kXe, sz(NK * D_));
  float* ye = scratch(kYe, sz(NK * D_));
  float* ge = scratch(kGe, sz(NK * Fe));
  float* ue = scratch(kUe, sz(NK * Fe));
  float* ae = scratch(kAe, sz(NK * Fe));
  ops::moe_gather_forward(xe, h, row_token_.data(), n, K, D_);
  // As in model/moe.cc: experts concurrently, one per thread (their GEMMs single-threaded);
  // a GEMM's bits do not depend on its thread count or its row count.
  const int64_t* off = offsets_.data();
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t e = 0; e < E; ++e) {
    const int64_t r0 = off[e], rows = off[e + 1] - r0;
    if (rows == 0) continue;
    swiglu(l.experts[sz(e)], ye + r0 * D_, /*accumulate=*/false, xe + r0 * D_, ge + r0 * Fe, ue + r0 * Fe,
           ae + r0 * Fe, rows);
  }
  if (l.combine == model::StoreFormat::kBf16)  // the trainer's BF16 combine (model/moe.cc)
    for (int64_t i = 0; i < NK * D_; ++i) ye[i] = numerics::bf16_round(ye[i]);
  ops::moe_combine_forward(out, ye, gates, row_of_.data(), n, K, D_);
}

void Engine::block(const Layer& l, KvCache& cache, float* x, int64_t n, int64_t pos0) {
  const size_t nd = static_cast<size_t>(n * D_);
  float* h = scratch(kNormOut, nd);
  float* rstd = scratch(kRstd, static_cast<size_t>(n));
  ops::rmsnorm_forward(h, rstd, x, reg_.param(l.in_norm), n, D_, eps_);
  attention(l.attn, l.index, cache, x, h, n, pos0);  // x = mid = x + MLA(norm(x))
  ops::rmsnorm_forward(h, scratch(kRstd, static_cast<size_t>(n)), x, reg_.param(l.post_norm), n, D_, eps_);
  ffn(l, x, h, n);  // x = mid + FFN(norm(mid))
}

void Engine::forward_main(KvCache& cache, const ops::Index* tokens, int64_t n, float* hidden) {
  const int64_t pos0 = cache.length();
  TS_CHECK(n > 0 && pos0 + n <= cache.capacity(), "cannot decode " << n << " tokens at position " << pos0
           << ": max_position_embeddings is " << cache.capacity(), "use a shorter prompt or fewer new tokens");
  for (int64_t i = 0; i < n; ++i)
    TS_CHECK(tokens[i] >= 0 && tokens[i] < V_, "token id " << tokens[i] << " is outside the vocabulary [0, " << V_
             << ")", "use the checkpoint's tokenizer");
  const SerialScope serial(n <= gemm::kSmallMaxM);
  ops::embedding_forward(hidden, tokens, reg_.param(reg_.ids().embed_tokens), n, D_, V_);
  for (const Layer& l : layers_) block(l, cache, hidden, n, pos0);
  cache.advance(n);
}

void Engine::forward_mtp(int64_t k, KvCache& cache, const float* h_prev, const ops::Index* tokens, int64_t n,
                         float* hidden) {
  TS_CHECK(k >= 1 && k <= mtp_depth(), "MTP module " << k << " does not exist (the model has " << mtp_depth() << ")",
           "this is a bug");
  const Mtp& m = mtp_[static_cast<size_t>(k - 1)];
  const int64_t pos0 = cache.length();
  TS_CHECK(n > 0 && pos0 + n <= cache.capacity(), "cannot run MTP module " << k << " on " << n << " tokens at position "
           << pos0 << ": max_position_embeddings is " << cache.capacity(), "use fewer tokens");
  const SerialScope serial(n <= gemm::kSmallMaxM);
  const size_t nd = static_cast<size_t>(n * D_);
  float* emb = scratch(kEmb, nd);
  float* normed = scratch(kNormOut, nd);
  float* concat = scratch(kConcat, 2 * nd);
  float* rstd = scratch(kRstd, static_cast<size_t>(n));
  // h'^k = eh_proj([enorm(Emb(t_{j+k})) ; hnorm(h^{k-1}_j)])   (model/mtp.cc, embedding first)
  ops::embedding_forward(emb, tokens, reg_.param(reg_.ids().embed_tokens), n, D_, V_);
  ops::rmsnorm_forward(normed, rstd, emb, reg_.param(m.enorm), n, D_, eps_);
  for (int64_t i = 0; i < n; ++i) std::copy(normed + i * D_, normed + (i + 1) * D_, concat + i * 2 * D_);
  ops::rmsnorm_forward(normed, rstd, h_prev, reg_.param(m.hnorm), n, D_, eps_);
  for (int64_t i = 0; i < n; ++i) std::copy(normed + i * D_, normed + (i + 1) * D_, concat + i * 2 * D_ + D_);
  linear(m.eh_proj, hidden, concat, n);
  block(m.block, cache, hidden, n, pos0);
  cache.advance(n);
}

void Engine::head(int norm_id, float* logits, const float* hidden, int64_t n) {
  // Serial too: a 1-2 row output head is ~2 us of arithmetic; waking the second thread
  // cost more than that on a loaded machine.
  const SerialScope serial(n <= gemm::kSmallMaxM);
  float* normed = scratch(kHeadNormed, static_cast<size_t>(n * D_));
  ops::rmsnorm_forward(normed, scratch(kRstd, static_cast<size_t>(n)), hidden, reg_.param(norm_id), n, D_, eps_);
  linear(lm_head_, logits, normed, n);
}

void Engine::logits_main(float* logits, const float* hidden, int64_t n) { head(reg_.ids().norm, logits, hidden, n); }

void Engine::logits_mtp(int64_t k, float* logits, const float* hidden, int64_t n) {
  TS_CHECK(k >= 1 && k <= mtp_depth(), "MTP module " << k << " does not exist", "this is a bug");
  head(mtp_[static_cast<size_t>(k - 1)].head_norm, logits, hidden, n);
}

}  // namespace tinyseek::infer
