// The blocked GEMM's front end: K layout, block plan, scale packing, B packing (pack_b)
// and dispatch to the portable or AVX-512 kernels. See gemm_blocked.h for the layouts.
#include "tinyseek/gemm/gemm_blocked.h"

#include <algorithm>
#include <cmath>

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
      float* d = sb + (j * kl.groups + g) * nr;
      for (int i = 0; i < nr; ++i) d[i] = i < valid ? B.scales[row_part + col_part[i]] : 0.0f;
    }
  }
}

BlockPlan plan_blocks(int64_t M, int64_t N, const KLayout& kl, int mr, int nr, int64_t mc_max, int64_t nc_max,
                      int64_t kc_steps, int threads) {
  BlockPlan p;
  p.kc_groups = std::clamp<int64_t>(kc_steps / std::max<int64_t>(kl.steps_full, 1), 1, std::max<int64_t>(kl.groups, 1));
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
        const int64_t mc = ceil_div(panels_m, tm) * mr, nc = ceil_div(panels_n, tn) * nr;
        const int64_t rm = ceil_div(M, mc), rn = ceil_div(N, nc), tasks = rm * rn;
        const double eff = static_cast<double>(tasks) / (threads * ceil_div(tasks, threads));
        if (eff > best_eff + 1e-9) best_eff = eff, best_bm = tm, best_bn = tn;
      }
    bm = best_bm, bn = best_bn;
  }
  p.mc = ceil_div(panels_m, bm) * mr;
  p.nc = ceil_div(panels_n, bn) * nr;
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
  // The calling thread's scratch: B is packed afresh on every call (pack_b avoids that).
  thread_local Scratch<uint32_t> units;
  thread_local Scratch<float> scales;
  uint32_t* u = units.get(panel_units(N, view.kl, nr));
  float* s = is_fp8(B.dtype) ? scales.get(scale_count(N, view.kl, nr)) : nullptr;
  view.units = u, view.scales = s;
  view.scales_uniform = scales_uniform_per_panel(B, nr);
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
  p.K = K, p.N = N, p.G = G;
  p.source = B;
  p.source.data = nullptr;
  p.source.scales = nullptr;
  if (N == 0 || K == 0) {
    p.panels.resize(0);
    p.scales.resize(0);
    return;
  }
  const int nr = detail::nr_of(backend, p.bf16_pairs);
  const detail::KLayout kl = detail::make_klayout(K, G, p.bf16_pairs ? 2 : 1);
  p.panels.resize(detail::panel_units(N, kl, nr));
  p.scales.resize(is_fp8(B.dtype) ? detail::scale_count(N, kl, nr) : 0);
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
  view.units = B.panels.data();
  view.scales = B.scales.empty() ? nullptr : B.scales.data();
  view.scales_uniform = detail::scales_uniform_per_panel(B.source, view.nr);
  detail::run(C, ldc, A, view, opt, B.backend);
}

}  // namespace tinyseek::gemm
