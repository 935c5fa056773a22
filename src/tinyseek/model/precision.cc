#include "tinyseek/model/precision.h"

#include <functional>
#include <sstream>

#include <nlohmann/json.hpp>

#include "tinyseek/base/check.h"

namespace tinyseek::model {
namespace {

using nlohmann::json;

// One enum value's spelling.
template <class E>
struct Name {
  E value;
  const char* name;
};

template <class E, size_t N>
std::string names_of(const Name<E> (&t)[N]) {
  std::string s;
  for (const auto& n : t) s += (s.empty() ? "" : " | ") + std::string(n.name);
  return s;
}
template <class E, size_t N>
const char* name_of(const Name<E> (&t)[N], E v) {
  for (const auto& n : t)
    if (n.value == v) return n.name;
  return "?";
}
template <class E, size_t N>
E parse_name(const Name<E> (&t)[N], const std::string& field, const std::string& v) {
  for (const auto& n : t)
    if (v == n.name) return n.value;
  TS_FAIL("precision." << field << ": unknown value '" << v << "'",
          "valid values: " << names_of(t));
}

const Name<GemmFormat> kFormats[] = {{GemmFormat::kFp32, "fp32"}, {GemmFormat::kBf16, "bf16"},
                                     {GemmFormat::kE4M3, "e4m3"}, {GemmFormat::kE5M2, "e5m2"},
                                     {GemmFormat::kHybrid, "hybrid"}};
const Name<ops::LinearGranularity> kGranularities[] = {{ops::LinearGranularity::kTensor, "tensor"},
                                                       {ops::LinearGranularity::kRow, "row"},
                                                       {ops::LinearGranularity::kTile128, "tile128"},
                                                       {ops::LinearGranularity::kMx32, "mx32"}};
const Name<Scaling> kScalings[] = {{Scaling::kOnline, "online"}, {Scaling::kDelayed, "delayed"}};
const Name<numerics::ScaleType> kScaleTypes[] = {{numerics::ScaleType::Fp32, "fp32"},
                                                 {numerics::ScaleType::Pow2, "pow2"}};
const Name<gemm::Accumulation> kAccumulations[] = {{gemm::Accumulation::kFp32, "fp32"},
                                                   {gemm::Accumulation::kTensorCore, "tensorcore"}};
const Name<StoreFormat> kStores[] = {{StoreFormat::kFp32, "fp32"}, {StoreFormat::kBf16, "bf16"},
                                     {StoreFormat::kFp8, "fp8"}};

int64_t parse_int(const std::string& field, const std::string& v) {
  size_t used = 0;
  long long n = 0;
  try {
    n = std::stoll(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  TS_CHECK(used == v.size() && !v.empty(), "precision." << field << ": '" << v << "' is not an integer",
           "write e.g. precision." << field << "=16");
  return n;
}

// One row per field: how to read and write it as text.
struct Field {
  const char* name;
  bool integer;
  std::function<void(PrecisionMap&, const std::string&)> set;
  std::function<std::string(const PrecisionMap&)> get;
};

template <class E, size_t N>
Field enum_field(const char* name, E PrecisionMap::*member, const Name<E> (&t)[N]) {
  return {name, false,
          [=, &t](PrecisionMap& m, const std::string& v) { m.*member = parse_name(t, name, v); },
          [=, &t](const PrecisionMap& m) { return std::string(name_of(t, m.*member)); }};
}
template <class I>
Field int_field(const char* name, I PrecisionMap::*member) {
  return {name, true, [=](PrecisionMap& m, const std::string& v) { m.*member = static_cast<I>(parse_int(name, v)); },
          [=](const PrecisionMap& m) { return std::to_string(m.*member); }};
}

const std::vector<Field>& fields() {
  static const std::vector<Field> f = {
      {"recipe", false, [](PrecisionMap& m, const std::string& v) { m = precision_recipe(v); },
       [](const PrecisionMap& m) { return m.recipe; }},
      enum_field("format", &PrecisionMap::format, kFormats),
      enum_field("granularity", &PrecisionMap::granularity, kGranularities),
      enum_field("scaling", &PrecisionMap::scaling, kScalings),
      int_field("amax_history", &PrecisionMap::amax_history),
      enum_field("scale_type", &PrecisionMap::scale_type, kScaleTypes),
      enum_field("accumulation", &PrecisionMap::accumulation, kAccumulations),
      int_field("accum_bits", &PrecisionMap::accum_bits),
      int_field("promote_every", &PrecisionMap::promote_every),
      enum_field("wgrad", &PrecisionMap::wgrad, kStores),
      enum_field("activation_cache", &PrecisionMap::activation_cache, kStores),
      enum_field("swiglu_cache", &PrecisionMap::swiglu_cache, kStores),
      enum_field("moe_combine", &PrecisionMap::moe_combine, kStores),
      enum_field("optimizer_moments", &PrecisionMap::optimizer_moments, kStores),
      enum_field("master_weights", &PrecisionMap::master_weights, kStores),
      enum_field("head", &PrecisionMap::head, kStores),
      enum_field("router", &PrecisionMap::router, kStores),
      int_field("first_blocks_bf16", &PrecisionMap::first_blocks_bf16),
      int_field("last_blocks_bf16", &PrecisionMap::last_blocks_bf16),
  };
  return f;
}

const Field& field(const std::string& name) {
  for (const Field& f : fields())
    if (name == f.name) return f;
  std::string valid;
  for (const Field& f : fields()) valid += (valid.empty() ? "" : ", ") + std::string(f.name);
  TS_FAIL("unknown precision field '" << name << "'", "valid fields: " << valid);
}

}  // namespace

const std::vector<std::string>& precision_recipe_names() {
  static const std::vector<std::string> n = {"fp32", "bf16", "fp8"};
  return n;
}

PrecisionMap precision_recipe(const std::string& name) {
  PrecisionMap m;  // the defaults are the fp32 recipe
  if (name == "fp32") return m;
  if (name == "bf16") {
    m.recipe = "bf16";
    m.format = GemmFormat::kBf16;
    m.wgrad = StoreFormat::kBf16;
    m.activation_cache = StoreFormat::kBf16;
    m.head = StoreFormat::kBf16;
    return m;
  }
  if (name == "fp8") {
    m.recipe = "fp8";
    m.format = GemmFormat::kE4M3;
    m.granularity = ops::LinearGranularity::kTile128;
    m.scaling = Scaling::kOnline;
    m.scale_type = numerics::ScaleType::Fp32;
    m.accumulation = gemm::Accumulation::kFp32;
    m.promote_every = 128;
    m.wgrad = StoreFormat::kFp8;
    // §3.3.3: Linear inputs cached in FP8 (no bit changes: see precision.h), SwiGLU inputs
    // cached in FP8 with the output recomputed (changes numerics: see precision.h).
    m.activation_cache = StoreFormat::kFp8;
    m.swiglu_cache = StoreFormat::kFp8;
    m.moe_combine = StoreFormat::kBf16;  // §3.3.3: BF16 combine (changes numerics)
    m.optimizer_moments = StoreFormat::kBf16;
    m.head = StoreFormat::kBf16;
    return m;
  }
  TS_FAIL("unknown precision recipe '" << name << "'", "valid recipes: fp32, bf16, fp8");
}

const std::vector<std::string>& precision_field_names() {
  static const std::vector<std::string> n = [] {
    std::vector<std::string> v;
    for (const Field& f : fields()) v.push_back(f.name);
    return v;
  }();
  return n;
}

void set_precision_field(PrecisionMap& m, const std::string& name, const std::string& value) {
  field(name).set(m, value);
}
std::string get_precision_field(const PrecisionMap& m, const std::string& name) { return field(name).get(m); }

void apply_precision_override(PrecisionMap& m, const std::string& assignment) {
  const size_t eq = assignment.find('=');
  TS_CHECK(eq != std::string::npos && eq > 0, "precision override '" << assignment << "' is not <field>=<value>",
           "write e.g. precision.scale_type=pow2");
  std::string name = assignment.substr(0, eq);
  if (name.rfind("precision.", 0) == 0) name = name.substr(10);
  set_precision_field(m, name, assignment.substr(eq + 1));
}

PrecisionMap precision_from_spec(const std::string& spec) {
  std::vector<std::string> parts;
  std::stringstream ss(spec);
  for (std::string p; std::getline(ss, p, ':');) parts.push_back(p);
  TS_CHECK(!parts.empty() && !parts[0].empty(), "empty precision spec", "write e.g. fp8 or fp8:precision.scale_type=pow2");
  PrecisionMap m = precision_recipe(parts[0]);
  for (size_t i = 1; i < parts.size(); ++i) apply_precision_override(m, parts[i]);
  validate(m, "precision spec '" + spec + "'");
  return m;
}

PrecisionMap precision_from_json(const json& j, const std::string& where, int64_t num_hidden_layers) {
  TS_CHECK(j.is_object(), where << " must be a JSON object, got " << j.type_name(),
           "write \"precision\": {\"recipe\": \"fp8\"}");
  PrecisionMap m;
  if (const auto it = j.find("recipe"); it != j.end()) {
    TS_CHECK(it->is_string(), where << ": 'recipe' must be a string, got " << it->dump(), "write \"recipe\": \"fp8\"");
    m = precision_recipe(it->get<std::string>());
  }
  for (const auto& [key, value] : j.items()) {
    if (key == "recipe") continue;
    const Field& f = field(key);
    std::string text;
    if (value.is_string()) {
      text = value.get<std::string>();
    } else if (f.integer && value.is_number_integer()) {
      text = value.dump();
    } else {
      TS_FAIL(where << ": '" << key << "' must be " << (f.integer ? "an integer" : "a string") << ", got "
                    << value.dump(), "see the field list in model/precision.h");
    }
    try {
      f.set(m, text);
    } catch (const Error& e) {
      TS_FAIL(where << ": " << e.message(), e.hint());
    }
  }
  validate(m, where, num_hidden_layers);
  return m;
}

json precision_to_json(const PrecisionMap& m) {
  json j = json::object();
  for (const Field& f : fields()) {
    const std::string v = f.get(m);
    if (f.integer) j[f.name] = std::stoll(v);
    else j[f.name] = v;
  }
  return j;
}

void validate(const PrecisionMap& m, const std::string& where, int64_t L) {
  const std::string fmt = name_of(kFormats, m.format);
  TS_CHECK(m.wgrad != StoreFormat::kFp8 || m.is_fp8(),
           where << ": wgrad=fp8 needs an FP8 format, but format is " << fmt,
           "set precision.wgrad=" << (m.format == GemmFormat::kBf16 ? "bf16" : "fp32")
                                   << " or precision.format=e4m3");
  TS_CHECK(m.activation_cache != StoreFormat::kFp8 || m.is_fp8(),
           where << ": activation_cache=fp8 quantizes X on the FP8 Wgrad grid and needs an FP8 format, but format is "
                 << fmt, "set precision.activation_cache=bf16 or precision.format=e4m3");
  TS_CHECK(m.optimizer_moments != StoreFormat::kFp8, where << ": optimizer_moments must be fp32 or bf16, got fp8",
           "set precision.optimizer_moments=bf16");
  TS_CHECK(m.master_weights == StoreFormat::kFp32,
           where << ": master_weights must be fp32 (tinyseek keeps FP32 master weights), got "
                 << name_of(kStores, m.master_weights), "remove the override");
  TS_CHECK(m.head != StoreFormat::kFp8, where << ": head must be fp32 or bf16 (DeepSeek-V3 keeps the output head in "
           "high precision), got fp8", "set precision.head=bf16");
  TS_CHECK(m.moe_combine != StoreFormat::kFp8, where << ": moe_combine must be fp32 or bf16 (DeepSeek-V3 combines in "
           "BF16), got fp8", "set precision.moe_combine=bf16");
  TS_CHECK(m.router != StoreFormat::kFp8, where << ": router must be fp32 or bf16 (gating stays in high precision), "
           "got fp8", "set precision.router=fp32");
  TS_CHECK(m.amax_history >= 1 && m.amax_history <= 4096,
           where << ": amax_history must be in 1..4096, got " << m.amax_history, "e.g. precision.amax_history=16");
  TS_CHECK(m.accum_bits >= 1 && m.accum_bits <= 23, where << ": accum_bits must be in 1..23, got " << m.accum_bits,
           "13 models the ~14 bits DeepSeek-V3 measured on H800 tensor cores");
  TS_CHECK(m.promote_every >= 1 && m.promote_every <= (1 << 20),
           where << ": promote_every must be in 1..1048576, got " << m.promote_every, "DeepSeek-V3 uses 128");
  if (m.is_fp8()) {
    TS_CHECK(m.granularity != ops::LinearGranularity::kMx32 || m.scale_type == numerics::ScaleType::Pow2,
             where << ": granularity mx32 uses E8M0 (power-of-two) scales, but scale_type is fp32",
             "add precision.scale_type=pow2");
    const int extent = m.granularity == ops::LinearGranularity::kTile128 ? 128
                       : m.granularity == ops::LinearGranularity::kMx32  ? 32
                                                                         : 0;
    TS_CHECK(extent == 0 || m.promote_every >= extent || extent % m.promote_every == 0,
             where << ": promote_every " << m.promote_every << " splits the " << extent << "-element scale tiles of "
                   << name_of(kGranularities, m.granularity) << " (a scale must be constant within a promotion group)",
             "use a divisor of " << extent << " or a value >= " << extent);
  }
  TS_CHECK(m.first_blocks_bf16 >= 0 && m.last_blocks_bf16 >= 0,
           where << ": first_blocks_bf16 and last_blocks_bf16 must be >= 0, got " << m.first_blocks_bf16 << " and "
                 << m.last_blocks_bf16, "0 keeps every block in the map's format");
  if (L >= 0)
    TS_CHECK(m.first_blocks_bf16 <= L && m.last_blocks_bf16 <= L,
             where << ": first_blocks_bf16 (" << m.first_blocks_bf16 << ") and last_blocks_bf16 ("
                   << m.last_blocks_bf16 << ") must be <= num_hidden_layers (" << L << ")",
             "lower them");
}

namespace {

// Main blocks that the first/last_blocks_bf16 knobs move to BF16 (MTP layers >= L never).
bool is_bf16_block(const PrecisionMap& m, int64_t layer, int64_t L) {
  return layer >= 0 && layer < L && (layer < m.first_blocks_bf16 || layer >= L - m.last_blocks_bf16);
}

}  // namespace

ActStore swiglu_cache(const PrecisionMap& m, int64_t layer, int64_t L) {
  ActStore c;
  c.format = m.swiglu_cache;
  if (c.format == StoreFormat::kFp8 && m.is_fp8() && is_bf16_block(m, layer, L)) c.format = StoreFormat::kBf16;
  c.spec.format = m.format == GemmFormat::kE5M2 ? numerics::Fp8Format::E5M2 : numerics::Fp8Format::E4M3;
  c.spec.granularity = numerics::Granularity::Tile1x128;
  c.spec.scale_type = m.scale_type;
  return c;
}

ActStore moe_combine(const PrecisionMap& m) {
  ActStore c;
  c.format = m.moe_combine;
  return c;
}

ops::LinearPrecision linear_precision(const PrecisionMap& m, LinearClass c, int64_t layer, int64_t L) {
  using gemm::DType;
  const auto high = [](StoreFormat s) { return s == StoreFormat::kBf16 ? DType::BF16 : DType::F32; };
  ops::LinearPrecision p;
  if (c != LinearClass::kBlock) {
    // Head and router: high-precision operands, FP32 accumulation, X read from the caller.
    const DType t = high(c == LinearClass::kHead ? m.head : m.router);
    p.fprop_x = p.weight = p.dgrad_dy = p.wgrad_dy = p.wgrad_x = t;
    return p;
  }
  GemmFormat format = m.format;
  StoreFormat wgrad = m.wgrad, cache = m.activation_cache;
  const bool bf16_block = is_bf16_block(m, layer, L);
  if (bf16_block && m.is_fp8()) {
    format = GemmFormat::kBf16;
    if (wgrad == StoreFormat::kFp8) wgrad = StoreFormat::kBf16;
    if (cache == StoreFormat::kFp8) cache = StoreFormat::kBf16;
  }
  DType xw = DType::F32, dy = DType::F32;
  switch (format) {
    case GemmFormat::kFp32: break;
    case GemmFormat::kBf16: xw = dy = DType::BF16; break;
    case GemmFormat::kE4M3: xw = dy = DType::E4M3; break;
    case GemmFormat::kE5M2: xw = dy = DType::E5M2; break;
    case GemmFormat::kHybrid: xw = DType::E4M3, dy = DType::E5M2; break;
  }
  p.fprop_x = p.weight = xw;
  p.dgrad_dy = dy;
  if (wgrad == StoreFormat::kFp8) {
    p.wgrad_dy = dy;
    p.wgrad_x = xw;
  } else {
    p.wgrad_dy = p.wgrad_x = high(wgrad);
  }
  if (cache == StoreFormat::kFp8) p.saved_x = p.wgrad_x = xw;  // the cached FP8 X is the Wgrad operand
  else p.saved_x = high(cache);
  p.granularity = m.granularity;
  p.scale_type = m.scale_type;
  p.amax_history = m.scaling == Scaling::kDelayed ? m.amax_history : 0;
  p.accumulation = m.accumulation;
  p.accum_mantissa_bits = m.accum_bits;
  p.promote_every = m.promote_every;
  return p;
}

namespace {

std::string dtype_name(gemm::DType t) {
  switch (t) {
    case gemm::DType::F32: return "fp32";
    case gemm::DType::BF16: return "bf16";
    case gemm::DType::E4M3: return "e4m3";
    case gemm::DType::E5M2: return "e5m2";
  }
  return "?";
}

// "e4m3 tile1x128" or "bf16".
std::string operand(gemm::DType t, const ops::LinearPrecision& p, bool weight, bool k_along_cols) {
  if (!gemm::is_fp8(t)) return dtype_name(t);
  return dtype_name(t) + " " + numerics::to_string(ops::operand_granularity(p.granularity, weight, k_along_cols));
}

std::string pad(std::string s, size_t w) {
  // Width in characters, counting a UTF-8 multi-byte sequence once.
  size_t chars = 0;
  for (unsigned char ch : s) chars += (ch & 0xC0) != 0x80;
  if (chars < w) s.append(w - chars, ' ');
  return s;
}

}  // namespace

std::string precision_table(const PrecisionMap& m, int64_t L) {
  const PrecisionMap base = precision_recipe(m.recipe);
  std::ostringstream o;
  std::string changed;
  for (const Field& f : fields())
    if (f.get(m) != f.get(base)) changed += (changed.empty() ? "" : ", ") + std::string(f.name) + "=" + f.get(m);
  o << "precision map: recipe " << m.recipe;
  if (!changed.empty()) o << " with " << changed;
  o << "\n";
  // Resolve a block Linear that follows the map (an MTP layer never takes the BF16 knob).
  const ops::LinearPrecision p = linear_precision(m, LinearClass::kBlock, L >= 0 ? L : 0, L >= 0 ? L : 0);
  const bool fp8 = gemm::is_fp8(p.fprop_x) || gemm::is_fp8(p.dgrad_dy) || gemm::is_fp8(p.wgrad_dy) ||
                   gemm::is_fp8(p.wgrad_x);
  const std::string scaling = !fp8 ? "-" : p.amax_history ? "delayed (history " + std::to_string(p.amax_history) + ")"
                                                          : "online";
  const std::string scale = fp8 ? numerics::to_string(p.scale_type) : "-";
  const std::string accum =
      (p.accumulation == gemm::Accumulation::kTensorCore ? "tensorcore " + std::to_string(p.accum_mantissa_bits) + " bits"
                                                         : std::string("fp32")) +
      ", promote every " + std::to_string(p.promote_every);
  o << pad("GEMM role (block/MTP Linears)", 32) << pad("operand A", 20) << pad("operand B", 24) << pad("scaling", 22)
    << pad("scale", 7) << "accumulation\n";
  o << pad("Fprop  Y = X·Wᵀ", 32) << pad("X " + operand(p.fprop_x, p, false, true), 20)
    << pad("W " + operand(p.weight, p, true, true), 24) << pad(scaling, 22) << pad(scale, 7) << accum << "\n";
  o << pad("Dgrad  dX = dY·W", 32) << pad("dY " + operand(p.dgrad_dy, p, false, true), 20)
    << pad("W " + operand(p.weight, p, true, false), 24) << pad(scaling, 22) << pad(scale, 7) << accum << "\n";
  o << pad("Wgrad  dW += dYᵀ·X", 32) << pad("dY " + operand(p.wgrad_dy, p, false, false), 20)
    << pad("X " + operand(p.wgrad_x, p, false, false), 24) << pad(scaling, 22) << pad(scale, 7) << accum << "\n";
  o << pad("module class", 32) << "precision\n";
  o << pad("block & MTP Linears", 32) << "as the GEMM roles above\n";
  if (m.is_fp8() && (m.first_blocks_bf16 > 0 || m.last_blocks_bf16 > 0))
    o << pad("  BF16 blocks", 32) << "first " << m.first_blocks_bf16 << ", last " << m.last_blocks_bf16
      << " main blocks: bf16 inputs, fp32 accumulation\n";
  o << pad("output head", 32) << name_of(kStores, m.head) << " inputs, fp32 accumulation\n";
  o << pad("router (MoE gating)", 32) << name_of(kStores, m.router) << " inputs, fp32 accumulation\n";
  o << pad("embedding", 32) << "fp32 (gather)\n";
  o << pad("RMSNorm, attention core", 32) << "fp32\n";
  o << pad("storage", 32) << "master weights " << name_of(kStores, m.master_weights) << ", gradients fp32, "
    << "optimizer moments " << name_of(kStores, m.optimizer_moments) << ", activation cache "
    << name_of(kStores, m.activation_cache) << ", SwiGLU inputs " << name_of(kStores, m.swiglu_cache)
    << (m.swiglu_cache == StoreFormat::kFp32 ? "" : " (output recomputed)") << ", MoE combine "
    << name_of(kStores, m.moe_combine) << "\n";
  return o.str();
}

}  // namespace tinyseek::model
