// gemm_peers: the GEMM peers of `tinyseek bench gemm`, on the same shapes and the same
// product, C[M,N] = A[M,K] · W[N,K]ᵀ (Linear forward, W stored [N_out, K_in] row-major):
//
//   onednn-f32    dnnl::matmul f32 x f32 -> f32
//   onednn-bf16   dnnl::matmul bf16 x bf16 -> f32
//   openblas-f32  cblas_sgemm(RowMajor, NoTrans, Trans)
//
// oneDNN's weights are described as the [K, N] matrix in format tag `ba`, which is exactly
// the memory of W [N, K] row-major, so no reorder runs inside the timing (the library packs
// internally as it needs to, just as tinyseek's kernels do). Primitive creation is outside
// the timing. gflops_with_quantize for onednn-bf16 adds the f32 -> bf16 reorders of A and
// W (the peer of tinyseek's end-to-end number); for f32 peers it equals gflops.
// gflops_prepacked (oneDNN rows): weights reordered once, outside the timing, into the
// layout oneDNN picks for itself (format_tag::any), the peer of tinyseek's pre-packed number.
// Output: one JSON object in the row format of `tinyseek bench gemm --json`.
//
// Threads follow OMP_NUM_THREADS (oneDNN here is built on OpenMP; OpenBLAS is set to the
// same count). OpenBLAS picks its kernels from OPENBLAS_CORETYPE when set: run with
// OPENBLAS_CORETYPE=Cooperlake on AVX-512 machines (bench/gemm.sh does).
#include <cblas.h>
#include <omp.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <oneapi/dnnl/dnnl.hpp>
#include <string>
#include <vector>

#include "tinyseek/base/aligned.h"
#include "tinyseek/base/check.h"
#include "tinyseek/base/rng.h"
#include "tinyseek/base/timer.h"
#include "tinyseek/bench/gemm_bench.h"

namespace {

using tinyseek::AlignedBuffer;
using tinyseek::bench::GemmShape;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

struct Options {
  std::vector<GemmShape> shapes = tinyseek::bench::default_gemm_shapes();
  int repeats = 5, warmup = 1;
  double min_time = 0.2;  // as tinyseek's --min-time: small shapes repeat until this (max 1000 runs)
};

struct Row {
  std::string format;
  GemmShape s;
  double gflops = 0, gflops_with_quantize = 0, rel_err = 0;
  double gflops_prepacked = 0;  // 0: not measured
};

AlignedBuffer<float> random_matrix(int64_t rows, int64_t cols, uint64_t stream) {
  AlignedBuffer<float> x(static_cast<size_t>(rows * cols));
  const tinyseek::Philox rng(1234, stream);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < rows * cols; ++i) x[i] = static_cast<float>(rng.normal(static_cast<uint64_t>(i)));
  return x;
}

// Median seconds of at least `repeats` runs of f after `warmup` untimed ones, more (up to
// 1000) until the timed runs add up to min_time, exactly as `tinyseek bench gemm` does.
template <class F>
double median_seconds(const Options& o, F&& f) {
  for (int i = 0; i < o.warmup; ++i) f();
  std::vector<double> t;
  double total = 0;
  for (int r = 0; r < o.repeats || (total < o.min_time && r < 1000); ++r) {
    tinyseek::Timer timer;
    f();
    t.push_back(timer.seconds());
    total += t.back();
  }
  return tinyseek::median(t);
}

// max |C - exact| / rms(exact) over up to 64 sampled outputs (same check as tinyseek's):
// proves the peer computed A · Wᵀ, not A · W.
double sampled_rel_err(const float* C, const float* a, const float* w, GemmShape s) {
  const int64_t mn = s.m * s.n, samples = std::min<int64_t>(mn, 64);
  const tinyseek::Philox pick(1234, 0xC0FFEE);
  double max_err = 0, sum_sq = 0;
  for (int64_t i = 0; i < samples; ++i) {
    const int64_t idx = samples == mn ? i : static_cast<int64_t>(pick.u64(i) % static_cast<uint64_t>(mn));
    const int64_t m = idx / s.n, n = idx % s.n;
    double exact = 0;
    for (int64_t k = 0; k < s.k; ++k) exact += static_cast<double>(a[m * s.k + k]) * w[n * s.k + k];
    max_err = std::max(max_err, std::abs(C[idx] - exact));
    sum_sq += exact * exact;
  }
  const double rms = std::sqrt(sum_sq / static_cast<double>(samples));
  return rms > 0 ? max_err / rms : max_err;
}

// dnnl::matmul of A [M,K] (tag ab) by W viewed as [K,N] tag ba, in data type `in`, into
// FP32 C [M,N]. For bf16 also times the f32 -> bf16 reorders of both operands.
Row onednn_matmul(dnnl::engine& eng, dnnl::stream& strm, dt in, GemmShape s, float* a32, float* w32, float* c32,
                  const Options& o) {
  const dnnl::memory::dim M = s.m, N = s.n, K = s.k;
  dnnl::memory::desc a_md({M, K}, in, tag::ab), w_md({K, N}, in, tag::ba), c_md({M, N}, dt::f32, tag::ab);
  dnnl::memory::desc a32_md({M, K}, dt::f32, tag::ab), w32_md({K, N}, dt::f32, tag::ba);
  dnnl::memory a32_mem(a32_md, eng, a32), w32_mem(w32_md, eng, w32), c_mem(c_md, eng, c32);
  dnnl::memory a_mem = a32_mem, w_mem = w32_mem;
  dnnl::reorder to_a, to_w;
  if (in != dt::f32) {
    a_mem = dnnl::memory(a_md, eng);
    w_mem = dnnl::memory(w_md, eng);
    to_a = dnnl::reorder(a32_mem, a_mem);
    to_w = dnnl::reorder(w32_mem, w_mem);
    to_a.execute(strm, a32_mem, a_mem);
    to_w.execute(strm, w32_mem, w_mem);
    strm.wait();
  }
  dnnl::matmul mm(dnnl::matmul::primitive_desc(dnnl::matmul::desc(a_md, w_md, c_md), eng));
  auto run = [&] {
    mm.execute(strm, {{DNNL_ARG_SRC, a_mem}, {DNNL_ARG_WEIGHTS, w_mem}, {DNNL_ARG_DST, c_mem}});
    strm.wait();
  };
  auto run_with_conversion = [&] {
    to_a.execute(strm, a32_mem, a_mem);
    to_w.execute(strm, w32_mem, w_mem);
    mm.execute(strm, {{DNNL_ARG_SRC, a_mem}, {DNNL_ARG_WEIGHTS, w_mem}, {DNNL_ARG_DST, c_mem}});
    strm.wait();
  };
  // Pre-packed: weights in the layout oneDNN prefers (format_tag::any), reordered once
  // outside the timing, as a trainer would cache packed weights between uses.
  dnnl::matmul::primitive_desc packed_pd(
      dnnl::matmul::desc(a_md, dnnl::memory::desc({K, N}, in, tag::any), c_md), eng);
  dnnl::memory w_packed(packed_pd.weights_desc(), eng);
  dnnl::reorder(w_mem, w_packed).execute(strm, w_mem, w_packed);
  strm.wait();
  dnnl::matmul mm_packed(packed_pd);
  auto run_prepacked = [&] {
    mm_packed.execute(strm, {{DNNL_ARG_SRC, a_mem}, {DNNL_ARG_WEIGHTS, w_packed}, {DNNL_ARG_DST, c_mem}});
    strm.wait();
  };
  Row r;
  r.format = in == dt::f32 ? "onednn-f32" : "onednn-bf16";
  r.s = s;
  r.gflops_prepacked = s.flops() / median_seconds(o, run_prepacked) * 1e-9;
  r.gflops_with_quantize = in == dt::f32 ? 0 : s.flops() / median_seconds(o, run_with_conversion) * 1e-9;
  // Last, so C holds the plain matmul's result for the check below.
  r.gflops = s.flops() / median_seconds(o, run) * 1e-9;
  if (in == dt::f32) r.gflops_with_quantize = r.gflops;
  r.rel_err = sampled_rel_err(c32, a32, w32, s);
  return r;
}

Row openblas_sgemm(GemmShape s, const float* a, const float* w, float* c, const Options& o) {
  auto run = [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<blasint>(s.m), static_cast<blasint>(s.n),
                static_cast<blasint>(s.k), 1.0f, a, static_cast<blasint>(s.k), w, static_cast<blasint>(s.k), 0.0f, c,
                static_cast<blasint>(s.n));
  };
  Row r;
  r.format = "openblas-f32";
  r.s = s;
  r.gflops = r.gflops_with_quantize = s.flops() / median_seconds(o, run) * 1e-9;
  r.rel_err = sampled_rel_err(c, a, w, s);
  return r;
}

double sig4(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", x);
  return std::strtod(buf, nullptr);
}

Options parse_args(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      TS_CHECK(i + 1 < argc, a << " needs a value", "e.g. --shapes 1024x1024x1024 --repeats 5 --warmup 1");
      return argv[++i];
    };
    if (a == "--shapes") o.shapes = tinyseek::bench::parse_gemm_shapes(value());
    else if (a == "--repeats") o.repeats = std::atoi(value().c_str());
    else if (a == "--warmup") o.warmup = std::atoi(value().c_str());
    else if (a == "--min-time") o.min_time = std::atof(value().c_str());
    else if (a == "--json") continue;  // the only output format; accepted for symmetry with tinyseek
    else TS_FAIL("unknown argument '" << a << "'", "usage: gemm_peers [--shapes MxNxK,...] [--repeats N] [--warmup N] [--min-time S]");
  }
  TS_CHECK(o.repeats >= 1 && o.warmup >= 0 && o.min_time >= 0,
           "--repeats must be >= 1, --warmup >= 0 and --min-time >= 0", "e.g. --repeats 5 --warmup 1 --min-time 0.2");
  return o;
}

}  // namespace

int main(int argc, char** argv) try {
  const Options o = parse_args(argc, argv);
  const int threads = omp_get_max_threads();
  openblas_set_num_threads(threads);
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream strm(eng);

  std::vector<Row> rows;
  for (const GemmShape& s : o.shapes) {
    AlignedBuffer<float> a = random_matrix(s.m, s.k, 1), w = random_matrix(s.n, s.k, 2);
    AlignedBuffer<float> c(static_cast<size_t>(s.m * s.n));
    rows.push_back(onednn_matmul(eng, strm, dt::f32, s, a.data(), w.data(), c.data(), o));
    rows.push_back(onednn_matmul(eng, strm, dt::bf16, s, a.data(), w.data(), c.data(), o));
    rows.push_back(openblas_sgemm(s, a.data(), w.data(), c.data(), o));
    std::fprintf(stderr, "gemm_peers %lldx%lldx%lld: onednn-f32 %.1f, onednn-bf16 %.1f, openblas-f32 %.1f GFLOP/s\n",
                 static_cast<long long>(s.m), static_cast<long long>(s.n), static_cast<long long>(s.k),
                 rows[rows.size() - 3].gflops, rows[rows.size() - 2].gflops, rows.back().gflops);
  }

  const dnnl_version_t* v = dnnl_version();
  const char* coretype = std::getenv("OPENBLAS_CORETYPE");
  nlohmann::ordered_json j;
  j["threads"] = threads;
  j["onednn_version"] = std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
  j["openblas_core"] = openblas_get_corename();
  j["openblas_threads"] = openblas_get_num_threads();
  j["openblas_coretype_env"] = coretype ? coretype : "";
  j["repeats"] = o.repeats;
  j["warmup"] = o.warmup;
  j["min_time"] = o.min_time;
  j["rows"] = nlohmann::ordered_json::array();
  for (const Row& r : rows) {
    nlohmann::ordered_json row = {{"format", r.format},
                                  {"m", r.s.m},
                                  {"n", r.s.n},
                                  {"k", r.s.k},
                                  {"gflops", sig4(r.gflops)},
                                  {"gflops_with_quantize", sig4(r.gflops_with_quantize)}};
    if (r.gflops_prepacked > 0) row["gflops_prepacked"] = sig4(r.gflops_prepacked);
    row["rel_err"] = sig4(r.rel_err);
    j["rows"].push_back(row);
  }
  std::printf("%s\n", j.dump().c_str());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "gemm_peers: %s\n", e.what());
  return 1;
}
