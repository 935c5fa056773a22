// The blocked GEMM's front end: K layout, block plan, scale packing, B packing (pack_b)
// and dispatch to the portable or AVX-512 kernels. See gemm_blocked.h for the layouts.
#include "tinyseek/gemm/gemm_blocked.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string>
#include <utility>

#include "tinyseek/base/check.h"
#include "tinyseek/numerics/simd.h"

namespace tinyseek::gemm {

namespace detail {

namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The kernel's view of B's FP8 scales along K: B packed for the BF16 kernel if the backend
// has it and neither operand is F32.
bool use_pairs(Backend backend, DType a, DType b) {
  return backend == Backend::kAvx512 && a != DType::F32 && b != DType::F32;
}

int nr_of(Backend backend, bool pairs) { return backend == Backend::kAvx512 ? avx512_nr(pairs) : portable_nr(); }

// Packs op(B) into `units` (and its scales into `scales` if B is FP8), in parallel.
void pack_b_into(uint32_t* units, float* scales, const Matrix& B, const KLayout& kl, Backend backend, bool pairs) {
  if (backend == Backend::kAvx512) {
    pack_b_avx512(units, scales, B, kl, pairs);
  } else {
    pack_b_portable(units, scales, B, kl);
  }
}

// B's scale tiles are constant across every NR-wide panel: their extent along N is a
// multiple of NR (panels start at multiples of NR) or covers all of N.
bool scales_uniform_per_panel(const Matrix& B, int nr) {
  if (!is_fp8(B.dtype)) return true;
  const int64_t extent_n = B.trans ? B.grid.tile_rows : B.grid.tile_cols;
  return extent_n % nr == 0 || extent_n >= B.op_cols();
}

// Packed B up to this size is packed per task (PackJob): at most this much per thread,
// and a few tasks' worth of repeated packing is cheaper than sharing it across cores.
// 1 MiB: the expert-sized GEMMs (B <= 512 x 256) are per task, the transformer-sized
// ones (B >= 1024 x 1024) shared. Tests move it (set_per_task_b_limit).
size_t g_per_task_b_bytes = size_t{1} << 20;

size_t panel_units(int64_t N, const KLayout& kl, int nr) {
  return static_cast<size_t>(ceil_div(N, nr) * nr * kl.steps_total());
}
size_t scale_count(int64_t N, const KLayout& kl, int nr) { return static_cast<size_t>(ceil_div(N, nr) * nr * kl.groups); }

void run(float* C, int64_t ldc, const Matrix& A, const PanelsView& B, const GemmOptions& opt, Backend backend,
         const PackJob& job = {}) {
  if (backend == Backend::kAvx512) {
    run_avx512(C, ldc, A, B, opt, job);
  } else {
    run_portable(C, ldc, A, B, opt, job);
  }
}

// K == 0: every sum is empty, C = alpha·0 (+ beta·C), as the reference computes it.
void empty_k(float* C, int64_t ldc, int64_t M, int64_t N, const GemmOptions& opt) {
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      float& c = C[m * ldc + n];
      c = opt.beta == 0.0f ? opt.alpha * 0.0f : opt.alpha * 0.0f + opt.beta * c;
    }
}

Backend resolve_backend(Backend requested) {
  switch (requested) {
    case Backend::kAuto: return auto_backend();
    case Backend::kPortable: return Backend::kPortable;
    case Backend::kAvx512:
      TS_CHECK(cpu_has_avx512_bf16(), "GEMM backend 'avx512' requested but this CPU lacks AVX-512 with BF16",
               "use Backend::kAuto (picks the portable kernels here) or Backend::kPortable");
      return Backend::kAvx512;
    case Backend::kReference: break;
  }
  TS_FAIL("GEMM backend '" << to_string(requested) << "' has no blocked kernels",
          "use Backend::kAuto, kPortable or kAvx512");
}

}  // namespace

size_t set_per_task_b_limit(size_t bytes) { return std::exchange(g_per_task_b_bytes, bytes); }

KLayout make_klayout(int64_t K, int64_t G, int64_t width) {
  KLayout kl;
  kl.K = K, kl.G = G, kl.width = width;
  kl.groups = ceil_div(K, G);
  kl.steps_full = ceil_div(G, width);
  kl.steps_last = kl.groups == 0 ? 0 : ceil_div(K - (kl.groups - 1) * G, width);
  return kl;
}

namespace {

// The index of X's scale for element (r, c) of op(X) is row_part(r) + col_part(c): the
// grid index with op coordinates mapped to stored ones, split so that the packers divide
// once per row or column instead of twice per scale (the divisions cost 1-2% of a
// 512x256x256 FP8 GEMM).
struct OpScaleIndex {
  int64_t tile_rows, tile_cols, grid_cols;
  bool trans;
  explicit OpScaleIndex(const Matrix& X)
      : tile_rows(X.grid.tile_rows), tile_cols(X.grid.tile_cols), grid_cols(X.grid.grid_cols), trans(X.trans) {}
  int64_t row_part(int64_t r) const { return trans ? r / tile_cols : (r / tile_rows) * grid_cols; }
  int64_t col_part(int64_t c) const { return trans ? (c / tile_rows) * grid_cols : c / tile_cols; }
};

}  // namespace

void pack_a_scales(float* sa, const Matrix& A, int64_t m0, int64_t rows, int64_t g0, int64_t ng, int64_t G, int mr) {
  const int64_t panels = ceil_div(rows, mr);
  if (!is_fp8(A.dtype)) {  // sA = 1 beside a scaled B
    for (int64_t p = 0; p < panels; ++p)
      for (int64_t i = 0; i < ng * mr; ++i) sa[p * ng * mr + i] = p * mr + i % mr < rows ? 1.0f : 0.0f;
    return;
  }
  const OpScaleIndex at(A);
  int64_t row_part[kMaxMR];
  for (int64_t p = 0; p < panels; ++p) {
    const int valid = static_cast<int>(std::min<int64_t>(mr, rows - p * mr));
    for (int i = 0; i < valid; ++i) row_part[i] = at.row_part(m0 + p * mr + i);
    for (int64_t g = 0; g < ng; ++g) {
      const int64_t col_part = at.col_part((g0 + g) * G);
      float* d = sa + (p * ng + g) * mr;
      for (int i = 0; i < mr; ++i) d[i] = i < valid ? A.scales[row_part[i] + col_part] : 0.0f;
    }
  }
}

void pack_b_scales(float* sb, const Matrix& B, const KLayout& kl, int nr, int64_t j0, int64_t j1) {
  const int64_t N = B.op_cols();
  const OpScaleIndex at(B);
  int64_t col_part[kMaxNR];
  for (int64_t j = j0; j < j1; ++j) {
    const int valid = static_cast<int>(std::min<int64_t>(nr, N - j * nr));
    for (int i = 0; i < valid; ++i) col_part[i] = at.col_part(j * nr + i);
    for (int64_t g = 0; g < kl.groups; ++g) {
      const int64_t row_part = at.row_part(g * kl.G);
      float* d = sb + ((j - j0) * kl.groups + g) * nr;
      for (int i = 0; i < nr; ++i) d[i] = i < valid ? B.scales[row_part + col_part[i]] : 0.0f;
    }
  }
}

namespace {

// The size (a multiple of unit) of `blocks` near-equal blocks covering n.
int64_t even_blocks(int64_t n, int64_t blocks, int64_t unit) { return ceil_div(ceil_div(n, unit), blocks) * unit; }

// Shared B: the cache blocks are the tasks.
BlockPlan plan_shared(int64_t M, int64_t N, int mr, int nr, int64_t mc_max, int64_t nc_max, int threads) {
  BlockPlan p;
  const int64_t panels_m = ceil_div(M, mr), panels_n = ceil_div(N, nr);
  int64_t bm = ceil_div(M, mc_max), bn = ceil_div(N, nc_max);
  // Few tasks: look for a nearby task grid that divides evenly among the threads (a
  // thread with one task more than the others sets the time). Blocks keep >= 1 panel.
  if (threads > 1 && bm * bn < 8 * threads) {
    int64_t best_bm = bm, best_bn = bn;
    double best_eff = 0;
    for (int64_t tm = bm; tm <= std::min(panels_m, bm + threads); ++tm)
      for (int64_t tn = bn; tn <= std::min(panels_n, bn + threads); ++tn) {
        // Real block counts after rounding block sizes up to whole panels.
        const int64_t mc = even_blocks(M, tm, mr), nc = even_blocks(N, tn, nr);
        const int64_t rm = ceil_div(M, mc), rn = ceil_div(N, nc), tasks = rm * rn;
        const double eff = static_cast<double>(tasks) / (threads * ceil_div(tasks, threads));
        if (eff > best_eff + 1e-9) best_eff = eff, best_bm = tm, best_bn = tn;
      }
    bm = best_bm, bn = best_bn;
  }
  p.mc = p.mc_sub = even_blocks(M, bm, mr);
  p.nc = even_blocks(N, bn, nr);
  return p;
}

// Estimated time of the slowest thread, in multiply-adds, for the tasks of an mc x nc grid
// split evenly in order (thread t takes tasks [t·n/T, (t+1)·n/T): an approximation of
// run_blocked's dynamic schedule, exact when there are as many tasks as threads): per task
// its multiply-adds and packing; per thread the A rows and B columns it reads that the
// producers of A and B (parallel loops over even row ranges) left in another core's cache.
double per_task_time(int64_t M, int64_t N, int64_t K, int64_t mc, int64_t nc, int threads, const PackCosts& costs) {
  const int64_t bm = ceil_div(M, mc), bn = ceil_div(N, nc), tasks = bm * bn;
  double worst = 0;
  for (int t = 0; t < threads; ++t) {
    const int64_t lo = tasks * t / threads, hi = tasks * (t + 1) / threads;
    if (lo == hi) continue;
    double macs = 0, pack = 0;
    // Tasks [lo, hi) in row-major order touch row blocks [lo/bn, (hi-1)/bn] and, unless
    // they span a whole block row, column blocks [lo%bn, (hi-1)%bn].
    for (int64_t task = lo; task < hi; ++task) {
      const double rows = static_cast<double>(std::min(mc, M - task / bn * mc)),
                   cols = static_cast<double>(std::min(nc, N - task % bn * nc));
      macs += rows * cols;
      pack += costs.a * rows + costs.b * cols;
    }
    const int64_t r0 = lo / bn * mc, r1 = std::min(M, ((hi - 1) / bn + 1) * mc);
    const bool all_cols = hi - lo >= bn || (hi - 1) % bn < lo % bn;
    const int64_t c0 = all_cols ? 0 : lo % bn * nc, c1 = all_cols ? N : std::min(N, ((hi - 1) % bn + 1) * nc);
    // Rows [r0, r1) and columns [c0, c1) minus the thread's own even share of each.
    auto outside = [&](int64_t a0, int64_t a1, int64_t n) {
      const int64_t own0 = n * t / threads, own1 = n * (t + 1) / threads;
      return static_cast<double>((a1 - a0) - std::max<int64_t>(0, std::min(a1, own1) - std::max(a0, own0)));
    };
    const double remote = costs.remote_a * outside(r0, r1, M) + costs.remote_b * outside(c0, c1, N);
    worst = std::max(worst, macs + pack + remote);
  }
  return worst * static_cast<double>(K);
}

// Per-task B: every task packs its columns of B (and its rows of A, unless read in place)
// again, so the grid trades balance against repeated packing: the least per_task_time
// over grids of up to kMaxTasksPerThread tasks per thread (more only when N needs more
// than that many nc_max-wide tasks). Estimates within 0.5% count as equal; then fewer
// column blocks win (a row split matches how A and C are split everywhere else).
BlockPlan plan_per_task(int64_t M, int64_t N, int64_t K, int mr, int nr, int64_t mc_max, int64_t nc_max, int threads,
                        const PackCosts& costs) {
  const int64_t panels_m = ceil_div(M, mr), panels_n = ceil_div(N, nr);
  const int64_t tn_min = ceil_div(N, nc_max), max_tasks = std::max<int64_t>(kMaxTasksPerThread * threads, tn_min);
  BlockPlan best;
  double best_time = 0;
  for (int64_t tn = tn_min; tn <= std::min(panels_n, max_tasks); ++tn)
    for (int64_t tm = 1; tm <= panels_m && tm * tn <= max_tasks; ++tm) {
      const int64_t mc = even_blocks(M, tm, mr), nc = even_blocks(N, tn, nr);
      const double time = per_task_time(M, N, K, mc, nc, threads, costs);
      if (best_time == 0 || time < best_time * 0.995) {
        best_time = time;
        best.mc = mc, best.nc = nc;
      }
    }
  best.mc_sub = even_blocks(best.mc, ceil_div(best.mc, mc_max), mr);
  return best;
}

BlockLimits g_block_override;

int64_t round_down(int64_t v, int64_t unit) { return std::max(unit, v / unit * unit); }

}  // namespace

BlockLimits parse_block_limits(const char* text) {
  BlockLimits b;
  if (!text || !*text) return b;
  const std::string s = text;
  size_t pos = 0;
  while (pos <= s.size()) {
    const size_t end = std::min(s.find(',', pos), s.size());
    const std::string item = s.substr(pos, end - pos);
    const size_t eq = item.find('=');
    const std::string key = item.substr(0, eq == std::string::npos ? item.size() : eq);
    char* stop = nullptr;
    const long long v = eq == std::string::npos ? 0 : std::strtoll(item.c_str() + eq + 1, &stop, 10);
    TS_CHECK(eq != std::string::npos && stop && *stop == '\0' && v > 0 && v <= (1 << 20) &&
                 (key == "kc" || key == "mc" || key == "nc"),
             "TINYSEEK_GEMM_BLOCKS='" << s << "': bad item '" << item << "'",
             "use kc=<k-steps>,mc=<rows>,nc=<columns> (any subset, positive integers), e.g. kc=128,mc=256");
    (key == "kc" ? b.kc_steps : key == "mc" ? b.mc_max : b.nc_max) = v;
    pos = end + 1;
  }
  return b;
}

CacheSizes detected_cache_sizes() {
  static const CacheSizes c = [] {
    CacheSizes r;
#if defined(_SC_LEVEL1_DCACHE_SIZE) && defined(_SC_LEVEL2_CACHE_SIZE)
    r.l1d = std::max<long>(0, sysconf(_SC_LEVEL1_DCACHE_SIZE));
    r.l2 = std::max<long>(0, sysconf(_SC_LEVEL2_CACHE_SIZE));
#endif
    return r;
  }();
  return c;
}

BlockLimits derive_block_limits(const CacheSizes& caches, int mr, int nr, const BlockLimits& fallback) {
  BlockLimits b = fallback;
  const int64_t step_bytes = int64_t{4} * nr;  // one k-step of a B micro-panel
  if (caches.l1d > 0) {
    b.kc_one = std::clamp<int64_t>(round_down(caches.l1d / step_bytes, 32), 64, 512);
    b.kc_steps = std::clamp<int64_t>(round_down(caches.l1d * 2 / 3 / step_bytes, 32), 64, 512);
  }
  if (caches.l2 > 0) {
    b.mc_max = std::clamp<int64_t>(round_down(caches.l2 / 8 / (4 * 256), mr), mr, 512);
    b.acc_bytes = caches.l2 / 4;
  }
  return b;
}

BlockLimits effective_block_limits(const BlockLimits& kernel) {
  static const BlockLimits env = parse_block_limits(std::getenv("TINYSEEK_GEMM_BLOCKS"));
  BlockLimits b = kernel;
  auto apply = [&b](const BlockLimits& o) {
    if (o.kc_steps > 0) b.kc_steps = b.kc_one = o.kc_steps;
    if (o.mc_max > 0) b.mc_max = o.mc_max;
    if (o.nc_max > 0) b.nc_max = o.nc_max, b.acc_bytes = 0;
    if (o.kc_one > 0) b.kc_one = o.kc_one;
    if (o.acc_bytes > 0) b.acc_bytes = o.acc_bytes;
  };
  apply(env);
  apply(g_block_override);
  return b;
}

BlockLimits limits_for_k(const BlockLimits& lim, const KLayout& kl, int nr) {
  BlockLimits r = lim;
  if (kl.steps_total() <= lim.kc_one) {
    r.kc_steps = std::max(lim.kc_steps, kl.groups * kl.steps_full);
  } else if (lim.acc_bytes > 0) {
    r.nc_max = std::min(lim.nc_max, round_down(lim.acc_bytes / (4 * std::max<int64_t>(lim.mc_max, 1)), nr));
  }
  return r;
}

BlockLimits set_block_limits_override(const BlockLimits& limits) { return std::exchange(g_block_override, limits); }

BlockPlan plan_blocks(int64_t M, int64_t N, const KLayout& kl, int mr, int nr, int64_t mc_max, int64_t nc_max,
                      int64_t kc_steps, int threads, const PackCosts& costs) {
  BlockPlan p = costs.b > 0 ? plan_per_task(M, N, kl.K, mr, nr, mc_max, nc_max, threads, costs)
                            : plan_shared(M, N, mr, nr, mc_max, nc_max, threads);
  p.kc_groups = std::clamp<int64_t>(kc_steps / std::max<int64_t>(kl.steps_full, 1), 1, std::max<int64_t>(kl.groups, 1));
  p.blocks_m = ceil_div(M, p.mc);
  p.blocks_n = ceil_div(N, p.nc);
  return p;
}

void gemm_blocked(float* C, int64_t ldc, const Matrix& A, const Matrix& B, const GemmOptions& opt, int64_t G) {
  const Backend backend = resolve_backend(opt.backend);
  const int64_t M = A.op_rows(), N = B.op_cols(), K = A.op_cols();
  if (M == 0 || N == 0) return;
  if (K == 0) return empty_k(C, ldc, M, N, opt);
  const bool pairs = use_pairs(backend, A.dtype, B.dtype);
  const int nr = nr_of(backend, pairs);
  PanelsView view;
  view.kl = make_klayout(K, G, pairs ? 2 : 1);
  view.N = N, view.nr = nr, view.pairs = pairs;
  view.scales_uniform = scales_uniform_per_panel(B, nr);
  // B is packed afresh on every call (pack_b avoids that). Small B: by each task, for its
  // own columns (PackJob); otherwise once, shared, into the calling thread's scratch.
  if (panel_units(N, view.kl, nr) * sizeof(uint32_t) <= g_per_task_b_bytes)
    return run(C, ldc, A, view, opt, backend, PackJob{&B});
  thread_local Scratch<uint32_t> units;
  thread_local Scratch<float> scales;
  uint32_t* u = units.get(panel_units(N, view.kl, nr));
  float* s = is_fp8(B.dtype) ? scales.get(scale_count(N, view.kl, nr)) : nullptr;
  view.units = u, view.scales = s;
  run(C, ldc, A, view, opt, backend, PackJob{&B, u, s});
}

}  // namespace detail

Backend auto_backend() {
  return simd_path() == SimdPath::Avx512Bf16 ? Backend::kAvx512 : Backend::kPortable;
}

PackedB pack_b(const Matrix& B, const GemmOptions& opt, int64_t group) {
  PackedB p;
  pack_b(p, B, opt, group);
  return p;
}

void pack_b(PackedB& p, const Matrix& B, const GemmOptions& opt, int64_t group) {
  detail::validate_operand(B, "B");
  TS_CHECK(opt.backend != Backend::kReference, "pack_b: the reference backend has no packed form",
           "pack for Backend::kAuto, kPortable or kAvx512, or call gemm() with the unpacked B");
  TS_CHECK(group >= 0, "pack_b: group must be >= 0, got " << group, "0 derives it from B's scales and promote_every");
  const Backend backend = detail::resolve_backend(opt.backend);
  const int64_t K = B.op_rows(), N = B.op_cols();
  // G from B alone: A will need the same (checked by gemm()).
  const int64_t G = group > 0 ? group : promotion_interval(Matrix{}, B, opt.promote_every);
  if (is_fp8(B.dtype)) {
    const int64_t extent = B.trans ? B.grid.tile_cols : B.grid.tile_rows;
    TS_CHECK(extent % G == 0 || extent >= K,
             "pack_b: B's scale tiles span " << extent << " elements along K, not a multiple of group " << G,
             "pass a group that divides B's scale tiles along K (e.g. 128 for 128x128 blocks, 32 for MX)");
  }
  p.backend = backend;
  p.bf16_pairs = backend == Backend::kAvx512 && B.dtype != DType::F32;
  p.fp8_codes = p.bf16_pairs && is_fp8(B.dtype) && opt.compact_fp8;
  p.K = K, p.N = N, p.G = G;
  p.source = B;
  p.source.data = nullptr;
  p.source.scales = nullptr;
  if (N == 0 || K == 0) {
    p.panels.resize(0);
    p.codes.resize(0);
    p.scales.resize(0);
    return;
  }
  const int nr = detail::nr_of(backend, p.bf16_pairs);
  const detail::KLayout kl = detail::make_klayout(K, G, p.bf16_pairs ? 2 : 1);
  p.scales.resize(is_fp8(B.dtype) ? detail::scale_count(N, kl, nr) : 0);
  if (p.fp8_codes) {
    p.panels.resize(0);
    p.codes.resize(detail::panel_units(N, kl, nr) * 2);
    detail::pack_b_codes_avx512(p.codes.data(), p.scales.data(), B, kl);
    return;
  }
  p.codes.resize(0);
  p.panels.resize(detail::panel_units(N, kl, nr));
  detail::pack_b_into(p.panels.data(), is_fp8(B.dtype) ? p.scales.data() : nullptr, B, kl, backend, p.bf16_pairs);
}

void gemm(float* C, int64_t ldc, const Matrix& A, const PackedB& B, const GemmOptions& opt) {
  TS_CHECK(!B.empty(), "gemm: the packed B is empty", "create it with pack_b(B, opt)");
  detail::validate_operand(A, "A");
  TS_CHECK(A.op_cols() == B.K,
           "inner dimensions differ: op(A) is [" << A.op_rows() << ", " << A.op_cols() << "] but the packed B is ["
                                                 << B.K << ", " << B.N << "]",
           "op(A) must be [M, K] and op(B) [K, N]; check A's trans flag");
  TS_CHECK(opt.backend == Backend::kAuto || opt.backend == B.backend,
           "gemm: B was packed for backend '" << to_string(B.backend) << "' but '" << to_string(opt.backend)
                                              << "' was requested",
           "use Backend::kAuto with a packed B, or pack B for the backend you want");
  TS_CHECK(opt.accumulation == Accumulation::kFp32,
           "gemm: the tensor-core accumulation model runs only in the reference implementation",
           "call gemm() with the unpacked B for Accumulation::kTensorCore");
  TS_CHECK(!(B.bf16_pairs && A.dtype == DType::F32),
           "gemm: A is f32 but B (" << to_string(B.source.dtype) << ") was packed for the BF16 kernel",
           "quantize A to BF16/FP8, or call gemm() with the unpacked B (the FP32 kernel handles mixed operands)");
  const int64_t M = A.op_rows(), N = B.N;
  detail::validate_output(C, ldc, M, N, opt);
  // The G these operands need must be the one B was cut for.
  Matrix b = B.source;
  const float dummy = 0.0f;
  b.data = &dummy;
  b.scales = is_fp8(b.dtype) ? &dummy : nullptr;
  const int64_t G = detail::checked_promotion_interval(A, b, opt.promote_every);
  TS_CHECK(G == B.G,
           "gemm: A and B need promotion groups of " << G << " elements but B was packed for groups of " << B.G,
           "pack B with pack_b(B, opt, /*group=*/" << G << ")");
  if (M == 0 || N == 0) return;
  if (B.K == 0) return detail::empty_k(C, ldc, M, N, opt);
  detail::PanelsView view;
  view.kl = detail::make_klayout(B.K, B.G, B.bf16_pairs ? 2 : 1);
  view.N = N, view.nr = detail::nr_of(B.backend, B.bf16_pairs), view.pairs = B.bf16_pairs;
  if (B.fp8_codes) {
    view.codes = B.codes.data();
    view.code_type = B.source.dtype;
  } else {
    view.units = B.panels.data();
  }
  view.scales = B.scales.empty() ? nullptr : B.scales.data();
  view.scales_uniform = detail::scales_uniform_per_panel(B.source, view.nr);
  detail::run(C, ldc, A, view, opt, B.backend);
}

}  // namespace tinyseek::gemm
