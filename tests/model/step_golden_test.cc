// Golden training numerics per recipe: the losses and the weights after 3 AdamW steps of a
// tiny model (MoE with real top-k routing, MTP, a vocabulary past two 128-column tiles),
// hashed bit for bit and compared against hashes recorded with the code before the
// memory/speed work of 2026-11-23 (docs/numerics.md "Memory and speed of the training step").
// Every change to buffers, chunking, fusion or caching of the step must keep these bits;
// a change that is meant to alter numerics must say so and re-record them.
//
// The hashes hold for the AVX-512-BF16 path (this project's reference machine); other SIMD
// paths (portable exp/quantize kernels) give other, equally deterministic bits, so there the
// test only checks that two identical runs agree.
#include <gtest/gtest.h>

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "tiny_model.h"
#include "tinyseek/numerics/simd.h"
#include "tinyseek/train/adamw.h"

namespace tinyseek::model {
namespace {

using namespace tiny;

constexpr int64_t kB = 3, kT = 64;  // N = 192 rows: one full and one partial 128-row tile
constexpr int64_t kVocab = 320;     // 2.5 column tiles of 128

uint64_t fnv1a(uint64_t h, const void* data, size_t bytes) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < bytes; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

struct Golden {
  uint64_t losses = 0, weights = 0;
  double last_loss = 0;
};

// 3 steps: zero_grad, forward_backward, AdamW (moments as the recipe says), as the trainer.
Golden run(const std::string& recipe, int experts_per_token, Recompute policy) {
  nlohmann::json j = tiny_config(recipe, experts_per_token);
  j["vocab_size"] = kVocab;
  Model m(config_from_json(j));
  prepare(m, 5);
  m.set_recompute(policy);
  // The default head: streamed in 128-row promotion groups (N = 192 and B·(T−1) = 189 rows:
  // two chunks each, the last partial); memory_layout_test compares it with the others.
  m.set_head_chunk_rows(0);
  Registry& r = m.registry();
  train::AdamWConfig ac;
  if (m.config().precision.optimizer_moments == StoreFormat::kBf16) ac.moments = train::MomentPrecision::kBf16;
  train::AdamW adamw(r, ac);
  Golden g;
  g.losses = g.weights = 0xcbf29ce484222325ull;
  for (int s = 0; s < 3; ++s) {
    r.zero_grad();
    const auto tok = tokens(kB, kT, kVocab, 40 + uint64_t(s));
    const Losses l = m.forward_backward(tok.data(), kB, kT);
    for (double v : {l.loss, l.loss_main, l.loss_balance}) g.losses = fnv1a(g.losses, &v, sizeof v);
    for (double v : l.loss_mtp) g.losses = fnv1a(g.losses, &v, sizeof v);
    g.last_loss = l.loss;
    adamw.step(r, 2e-3);
  }
  g.weights = fnv1a(g.weights, r.params().data(), r.params().size() * sizeof(float));
  return g;
}

struct Case {
  const char* recipe;
  int experts_per_token;
  Recompute policy;
  uint64_t losses, weights;  // recorded on the AVX-512-BF16 path with the unchanged code
};

const Case kCases[] = {
    {"fp32", 2, Recompute::kNone, 0x6c1a6d83f3760b25ull, 0x0274370018750dd0ull},
    {"bf16", 2, Recompute::kNone, 0x0459a2fd0f184cfeull, 0x090e384b03803b0cull},
    {"fp8", 2, Recompute::kNone, 0x671cf63e272efefdull, 0x7911398e796e03ebull},
    {"fp8", 4, Recompute::kNone, 0x293e2ac52dc6a4a7ull, 0xdf2bb23d21392393ull},
    {"fp8", 2, Recompute::kFull, 0x671cf63e272efefdull, 0x7911398e796e03ebull},
    {"fp8:precision.activation_cache=bf16", 2, Recompute::kSelective, 0x9522b2537171da91ull,
     0x0ca4705e96d10290ull},
};

TEST(StepGolden, LossesAndWeightsAfterThreeStepsAreUnchanged) {
  const bool reference_path = simd_path() == SimdPath::Avx512Bf16;
  for (const Case& c : kCases) {
    const Golden g = run(c.recipe, c.experts_per_token, c.policy);
    std::printf("%-40s K=%d %-9s last loss %.9f  losses 0x%016" PRIx64 "  weights 0x%016" PRIx64 "\n", c.recipe,
                c.experts_per_token, to_string(c.policy), g.last_loss, g.losses, g.weights);
    if (reference_path) {
      EXPECT_EQ(g.losses, c.losses) << c.recipe << " K=" << c.experts_per_token << ": losses changed bits";
      EXPECT_EQ(g.weights, c.weights) << c.recipe << " K=" << c.experts_per_token << ": weights changed bits";
    } else {
      const Golden again = run(c.recipe, c.experts_per_token, c.policy);
      EXPECT_EQ(g.losses, again.losses);
      EXPECT_EQ(g.weights, again.weights);
    }
  }
}

}  // namespace
}  // namespace tinyseek::model
