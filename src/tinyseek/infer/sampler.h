// Turning logits into the next token: greedy (argmax), or sampling from the temperature-
// scaled softmax restricted by top-k and then top-p (nucleus), with caller-supplied uniform
// numbers (from Philox, so a seed fixes every choice). Speculative decoding needs the
// distributions themselves (rejection sampling compares the draft's q with the target's p),
// so the filtered distribution is an explicit step.
#pragma once
#include <cstdint>
#include <vector>

namespace tinyseek::infer {

struct SamplingOptions {
  double temperature = 0;  // <= 0: greedy
  int64_t top_k = 0;       // keep the k most likely tokens (0 = all)
  double top_p = 1.0;      // then the smallest most-likely set with mass >= top_p (1 = all)
  bool greedy() const { return temperature <= 0; }
};
// Throws naming the option if it is out of range (top_k < 0, top_p outside (0, 1]).
void validate(const SamplingOptions& o);

// The index of the largest logit; the lowest index among ties (NaNs never win).
int32_t argmax(const float* logits, int64_t V);

// probs [V] = softmax(logits / T) over the top_k largest, renormalised, then cut to the
// smallest prefix (by descending probability, ties by lower index) whose mass reaches top_p,
// renormalised again. Tokens outside get exactly 0. Requires !o.greedy().
void distribution(std::vector<double>& probs, const float* logits, int64_t V, const SamplingOptions& o);

// Inverse-CDF draw from probs [V] (need not sum to 1; must have positive mass) with u in
// [0, 1). Never returns a token of probability 0.
int32_t sample(const std::vector<double>& probs, double u);

// The rejection-sampling residual norm(max(0, p − q)) into r (unnormalised is fine for
// sample()). Returns its mass; 0 when p <= q everywhere (then the caller samples from p).
double residual(std::vector<double>& r, const std::vector<double>& p, const std::vector<double>& q);

}  // namespace tinyseek::infer
