// Autoregressive generation over the decode engine: plain decoding and speculative decoding
// with the MTP modules as drafters (docs/architecture.md "Inference").
//
// State between steps: the committed tokens t_0..t_n, the main KV cache holding positions
// 0..n-1 and the main hidden states h^0_0..h^0_{n-1}; t_n is pending. Prefill runs the
// prompt's first P-1 tokens in one batched forward (and the MTP modules over the prompt
// positions whose inputs are already known). One step:
//   plain        main(t_n) at position n → logits → t_{n+1}
//   speculative  draft: MTP module k (k = 1..D) at position n-1 combines h^{k-1}_{n-1} with
//                Emb(t_{n-1+k}) (t_n, then the drafts d_1..d_{k-1}) → d_k ~ q_k;
//                verify: main([t_n, d_1..d_D]) at positions n..n+D in one batched forward →
//                p_0..p_D; accept d_1..d_a, then a correction (from p_a) or bonus (p_D) token:
//                  greedy   the longest prefix with d_{i+1} = argmax p_i; next = argmax p_a
//                  sampled  accept d_{i+1} with probability min(1, p_i(d)/q_{i+1}(d)); at the
//                           first rejection sample next from norm(max(0, p_a − q_{a+1})),
//                           else from p_D — the output distribution is exactly the main
//                           model's (Leviathan et al. 2023, Chen et al. 2023)
//                roll back: the main cache to n+a+1 positions; MTP module k's cache to its
//                positions whose inputs were all committed tokens.
// Greedy speculative decoding emits exactly the tokens of greedy plain decoding: a row's
// logits do not depend on what else is in its batch (engine.h).
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "tinyseek/infer/engine.h"
#include "tinyseek/infer/sampler.h"

namespace tinyseek::infer {

struct GenerateOptions {
  int64_t max_new_tokens = 64;
  SamplingOptions sampling;
  uint64_t seed = 0;            // Philox seed of every random choice
  bool speculative = false;
  int64_t draft = 0;            // tokens drafted per step, 1..mtp_depth (0: every MTP module)
  int32_t stop_token = -1;      // generation ends at this token (not emitted); -1: none
  std::function<void(int32_t)> on_token;  // called for every emitted token, as it is committed
};

struct GenerateResult {
  std::vector<int32_t> tokens;     // the generated tokens (prompt excluded)
  double prefill_seconds = 0;      // prompt forward (and MTP catch-up over the prompt)
  double decode_seconds = 0;       // everything after prefill
  int64_t steps = 0;               // main-model forwards after prefill
  // Speculative: per draft position i (0-based), how many drafts were checked (all earlier
  // ones accepted) and how many of those were accepted.
  std::vector<int64_t> drafted, accepted;
  // accepted[i] / drafted[i]: the acceptance rate of draft position i given the earlier
  // drafts were accepted (position 0: of the first MTP token). Empty when not speculative.
  std::vector<double> acceptance() const;
  double tokens_per_s() const;     // tokens.size() / decode_seconds
};

// Generates after `prompt` (token ids, at least one) until max_new_tokens, the stop token, or
// the end of max_position_embeddings. Throws for a prompt longer than max_position_embeddings,
// and for speculative decoding on a model without MTP modules or with draft > mtp_depth().
GenerateResult generate(Engine& engine, const std::vector<int32_t>& prompt, const GenerateOptions& opt);

}  // namespace tinyseek::infer
