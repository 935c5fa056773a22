// The precision map (DESIGN.md §5): which number formats every GEMM role and module class
// trains with. A named recipe sets every field; any field can then be overridden, in the
// config's "precision" section or as `precision.<field>=<value>`. The model resolves the
// map once per Linear (linear_precision()), so ops/linear never sees the map itself.
//
// Recipes:
//   fp32  everything FP32 (the oracle; runs the plain FP32 Linear path bit for bit)
//   bf16  the DeepSeek-V3 paper's baseline: BF16 GEMM inputs, FP32 accumulation, BF16
//         activation cache, FP32 optimizer moments
//   fp8   the paper's recipe (§3.3): E4M3 everywhere; X 1x128 along K for Fprop, W 128x128
//         blocks, dY 1x128 for Dgrad with the same W blocks transposed, dY and X 128x1 along
//         tokens for Wgrad; FP32 promotion every 128; online max-abs scaling with FP32
//         scales; Linear inputs cached in FP8 on the Wgrad grid; SwiGLU inputs cached in FP8
//         (1x128) and the SwiGLU output recomputed in backward (§3.3.3); BF16 optimizer
//         moments; output head BF16, router FP32.
//
// Fields (value lists in precision.cc's field table, printed by errors):
//   recipe              fp32 | bf16 | fp8          (setting it resets every field)
//   format              fp32 | bf16 | e4m3 | e5m2 | hybrid (e4m3 X and W, e5m2 gradients dY)
//   granularity         tensor | row | tile128 | mx32           (FP8 scale tiles, see ops/linear.h)
//   scaling             online | delayed                        (delayed: amax history)
//   amax_history        1..4096                                 (history length when delayed)
//   scale_type          fp32 | pow2
//   accumulation        fp32 | tensorcore                       (tensor-core accumulator model)
//   accum_bits          1..23                                   (mantissa bits of that model)
//   promote_every       N_C, FP32 promotion interval along K
//   wgrad               fp8 | bf16 | fp32                       (Wgrad operands; fp8 = as `format`)
//   activation_cache    fp32 | bf16 | fp8                       (Linear inputs kept for Wgrad)
//   swiglu_cache        fp32 | bf16 | fp8                       (SwiGLU inputs kept for backward)
//   moe_combine         fp32 | bf16                             (routed experts' outputs at the combine)
//   optimizer_moments   fp32 | bf16                             (read by the optimizer)
//   master_weights      fp32                                    (the only choice; listed for the table)
//   head                fp32 | bf16                             (output head GEMM inputs)
//   router              fp32 | bf16                             (MoE gating GEMM inputs)
//   first_blocks_bf16   n: main blocks 0..n-1 use bf16 Linears instead of FP8
//   last_blocks_bf16    n: the last n main blocks likewise (MTP modules follow the map)
// Embedding (a gather), RMSNorm and the attention core (QKᵀ, softmax, PV) are FP32.
//
// The two cache fields, and which settings change numerics (every other choice of what to
// keep, and every recompute policy, gives the same bits):
//   activation_cache  how a Linear keeps its input X for Wgrad when the module does not keep
//     X in FP32 anyway (model/linear_site.h). fp8 quantizes X right away on the Wgrad grid
//     (128x1 tiles along tokens for tile128); the Wgrad operand is then the very same FP8
//     tensor that quantizing the FP32 X in backward would give, so fp8 changes no bit
//     against fp32 (online scaling; delayed scaling uses the step's fixed history either
//     way). bf16 changes no bit when the Wgrad operand is BF16 too (wgrad=bf16), but does
//     when the Wgrad operand is FP8 or FP32 (X is then rounded to BF16 first). Where the
//     module keeps the FP32 X anyway (attention output o for attention backward, MoE's
//     normed input for the FP32 router, anything a recompute policy recomputes) the Linear
//     keeps no copy when that changes no bit, and keeps one (more memory) when it does.
//   swiglu_cache  how g = gate(x) and u = up(x) are kept for SwiGLU backward (dense FFN,
//     shared and routed experts). fp32 keeps them as they are (bit-identical to the plain
//     model). bf16 / fp8 store them rounded (fp8: E4M3, or E5M2 for format e5m2, 1x128 tiles
//     along the width, online max-abs scales of the map's scale_type) and backward decodes
//     them and recomputes a = silu(g)·u from the decoded values: SwiGLU backward and the
//     down projection's Wgrad then see the rounded g, u (DeepSeek-V3 §3.3.3) — this changes
//     numerics. Forward always uses the exact g, u.
//   moe_combine  the routed experts' outputs ye before the gate-weighted sum y += Σ_k g_k ye_k
//     (DeepSeek-V3 §3.3.3: the combine runs in BF16). bf16 rounds ye to BF16 for the sum and
//     keeps that BF16 copy for the gates' gradient (∂L/∂g_k = <∂L/∂y, ye_k>): the gradient of
//     the rounded forward; changes numerics. fp32 keeps ye as computed.
// In the BF16 blocks (first/last_blocks_bf16) an fp8 cache setting becomes bf16.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "tinyseek/ops/linear.h"

namespace tinyseek::model {

enum class GemmFormat : uint8_t { kFp32, kBf16, kE4M3, kE5M2, kHybrid };
enum class Scaling : uint8_t { kOnline, kDelayed };
enum class StoreFormat : uint8_t { kFp32, kBf16, kFp8 };

struct PrecisionMap {
  std::string recipe = "fp32";
  GemmFormat format = GemmFormat::kFp32;
  ops::LinearGranularity granularity = ops::LinearGranularity::kTile128;
  Scaling scaling = Scaling::kOnline;
  int amax_history = 16;
  numerics::ScaleType scale_type = numerics::ScaleType::Fp32;
  gemm::Accumulation accumulation = gemm::Accumulation::kFp32;
  int accum_bits = 13;
  int promote_every = 128;
  StoreFormat wgrad = StoreFormat::kFp32;
  StoreFormat activation_cache = StoreFormat::kFp32;
  StoreFormat swiglu_cache = StoreFormat::kFp32;
  StoreFormat moe_combine = StoreFormat::kFp32;
  StoreFormat optimizer_moments = StoreFormat::kFp32;
  StoreFormat master_weights = StoreFormat::kFp32;
  StoreFormat head = StoreFormat::kFp32;
  StoreFormat router = StoreFormat::kFp32;
  int64_t first_blocks_bf16 = 0;
  int64_t last_blocks_bf16 = 0;

  bool operator==(const PrecisionMap&) const = default;
  bool is_fp8() const { return format == GemmFormat::kE4M3 || format == GemmFormat::kE5M2 || format == GemmFormat::kHybrid; }
};

// The named recipes (throws listing them for an unknown name).
PrecisionMap precision_recipe(const std::string& name);
const std::vector<std::string>& precision_recipe_names();  // fp32, bf16, fp8

// Field access by name (the names above). Setting "recipe" resets every field to that
// recipe. Throws naming the field and its valid values.
const std::vector<std::string>& precision_field_names();
void set_precision_field(PrecisionMap& m, const std::string& field, const std::string& value);
std::string get_precision_field(const PrecisionMap& m, const std::string& field);

// "precision.<field>=<value>" (the "precision." prefix is optional). Call validate() after
// the last override.
void apply_precision_override(PrecisionMap& m, const std::string& assignment);
// "<recipe>[:<override>]..." e.g. "fp8:precision.scale_type=pow2:precision.granularity=row";
// validated.
PrecisionMap precision_from_spec(const std::string& spec);

// The config's "precision" section: {"recipe": "fp8", "<field>": value, ...}; "recipe"
// (default fp32) is applied first, then the other keys. Integers may be JSON numbers or
// strings. Validated (num_hidden_layers >= 0 also checks the block counts).
PrecisionMap precision_from_json(const nlohmann::json& j, const std::string& where = "precision",
                                 int64_t num_hidden_layers = -1);
nlohmann::json precision_to_json(const PrecisionMap& m);  // every field, resolved

// Checks every rule; errors say which field and what to set.
void validate(const PrecisionMap& m, const std::string& where = "precision", int64_t num_hidden_layers = -1);

// The start-up table: one row per GEMM role (operand formats, granularity, scaling, scale
// type, accumulation), one per module class, and the storage formats. Fields that differ
// from the recipe are marked '*'.
std::string precision_table(const PrecisionMap& m, int64_t num_hidden_layers = -1);

// Which kind of Linear a weight is, for resolution.
enum class LinearClass : uint8_t {
  kBlock,   // attention / FFN / expert projections of main blocks and MTP blocks, MTP eh_proj
  kHead,    // output head
  kRouter,  // MoE gating
};
// The precision one Linear runs with. `layer` is its checkpoint layer (main blocks
// 0..L-1; MTP layers >= L follow the map, never the first/last-block BF16 knob).
ops::LinearPrecision linear_precision(const PrecisionMap& m, LinearClass c, int64_t layer,
                                      int64_t num_hidden_layers);

// How an intermediate activation is kept for backward: as computed (kFp32), rounded to BF16,
// or quantized to FP8 by `spec`.
struct ActStore {
  StoreFormat format = StoreFormat::kFp32;
  numerics::QuantSpec spec;
};
// Layer `layer`'s SwiGLU inputs g, u (swiglu_cache above; FP8: 1x128 tiles, online scales).
ActStore swiglu_cache(const PrecisionMap& m, int64_t layer, int64_t num_hidden_layers);
// The routed experts' outputs at the combine (moe_combine above).
ActStore moe_combine(const PrecisionMap& m);

}  // namespace tinyseek::model
