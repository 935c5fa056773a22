#include "tinyseek/model/activations.h"

#include "tinyseek/base/check.h"
#include "tinyseek/numerics/bf16.h"

namespace tinyseek::model {

int64_t ActivationArena::bytes() const {
  int64_t n = floats() * static_cast<int64_t>(sizeof(float));
  for (const auto& h : halves_) n += static_cast<int64_t>(h.size() * sizeof(uint16_t));
  for (const auto& q : quantized_) n += static_cast<int64_t>(q.codes.size() + q.scales.size() * sizeof(float));
  return n;
}

void LowAct::store(const float* x, int64_t rows, int64_t cols, const ActStore& c, bool keep,
                   ActivationArena& arena, ActKey key) {
  TS_ASSERT(c.format == StoreFormat::kBf16 || c.format == StoreFormat::kFp8);
  format_ = c.format;
  rows_ = rows;
  cols_ = cols;
  // Release the own storage of the other format (and all of it when transient).
  if (!keep || format_ != StoreFormat::kBf16) own_halves_.resize(0);
  if (!keep || format_ != StoreFormat::kFp8) own_q_ = {};
  if (format_ == StoreFormat::kBf16) {
    AlignedBuffer<uint16_t>& h = keep ? own_halves_ : arena.halves(key);
    if (h.size() < static_cast<size_t>(rows * cols)) h.resize(static_cast<size_t>(rows * cols));
    numerics::bf16_encode_bulk(h.data(), x, static_cast<size_t>(rows * cols));
    halves_ = &h;
    q_ = nullptr;
  } else {
    numerics::QTensor& q = keep ? own_q_ : arena.quantized(key);
    numerics::quantize(q, x, rows, cols, cols, c.spec);
    q_ = &q;
    halves_ = nullptr;
  }
}

void LowAct::load(float* out) const {
  if (q_ != nullptr) {
    TS_ASSERT(q_->rows == rows_ && q_->cols == cols_);
    numerics::dequantize(out, cols_, *q_);
  } else {
    TS_ASSERT(halves_ != nullptr);
    numerics::bf16_decode_bulk(out, halves_->data(), static_cast<size_t>(rows_ * cols_));
  }
}

int64_t LowAct::saved_bytes() const {
  return static_cast<int64_t>(own_halves_.size() * sizeof(uint16_t) + own_q_.codes.size() +
                              own_q_.scales.size() * sizeof(float));
}

}  // namespace tinyseek::model
