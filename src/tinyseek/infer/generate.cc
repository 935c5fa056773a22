#include "tinyseek/infer/generate.h"

#include <algorithm>

#include "tinyseek/base/check.h"
#include "tinyseek/base/rng.h"
#include "tinyseek/base/timer.h"

namespace tinyseek::infer {
namespace {

// Philox streams of the random choices (one per kind, so each is a fixed function of the seed
// and the step, whatever happened before).
constexpr uint64_t kStreamSample = 0x5A4D;   // the main model's token of a step
constexpr uint64_t kStreamDraft = 0xD4AF;    // MTP drafts
constexpr uint64_t kStreamAccept = 0xACCE;   // accept/reject tests
constexpr uint64_t kMaxDraft = 64;           // counter stride per step

// Uniform in [0, 1) with 53 random bits.
double uniform(const Philox& rng, uint64_t counter) { return 1.0 - rng.uniform_open(counter); }

class Decoder {
 public:
  Decoder(Engine& e, const GenerateOptions& opt, int64_t drafts)
      : e_(e), opt_(opt), D_(drafts), Dm_(e.config().hidden_size), V_(e.config().vocab_size),
        max_pos_(e.max_positions()), main_(e.main_cache()) {
    for (int64_t k = 1; k <= D_; ++k) mtp_.push_back(e.mtp_cache(k));
    // h^k by position for k = 0..D-1 (module D's output feeds nobody).
    hist_.resize(static_cast<size_t>(std::max<int64_t>(D_, 1)));
    for (auto& h : hist_) h.resize(static_cast<size_t>(max_pos_ * Dm_));
    logits_.resize(static_cast<size_t>((D_ + 1) * V_));
    mtp_out_.resize(static_cast<size_t>(max_pos_ * Dm_));
    res_.drafted.assign(static_cast<size_t>(D_), 0);
    res_.accepted.assign(static_cast<size_t>(D_), 0);
  }

  GenerateResult run(const std::vector<int32_t>& prompt) {
    seq_ = prompt;
    Timer timer;
    prefill();
    res_.prefill_seconds = timer.seconds();
    Timer decode;
    while (!done_) step();
    res_.decode_seconds = decode.seconds();
    return std::move(res_);
  }

 private:
  // Committed token at index x, or draft d_{x−n} beyond the pending token t_n.
  int32_t token_at(int64_t x, int64_t n) const {
    return x <= n ? seq_[size_t(x)] : drafts_[size_t(x - n - 1)];
  }
  float* hist(int64_t k, int64_t pos) { return hist_[size_t(k)].data() + pos * Dm_; }

  void prefill() {
    const int64_t n = static_cast<int64_t>(seq_.size()) - 1;  // t_n stays pending
    if (n > 0) e_.forward_main(main_, seq_.data(), n, hist(0, 0));
    // MTP module k's positions j with all inputs committed (j + k <= n) except the last one,
    // which the first draft computes together with its own position.
    for (int64_t k = 1; k <= D_; ++k) catch_up(k, n - k, n);
  }

  // Runs MTP module k over its positions cache.length() .. end-1 (tokens t_{j+k}); the
  // outputs go to hist(k) (k < D) or mtp_out_. Returns the last row's h^k, or null if none.
  const float* catch_up(int64_t k, int64_t end, int64_t n) {
    KvCache& c = mtp_[size_t(k - 1)];
    const int64_t start = c.length(), rows = end - start;
    if (rows <= 0) return nullptr;
    tokens_.resize(size_t(rows));
    for (int64_t j = start; j < end; ++j) tokens_[size_t(j - start)] = token_at(j + k, n);
    float* out = k < D_ ? hist(k, start) : mtp_out_.data();
    e_.forward_mtp(k, c, hist(k - 1, start), tokens_.data(), rows, out);
    return out + (rows - 1) * Dm_;
  }

  void step() {
    const int64_t n = static_cast<int64_t>(seq_.size()) - 1;
    if (n >= max_pos_) {  // no position left for the pending token
      done_ = true;
      return;
    }
    // Drafts need h^0_{n-1}; verification needs positions up to n + D.
    const int64_t D = n == 0 ? 0 : std::min(D_, max_pos_ - 1 - n);
    const Philox draw(opt_.seed, kStreamDraft), test(opt_.seed, kStreamAccept), pick(opt_.seed, kStreamSample);
    const uint64_t step = static_cast<uint64_t>(res_.steps);
    const bool greedy = opt_.sampling.greedy();
    drafts_.clear();
    q_.resize(size_t(D));
    for (int64_t k = 1; k <= D; ++k) {
      const float* h = catch_up(k, n, n);
      e_.logits_mtp(k, logits_.data(), h, 1);
      if (greedy) {
        drafts_.push_back(argmax(logits_.data(), V_));
      } else {
        distribution(q_[size_t(k - 1)], logits_.data(), V_, opt_.sampling);
        drafts_.push_back(sample(q_[size_t(k - 1)], uniform(draw, step * kMaxDraft + uint64_t(k))));
      }
    }
    // Verify [t_n, d_1..d_D] at positions n..n+D in one forward.
    tokens_.assign(1, seq_[size_t(n)]);
    tokens_.insert(tokens_.end(), drafts_.begin(), drafts_.end());
    e_.forward_main(main_, tokens_.data(), D + 1, hist(0, n));
    e_.logits_main(logits_.data(), hist(0, n), D + 1);
    ++res_.steps;

    int64_t a = 0;
    int32_t next = -1;
    for (; a < D; ++a) {
      const float* lg = logits_.data() + a * V_;
      const int32_t d = drafts_[size_t(a)];
      ++res_.drafted[size_t(a)];
      bool ok;
      if (greedy) {
        ok = argmax(lg, V_) == d;
      } else {
        distribution(p_, lg, V_, opt_.sampling);
        const std::vector<double>& q = q_[size_t(a)];
        // Accept with probability min(1, p(d)/q(d)); q(d) > 0 as d was drawn from q.
        ok = uniform(test, step * kMaxDraft + uint64_t(a)) * q[size_t(d)] < p_[size_t(d)];
        if (!ok) {
          const double mass = residual(r_, p_, q);
          next = sample(mass > 0 ? r_ : p_, uniform(pick, step));
        }
      }
      if (!ok) break;
      ++res_.accepted[size_t(a)];
    }
    if (next < 0) {  // greedy, or every draft accepted: the main model's own token at n + a
      const float* lg = logits_.data() + a * V_;
      if (greedy) {
        next = argmax(lg, V_);
      } else {
        distribution(p_, lg, V_, opt_.sampling);
        next = sample(p_, uniform(pick, step));
      }
    }
    // Roll back what the rejected drafts left behind.
    main_.truncate(n + a + 1);
    for (int64_t k = 1; k <= D_; ++k) {
      KvCache& c = mtp_[size_t(k - 1)];
      // Position j of module k read tokens up to t_{j+k}; valid if all were committed.
      c.truncate(std::min(c.length(), std::max<int64_t>(0, n + a - k + 1)));
    }
    for (int64_t i = 0; i < a; ++i) emit(drafts_[size_t(i)]);
    emit(next);
  }

  void emit(int32_t t) {
    if (done_) return;
    if (t == opt_.stop_token) {
      done_ = true;
      return;
    }
    seq_.push_back(t);
    res_.tokens.push_back(t);
    if (opt_.on_token) opt_.on_token(t);
    if (static_cast<int64_t>(res_.tokens.size()) >= opt_.max_new_tokens) done_ = true;
  }

  Engine& e_;
  const GenerateOptions& opt_;
  const int64_t D_, Dm_, V_, max_pos_;
  KvCache main_;
  std::vector<KvCache> mtp_;
  std::vector<AlignedBuffer<float>> hist_;
  AlignedBuffer<float> logits_, mtp_out_;
  std::vector<int32_t> seq_, drafts_, tokens_;
  std::vector<std::vector<double>> q_;
  std::vector<double> p_, r_;
  GenerateResult res_;
  bool done_ = false;
};

}  // namespace

std::vector<double> GenerateResult::acceptance() const {
  std::vector<double> a(drafted.size(), 0.0);
  for (size_t i = 0; i < a.size(); ++i)
    a[i] = drafted[i] > 0 ? static_cast<double>(accepted[i]) / static_cast<double>(drafted[i]) : 0.0;
  return a;
}

double GenerateResult::tokens_per_s() const {
  return decode_seconds > 0 ? static_cast<double>(tokens.size()) / decode_seconds : 0.0;
}

GenerateResult generate(Engine& engine, const std::vector<int32_t>& prompt, const GenerateOptions& opt) {
  const int64_t max_pos = engine.max_positions(), P = static_cast<int64_t>(prompt.size());
  TS_CHECK(P >= 1, "the prompt is empty", "pass a non-empty --prompt (the tokenizer has no BOS token to start from)");
  TS_CHECK(P <= max_pos, "the prompt has " << P << " tokens but the model's max_position_embeddings is " << max_pos,
           "shorten the prompt to at most " << max_pos << " tokens");
  TS_CHECK(opt.max_new_tokens >= 0, "--max-new-tokens must be >= 0, got " << opt.max_new_tokens, "use e.g. 64");
  validate(opt.sampling);
  int64_t drafts = 0;
  if (opt.speculative) {
    TS_CHECK(engine.mtp_depth() > 0, "speculative decoding needs MTP modules, but this checkpoint has none "
             "(num_nextn_predict_layers = 0)", "drop --speculative, or pass --allow-no-mtp to fall back to plain "
             "decoding, or train with num_nextn_predict_layers >= 1");
    drafts = opt.draft > 0 ? opt.draft : engine.mtp_depth();
    TS_CHECK(drafts <= engine.mtp_depth(), "--draft " << opt.draft << " exceeds the checkpoint's "
             << engine.mtp_depth() << " MTP module(s) (module k drafts token k)",
             "use --draft 1.." << engine.mtp_depth());
  }
  GenerateResult empty;
  if (opt.max_new_tokens == 0) return empty;
  Decoder d(engine, opt, drafts);
  return d.run(prompt);
}

}  // namespace tinyseek::infer
