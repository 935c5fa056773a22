#include "tinyseek/train/adamw.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "tinyseek/base/check.h"
#include "tinyseek/base/parallel.h"
#include "tinyseek/numerics/bf16.h"
#include "tinyseek/numerics/simd.h"
#include "tinyseek/train/adamw_kernel.h"

namespace tinyseek::train {
namespace {

using Coeffs = detail::AdamWCoeffs;

// The portable path (any CPU; the AVX-512 kernels in adamw_avx512.cc give the same bits
// about 2x faster, the portable loops being limited by the unvectorised sqrt/div). Elements
// per inner block: the moments of a block are decoded to FP32 on the stack (8 KiB for
// two blocks), so the BF16 path makes one pass over memory like the FP32 one.
constexpr size_t kBlock = 1024;

// m, v [n] FP32 (in place); g [n] the raw gradient.
void update_moments(float* m, float* v, const float* g, size_t n, const Coeffs& c) {
  for (size_t i = 0; i < n; ++i) {
    const float gi = g[i] * c.grad_scale;
    m[i] = m[i] * c.beta1 + c.one_minus_beta1 * gi;
    v[i] = v[i] * c.beta2 + (c.one_minus_beta2 * gi) * gi;
  }
}

// p [n] (in place) from the (already stored) moments m, v [n].
void update_params(float* p, const float* m, const float* v, size_t n, bool decay, const Coeffs& c) {
  if (decay) {
    for (size_t i = 0; i < n; ++i) p[i] = p[i] * c.decay_mul;
  }
  for (size_t i = 0; i < n; ++i) {
    const float denom = std::sqrt(v[i]) / c.bc2_sqrt + c.eps;
    p[i] = p[i] + (c.neg_step_size * m[i]) / denom;
  }
}

void step_chunk_fp32(float* p, const float* g, float* m, float* v, size_t n, bool decay, const Coeffs& c) {
  for (size_t b = 0; b < n; b += kBlock) {
    const size_t len = std::min(kBlock, n - b);
    update_moments(m + b, v + b, g + b, len, c);
    update_params(p + b, m + b, v + b, len, decay, c);
  }
}

void step_chunk_bf16(float* p, const float* g, uint16_t* m16, uint16_t* v16, size_t n, bool decay,
                     const Coeffs& c) {
  alignas(64) float m[kBlock];
  alignas(64) float v[kBlock];
  for (size_t b = 0; b < n; b += kBlock) {
    const size_t len = std::min(kBlock, n - b);
    numerics::bf16_decode_bulk(m, m16 + b, len);
    numerics::bf16_decode_bulk(v, v16 + b, len);
    update_moments(m, v, g + b, len, c);
    numerics::bf16_encode_bulk(m16 + b, m, len);
    numerics::bf16_encode_bulk(v16 + b, v, len);
    // The parameter update sees the stored (rounded) moments.
    numerics::bf16_decode_bulk(m, m16 + b, len);
    numerics::bf16_decode_bulk(v, v16 + b, len);
    update_params(p + b, m, v, len, decay, c);
  }
}

void validate(const AdamWConfig& c) {
  TS_CHECK(c.beta1 >= 0 && c.beta1 < 1, "AdamW beta1 must be in [0, 1), got " << c.beta1, "the paper uses 0.9");
  TS_CHECK(c.beta2 >= 0 && c.beta2 < 1, "AdamW beta2 must be in [0, 1), got " << c.beta2, "the paper uses 0.95");
  TS_CHECK(std::isfinite(c.eps) && c.eps > 0, "AdamW eps must be a positive number, got " << c.eps,
           "use e.g. 1e-8");
  TS_CHECK(std::isfinite(c.weight_decay) && c.weight_decay >= 0,
           "AdamW weight_decay must be >= 0, got " << c.weight_decay, "the paper uses 0.1; 0 disables decay");
}

}  // namespace

const char* to_string(MomentPrecision p) { return p == MomentPrecision::kBf16 ? "bf16" : "fp32"; }

bool decays(model::Role r) {
  switch (r) {
    case model::Role::kLinear:
    case model::Role::kEmbedding:
    case model::Role::kHead:
    case model::Role::kRouter:
    case model::Role::kMtpProj:
      return true;
    case model::Role::kNorm:
    case model::Role::kRouterBias:
      return false;
  }
  return false;
}

std::vector<OptimizerChunk> optimizer_chunks(const model::Registry& reg) {
  std::vector<OptimizerChunk> chunks;
  for (const model::TensorInfo& t : reg.tensors()) {
    if (!model::trained_by_optimizer(t.role)) continue;
    for (size_t b = 0; b < t.numel; b += kOptimizerChunk)
      chunks.push_back({t.offset + b, std::min(kOptimizerChunk, t.numel - b), decays(t.role)});
  }
  return chunks;
}

AdamW::AdamW(const model::Registry& reg, const AdamWConfig& cfg)
    : AdamW(reg, cfg, dist::Range{0, reg.params().size()}) {}

AdamW::AdamW(const model::Registry& reg, const AdamWConfig& cfg, dist::Range shard)
    : cfg_(cfg), buffer_size_(reg.params().size()), shard_(shard) {
  validate(cfg_);
  TS_ASSERT(shard_.begin <= shard_.end && shard_.end <= buffer_size_);
  for (const OptimizerChunk& k : optimizer_chunks(reg)) {
    const bool inside = k.offset >= shard_.begin && k.offset + k.size <= shard_.end;
    // A chunk straddling a shard boundary would be updated by nobody or twice.
    TS_ASSERT(inside || k.offset + k.size <= shard_.begin || k.offset >= shard_.end);
    if (inside) chunks_.push_back(k);
  }
  for (const model::TensorInfo& t : reg.tensors()) tensor_ranges_.emplace_back(t.offset, t.numel);
  if (cfg_.moments == MomentPrecision::kBf16) {
    m16_.resize(shard_.size());
    v16_.resize(shard_.size());
  } else {
    m32_.resize(shard_.size());
    v32_.resize(shard_.size());
  }
  reset();
}

std::span<std::byte> AdamW::shard_moment_bytes(int which) {
  const std::span<const std::byte> s = std::as_const(*this).shard_moment_bytes(which);
  return {const_cast<std::byte*>(s.data()), s.size()};
}

std::span<const std::byte> AdamW::shard_moment_bytes(int which) const {
  const std::byte* base = cfg_.moments == MomentPrecision::kBf16
                              ? reinterpret_cast<const std::byte*>(which == 0 ? m16_.data() : v16_.data())
                              : reinterpret_cast<const std::byte*>(which == 0 ? m32_.data() : v32_.data());
  return {base, shard_.size() * moment_bytes()};
}

void AdamW::reset() {
  m32_.zero();
  v32_.zero();
  m16_.zero();
  v16_.zero();
  step_count_ = 0;
}

void AdamW::set_step_count(int64_t t) {
  TS_CHECK(t >= 0, "AdamW step count must be >= 0, got " << t, "the checkpoint's optimizer state is corrupt");
  step_count_ = t;
}

void AdamW::check_layout(const model::Registry& reg) const {
  TS_CHECK(reg.params().size() == buffer_size_ && reg.size() == tensor_ranges_.size(),
           "AdamW was built for a registry of " << tensor_ranges_.size() << " tensors / " << buffer_size_
           << " floats, got " << reg.size() << " / " << reg.params().size(),
           "create the optimizer from the model it updates");
}

std::span<std::byte> AdamW::moment_span(int which, int id) const {
  TS_CHECK(id >= 0 && static_cast<size_t>(id) < tensor_ranges_.size(),
           "AdamW moment of tensor id " << id << " requested; the registry has " << tensor_ranges_.size(),
           "use an id from the model's registry");
  const auto [offset_in_buffer, numel] = tensor_ranges_[static_cast<size_t>(id)];
  TS_CHECK(offset_in_buffer >= shard_.begin && offset_in_buffer + numel <= shard_.end,
           "AdamW moment of tensor id " << id << " requested from an optimizer sharded to elements ["
           << shard_.begin << ", " << shard_.end << ")", "gather the shards into an unsharded AdamW first");
  const size_t offset = offset_in_buffer - shard_.begin;
  // The buffers are owned by this object; the const overloads hand out const spans.
  std::byte* base = nullptr;
  if (cfg_.moments == MomentPrecision::kBf16) {
    const uint16_t* b = which == 0 ? m16_.data() : v16_.data();
    base = reinterpret_cast<std::byte*>(const_cast<uint16_t*>(b + offset));
  } else {
    const float* b = which == 0 ? m32_.data() : v32_.data();
    base = reinterpret_cast<std::byte*>(const_cast<float*>(b + offset));
  }
  return {base, numel * moment_bytes()};
}

void AdamW::step(model::Registry& reg, double lr, float grad_scale) {
  check_layout(reg);
  TS_CHECK(std::isfinite(lr) && lr >= 0, "AdamW learning rate must be a finite number >= 0, got " << lr,
           "check the schedule (training.lr, training.min_lr)");
  TS_CHECK(std::isfinite(grad_scale), "AdamW gradient scale must be finite, got " << grad_scale,
           "skip the step when the gradient norm is not finite (clip.h)");
  ++step_count_;
  const double t = static_cast<double>(step_count_);
  Coeffs c{};
  c.beta1 = static_cast<float>(cfg_.beta1);
  c.one_minus_beta1 = static_cast<float>(1.0 - cfg_.beta1);
  c.beta2 = static_cast<float>(cfg_.beta2);
  c.one_minus_beta2 = static_cast<float>(1.0 - cfg_.beta2);
  c.eps = static_cast<float>(cfg_.eps);
  c.decay_mul = static_cast<float>(1.0 - lr * cfg_.weight_decay);
  c.neg_step_size = static_cast<float>(-(lr / (1.0 - std::pow(cfg_.beta1, t))));
  c.bc2_sqrt = static_cast<float>(std::sqrt(1.0 - std::pow(cfg_.beta2, t)));
  c.grad_scale = grad_scale;

  float* params = reg.params().data();
  const float* grads = reg.grads().data();
  const bool bf16 = cfg_.moments == MomentPrecision::kBf16;
  const bool avx512 = simd_path() == SimdPath::Avx512Bf16;
  parallel_for(static_cast<int64_t>(chunks_.size()), [&](int64_t i) {
    const OptimizerChunk& k = chunks_[static_cast<size_t>(i)];
    float* p = params + k.offset;
    const float* g = grads + k.offset;
    const size_t local = k.offset - shard_.begin;  // into the shard's moments
    if (bf16) {
      uint16_t* m = m16_.data() + local;
      uint16_t* v = v16_.data() + local;
      avx512 ? detail::adamw_chunk_bf16_avx512(p, g, m, v, k.size, k.decay, c)
             : step_chunk_bf16(p, g, m, v, k.size, k.decay, c);
    } else {
      float* m = m32_.data() + local;
      float* v = v32_.data() + local;
      avx512 ? detail::adamw_chunk_fp32_avx512(p, g, m, v, k.size, k.decay, c)
             : step_chunk_fp32(p, g, m, v, k.size, k.decay, c);
    }
  });
  reg.params_changed();  // the Linears rebuild their low-precision weight copies
}

}  // namespace tinyseek::train
