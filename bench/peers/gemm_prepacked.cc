// gemm_prepacked: tinyseek vs oneDNN on one shape, interleaved call by call in one process
// (rotating order, median of REPS samples of >= ~30 ms each, ratio of the medians), for
// tuning on a shared machine. C = A[M,K] · W[N,K]ᵀ.
//   gemm_prepacked MxNxK [REPS] [KERNELS]   KERNELS from fp8,fp8c,fp8w,bf16,fp32,dnnl,blas
//     fp8   fp8-tile128 with GemmOptions defaults     fp8c / fp8w  compact_fp8 on / off
// Environment: PREPACK=1 packs W once outside the timing (tinyseek pack_b; oneDNN weights
// reordered into its own layout, format_tag::any), as bench/peers/gemm_peers does;
// CPUTIME=1 times process CPU time instead of wall time (1 thread on a loaded machine:
// time spent descheduled is not counted); BEST=1 reports the 10th percentile.
#include <cblas.h>
#include <omp.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>
#include <oneapi/dnnl/dnnl.hpp>
#include "tinyseek/base/rng.h"
#include "tinyseek/gemm/gemm.h"
#include "tinyseek/numerics/bf16.h"
#include "tinyseek/numerics/quant.h"
using namespace tinyseek;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;
#include <time.h>
static bool g_cpu = getenv("CPUTIME") != nullptr;
static double now() {
  if (g_cpu) { timespec ts; clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts); return ts.tv_sec + 1e-9 * ts.tv_nsec; }
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
int main(int argc, char** argv) {
  int64_t M = 1024, N = 1024, K = 1024;
  int reps = 30;
  std::string which = "fp8,bf16,fp32,dnnl,blas";
  if (argc > 1) sscanf(argv[1], "%ldx%ldx%ld", &M, &N, &K);
  if (argc > 2) reps = atoi(argv[2]);
  if (argc > 3) which = argv[3];
  bool prepack = getenv("PREPACK") != nullptr;
  std::vector<float> a(M * K), w(N * K), c(M * N);
  Philox r(1, 1);
  for (size_t i = 0; i < a.size(); ++i) a[i] = r.normal(i);
  for (size_t i = 0; i < w.size(); ++i) w[i] = r.normal(i + a.size());
  std::vector<uint16_t> a16(a.size()), w16(w.size());
  for (size_t i = 0; i < a.size(); ++i) a16[i] = numerics::bf16_encode(a[i]);
  for (size_t i = 0; i < w.size(); ++i) w16[i] = numerics::bf16_encode(w[i]);
  numerics::QTensor qa, qw;
  numerics::QuantSpec sa, sw;
  sa.granularity = numerics::Granularity::Tile1x128;
  sw.granularity = numerics::Granularity::Block128x128;
  numerics::quantize(qa, a.data(), M, K, K, sa);
  numerics::quantize(qw, w.data(), N, K, K, sw);
  gemm::GemmOptions opt;
  if (getenv("PROMOTE")) opt.promote_every = atoi(getenv("PROMOTE"));
  gemm::PackedB p8, p8c, p8w, p16, p32;
  if (prepack) {
    p8 = gemm::pack_b(gemm::view_fp8(qw, true), opt);
    gemm::GemmOptions o2 = opt;
    o2.compact_fp8 = false;
    p8w = gemm::pack_b(gemm::view_fp8(qw, true), o2);
    o2.compact_fp8 = true;
    p8c = gemm::pack_b(gemm::view_fp8(qw, true), o2);
    p16 = gemm::pack_b(gemm::view_bf16(w16.data(), N, K, K, true), opt);
    p32 = gemm::pack_b(gemm::view_f32(w.data(), N, K, K, true), opt);
  }
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream strm(eng);
  dnnl::memory::desc a_md({M, K}, dt::bf16, tag::ab), w_md({K, N}, dt::bf16, tag::ba), c_md({M, N}, dt::f32, tag::ab);
  dnnl::memory am(a_md, eng, a16.data()), wm(w_md, eng, w16.data()), cm(c_md, eng, c.data());
  dnnl::matmul mm(dnnl::matmul::primitive_desc(dnnl::matmul::desc(a_md, w_md, c_md), eng));
  if (prepack) {  // oneDNN's weights reordered once into its own layout (format any), as gemm_peers
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_md, dnnl::memory::desc({K, N}, dt::bf16, tag::any), c_md), eng);
    dnnl::memory wp(pd.weights_desc(), eng);
    dnnl::reorder(wm, wp).execute(strm, wm, wp);
    strm.wait();
    wm = wp;
    mm = dnnl::matmul(pd);
  }
  struct K_ { std::string name; std::function<void()> f; std::vector<double> t; };
  std::vector<K_> ks;
  auto has = [&](const char* n) { return ("," + which + ",").find(std::string(",") + n + ",") != std::string::npos; };
  if (has("fp8")) ks.push_back({"fp8-tile128", [&] { if (prepack) gemm::gemm(c.data(), N, gemm::view_fp8(qa), p8, opt); else gemm::gemm(c.data(), N, gemm::view_fp8(qa), gemm::view_fp8(qw, true), opt); }, {}});
  if (has("fp8c")) ks.push_back({"fp8-compact", [&] { gemm::gemm(c.data(), N, gemm::view_fp8(qa), p8c, opt); }, {}});
  if (has("fp8w")) ks.push_back({"fp8-bf16panels", [&] { gemm::gemm(c.data(), N, gemm::view_fp8(qa), p8w, opt); }, {}});
  if (has("bf16")) ks.push_back({"bf16", [&] { if (prepack) gemm::gemm(c.data(), N, gemm::view_bf16(a16.data(), M, K, K), p16, opt); else gemm::gemm(c.data(), N, gemm::view_bf16(a16.data(), M, K, K), gemm::view_bf16(w16.data(), N, K, K, true), opt); }, {}});
  if (has("fp32")) ks.push_back({"fp32", [&] { if (prepack) gemm::gemm(c.data(), N, gemm::view_f32(a.data(), M, K, K), p32, opt); else gemm::gemm(c.data(), N, gemm::view_f32(a.data(), M, K, K), gemm::view_f32(w.data(), N, K, K, true), opt); }, {}});
  if (has("dnnl")) ks.push_back({"onednn-bf16", [&] { mm.execute(strm, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DST, cm}}); strm.wait(); }, {}});
  if (has("blas")) ks.push_back({"openblas-f32", [&] { cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, a.data(), K, w.data(), K, 0.0f, c.data(), N); }, {}});
  for (auto& k : ks) { k.f(); k.f(); }
  const double flops = 2.0 * M * N * K;
  int inner = std::max<int>(1, (int)(1e10 / flops));  // >= ~30 ms per sample: CPU clocks of other threads tick at 4 ms
  for (int rep = 0; rep < reps; ++rep)
    for (size_t j = 0; j < ks.size(); ++j) {  // rotate the order: no kernel always follows another's cache state
      auto& k = ks[(j + rep) % ks.size()];
      k.f();  // warm: the official bench times repeated runs of one kernel (operands in cache)
      double t0 = now();
      for (int i = 0; i < inner; ++i) k.f();
      k.t.push_back((now() - t0) / inner);
    }
  static bool best = getenv("BEST") != nullptr;
  auto med = [](std::vector<double> v) { std::sort(v.begin(), v.end()); return best ? v[v.size() / 10] : v[v.size() / 2]; };
  double dn = 0, bl = 0;
  for (auto& k : ks) { if (k.name == "onednn-bf16") dn = flops / med(k.t) / 1e9; if (k.name == "openblas-f32") bl = flops / med(k.t) / 1e9; }
  printf("%ldx%ldx%ld thr %d%s:", M, N, K, omp_get_max_threads(), prepack ? " prepacked" : "");
  for (auto& k : ks) {
    const double g = flops / med(k.t) / 1e9;
    double ref = k.name == "fp32" ? bl : dn;
    printf("  %s %.0f", k.name.c_str(), g);
    if (ref > 0 && k.name != "onednn-bf16" && k.name != "openblas-f32") printf(" (%.2f)", g / ref);
  }
  printf("\n");
}
