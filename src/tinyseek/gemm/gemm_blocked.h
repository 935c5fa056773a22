// Internal: the blocked GEMM shared by the portable (gemm_portable.cc) and AVX-512
// (gemm_avx512.cc) backends — how K is cut into promotion groups and packed k-steps, the
// packed-panel views, the block plan, the micro-kernel's arguments and the driver loop.
// Not part of the public API; the scheme is documented in gemm.h ("Blocked kernels").
//
// Packed layouts (a "unit" is 32 bits: one FP32 value, or a BF16 k-pair with the smaller k
// in the low half, as vdpbf16ps reads it):
//   B panels   [ceil(N/NR)][steps_total][NR]   zero beyond N; group g starts at step g·steps_full
//   B scales   [ceil(N/NR)][groups][NR]        sB(g, n), zero beyond N (FP8 operands only)
//   A block    per MR-panel, either
//                row layout  [MR][S]   (op(A) = A stored [M,K]: a straight copy of each row)
//                step layout [S][MR]   (op(A) = Aᵀ, A stored [K,M]: a straight copy of rows)
//              S = the block's k-steps; rows beyond M are zero
//   A scales   per MR-panel [groups of the block][MR] = sA(m, g)
// Either layout makes packing a copy/widen with no transposes; the micro-kernel broadcasts
// A units from whichever layout, so both orientations of training (Fprop/Dgrad: A = X or
// dY; Wgrad: A = dYᵀ) pack at streaming speed. Only B used transposed (Fprop's W) needs a
// transpose, and weights are packed once per step (pack_b).
//
// The driver template lives in an anonymous namespace: each backend's .cc instantiates its
// own copy compiled with its own flags (no ODR sharing of AVX-512 code with portable code).
#pragma once
#include <algorithm>
#include <cstdint>

#include "tinyseek/base/aligned.h"
#include "tinyseek/base/parallel.h"
#include "tinyseek/gemm/gemm_internal.h"

namespace tinyseek::gemm::detail {

// K cut into `groups` promotion groups of G elements (the last may be shorter); group g is
// packed as group_steps(g) k-steps of `width` elements (1: FP32; 2: BF16 pairs, a group of
// odd length ends with a pair whose second element is a zero).
struct KLayout {
  int64_t K = 0, G = 1, groups = 0, width = 1, steps_full = 0, steps_last = 0;
  int64_t steps_total() const { return groups == 0 ? 0 : (groups - 1) * steps_full + steps_last; }
  int64_t group_len(int64_t g) const { return std::min(G, K - g * G); }
  int64_t group_steps(int64_t g) const { return g == groups - 1 ? steps_last : steps_full; }
};
KLayout make_klayout(int64_t K, int64_t G, int64_t width);

// A packed op(B) as the kernels read it.
struct PanelsView {
  const uint32_t* units = nullptr;  // [panels][steps_total][NR]
  const uint8_t* codes = nullptr;   // instead of units: compact FP8 B, [panels][steps_total][NR][2]
                                    // codes of `code_type`, widened per kc block by the kernel
  DType code_type = DType::E4M3;
  const float* scales = nullptr;    // [panels][groups][NR]; null when B carries no scales
  bool scales_uniform = false;      // every (panel, group) has one scale for all NR columns
  int64_t N = 0;
  int nr = 0;
  bool pairs = false;
  KLayout kl;
};

// Grow-only scratch (allocation and page faults once per thread, not per call).
template <class T>
struct Scratch {
  AlignedBuffer<T> buf;
  T* get(size_t n) {
    if (buf.size() < n) buf.resize(n);
    return buf.data();
  }
};

// Largest micro-tile any backend uses (checked at compile time in run_blocked).
constexpr int kMaxMR = 16, kMaxNR = 64;

// Scales of an A block: sa[(p·ng + g)·mr + i] = sA(m0 + p·mr + i, g0 + g), zero past M
// (1 for a BF16/F32 A beside a scaled B).
void pack_a_scales(float* sa, const Matrix& A, int64_t m0, int64_t rows, int64_t g0, int64_t ng, int64_t G, int mr);
// Scales of B panels [j0, j1): sb[((j - j0)·groups + g)·nr + i] = sB(g, j·nr + i), zero past N.
void pack_b_scales(float* sb, const Matrix& B, const KLayout& kl, int nr, int64_t j0, int64_t j1);

// B to pack inside run_blocked's parallel region (gemm() with an unpacked B: one fork/join
// per call instead of two, which matters for expert-sized GEMMs), or nothing (src null).
//   units non-null: shared packing. The threads pack all of op(B) into units / scales
//                   (where PanelsView points), a barrier, then every task reads it.
//   units null:     per-task packing. Each task packs the panels of its own columns into
//                   its thread's scratch: no barrier and no packed data crossing cores
//                   (a panel packed by the other core is read from that core's cache,
//                   which cost more than packing it again: 12% of a 512x256x256 GEMM on
//                   2 threads). For small B (gemm_blocked decides); the plan then weighs
//                   the packing each task repeats against balance.
struct PackJob {
  const Matrix* src = nullptr;
  uint32_t* units = nullptr;  // where PanelsView::units points
  float* scales = nullptr;    // where PanelsView::scales points (FP8 B)
};

// Per backend (gemm_avx512.cc / gemm_portable.cc). pack_b_*: the whole of op(B) in its own
// parallel region (pack_b()).
int avx512_nr(bool pairs);
// Whether the AVX-512 packers widen FP8 with AVX512-VBMI byte lookups (default: when the
// CPU has it). For tests: both ways must give the same bits. Returns the previous setting.
bool avx512_set_vbmi(bool on);
void pack_b_avx512(uint32_t* units, float* scales, const Matrix& B, const KLayout& kl, bool pairs);
// FP8 B into compact code panels (PanelsView::codes) for the AVX-512 BF16 kernel.
void pack_b_codes_avx512(uint8_t* codes, float* scales, const Matrix& B, const KLayout& kl);
// For tests and benchmarks: whether pack_b_codes_avx512 moves the codes straight into the
// panels (default, with VBMI) or packs BF16 pairs and narrows them back (the fallback);
// both must give the same bytes. Returns the previous setting.
bool avx512_set_direct_codes(bool on);
void run_avx512(float* C, int64_t ldc, const Matrix& A, const PanelsView& B, const GemmOptions& opt,
                const PackJob& job);
int portable_nr();
void pack_b_portable(uint32_t* units, float* scales, const Matrix& B, const KLayout& kl);
void run_portable(float* C, int64_t ldc, const Matrix& A, const PanelsView& B, const GemmOptions& opt,
                  const PackJob& job);

// The blocked path of gemm() (validated operands, G from checked_promotion_interval,
// opt.backend kAuto, kPortable or kAvx512): packs B while running (PackJob), per task when
// the packed op(B) takes at most the per-task limit (1 MiB), else shared.
void gemm_blocked(float* C, int64_t ldc, const Matrix& A, const Matrix& B, const GemmOptions& opt, int64_t G);
// For tests: sets the per-task limit in bytes (0: always shared); returns the previous one.
size_t set_per_task_b_limit(size_t bytes);

// Per-task plans have at most this many tasks per thread (more only when N needs more
// nc_max-wide tasks): enough to balance, few enough that repeated packing stays small.
constexpr int64_t kMaxTasksPerThread = 4;

// How the output is cut into tasks (mc x nc blocks of C, any thread takes any task), each
// task's rows into A blocks of mc_sub rows, and K into kc blocks.
struct BlockPlan {
  int64_t mc = 0, nc = 0, blocks_m = 0, blocks_n = 0, mc_sub = 0, kc_groups = 1;
  int64_t tasks() const { return blocks_m * blocks_n; }
};
// What packing costs, per element, relative to one multiply-add of the kernel: A's (0 when
// the kernel reads A in place) and B's when every task packs its own columns (per-task
// packing), 0 when B is packed once for all tasks; and what reading an element of A or B
// from another core's cache costs on top (per-task plans).
struct PackCosts {
  double a = 0, b = 0, remote_a = 0, remote_b = 0;
};
// The limits a block plan respects (all speed, never bits): kc blocks of <= kc_steps
// k-steps (whole groups, at least one), except that a K of <= kc_one k-steps runs as one
// kc block; A blocks of <= mc_max rows; tasks of <= nc_max columns, and, when K spans
// several kc blocks, of <= acc_bytes of running sums (mc_max x nc FP32; 0: no such cap).
// 0 in an override: keep the kernel's value.
struct BlockLimits {
  int64_t kc_steps = 0, mc_max = 0, nc_max = 0, kc_one = 0, acc_bytes = 0;
};
// One core's L1 data cache and L2 in bytes, 0 when unknown (sysconf, which glibc answers
// from CPUID; read once).
struct CacheSizes {
  int64_t l1d = 0, l2 = 0;
};
CacheSizes detected_cache_sizes();
// The AVX-512 kernels' limits for the caches (a 0 size keeps `fallback`'s fields), for a
// B micro-panel of NR 32-bit units per k-step (multiples of 32 steps, in [64, 512]):
//   kc_one     the B micro-panel fills L1 (Zen 4 256, Zen 5 384 steps): a K that fits runs
//              as one kc block: its running sums never leave registers for memory. On Zen 4
//              (1 MiB L2) at K = 512 one block of 256 steps beat two of 128 by 3-7%.
//   kc_steps   otherwise the micro-panel takes 2/3 of L1, the rest for the MR A rows
//              streaming past it, the C / running-sum tile and prefetched lines (Zen 5
//              48 KiB: 256 steps, as tuned there; Zen 4 32 KiB: 160, i.e. 2 groups of 128
//              BF16 pairs; at 1024^3 kc 128-160 measured 0-4% faster than 256 there).
//   mc_max     an A block of 256 k-steps takes 1/8 of L2 (128 rows at 1 MiB).
//   acc_bytes  1/4 of L2: the running sums (mc x nc FP32, written and re-read once per kc
//              block) stay in L2 beside the A block and the streaming B panels; at 1 MiB
//              nc <= 512 (2048^3 on Zen 4, 2 threads: 2-5% faster than nc 1024).
//   nc_max     `fallback`'s (1024).
// Measurements: bench/RESULTS.md (2026-12-08, Zen 4).
BlockLimits derive_block_limits(const CacheSizes& caches, int mr, int nr, const BlockLimits& fallback);
// `kernel` with the overrides applied, field by field: the environment,
// TINYSEEK_GEMM_BLOCKS="kc=<k-steps>,mc=<rows>,nc=<columns>" (any subset; read once; for
// experiments), then set_block_limits_override (tests). A forced kc is also kc_one (K is
// cut at kc whatever its length); a forced nc drops the acc_bytes cap.
BlockLimits effective_block_limits(const BlockLimits& kernel);
// TINYSEEK_GEMM_BLOCKS' text as limits (null or empty: none); throws on a bad item.
BlockLimits parse_block_limits(const char* text);
// For tests: overrides the limits (0 fields keep the kernel's or the environment's);
// returns the previous override. Not thread safe (set it between GEMM calls).
BlockLimits set_block_limits_override(const BlockLimits& limits);
// The limits for one K layout: kc_steps = all of K's groups when K fits in kc_one,
// nc_max capped by acc_bytes (a multiple of nr) when K spans several kc blocks.
BlockLimits limits_for_k(const BlockLimits& lim, const KLayout& kl, int nr);

// Shared B (costs.b == 0): mc <= mc_max and nc <= nc_max (multiples of mr / nr), enough
// tasks for `threads` and a task count that splits evenly when tasks are few; mc_sub = mc.
// Per-task B (costs.b > 0): the task grid with the least estimated time per thread
// (multiply-adds plus the packing each task repeats), tasks no wider than nc_max,
// mc_sub <= mc_max. kc_groups = the groups that fit in kc_steps k-steps. Only the speed
// depends on the plan, never the bits.
BlockPlan plan_blocks(int64_t M, int64_t N, const KLayout& kl, int mr, int nr, int64_t mc_max, int64_t nc_max,
                      int64_t kc_steps, int threads, const PackCosts& costs);

// One micro-kernel call: an MR x NR tile of C over the groups of one kc block.
struct MicroArgs {
  const uint32_t* a = nullptr;  // the A panel (row layout: row i at a + i·a_stride)
  int64_t a_stride = 0;         // row layout: units between panel rows (the block's k-steps)
  const uint32_t* b = nullptr;  // the B panel at the block's first step
  const float* sa = nullptr;    // [groups][MR]    (scaled kernels only)
  const float* sb = nullptr;    // [groups][NR], or one [NR] row when sb_gstride == 0
  int64_t sb_gstride = 0;
  bool sb_uniform = false;      // sB is the same for all NR columns of every group
  int64_t groups = 0, steps_full = 0, steps_last = 0;  // of this block
  float* acc = nullptr;         // running sums between kc blocks: MR x NR at ld ldacc
  int64_t ldacc = 0;
  bool first = false, last = false;  // block holds K's first / last group
  float* c = nullptr;           // the C tile (written when last)
  const float* c_next = nullptr;    // the next call's C tile, and acc tile (prefetched)
  const float* acc_next = nullptr;
  const char* b_pf = nullptr;   // lines of the next NR panel's B block to prefetch
  int64_t b_pf_lines = 0;
  int64_t ldc = 0;
  int rows = 0, cols = 0;       // valid rows / columns of the C tile
  float alpha = 1.0f, beta = 0.0f;
};
using MicroKernel = void (*)(const MicroArgs&);

namespace {

// The templates below take a backend's Kernel, which provides:
//   MR, NR                              the micro-tile
//   limits()                            the block plan's limits (BlockLimits; before
//                                       effective_block_limits' overrides)
//   pack_b_panel(dst, B, kl, j, scratch) and pack_b_scratch_units(kl): panel j of op(B) into dst
//   pack_a(dst, A, m0, rows, g0, ng, kl, S): ceil(rows/MR) panels of an A block
//   reads_a_directly(A, kl): whether the kernel can broadcast units straight from A's
//                        stored rows (row layout, stored element = unit), skipping pack_a
//   pack_a_cost(dtype), pack_b_cost(dtype), remote_cost_per_byte: packing cost per
//                        element and cost of a byte from another core's cache, in
//                        multiply-adds (PackCosts, for the plan)
//   select(scaled, step_layout) -> MicroKernel

inline int dtype_bytes(DType d) { return d == DType::F32 ? 4 : (d == DType::BF16 ? 2 : 1); }

// A's stored rows as row-layout units (when Kernel::reads_a_directly): element (r, k) of
// op(A) = A starts the unit run, one row every a_direct_stride units.
inline const uint32_t* a_direct_at(const Matrix& A, int64_t r, int64_t k) {
  return reinterpret_cast<const uint32_t*>(static_cast<const char*>(A.data) + (r * A.ld + k) * dtype_bytes(A.dtype));
}
inline int64_t a_direct_stride(const Matrix& A) { return A.ld * dtype_bytes(A.dtype) / 4; }

// Packs panels [0, panels) of op(B) and their scales, split over the threads of the
// enclosing parallel region (an omp for: ends with a barrier). Dynamic schedule: a panel's
// bits do not depend on which thread packs it, and on a shared machine a descheduled thread
// should not hold the other one up (the same for the tasks in run_blocked).
template <class Kernel>
void pack_b_panels(const PackJob& job, const KLayout& kl, uint32_t* scratch) {
  const int64_t panels = (job.src->op_cols() + Kernel::NR - 1) / Kernel::NR;
#pragma omp for schedule(dynamic, 2)
  for (int64_t j = 0; j < panels; ++j) {
    Kernel::pack_b_panel(job.units + j * kl.steps_total() * Kernel::NR, *job.src, kl, j, scratch);
    if (job.scales) pack_b_scales(job.scales + j * kl.groups * Kernel::NR, *job.src, kl, Kernel::NR, j, j + 1);
  }
}

// All of op(B) in a parallel region of its own (pack_b()).
template <class Kernel>
void pack_b_blocked(uint32_t* units, float* scales, const Matrix& B, const KLayout& kl) {
  const int threads = max_threads();
  const int64_t per_thread = Kernel::pack_b_scratch_units(kl);
  thread_local Scratch<uint32_t> scratch;
  uint32_t* all = scratch.get(static_cast<size_t>(std::max<int64_t>(per_thread * threads, 1)));
  const PackJob job{&B, units, scales};
#pragma omp parallel num_threads(threads)
  pack_b_panels<Kernel>(job, kl, all + thread_id() * per_thread);
}

// The loops of the blocked GEMM (gemm.h, "Blocked kernels"): one parallel region that
// packs B as `job` says (PackJob), then runs the tasks.
template <class Kernel>
void run_blocked(float* C, int64_t ldc, const Matrix& A, const PanelsView& B, const GemmOptions& opt,
                 const PackJob& job) {
  constexpr int MR = Kernel::MR, NR = Kernel::NR;
  static_assert(MR <= kMaxMR && NR <= kMaxNR, "the scale packers' scratch is sized by kMaxMR / kMaxNR");
  const int64_t M = A.op_rows(), N = B.N;
  const KLayout& kl = B.kl;
  const bool per_task_b = job.src && !job.units;
  const bool b_scaled = per_task_b ? is_fp8(job.src->dtype) : B.scales != nullptr;
  const bool scaled = is_fp8(A.dtype) || b_scaled;
  const bool step_layout = A.trans;
  const MicroKernel micro = Kernel::select(scaled, step_layout);
  // BF16 (FP32) A in row layout is read in place: packing it would only copy it (8% of a
  // 512x256x256 BF16 GEMM). Only a partial last MR panel is packed (zero rows past M).
  const bool a_direct = Kernel::reads_a_directly(A, kl);
  const int threads = max_threads();
  PackCosts costs;
  if (!a_direct) costs.a = Kernel::pack_a_cost(A.dtype);
  if (per_task_b) {
    costs.b = Kernel::pack_b_cost(job.src->dtype);
    costs.remote_a = Kernel::remote_cost_per_byte * dtype_bytes(A.dtype);
    costs.remote_b = Kernel::remote_cost_per_byte * dtype_bytes(job.src->dtype);
  }
  const BlockLimits lim = limits_for_k(effective_block_limits(Kernel::limits()), kl, NR);
  const BlockPlan plan = plan_blocks(M, N, kl, MR, NR, lim.mc_max, lim.nc_max, lim.kc_steps, threads, costs);
  const int64_t mc_pad = (plan.mc_sub + MR - 1) / MR * MR, nc_pad = (plan.nc + NR - 1) / NR * NR;
  const int64_t kc_units = plan.kc_groups * kl.steps_full, steps_total = kl.steps_total();
  // Per-thread slices of the calling thread's scratch: A block, B panels (per-task
  // packing) and the packers' scratch; A scales, B scales, running sums. Slices start on
  // 64-byte boundaries (16 units): the packers use aligned vector stores.
  auto round16 = [](int64_t n) { return (n + 15) / 16 * 16; };
  const int64_t a_units = round16(mc_pad * kc_units), b_units = per_task_b ? round16(nc_pad * steps_total) : 0;
  const int64_t pack_units = job.src ? Kernel::pack_b_scratch_units(kl) : 0;
  // Compact FP8 B: widened to BF16 pairs either per (A block, panel), the panel's kc block
  // into a per-thread buffer read from L1 (compact_b), or, when the threads would widen
  // every panel again for each of several A blocks, once per call: all panels into one
  // shared buffer, a barrier, then the tasks read it like BF16 panels (wide_once). The
  // per-block widening is ~2-3% of an FP8 GEMM with K <= 512 (1 thread, CPU time: widening
  // once is 0.5-2.7% faster at 1024x512x256 ... 4096x1024x128); the widened bits are the
  // same either way. With several threads half the panels come from the other core's
  // cache, so widening once must save more: at least 4 A blocks per thread.
  const int64_t panels_b = (N + NR - 1) / NR;
  constexpr bool can_widen = requires { Kernel::widen_codes; };
  const bool wide_once = can_widen && B.codes != nullptr &&
                         plan.blocks_m >= (threads == 1 ? 2 : 4 * static_cast<int64_t>(threads));
  const bool compact_b = B.codes != nullptr && !wide_once;
  const int64_t wide_units = compact_b ? round16(kc_units * NR) : 0;
  thread_local Scratch<uint32_t> wide_scratch;
  uint32_t* wide_all = wide_once ? wide_scratch.get(static_cast<size_t>(panels_b * steps_total * NR)) : nullptr;
  const int64_t sa_count = round16(mc_pad * plan.kc_groups), sb_count = per_task_b && b_scaled ? round16(nc_pad * kl.groups) : 0;
  const int64_t acc_count = mc_pad * nc_pad;
  const int64_t per_thread_units = round16(a_units + b_units + pack_units + wide_units);
  const int64_t per_thread_floats = round16(sa_count + sb_count + acc_count + NR);
  thread_local Scratch<uint32_t> units_scratch;
  thread_local Scratch<float> float_scratch;
  uint32_t* units_all = units_scratch.get(static_cast<size_t>(per_thread_units * threads));
  float* floats_all = float_scratch.get(static_cast<size_t>(per_thread_floats * threads));
#pragma omp parallel num_threads(threads)
  {
    const int t = thread_id();
    uint32_t* a_blk = units_all + t * per_thread_units;
    uint32_t* b_blk = a_blk + a_units;
    uint32_t* pack_scratch = b_blk + b_units;
    uint32_t* b_wide = pack_scratch + pack_units;
    if (job.src && !per_task_b) pack_b_panels<Kernel>(job, kl, pack_scratch);
    if constexpr (can_widen) {
      if (wide_once) {
#pragma omp for schedule(dynamic, 2)  // ends with the barrier before any task reads a panel
        for (int64_t j = 0; j < panels_b; ++j)
          Kernel::widen_codes(wide_all + j * steps_total * NR, B.codes + j * steps_total * NR * 2, steps_total * NR,
                              B.code_type);
      }
    }
    float* sa_blk = floats_all + t * per_thread_floats;
    float* sb_blk = sa_blk + sa_count;
    float* acc = sb_blk + sb_count;
    float* ones = acc + acc_count;  // sB of an unscaled B beside a scaled A
    std::fill(ones, ones + NR, 1.0f);
    MicroArgs x;
    x.ldacc = nc_pad;
    x.ldc = ldc;
    x.alpha = opt.alpha, x.beta = opt.beta;
    x.steps_full = kl.steps_full;
    // One task: whole mc x nc tiles of C over all of K, so any thread may take any task
    // without changing a bit.
    auto run_task = [&](int64_t task) {
      const int64_t ic0 = task / plan.blocks_n * plan.mc, jc = task % plan.blocks_n * plan.nc;
      const int64_t rows_task = std::min(plan.mc, M - ic0), cols_blk = std::min(plan.nc, N - jc);
      // The task's B panels, panel jc / NR first: its own packed copy, or the shared ones.
      const uint32_t* b_units = b_blk;
      const uint8_t* b_codes = nullptr;
      const float* b_scales = b_scaled ? sb_blk : nullptr;
      if (per_task_b) {
        const int64_t j0 = jc / NR, j1 = (jc + cols_blk + NR - 1) / NR;
        for (int64_t j = j0; j < j1; ++j) {
          Kernel::pack_b_panel(b_blk + (j - j0) * steps_total * NR, *job.src, kl, j, pack_scratch);
          if (b_scaled) pack_b_scales(sb_blk + (j - j0) * kl.groups * NR, *job.src, kl, NR, j, j + 1);
        }
      } else if (compact_b) {
        b_codes = B.codes + jc / NR * steps_total * NR * 2;
        b_scales = B.scales ? B.scales + jc / NR * kl.groups * NR : nullptr;
      } else {
        b_units = (wide_once ? wide_all : B.units) + jc / NR * steps_total * NR;
        b_scales = B.scales ? B.scales + jc / NR * kl.groups * NR : nullptr;
      }
      for (int64_t ic = ic0; ic < ic0 + rows_task; ic += plan.mc_sub) {
        const int64_t rows_blk = std::min(plan.mc_sub, ic0 + rows_task - ic);
        for (int64_t g0 = 0; g0 < kl.groups; g0 += plan.kc_groups) {
          const int64_t ng = std::min(plan.kc_groups, kl.groups - g0);
          const int64_t S = (ng - 1) * kl.steps_full + kl.group_steps(g0 + ng - 1);
          const int64_t rows_direct = a_direct ? rows_blk / MR * MR : 0;
          if (rows_direct < rows_blk)
            Kernel::pack_a(a_blk, A, ic + rows_direct, rows_blk - rows_direct, g0, ng, kl, S);
          if (scaled) pack_a_scales(sa_blk, A, ic, rows_blk, g0, ng, kl.G, MR);
          x.groups = ng;
          x.steps_last = kl.group_steps(g0 + ng - 1);
          x.first = g0 == 0;
          x.last = g0 + ng == kl.groups;
          for (int64_t jr = 0; jr < cols_blk; jr += NR) {
            const int64_t panel = jr / NR;  // within the task
            const int64_t b_off = (panel * steps_total + g0 * kl.steps_full) * NR;  // units
            const char* b_next = nullptr;  // the next panel's block
            int64_t b_bytes = 4;           // per unit, as stored
            if constexpr (requires { Kernel::widen_codes; }) {
              if (compact_b) {
                Kernel::widen_codes(b_wide, b_codes + 2 * b_off, S * NR, B.code_type);
                x.b = b_wide;
                b_next = reinterpret_cast<const char*>(b_codes + 2 * (b_off + steps_total * NR));
                b_bytes = 2;
              }
            }
            if (!compact_b) {
              x.b = b_units + b_off;
              b_next = reinterpret_cast<const char*>(x.b + steps_total * NR);
              b_bytes = 4;
            }
            if (b_scales) {
              x.sb = b_scales + (panel * kl.groups + g0) * NR;
              x.sb_gstride = NR;
              x.sb_uniform = B.scales_uniform;
            } else {
              x.sb = ones;
              x.sb_gstride = 0;
              x.sb_uniform = true;
            }
            x.cols = static_cast<int>(std::min<int64_t>(NR, cols_blk - jr));
            // The next panel's B block (S x NR units) is prefetched a slice per call.
            const int64_t calls = (rows_blk + MR - 1) / MR, lines = S * NR * b_bytes / 64;
            const int64_t per_call = (lines + calls - 1) / calls;
            const bool has_next = jr + NR < cols_blk;
            for (int64_t ir = 0; ir < rows_blk; ir += MR) {
              if (ir < rows_direct) {
                x.a = a_direct_at(A, ic + ir, g0 * kl.G);
                x.a_stride = a_direct_stride(A);
              } else {
                x.a = a_blk + (ir - rows_direct) * S;
                x.a_stride = S;
              }
              x.sa = sa_blk + ir * ng;
              x.acc = acc + ir * nc_pad + jr;
              x.c = C + (ic + ir) * ldc + jc + jr;
              // The next call: the next MR rows, or the first rows of the next NR panel.
              const bool next_row = ir + MR < rows_blk;
              x.c_next = next_row ? x.c + MR * ldc : C + ic * ldc + jc + std::min(jr + NR, cols_blk - 1);
              x.acc_next = next_row ? x.acc + MR * nc_pad : acc + std::min(jr + NR, nc_pad - NR);
              x.rows = static_cast<int>(std::min<int64_t>(MR, rows_blk - ir));
              x.b_pf = b_next + (ir / MR) * per_call * 64;
              x.b_pf_lines = has_next ? std::min(per_call, lines - (ir / MR) * per_call) : 0;
              micro(x);
            }
          }
        }
      }
    };
    // The first free thread takes the next task: on a shared machine a descheduled thread
    // then does not hold the others up. (A static split, which keeps each thread's C tiles
    // in its own cache across calls, measured only 0-3% faster in repeated calls.)
#pragma omp for schedule(dynamic, 1) nowait
    for (int64_t task = 0; task < plan.tasks(); ++task) run_task(task);
  }
}

}  // namespace

}  // namespace tinyseek::gemm::detail
