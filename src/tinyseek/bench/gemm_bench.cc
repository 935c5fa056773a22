#include "tinyseek/bench/gemm_bench.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <sstream>

#include "tinyseek/base/aligned.h"
#include "tinyseek/base/check.h"
#include "tinyseek/base/parallel.h"
#include "tinyseek/base/rng.h"
#include "tinyseek/base/timer.h"
#include "tinyseek/gemm/gemm.h"
#include "tinyseek/numerics/bf16.h"

namespace tinyseek::bench {

namespace {

constexpr GemmFormat kAllFormats[] = {GemmFormat::Fp32,      GemmFormat::Bf16,   GemmFormat::Fp8Tile128,
                                      GemmFormat::Fp8Tensor, GemmFormat::Fp8Row, GemmFormat::Fp8Mx32};
// Cap on the timed runs per row that --min-time may add (tiny shapes take microseconds).
constexpr int kMaxRepeats = 1000;
constexpr const char* kValidFormats = "valid formats: fp32, bf16, fp8-tile128, fp8-tensor, fp8-row, fp8-mx32";
constexpr const char* kShapeHint = "shapes are MxNxK with positive integers, comma-separated, e.g. 4096x2048x512,512x256x256";

std::vector<std::string> split_commas(const std::string& csv) {
  std::vector<std::string> parts;
  std::string cur;
  for (char c : csv) {
    if (c == ',') {
      parts.push_back(cur);
      cur.clear();
    } else if (c != ' ') {
      cur += c;
    }
  }
  parts.push_back(cur);
  return parts;
}

// A positive decimal integer filling all of `s`, or -1.
int64_t parse_positive(const std::string& s) {
  int64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size() || v <= 0) return -1;
  return v;
}

// A normal(0,1) matrix from the counter-based RNG (same values for any thread count).
AlignedBuffer<float> random_matrix(int64_t rows, int64_t cols, uint64_t seed, uint64_t stream) {
  AlignedBuffer<float> x(static_cast<size_t>(rows * cols));
  const Philox rng(seed, stream);
  parallel_for(rows, [&](int64_t r) {
    for (int64_t c = 0; c < cols; ++c) x[r * cols + c] = static_cast<float>(rng.normal(static_cast<uint64_t>(r * cols + c)));
  });
  return x;
}

// FP32 -> BF16 in parallel: elementwise, so chunking cannot change the bits.
void to_bf16(AlignedBuffer<uint16_t>& out, const AlignedBuffer<float>& in) {
  out.resize(in.size());
  parallel_ranges(static_cast<int64_t>(in.size()), int64_t{1} << 15, [&](int64_t b, int64_t e) {
    numerics::bf16_encode_bulk(out.data() + b, in.data() + b, static_cast<size_t>(e - b));
  });
}

numerics::QuantSpec e4m3_spec(numerics::Granularity g) {
  numerics::QuantSpec spec;
  spec.format = numerics::Fp8Format::E4M3;
  spec.granularity = g;
  const bool mx = g == numerics::Granularity::Mx1x32 || g == numerics::Granularity::Mx32x1;
  spec.scale_type = mx ? numerics::ScaleType::Pow2 : numerics::ScaleType::Fp32;
  return spec;
}

// One format's operands for one shape. prepare() stores A and W in the format (outside the
// kernel-only timing); end_to_end() redoes that conversion inside the timed region.
class FormatOperands {
 public:
  FormatOperands(GemmFormat f, GemmShape s, const AlignedBuffer<float>& a, const AlignedBuffer<float>& w)
      : f_(f), s_(s), a_(a), w_(w) {}

  void prepare() {
    switch (f_) {
      case GemmFormat::Fp32: break;
      case GemmFormat::Bf16:
        to_bf16(a16_, a_);
        to_bf16(w16_, w_);
        break;
      default: {
        const Fp8Layout l = fp8_layout(f_);
        numerics::quantize(qa_, a_.data(), s_.m, s_.k, s_.k, e4m3_spec(l.a));
        numerics::quantize(qw_, w_.data(), s_.n, s_.k, s_.k, e4m3_spec(l.w));
      }
    }
  }

  // C = A · Wᵀ on the prepared operands.
  void kernel(float* C) const { gemm::gemm(C, s_.n, a_view(), w_view()); }

  // W packed once into the kernels' panel layout (outside any timing), for prepacked().
  void pack_weight() {
    packed_w_ = gemm::pack_b(w_view(), {}, gemm::promotion_interval(a_view(), w_view(), gemm::GemmOptions{}.promote_every));
  }
  // C = A · Wᵀ with the pre-packed W: what a trainer pays per micro-batch when it caches
  // the packed weight for the whole optimizer step.
  void prepacked(float* C) const { gemm::gemm(C, s_.n, a_view(), packed_w_); }

  void end_to_end(float* C) {
    prepare();
    kernel(C);
  }

 private:
  gemm::Matrix a_view() const {
    switch (f_) {
      case GemmFormat::Fp32: return gemm::view_f32(a_.data(), s_.m, s_.k, s_.k);
      case GemmFormat::Bf16: return gemm::view_bf16(a16_.data(), s_.m, s_.k, s_.k);
      default: return gemm::view_fp8(qa_);
    }
  }
  // W [N,K] used transposed: op(W) = Wᵀ [K,N].
  gemm::Matrix w_view() const {
    switch (f_) {
      case GemmFormat::Fp32: return gemm::view_f32(w_.data(), s_.n, s_.k, s_.k, /*trans=*/true);
      case GemmFormat::Bf16: return gemm::view_bf16(w16_.data(), s_.n, s_.k, s_.k, /*trans=*/true);
      default: return gemm::view_fp8(qw_, /*trans=*/true);
    }
  }

  GemmFormat f_;
  GemmShape s_;
  const AlignedBuffer<float>& a_;
  const AlignedBuffer<float>& w_;
  AlignedBuffer<uint16_t> a16_, w16_;
  gemm::PackedB packed_w_;
  numerics::QTensor qa_, qw_;
};

template <class F>
double seconds_of(F&& f) {
  Timer t;
  f();
  return t.seconds();
}

// max |C - C_exact| / rms(C_exact) over up to 64 sampled outputs, C_exact in FP64 from the
// FP32 inputs.
double sampled_rel_err(const float* C, const AlignedBuffer<float>& a, const AlignedBuffer<float>& w, GemmShape s,
                       uint64_t seed) {
  const int64_t mn = s.m * s.n, samples = std::min<int64_t>(mn, 64);
  const Philox pick(seed, 0xC0FFEE);
  double max_err = 0, sum_sq = 0;
  for (int64_t i = 0; i < samples; ++i) {
    const int64_t idx = samples == mn ? i : static_cast<int64_t>(pick.u64(static_cast<uint64_t>(i)) % static_cast<uint64_t>(mn));
    const int64_t m = idx / s.n, n = idx % s.n;
    double exact = 0;
    for (int64_t k = 0; k < s.k; ++k) exact += static_cast<double>(a[m * s.k + k]) * static_cast<double>(w[n * s.k + k]);
    max_err = std::max(max_err, std::abs(static_cast<double>(C[idx]) - exact));
    sum_sq += exact * exact;
  }
  const double rms = std::sqrt(sum_sq / static_cast<double>(samples));
  return rms > 0 ? max_err / rms : max_err;
}

GemmBenchRow bench_one(GemmFormat f, GemmShape s, const AlignedBuffer<float>& a, const AlignedBuffer<float>& w,
                       AlignedBuffer<float>& C, const GemmBenchOptions& opt) {
  FormatOperands ops(f, s, a, w);
  ops.prepare();
  ops.pack_weight();
  for (int i = 0; i < opt.warmup; ++i) {
    ops.kernel(C.data());
    ops.prepacked(C.data());
    if (f != GemmFormat::Fp32) ops.end_to_end(C.data());
  }
  // The three timings alternate within each repeat, so interference hits all of them.
  std::vector<double> kernel_s, prepacked_s, e2e_s;
  double kernel_total = 0;
  for (int r = 0; r < opt.repeats || (kernel_total < opt.min_seconds && r < kMaxRepeats); ++r) {
    prepacked_s.push_back(seconds_of([&] { ops.prepacked(C.data()); }));
    // FP32 operands need no conversion: end to end is the kernel.
    if (f != GemmFormat::Fp32) e2e_s.push_back(seconds_of([&] { ops.end_to_end(C.data()); }));
    // Last, so C holds the plain kernel's output for the check below.
    kernel_s.push_back(seconds_of([&] { ops.kernel(C.data()); }));
    kernel_total += kernel_s.back();
  }
  GemmBenchRow row;
  row.format = f;
  row.shape = s;
  row.gflops = s.flops() / median(kernel_s) * 1e-9;
  row.gflops_with_quantize = f == GemmFormat::Fp32 ? row.gflops : s.flops() / median(e2e_s) * 1e-9;
  row.gflops_prepacked = s.flops() / median(prepacked_s) * 1e-9;
  row.rel_err = sampled_rel_err(C.data(), a, w, s, opt.seed);
  return row;
}

}  // namespace

const char* to_string(GemmFormat f) {
  switch (f) {
    case GemmFormat::Fp32: return "fp32";
    case GemmFormat::Bf16: return "bf16";
    case GemmFormat::Fp8Tile128: return "fp8-tile128";
    case GemmFormat::Fp8Tensor: return "fp8-tensor";
    case GemmFormat::Fp8Row: return "fp8-row";
    case GemmFormat::Fp8Mx32: return "fp8-mx32";
  }
  return "unknown-format";
}

GemmFormat parse_gemm_format(const std::string& name) {
  for (GemmFormat f : kAllFormats)
    if (name == to_string(f)) return f;
  TS_FAIL("unknown GEMM format '" << name << "'", kValidFormats);
}

std::vector<GemmFormat> all_gemm_formats() { return {std::begin(kAllFormats), std::end(kAllFormats)}; }

std::vector<GemmFormat> parse_gemm_formats(const std::string& csv) {
  std::vector<GemmFormat> out;
  for (const std::string& p : split_commas(csv)) {
    TS_CHECK(!p.empty(), "empty entry in --formats '" << csv << "'", kValidFormats);
    out.push_back(parse_gemm_format(p));
  }
  return out;
}

bool is_fp8(GemmFormat f) { return f != GemmFormat::Fp32 && f != GemmFormat::Bf16; }
bool uses_fp32_peak(GemmFormat f) { return f == GemmFormat::Fp32; }

Fp8Layout fp8_layout(GemmFormat f) {
  using numerics::Granularity;
  switch (f) {
    case GemmFormat::Fp8Tile128: return {Granularity::Tile1x128, Granularity::Block128x128};
    case GemmFormat::Fp8Tensor: return {Granularity::Tensor, Granularity::Tensor};
    case GemmFormat::Fp8Row: return {Granularity::Row, Granularity::Row};
    case GemmFormat::Fp8Mx32: return {Granularity::Mx1x32, Granularity::Mx1x32};
    default: break;
  }
  TS_FAIL("format " << to_string(f) << " has no FP8 scale layout", "only fp8-* formats are quantized");
}

std::vector<GemmShape> default_gemm_shapes() {
  return {{4096, 2048, 512}, {4096, 512, 2048}, {2048, 2048, 2048},
          {1024, 1024, 1024}, {512, 256, 256},  {1024, 512, 256}};
}

std::vector<GemmShape> parse_gemm_shapes(const std::string& csv) {
  std::vector<GemmShape> out;
  for (const std::string& p : split_commas(csv)) {
    const size_t x1 = p.find('x'), x2 = x1 == std::string::npos ? x1 : p.find('x', x1 + 1);
    int64_t m = -1, n = -1, k = -1;
    if (x2 != std::string::npos) {
      m = parse_positive(p.substr(0, x1));
      n = parse_positive(p.substr(x1 + 1, x2 - x1 - 1));
      k = parse_positive(p.substr(x2 + 1));
    }
    TS_CHECK(m > 0 && n > 0 && k > 0, "bad GEMM shape '" << p << "' in --shapes '" << csv << "'", kShapeHint);
    TS_CHECK(m * n <= (int64_t{1} << 31) && m * k <= (int64_t{1} << 31) && n * k <= (int64_t{1} << 31),
             "GEMM shape '" << p << "' needs a matrix of more than 2^31 elements", "use smaller dimensions");
    out.push_back({m, n, k});
  }
  return out;
}

std::optional<double> percent_of_peak(const GemmBenchRow& row, const PeakFlops& peak) {
  const std::optional<double>& p = uses_fp32_peak(row.format) ? peak.fp32_fma_gflops : peak.bf16_dot_gflops;
  if (!p || *p <= 0) return std::nullopt;
  return 100.0 * row.gflops / *p;
}

std::vector<GemmBenchRow> run_gemm_bench(const GemmBenchOptions& opt,
                                         const std::function<void(const GemmBenchRow&)>& on_row) {
  TS_CHECK(opt.repeats >= 1, "--repeats must be at least 1, got " << opt.repeats, "the median needs one run; 5 is the default");
  TS_CHECK(opt.warmup >= 0, "--warmup must be >= 0, got " << opt.warmup, "1 warm-up run is the default");
  TS_CHECK(opt.min_seconds >= 0, "--min-time must be >= 0 seconds, got " << opt.min_seconds, "0.2 is the default");
  TS_CHECK(!opt.formats.empty() && !opt.shapes.empty(), "nothing to benchmark: no formats or no shapes",
           "omit --formats / --shapes to use the defaults");
  std::vector<GemmBenchRow> rows;
  for (const GemmShape& s : opt.shapes) {
    const AlignedBuffer<float> a = random_matrix(s.m, s.k, opt.seed, 1), w = random_matrix(s.n, s.k, opt.seed, 2);
    AlignedBuffer<float> C(static_cast<size_t>(s.m * s.n));
    for (GemmFormat f : opt.formats) {
      rows.push_back(bench_one(f, s, a, w, C, opt));
      if (on_row) on_row(rows.back());
    }
  }
  return rows;
}

}  // namespace tinyseek::bench
