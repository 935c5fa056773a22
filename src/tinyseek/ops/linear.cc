#include "tinyseek/ops/linear.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

#include "tinyseek/base/check.h"
#include "tinyseek/numerics/bf16.h"
#include "tinyseek/numerics/fp8.h"
#include "tinyseek/ops/linear_quant.h"

namespace tinyseek::ops {

using gemm::DType;
using gemm::Matrix;
using numerics::Granularity;

const char* to_string(LinearGranularity g) {
  switch (g) {
    case LinearGranularity::kTensor: return "tensor";
    case LinearGranularity::kRow: return "row";
    case LinearGranularity::kTile128: return "tile128";
    case LinearGranularity::kMx32: return "mx32";
  }
  return "?";
}

const char* to_string(LinearOperand o) {
  switch (o) {
    case LinearOperand::kFpropX: return "fprop.x";
    case LinearOperand::kWeight: return "fprop.w";
    case LinearOperand::kDgradWeight: return "dgrad.w";
    case LinearOperand::kDgradDy: return "dgrad.dy";
    case LinearOperand::kWgradDy: return "wgrad.dy";
    case LinearOperand::kWgradX: return "wgrad.x";
    case LinearOperand::kCount: break;
  }
  return "?";
}

numerics::Granularity operand_granularity(LinearGranularity g, bool weight, bool k_along_cols) {
  switch (g) {
    case LinearGranularity::kTensor: return Granularity::Tensor;
    case LinearGranularity::kRow: return k_along_cols ? Granularity::Row : Granularity::Col;
    case LinearGranularity::kTile128:
      if (weight) return Granularity::Block128x128;
      return k_along_cols ? Granularity::Tile1x128 : Granularity::Tile128x1;
    case LinearGranularity::kMx32: return k_along_cols ? Granularity::Mx1x32 : Granularity::Mx32x1;
  }
  return Granularity::Tensor;
}

bool LinearPrecision::plain_fp32() const {
  return fprop_x == DType::F32 && weight == DType::F32 && dgrad_dy == DType::F32 && wgrad_dy == DType::F32 &&
         wgrad_x == DType::F32 && saved_x == DType::F32 && accumulation == gemm::Accumulation::kFp32 &&
         promote_every == gemm::GemmOptions{}.promote_every && backend == gemm::Backend::kAuto;
}

void LinearPrecision::validate() const {
  TS_CHECK(!gemm::is_fp8(saved_x) || wgrad_x == saved_x,
           "a Linear that keeps X in " << gemm::to_string(saved_x) << " for Wgrad must use it as the Wgrad operand, "
           "but wgrad_x is " << gemm::to_string(wgrad_x), "this is a bug in the precision-map resolution");
  TS_CHECK(amax_history >= 0, "amax history length must be >= 0, got " << amax_history, "0 = online scaling");
  TS_CHECK(promote_every >= 1, "promote_every must be >= 1, got " << promote_every, "DeepSeek-V3 promotes every 128");
  const bool any_fp8 = gemm::is_fp8(fprop_x) || gemm::is_fp8(weight) || gemm::is_fp8(dgrad_dy) ||
                       gemm::is_fp8(wgrad_dy) || gemm::is_fp8(wgrad_x);
  if (!any_fp8) return;
  const int extent = granularity == LinearGranularity::kTile128 ? 128 : granularity == LinearGranularity::kMx32 ? 32 : 0;
  TS_CHECK(extent == 0 || promote_every >= extent || extent % promote_every == 0,
           "promote_every " << promote_every << " does not fit " << to_string(granularity)
           << " scale tiles of " << extent << " elements along K (a scale must be constant inside a promotion group)",
           "use a promote_every that divides " << extent << " or is >= " << extent);
  TS_CHECK(granularity != LinearGranularity::kMx32 || scale_type == numerics::ScaleType::Pow2,
           "mx32 granularity uses E8M0 (power-of-two) scales but scale_type is fp32", "set scale_type pow2");
}

// ---------------------------------------------------------------- statistics

namespace {
double sqnr(double signal, double noise) {
  if (noise == 0) return std::numeric_limits<double>::infinity();
  if (signal == 0) return -std::numeric_limits<double>::infinity();
  return 10.0 * std::log10(signal / noise);
}
}  // namespace

double OperandStats::sqnr_db() const { return sqnr(signal, noise); }
void OperandStats::add(const OperandStats& o) {
  calls += o.calls;
  count += o.count;
  signal += o.signal;
  noise += o.noise;
  saturated += o.saturated;
  underflow += o.underflow;
  scales += o.scales;
  scale_min = std::min(scale_min, o.scale_min);
  scale_max = std::max(scale_max, o.scale_max);
  log2_scale_sum += o.log2_scale_sum;
}
double GemmStats::sqnr_db() const { return sqnr(signal, noise); }
double GemmStats::rel_err() const { return signal > 0 ? std::sqrt(noise / signal) : (noise > 0 ? INFINITY : 0.0); }
void GemmStats::add(const GemmStats& o) {
  calls += o.calls;
  count += o.count;
  signal += o.signal;
  noise += o.noise;
  max_abs_err = std::max(max_abs_err, o.max_abs_err);
  max_abs_ref = std::max(max_abs_ref, o.max_abs_ref);
  a.add(o.a);
  b.add(o.b);
}

namespace {

struct RegisteredScratch;

// Every thread's scratch, for linear_scratch_bytes(). A thread registers its scratch when
// it first uses it and removes it when it exits.
std::mutex& scratch_list_mutex() {
  static std::mutex m;
  return m;
}
std::vector<const RegisteredScratch*>& scratch_list() {
  static std::vector<const RegisteredScratch*> list;
  return list;
}

// The transient BF16/FP8 copies of W (prepare_fprop_weight), one per distinct size, so that
// quantizing the model's few weight shapes in turn reallocates nothing (numerics::quantize
// sizes its output exactly).
struct WeightScratch {
  std::map<std::pair<int64_t, int64_t>, numerics::QTensor> fp8;  // by (rows, cols)
  std::map<int64_t, AlignedBuffer<uint16_t>> bf16;                // by elements
  size_t bytes() const {
    size_t n = 0;
    for (const auto& [k, q] : fp8) n += q.codes.size() + q.scales.size() * sizeof(float);
    for (const auto& [k, b] : bf16) n += b.size() * sizeof(uint16_t);
    return n;
  }
};

struct RegisteredScratch {
  LinearScratch scratch;
  WeightScratch weights;
  RegisteredScratch() {
    const std::lock_guard<std::mutex> lock(scratch_list_mutex());
    scratch_list().push_back(this);
  }
  ~RegisteredScratch() {
    const std::lock_guard<std::mutex> lock(scratch_list_mutex());
    auto& l = scratch_list();
    l.erase(std::remove(l.begin(), l.end(), this), l.end());
  }
  RegisteredScratch(const RegisteredScratch&) = delete;
  RegisteredScratch& operator=(const RegisteredScratch&) = delete;
};

RegisteredScratch& registered_scratch() {
  thread_local RegisteredScratch s;
  return s;
}

WeightScratch& weight_scratch() { return registered_scratch().weights; }

size_t qtensor_bytes(const numerics::QTensor& q) { return q.codes.size() + q.scales.size() * sizeof(float); }

}  // namespace

LinearScratch& linear_scratch() {
  return registered_scratch().scratch;
}

size_t linear_scratch_bytes() {
  const std::lock_guard<std::mutex> lock(scratch_list_mutex());
  size_t n = 0;
  for (const RegisteredScratch* r : scratch_list()) {
    const LinearScratch* s = &r->scratch;
    n += r->weights.bytes();
    n += qtensor_bytes(s->qa) + qtensor_bytes(s->qb) + qtensor_bytes(s->qc);
    n += qtensor_bytes(s->share_fprop.own) + qtensor_bytes(s->share_wgrad.own);
    n += (s->bf_a.size() + s->bf_b.size()) * sizeof(uint16_t);
    n += (s->f_tmp.size() + s->f_ref.size() + s->f_out.size() + s->amax_cur.size() + s->amax_use.size()) * sizeof(float);
  }
  return n;
}

// ---------------------------------------------------------------- plain FP32 path

namespace {

void check_dims(int64_t N, int64_t in, int64_t out) {
  TS_CHECK(N >= 0 && in > 0 && out > 0,
           "linear needs N >= 0 and positive in/out features, got N " << N << ", in " << in << ", out " << out,
           "check the model config");
}

}  // namespace

void linear_forward(float* y, const float* x, const float* w, int64_t N, int64_t in, int64_t out, bool accumulate) {
  check_dims(N, in, out);
  if (N == 0) return;
  gemm::GemmOptions opt;
  opt.beta = accumulate ? 1.0f : 0.0f;
  // y[N, out] = x[N, in] · (w[out, in])ᵀ
  gemm::gemm(y, out, gemm::view_f32(x, N, in, in), gemm::view_f32(w, out, in, in, /*trans=*/true), opt);
}

void linear_backward(float* dx, float* dw, const float* dy, const float* x, const float* w, int64_t N, int64_t in,
                     int64_t out, bool overwrite_dx) {
  check_dims(N, in, out);
  if (N == 0) return;
  gemm::GemmOptions opt;
  opt.beta = 1.0f;
  gemm::GemmOptions opt_dx = opt;
  if (overwrite_dx) opt_dx.beta = 0.0f;
  // dx[N, in] += dy[N, out] · w[out, in]
  if (dx) gemm::gemm(dx, in, gemm::view_f32(dy, N, out, out), gemm::view_f32(w, out, in, in), opt_dx);
  // dw[out, in] += (dy[N, out])ᵀ · x[N, in]
  if (dw) gemm::gemm(dw, in, gemm::view_f32(dy, N, out, out, /*trans=*/true), gemm::view_f32(x, N, in, in), opt);
}

// ---------------------------------------------------------------- precision-aware path

namespace {

numerics::Fp8Format fp8_format(DType t) {
  return t == DType::E5M2 ? numerics::Fp8Format::E5M2 : numerics::Fp8Format::E4M3;
}

gemm::GemmOptions gemm_options(const LinearPrecision& p, float beta) {
  gemm::GemmOptions opt;
  opt.beta = beta;
  opt.promote_every = p.promote_every;
  opt.accumulation = p.accumulation;
  opt.tensorcore.mantissa_bits = p.accum_mantissa_bits;
  opt.tensorcore.promote_every = p.promote_every;
  opt.backend = p.backend;
  return opt;
}

float* floats(AlignedBuffer<float>& b, int64_t n) {
  if (b.size() < static_cast<size_t>(n)) b.resize(static_cast<size_t>(n));
  return b.data();
}
uint16_t* halves(AlignedBuffer<uint16_t>& b, int64_t n) {
  if (b.size() < static_cast<size_t>(n)) b.resize(static_cast<size_t>(n));
  return b.data();
}

numerics::QuantSpec quant_spec(DType t, Granularity g, const LinearPrecision& p) {
  numerics::QuantSpec spec;
  spec.format = fp8_format(t);
  spec.granularity = g;
  spec.scale_type = p.scale_type;
  spec.amax_floor = p.amax_floor;
  return spec;
}

// Quantizes x [rows, cols] (ld = cols) into q, online or with the operand's amax history.
// token_rows: rows are tokens, so the history is per column tile (see linear.h).
void quantize_operand(numerics::QTensor& q, const float* x, int64_t rows, int64_t cols, DType t, Granularity g,
                      bool token_rows, LinearOperand role, const LinearPrecision& p, LinearState& st) {
  const numerics::QuantSpec spec = quant_spec(t, g, p);
  if (p.amax_history == 0) {
    // The activation and gradient grids of the fp8 recipe take the fused kernel (same bits).
    if (g == Granularity::Tile1x128) quantize_tiles(&q, nullptr, x, rows, cols, spec);
    else if (g == Granularity::Tile128x1) quantize_tiles(nullptr, &q, x, rows, cols, spec);
    else if (g == Granularity::Block128x128) quantize_blocks128(q, x, rows, cols, spec);
    else numerics::quantize(q, x, rows, cols, cols, spec);
    return;
  }
  const numerics::ScaleGrid grid = numerics::make_scale_grid(g, rows, cols);
  const int64_t count = grid.count(), gc = grid.grid_cols;
  const int64_t slots = token_rows ? gc : count;
  numerics::AmaxHistory& h = st.history[static_cast<size_t>(role)];
  if (h.length() == 0) h = numerics::AmaxHistory(p.amax_history, slots);
  TS_CHECK(h.length() == p.amax_history && h.slots() == slots,
           "amax history of operand " << to_string(role) << " has length " << h.length() << " x " << h.slots()
           << " slots, but the precision asks for length " << p.amax_history << " x " << slots << " slots",
           "restore scaling state written with the same precision map and model shape");
  float* cur = floats(linear_scratch().amax_cur, count);
  const float* use = nullptr;
  if (!h.empty()) {
    float* u = floats(linear_scratch().amax_use, count);
    h.amax_for_scaling(u);  // `slots` values
    // Expand the per-column-tile history to every row of the grid (descending, so reads stay
    // below the writes).
    if (token_rows)
      for (int64_t s = count - 1; s >= gc; --s) u[s] = u[s % gc];
    use = u;
  }
  numerics::quantize(q, x, rows, cols, cols, spec, use, cur);
  if (!st.record_amax) return;
  if (token_rows)
    for (int64_t c = 0; c < gc; ++c)
      for (int64_t r = 1; r < grid.grid_rows; ++r) cur[c] = std::max(cur[c], cur[r * gc + c]);
  std::vector<float>& step = st.step_amax[static_cast<size_t>(role)];
  if (step.empty()) step.assign(cur, cur + slots);
  else
    for (int64_t s = 0; s < slots; ++s) step[static_cast<size_t>(s)] = std::max(step[static_cast<size_t>(s)], cur[s]);
}

// A new weight version starts a new scaling step: the last step's amaxes join the histories.
void begin_scaling_step(LinearState& st, uint64_t version, const LinearPrecision& p) {
  if (p.amax_history == 0 || st.scaling_version == version) return;
  linear_commit_scaling(st);
  st.scaling_version = version;
}

// Whether an operand of format a on grid ga and a second one of format b (on the 128x1
// grid) can be quantized together by quantize_tiles: the same FP8 format, the 1x128/128x1
// pair of the tile128 granularity, online scaling.
bool fused_tile_pair(DType a, Granularity ga, DType b, const LinearPrecision& p) {
  return gemm::is_fp8(a) && a == b && ga == Granularity::Tile1x128 && p.amax_history == 0 &&
         operand_granularity(p.granularity, false, false) == Granularity::Tile128x1;
}

// One operand in format t from FP32 x [rows, cols]: a view of x, a BF16 copy in bf, or FP8 in q.
Matrix make_operand(DType t, const float* x, int64_t rows, int64_t cols, Granularity g, bool token_rows,
                    LinearOperand role, bool trans, numerics::QTensor& q, AlignedBuffer<uint16_t>& bf,
                    const LinearPrecision& p, LinearState& st) {
  switch (t) {
    case DType::F32: return gemm::view_f32(x, rows, cols, cols, trans);
    case DType::BF16: {
      uint16_t* b = halves(bf, rows * cols);
      bf16_encode_parallel(b, x, static_cast<size_t>(rows * cols));
      return gemm::view_bf16(b, rows, cols, cols, trans);
    }
    case DType::E4M3:
    case DType::E5M2:
      quantize_operand(q, x, rows, cols, t, g, token_rows, role, p, st);
      return gemm::view_fp8(q, trans);
  }
  TS_FAIL("unknown operand format", "this is a bug");
}

// ----- shared inputs (InputShare)

bool same_spec(const numerics::QuantSpec& a, const numerics::QuantSpec& b) {
  return a.format == b.format && a.granularity == b.granularity && a.scale_type == b.scale_type &&
         a.overflow == b.overflow && a.amax_floor == b.amax_floor;
}

// Online scaling only: delayed scales come from each Linear's own history.
bool sharing(InputShare share, const LinearPrecision& p) { return share != InputShare::kNone && p.amax_history == 0; }

// What the last kPublish call of this thread left for (x, rows, cols, spec), or null.
const numerics::QTensor* shared_operand(const SharedOperand& o, const float* x, int64_t rows, int64_t cols,
                                        const numerics::QuantSpec& spec) {
  const bool hit = x != nullptr && o.x == x && o.rows == rows && o.cols == cols && same_spec(o.spec, spec);
  return hit ? o.q : nullptr;
}

void publish(SharedOperand& o, const numerics::QTensor* q, const float* x, int64_t rows, int64_t cols,
             const numerics::QuantSpec& spec) {
  o.x = x;
  o.rows = rows;
  o.cols = cols;
  o.spec = spec;
  o.q = q;
}

// A kPublish call first withdraws what the previous one left, so that a kReuse never meets
// operands of an earlier x that happens to live at the same address.
void begin_share(InputShare share) {
  if (share != InputShare::kPublish) return;
  LinearScratch& sc = linear_scratch();
  sc.share_fprop.x = sc.share_wgrad.x = nullptr;
}

// dst = src (codes and scales; buffers only grow).
void copy_qtensor(numerics::QTensor& dst, const numerics::QTensor& src) {
  numerics::QuantSpec spec;
  spec.format = src.format;
  spec.granularity = src.granularity;
  shape_qtensor(dst, src.rows, src.cols, spec);
  std::memcpy(dst.codes.data(), src.codes.data(), static_cast<size_t>(src.rows * src.cols));
  std::memcpy(dst.scales.data(), src.scales.data(), static_cast<size_t>(src.grid.count()) * sizeof(float));
}

// x [rows, cols] in FP8 on one tile grid (1x128 or 128x1, online scaling) under `share`:
// the published tensor when a kReuse finds one, else quantized into `fallback` (kNone,
// kReuse) or into the scratch's own tensor of that grid, then published (kPublish).
const numerics::QTensor& shared_tiles(InputShare share, const float* x, int64_t rows, int64_t cols,
                                      const numerics::QuantSpec& spec, numerics::QTensor& fallback) {
  LinearScratch& sc = linear_scratch();
  const bool fprop = spec.granularity == Granularity::Tile1x128;
  SharedOperand& o = fprop ? sc.share_fprop : sc.share_wgrad;
  if (share == InputShare::kReuse)
    if (const numerics::QTensor* q = shared_operand(o, x, rows, cols, spec)) return *q;
  numerics::QTensor& q = share == InputShare::kPublish ? o.own : fallback;
  quantize_tiles(fprop ? &q : nullptr, fprop ? nullptr : &q, x, rows, cols, spec);
  if (share == InputShare::kPublish) publish(o, &q, x, rows, cols, spec);
  return q;
}

// Whether Fprop's and Dgrad's W share one FP8 grid (tensor and tile128 do).
bool dgrad_shares_weight(const LinearPrecision& p) {
  return p.granularity == LinearGranularity::kTensor || p.granularity == LinearGranularity::kTile128;
}

// The W operand of Fprop (dgrad = false: Wᵀ) or Dgrad (W), from the cached copies.
Matrix weight_view(const LinearState& st, const float* w, int64_t out, int64_t in, const LinearPrecision& p,
                   bool dgrad) {
  switch (p.weight) {
    case DType::F32: return gemm::view_f32(w, out, in, in, !dgrad);
    case DType::BF16: return gemm::view_bf16(st.w_bf16.data(), out, in, in, !dgrad);
    default: return gemm::view_fp8(dgrad && !dgrad_shares_weight(p) ? st.w_q_dgrad : st.w_q, !dgrad);
  }
}

// Packing pays off only for low-precision W with the blocked kernels; the packed BF16
// panels also require a BF16/FP8 A operand.
bool packable(const LinearPrecision& p, DType a) {
  return p.weight != DType::F32 && a != DType::F32 && p.accumulation == gemm::Accumulation::kFp32 &&
         p.backend != gemm::Backend::kReference;
}

// Whether W's BF16/FP8 copy can live in the thread's scratch only, both packed forms being
// made from it at once: training (LinearState::pack_dgrad_with_fprop), the GEMMs read only
// the packed panels (packable for Fprop and Dgrad, one shared W grid), and telemetry is off
// (its statistics read the copy). Saves one copy of every weight (1 byte per parameter for
// fp8, 2 for bf16).
bool transient_weight_copy(const LinearState& st, const LinearPrecision& p) {
  return st.pack_dgrad_with_fprop && p.weight != DType::F32 && packable(p, p.fprop_x) &&
         packable(p, p.dgrad_dy) && dgrad_shares_weight(p) && !st.telemetry_enabled;
}

bool weight_copy_released(const LinearState& st, const LinearPrecision& p) {
  return (p.weight == DType::BF16 && st.w_bf16.empty()) || (gemm::is_fp8(p.weight) && st.w_q.codes.empty());
}

// Fprop's copy of W (BF16, or FP8 on the Fprop grid) and its packed Wᵀ, once per version
// (again when telemetry needs the copy a transient one released).
void prepare_fprop_weight(LinearState& st, const float* w, uint64_t version, int64_t out, int64_t in,
                          const LinearPrecision& p) {
  if (st.fprop_version == version && !(st.telemetry_enabled && weight_copy_released(st, p))) return;
  if (transient_weight_copy(st, p)) {
    // The same quantization and packing as below, into scratch; Dgrad's panels right away.
    const Matrix wt = [&] {
      if (p.weight == DType::BF16) {
        AlignedBuffer<uint16_t>& b = weight_scratch().bf16[out * in];
        bf16_encode_parallel(halves(b, out * in), w, static_cast<size_t>(out * in));
        return gemm::view_bf16(b.data(), out, in, in);
      }
      numerics::QTensor& q = weight_scratch().fp8[{out, in}];
      quantize_operand(q, w, out, in, p.weight, operand_granularity(p.granularity, true, true), false,
                       LinearOperand::kWeight, p, st);
      return gemm::view_fp8(q);
    }();
    Matrix wt_trans = wt;
    wt_trans.trans = true;
    gemm::pack_b(st.fprop_b, wt_trans, gemm_options(p, 0.0f));
    gemm::pack_b(st.dgrad_b, wt, gemm_options(p, 1.0f));
    st.w_q = {};
    st.w_bf16 = AlignedBuffer<uint16_t>();
    st.fprop_version = st.dgrad_version = version;
    return;
  }
  if (p.weight == DType::BF16) {
    bf16_encode_parallel(halves(st.w_bf16, out * in), w, static_cast<size_t>(out * in));
  } else if (gemm::is_fp8(p.weight)) {
    quantize_operand(st.w_q, w, out, in, p.weight, operand_granularity(p.granularity, true, true), false,
                     LinearOperand::kWeight, p, st);
  }
  if (packable(p, p.fprop_x))
    gemm::pack_b(st.fprop_b, weight_view(st, w, out, in, p, false), gemm_options(p, 0.0f));
  else
    st.fprop_b = {};
  st.fprop_version = version;
}

// Dgrad's copy of W (FP8 on the Dgrad grid when it differs) and its packed form.
void prepare_dgrad_weight(LinearState& st, const float* w, uint64_t version, int64_t out, int64_t in,
                          const LinearPrecision& p) {
  if (st.dgrad_version == version) return;
  prepare_fprop_weight(st, w, version, out, in, p);  // the shared copy (no-op when current)
  if (gemm::is_fp8(p.weight) && !dgrad_shares_weight(p))
    quantize_operand(st.w_q_dgrad, w, out, in, p.weight, operand_granularity(p.granularity, true, false), false,
                     LinearOperand::kDgradWeight, p, st);
  if (packable(p, p.dgrad_dy))
    gemm::pack_b(st.dgrad_b, weight_view(st, w, out, in, p, true), gemm_options(p, 1.0f));
  else
    st.dgrad_b = {};
  st.dgrad_version = version;
}

// ----- telemetry

// Stored values of operand m [rows, cols] (not transposed) decoded to FP32 in out.
void decode_stored(float* out, const Matrix& m, const numerics::QTensor* q) {
  const size_t n = static_cast<size_t>(m.rows * m.cols);
  if (m.dtype == DType::BF16) numerics::bf16_decode_bulk(out, static_cast<const uint16_t*>(m.data), n);
  else if (gemm::is_fp8(m.dtype)) numerics::dequantize(out, m.cols, *q);
}

void add_operand_stats(OperandStats& s, const float* x, const Matrix& m, const numerics::QTensor* q,
                       AlignedBuffer<float>& tmp) {
  if (m.dtype == DType::F32 || x == nullptr) return;
  const int64_t n = m.rows * m.cols;
  float* xh = floats(tmp, n);
  decode_stored(xh, m, q);
  OperandStats o;
  o.calls = 1;
  o.count = n;
  for (int64_t i = 0; i < n; ++i) {
    const double v = x[i], d = v - static_cast<double>(xh[i]);
    o.signal += v * v;
    o.noise += d * d;
    if (x[i] != 0.0f && xh[i] == 0.0f) ++o.underflow;
  }
  if (q != nullptr) {
    o.saturated = numerics::quant_error(x, m.cols, *q).saturated;
    o.scales = q->grid.count();
    for (int64_t k = 0; k < o.scales; ++k) {
      const float sc = q->scales[k];
      o.scale_min = std::min(o.scale_min, sc);
      o.scale_max = std::max(o.scale_max, sc);
      o.log2_scale_sum += std::log2(static_cast<double>(sc));
    }
  }
  s.add(o);
}

// The FP8 tensor whose codes m views (null for BF16/F32 operands).
const numerics::QTensor* qtensor_of(const Matrix& m, const LinearScratch& sc, const LinearState& st) {
  if (!gemm::is_fp8(m.dtype)) return nullptr;
  for (const numerics::QTensor* q :
       {&sc.qa, &sc.qb, &sc.qc, &sc.share_fprop.own, &sc.share_wgrad.own, &st.x_q, &st.w_q, &st.w_q_dgrad})
    if (q->codes.data() == m.data) return q;
  return nullptr;
}

// Compares the quantized GEMM C = op(A) op(B) with the FP32 shadow op(A32) op(B32) and adds
// the operands' quantization statistics. A32/B32 are the FP32 sources in stored layout
// (B32 null: no shadow operand available, the stored B is decoded instead).
void record_gemm(GemmStats& s, const Matrix& A, const Matrix& B, const float* A32, const float* B32,
                 const LinearPrecision& p, LinearState& st) {
  const int64_t M = A.op_rows(), N = B.op_cols();
  LinearScratch& sc = linear_scratch();
  float* c = floats(sc.f_out, M * N);
  float* ref = floats(sc.f_ref, M * N);
  gemm::gemm(c, N, A, B, gemm_options(p, 0.0f));
  const float* b32 = B32;
  if (b32 == nullptr) {
    float* t = floats(sc.f_tmp, B.rows * B.cols);
    decode_stored(t, B, qtensor_of(B, sc, st));
    b32 = t;
  }
  gemm::GemmOptions exact;  // FP32 operands, FP32 accumulation: the high-precision shadow
  exact.backend = p.backend;
  gemm::gemm(ref, N, gemm::view_f32(A32, A.rows, A.cols, A.cols, A.trans),
             gemm::view_f32(b32, B.rows, B.cols, B.cols, B.trans), exact);
  GemmStats g;
  g.calls = 1;
  g.count = M * N;
  for (int64_t i = 0; i < M * N; ++i) {
    const double r = ref[i], d = static_cast<double>(c[i]) - r;
    g.signal += r * r;
    g.noise += d * d;
    g.max_abs_err = std::max(g.max_abs_err, std::fabs(d));
    g.max_abs_ref = std::max(g.max_abs_ref, std::fabs(r));
  }
  add_operand_stats(g.a, A32, A, qtensor_of(A, sc, st), sc.f_tmp);
  add_operand_stats(g.b, B32, B, qtensor_of(B, sc, st), sc.f_tmp);
  s.add(g);
}

void check_saved(const LinearState& st, int64_t N) {
  TS_CHECK(st.saved_rows == N, "Linear backward over " << N << " rows, but the activation cache holds "
           << st.saved_rows << " rows", "run forward on the same batch before backward");
}

}  // namespace

void linear_forward(float* y, const float* x, const float* w, uint64_t w_version, int64_t N, int64_t in,
                    int64_t out, bool accumulate, const LinearPrecision& p, LinearState& st, InputShare share) {
  check_dims(N, in, out);
  begin_share(share);
  if (p.plain_fp32()) {
    linear_forward(y, x, w, N, in, out, accumulate);
    st.saved_rows = N;
    return;
  }
  p.validate();
  st.saved_rows = N;
  if (N == 0) return;
  begin_scaling_step(st, w_version, p);
  prepare_fprop_weight(st, w, w_version, out, in, p);
  LinearScratch& sc = linear_scratch();
  const Granularity gx = operand_granularity(p.granularity, false, true);
  Matrix A;
  bool x_cached = false;  // the FP8 activation cache was filled with A
  if (p.fprop_x == DType::BF16 && p.saved_x == DType::BF16) {
    // The BF16 copy serves both Fprop and the activation cache.
    uint16_t* b = halves(st.x_bf16, N * in);
    bf16_encode_parallel(b, x, static_cast<size_t>(N * in));
    A = gemm::view_bf16(b, N, in, in);
  } else if (fused_tile_pair(p.fprop_x, gx, p.saved_x, p)) {
    // X on the Fprop grid (1x128) and on the Wgrad grid (128x1) for the FP8 activation
    // cache, in one pass over x (or both taken from the Linear that published them).
    const numerics::QuantSpec s_fprop = quant_spec(p.fprop_x, gx, p);
    const numerics::QuantSpec s_wgrad = quant_spec(p.saved_x, Granularity::Tile128x1, p);
    const numerics::QTensor* q_fprop = nullptr;
    const numerics::QTensor* q_wgrad = nullptr;
    if (sharing(share, p) && share == InputShare::kReuse) {
      q_fprop = shared_operand(sc.share_fprop, x, N, in, s_fprop);
      q_wgrad = shared_operand(sc.share_wgrad, x, N, in, s_wgrad);
    }
    if (q_fprop != nullptr && q_wgrad != nullptr) {
      A = gemm::view_fp8(*q_fprop);
      copy_qtensor(st.x_q, *q_wgrad);
    } else {
      const bool pub = sharing(share, p) && share == InputShare::kPublish;
      numerics::QTensor& qa = pub ? sc.share_fprop.own : sc.qa;
      quantize_tiles(&qa, &st.x_q, x, N, in, s_fprop);
      A = gemm::view_fp8(qa);
      if (pub) {
        publish(sc.share_fprop, &qa, x, N, in, s_fprop);
        publish(sc.share_wgrad, &st.x_q, x, N, in, s_wgrad);
      }
    }
    x_cached = true;
  } else if (sharing(share, p) && gemm::is_fp8(p.fprop_x) && gx == Granularity::Tile1x128) {
    A = gemm::view_fp8(shared_tiles(share, x, N, in, quant_spec(p.fprop_x, gx, p), sc.qa));
  } else {
    A = make_operand(p.fprop_x, x, N, in, gx, true, LinearOperand::kFpropX, false, sc.qa, sc.bf_a, p, st);
  }
  const Matrix B = weight_view(st, w, out, in, p, false);
  const gemm::GemmOptions opt = gemm_options(p, accumulate ? 1.0f : 0.0f);
  if (!st.fprop_b.empty()) gemm::gemm(y, out, A, st.fprop_b, opt);
  else gemm::gemm(y, out, A, B, opt);
  if (st.telemetry_enabled) record_gemm(st.telemetry.fprop, A, B, x, w, p, st);

  // Keep X for Wgrad.
  if (p.saved_x == DType::BF16 && p.fprop_x != DType::BF16) {
    bf16_encode_parallel(halves(st.x_bf16, N * in), x, static_cast<size_t>(N * in));
  } else if (gemm::is_fp8(p.saved_x) && !x_cached) {
    quantize_operand(st.x_q, x, N, in, p.saved_x, operand_granularity(p.granularity, false, false), true,
                     LinearOperand::kWgradX, p, st);
  }
}

namespace {

// linear_backward with dY given either in FP32 (dy) or already rounded to BF16 (dy_bf16,
// then dy is null and both GEMMs read dY in BF16).
void backward_impl(float* dx, float* dw, const float* dy, const uint16_t* dy_bf16, const float* x, const float* w,
                   uint64_t w_version, int64_t N, int64_t in, int64_t out, const LinearPrecision& p,
                   LinearState& st, InputShare share, bool overwrite_dx) {
  p.validate();
  if (N == 0) return;
  begin_scaling_step(st, w_version, p);
  const gemm::GemmOptions opt = gemm_options(p, 1.0f);
  LinearScratch& sc = linear_scratch();
  const Granularity g_dgrad = operand_granularity(p.granularity, false, true);
  const Granularity gk = operand_granularity(p.granularity, false, false);
  // dY for both GEMMs at once when both run: one BF16 copy serving Dgrad and Wgrad, or FP8
  // on the Dgrad (1x128) and Wgrad (128x1) grids from one pass over dy.
  Matrix dy_dgrad, dy_wgrad;
  bool dy_ready = false;
  if (dy_bf16 != nullptr) {
    // The caller's BF16 dY: the very operand the conversion below would make.
    dy_dgrad = gemm::view_bf16(dy_bf16, N, out, out);
    dy_wgrad = dy_dgrad;
    dy_wgrad.trans = true;
    dy_ready = true;
  } else if (dx && dw && p.dgrad_dy == DType::BF16 && p.wgrad_dy == DType::BF16) {
    dy_dgrad = make_operand(DType::BF16, dy, N, out, g_dgrad, true, LinearOperand::kDgradDy, false, sc.qa, sc.bf_a,
                            p, st);
    dy_wgrad = dy_dgrad;
    dy_wgrad.trans = true;
    dy_ready = true;
  } else if (dx && dw && fused_tile_pair(p.dgrad_dy, g_dgrad, p.wgrad_dy, p)) {
    quantize_tiles(&sc.qa, &sc.qc, dy, N, out, quant_spec(p.dgrad_dy, g_dgrad, p));
    dy_dgrad = gemm::view_fp8(sc.qa);
    dy_wgrad = gemm::view_fp8(sc.qc, /*trans=*/true);
    dy_ready = true;
  }
  if (dx) {
    // dx[N, in] += dy[N, out] · w[out, in]
    prepare_dgrad_weight(st, w, w_version, out, in, p);
    const Matrix A = dy_ready ? dy_dgrad
                              : make_operand(p.dgrad_dy, dy, N, out, g_dgrad, true, LinearOperand::kDgradDy, false,
                                             sc.qa, sc.bf_a, p, st);
    const Matrix B = weight_view(st, w, out, in, p, true);
    gemm::GemmOptions opt_dx = opt;
    if (overwrite_dx) opt_dx.beta = 0.0f;
    if (!st.dgrad_b.empty()) gemm::gemm(dx, in, A, st.dgrad_b, opt_dx);
    else gemm::gemm(dx, in, A, B, opt_dx);
    if (st.telemetry_enabled) record_gemm(st.telemetry.dgrad, A, B, dy, w, p, st);
  }
  if (dw) {
    // dw[out, in] += (dy[N, out])ᵀ · x[N, in]; K = N runs along the stored rows of both.
    const Matrix A = dy_ready ? dy_wgrad
                              : make_operand(p.wgrad_dy, dy, N, out, gk, true, LinearOperand::kWgradDy, true, sc.qa,
                                             sc.bf_a, p, st);
    Matrix B;
    if (gemm::is_fp8(p.saved_x)) {
      check_saved(st, N);
      B = gemm::view_fp8(st.x_q);
    } else if (p.saved_x == DType::BF16) {
      check_saved(st, N);
      if (gemm::is_fp8(p.wgrad_x)) {
        float* xf = floats(sc.f_tmp, N * in);
        numerics::bf16_decode_bulk(xf, st.x_bf16.data(), static_cast<size_t>(N * in));
        quantize_operand(sc.qb, xf, N, in, p.wgrad_x, gk, true, LinearOperand::kWgradX, p, st);
        B = gemm::view_fp8(sc.qb);
      } else {
        B = gemm::view_bf16(st.x_bf16.data(), N, in, in);  // BF16 values; also right for an F32 Wgrad
      }
    } else {
      TS_CHECK(x != nullptr, "Linear backward needs x: the precision keeps no copy of it (saved_x F32)",
               "pass the forward input, or cache activations in bf16/fp8");
      if (sharing(share, p) && gemm::is_fp8(p.wgrad_x) && gk == Granularity::Tile128x1)
        B = gemm::view_fp8(shared_tiles(share, x, N, in, quant_spec(p.wgrad_x, gk, p), sc.qb));
      else
        B = make_operand(p.wgrad_x, x, N, in, gk, true, LinearOperand::kWgradX, false, sc.qb, sc.bf_b, p, st);
    }
    gemm::gemm(dw, in, A, B, opt);
    if (st.telemetry_enabled) record_gemm(st.telemetry.wgrad, A, B, dy, x, p, st);
  }
}

}  // namespace

void linear_backward(float* dx, float* dw, const float* dy, const float* x, const float* w, uint64_t w_version,
                     int64_t N, int64_t in, int64_t out, const LinearPrecision& p, LinearState& st,
                     InputShare share, bool overwrite_dx) {
  check_dims(N, in, out);
  begin_share(share);
  if (p.plain_fp32()) {
    linear_backward(dx, dw, dy, x, w, N, in, out, overwrite_dx);
    return;
  }
  backward_impl(dx, dw, dy, nullptr, x, w, w_version, N, in, out, p, st, share, overwrite_dx);
}

bool accepts_bf16_dy(const LinearPrecision& p, const LinearState& st) {
  return p.dgrad_dy == DType::BF16 && p.wgrad_dy == DType::BF16 && !st.telemetry_enabled;
}

void linear_backward_bf16_dy(float* dx, float* dw, const uint16_t* dy, const float* x, const float* w,
                             uint64_t w_version, int64_t N, int64_t in, int64_t out, const LinearPrecision& p,
                             LinearState& st) {
  check_dims(N, in, out);
  TS_CHECK(accepts_bf16_dy(p, st), "linear_backward_bf16_dy needs BF16 dY for Dgrad and Wgrad and telemetry off",
           "check accepts_bf16_dy() first, else pass FP32 dY to linear_backward");
  backward_impl(dx, dw, nullptr, dy, x, w, w_version, N, in, out, p, st, InputShare::kNone, false);
}

void linear_commit_scaling(LinearState& st) {
  for (int r = 0; r < kLinearOperands; ++r) {
    std::vector<float>& step = st.step_amax[static_cast<size_t>(r)];
    if (step.empty()) continue;
    st.history[static_cast<size_t>(r)].push(step.data());
    step.clear();
  }
}

size_t linear_state_bytes(const LinearState& s) {
  return s.w_q.codes.size() + s.w_q.scales.size() * sizeof(float) + s.w_q_dgrad.codes.size() +
         s.w_q_dgrad.scales.size() * sizeof(float) + s.w_bf16.size() * sizeof(uint16_t) + s.fprop_b.bytes() +
         s.dgrad_b.bytes() + s.x_bf16.size() * sizeof(uint16_t) + s.x_q.codes.size() +
         s.x_q.scales.size() * sizeof(float);
}

}  // namespace tinyseek::ops
