// `tinyseek bench gemm`: GFLOP/s of the Linear forward product
//
//   C[M,N] = A[M,K] · W[N,K]ᵀ          (A = activations, W = weight stored [N_out, K_in])
//
// for every operand format the trainer uses, through the public gemm() API (Backend::kAuto,
// so the numbers follow whatever kernels are dispatched). Three timings per row:
//   gflops               kernel only: operands already stored in the format (FP32 arrays, BF16
//                        arrays, or FP8 QTensors quantized with the format's granularities);
//   gflops_with_quantize end to end from FP32 A and W: BF16 conversion or FP8 quantization of
//                        both operands is inside the timed region, as in a training step;
//   gflops_prepacked     kernel only with W packed once by gemm::pack_b outside the timing
//                        (a trainer packs each weight once per optimizer step).
// Each is the median of at least `repeats` timed runs after `warmup` untimed ones; small
// shapes get more runs, until the kernel-only runs add up to `min_seconds` (at most 1000):
// a 512x256x256 GEMM takes ~0.1 ms, so five runs could all land in one 8 ms scheduler
// stall on a busy machine. The three timings alternate within each repeat so interference
// hits all of them alike.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "tinyseek/bench/peak.h"
#include "tinyseek/numerics/quant.h"

namespace tinyseek::bench {

enum class GemmFormat : uint8_t { Fp32, Bf16, Fp8Tile128, Fp8Tensor, Fp8Row, Fp8Mx32 };

const char* to_string(GemmFormat f);  // "fp32", "bf16", "fp8-tile128", ...
GemmFormat parse_gemm_format(const std::string& name);
std::vector<GemmFormat> all_gemm_formats();
// "fp32,bf16,fp8-tile128" -> formats; throws naming the bad entry and the valid names.
std::vector<GemmFormat> parse_gemm_formats(const std::string& csv);

bool is_fp8(GemmFormat f);
// The peak a format is held to: FP32 FMA for fp32, BF16 dot for bf16 and every FP8 format
// (FP8 operands are widened to BF16 and run on the BF16 dot units).
bool uses_fp32_peak(GemmFormat f);

// Scale granularities of an FP8 format (both operands E4M3, FP32 scales except MX's E8M0):
//   fp8-tile128: A tile1x128, W block128x128 (DeepSeek-V3)    fp8-tensor: both tensor
//   fp8-row:     A row,       W row                            fp8-mx32:   both mx1x32
struct Fp8Layout {
  numerics::Granularity a, w;
};
Fp8Layout fp8_layout(GemmFormat f);  // throws for fp32 / bf16

struct GemmShape {
  int64_t m = 0, n = 0, k = 0;
  double flops() const { return 2.0 * static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k); }
};
// The transformer shapes (dense projections) plus two MoE-expert-sized ones.
std::vector<GemmShape> default_gemm_shapes();
// "4096x2048x512,512x256x256" -> shapes (M x N x K); throws naming the bad entry.
std::vector<GemmShape> parse_gemm_shapes(const std::string& csv);

struct GemmBenchOptions {
  std::vector<GemmFormat> formats = all_gemm_formats();
  std::vector<GemmShape> shapes = default_gemm_shapes();
  int repeats = 5, warmup = 1;
  double min_seconds = 0.2;
  uint64_t seed = 1234;
};

struct GemmBenchRow {
  GemmFormat format = GemmFormat::Fp32;
  GemmShape shape;
  double gflops = 0;                       // kernel only
  double gflops_with_quantize = 0;         // incl. conversion / quantization of A and W
  std::optional<double> gflops_prepacked;  // W pre-packed once (gemm::pack_b), kernel only
  // Sanity check that the benchmark multiplies what it claims: over sampled outputs,
  // max |C - C_exact| / rms(C_exact), C_exact the FP64 product of the FP32 inputs. Expected
  // ~1e-6 for fp32, ~1e-2 for bf16, ~1e-1 for FP8 (the formats' rounding, nothing more).
  double rel_err = 0;
};

// Percent of the relevant measured peak (absent when the peak is).
std::optional<double> percent_of_peak(const GemmBenchRow& row, const PeakFlops& peak);

// Runs every (shape, format) pair; `on_row` (optional) is called after each one, e.g. to
// advance a progress line.
std::vector<GemmBenchRow> run_gemm_bench(const GemmBenchOptions& opt,
                                         const std::function<void(const GemmBenchRow&)>& on_row = {});

}  // namespace tinyseek::bench
