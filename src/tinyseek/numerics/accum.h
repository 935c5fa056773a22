// A model of limited-precision accumulation inside an FP8 tensor core, and of
// DeepSeek-V3's fix (promotion of partial sums to FP32 every N_C elements).
//
// DeepSeek-V3 §3.3.2/§3.5.2: the H800 tensor core aligns the mantissa products of a group
// of 32 (one WGMMA K step) to the largest exponent by right-shifting, keeps only the
// highest ~14 bits, and accumulates at that precision. With K = 4096 and random inputs the
// maximum relative error is nearly 2%. Copying the partial sum to FP32 registers every
// N_C = 128 elements bounds the damage.
//
// The model (all steps exact in FP64 except the stated truncations):
//   for each group of `align_group` products p_j (exact FP32 products of FP8 values):
//     e = max exponent over {acc, p_j};
//     every addend (acc and each p_j) is truncated toward zero to a multiple of
//       2^(e - mantissa_bits)   (keeps mantissa_bits + 1 significant bits of the largest);
//     acc = sum of the truncated addends, itself truncated to mantissa_bits + 1 significant bits.
//   with promotion: after every `promote_every` products, out += acc (FP32 add) and acc = 0.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace tinyseek::numerics {

struct AccumModel {
  int mantissa_bits = 13;  // explicit bits retained (13 + hidden bit = the paper's ~14)
  int align_group = 32;    // products aligned together (WGMMA K = 32 for FP8)
  int promote_every = 128; // N_C; 0 = never promote (accumulate all of K in the tensor core)
};

// Sum of n products through the modelled tensor-core accumulator, starting from 0, without
// promotion (one tensor-core accumulation chain). Returns the accumulator as FP32.
float tensorcore_sum(const float* products, int64_t n, const AccumModel& m);
// Dot product a·b with the model, promoting to an FP32 accumulator every m.promote_every
// products (or never if 0).
float tensorcore_dot(const float* a, const float* b, int64_t n, const AccumModel& m);

struct AccumRow {
  int64_t k = 0;
  double max_rel_err_limited = 0, mean_rel_err_limited = 0;    // (a) no promotion
  double max_rel_err_promoted = 0, mean_rel_err_promoted = 0;  // (b) promote every N_C
  double max_rel_err_fp32 = 0, mean_rel_err_fp32 = 0;          // (c) plain FP32 sequential
};
struct AccumStudy {
  std::vector<AccumRow> rows;
  std::string inputs;  // human-readable description of the input distribution
  AccumModel model;
  int trials = 0;
};
// Input distributions for the study. The DeepSeek-V3 report does not state its own.
//   kNormal:  a, b i.i.d. N(0,1) rounded to E4M3 ("random matrices", torch.randn-style).
//             Dot products are zero-mean, so |exact| can be ~0 for some outputs; the relative
//             error of each output is taken against the output scale of the GEMM:
//             |c - exact| / rms(exact over all trials of that K) — the trials are the
//             elements of one [trials x 1] output column.
//   kUniform: a, b i.i.d. uniform on [0,1) rounded to E4M3 (non-negative, e.g. post-activation
//             inputs): every product has the same sign, truncation errors never cancel, the
//             worst case. Relative error |c - exact| / |exact|.
enum class AccumInputs : uint8_t { kNormal, kUniform };
const char* to_string(AccumInputs i);
AccumInputs parse_accum_inputs(const std::string& s);

// Relative error of each method against an FP64 reference of the same FP8 inputs, over
// `trials` random dot products per K.
AccumStudy accumulation_study(const std::vector<int64_t>& ks, int trials, uint64_t seed,
                              const AccumModel& model, AccumInputs inputs = AccumInputs::kNormal);

}  // namespace tinyseek::numerics
