#include "tinyseek/bench/step_bench.h"

#include <sys/resource.h>
#include <time.h>

#include <algorithm>
#include <optional>

#include "tinyseek/base/check.h"
#include "tinyseek/base/parallel.h"
#include "tinyseek/base/rng.h"
#include "tinyseek/base/timer.h"
#include "tinyseek/bench/peak.h"
#include "tinyseek/model/linear_site.h"
#include "tinyseek/model/precision.h"
#include "tinyseek/ops/linear.h"
#include "tinyseek/train/adamw.h"

namespace tinyseek::bench {

namespace {

// Weights of the Linears one token passes through in decoder layer `layer` (main or MTP).
int64_t block_active_params(const model::ModelConfig& c, int64_t layer) {
  const int64_t D = c.hidden_size, H = c.num_attention_heads, dqk = c.qk_head_dim();
  int64_t attn = D * (c.kv_lora_rank + c.qk_rope_head_dim) + c.kv_lora_rank * H * (c.qk_nope_head_dim + c.v_head_dim) +
                 H * c.v_head_dim * D;
  attn += c.has_q_lora() ? D * c.q_lora_rank + c.q_lora_rank * H * dqk : D * H * dqk;
  int64_t ffn = 0;
  if (c.is_moe_layer(layer))
    ffn = D * c.n_routed_experts + 3 * D * c.moe_intermediate_size * (c.n_shared_experts + c.num_experts_per_tok);
  else
    ffn = 3 * D * c.intermediate_size;
  return attn + ffn;
}

// 3 · B·H·(dn+dr+dv)·T(T+1): causal scores and values, forward + backward.
double attention_flops(const model::ModelConfig& c, int64_t B, int64_t T) {
  const double width = static_cast<double>(c.qk_head_dim() + c.v_head_dim);
  return 3.0 * static_cast<double>(B * c.num_attention_heads) * width * static_cast<double>(T) *
         static_cast<double>(T + 1);
}

}  // namespace

StepFlops step_flops(const model::ModelConfig& c, int64_t B, int64_t T) {
  StepFlops f;
  const int64_t head = c.vocab_size * c.hidden_size;
  int64_t main = head;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    main += block_active_params(c, l);
    f.attention += attention_flops(c, B, T);
  }
  f.params_active = main;
  f.linear = 6.0 * static_cast<double>(main) * static_cast<double>(B * T);
  for (int64_t k = 1; k <= c.num_nextn_predict_layers; ++k) {
    const int64_t Tk = T - k;
    const int64_t mtp = 2 * c.hidden_size * c.hidden_size + block_active_params(c, c.num_hidden_layers + k - 1) + head;
    f.linear += 6.0 * static_cast<double>(mtp) * static_cast<double>(B * Tk);
    f.attention += attention_flops(c, B, Tk);
  }
  return f;
}

double process_cpu_ms() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) * 1e-6;
}

double peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;  // Linux: KiB
}

std::vector<std::pair<std::string, int64_t>> step_memory(const model::Model& m, int64_t moment_bytes,
                                                         double peak_rss_mib) {
  const model::Registry& r = m.registry();
  const int64_t params = static_cast<int64_t>(r.params().size());
  const model::LinearMemory lin = model::linear_memory(r);
  const model::Model::SavedBytes saved = m.saved_bytes_by_kind();
  std::vector<std::pair<std::string, int64_t>> mem = {
      {"master_weights", params * 4},
      {"grads", static_cast<int64_t>(r.grads().size()) * 4},
      {"optimizer_moments", 2 * params * moment_bytes},
      {"weight_copies", lin.weight_copies},
      {"packed_weights", lin.packed_weights},
      {"act_residual", saved.residual},
      {"act_attention", saved.attention},
      {"act_ffn_dense", saved.ffn_dense},
      {"act_moe", saved.moe},
      {"act_block_norms", saved.block_norms},
      {"act_mtp", saved.mtp_other},
      {"act_linear_cache", saved.linear_cache},
      {"transient_arena", m.transient_activation_bytes()},
      {"workspace", m.workspace_bytes()},
      {"head", m.head_bytes()},
      {"linear_scratch", static_cast<int64_t>(ops::linear_scratch_bytes())},
  };
  int64_t sum = 0;
  for (const auto& [name, bytes] : mem) sum += bytes;
  const int64_t rss = static_cast<int64_t>(peak_rss_mib * 1024.0 * 1024.0);
  mem.emplace_back("accounted", sum);
  mem.emplace_back("peak_rss", rss);
  mem.emplace_back("unaccounted", rss - sum);
  return mem;
}

StepBenchResult run_step_bench(const StepBenchOptions& opt) {
  TS_CHECK(opt.steps >= 1, "--steps must be at least 1, got " << opt.steps, "the default is 5");
  TS_CHECK(opt.warmup >= 0, "--warmup must be >= 0, got " << opt.warmup, "the default is 1");
  TS_CHECK(opt.batch >= 1 && opt.seq >= 2, "--batch must be >= 1 and --seq >= 2, got " << opt.batch << ", "
           << opt.seq, "e.g. --batch 8 --seq 256");
  StepBenchResult res;
  res.config = model::load_config(opt.config_path);
  // As `train --recipe`: the recipe replaces the config's precision section as a whole.
  if (!opt.recipe.empty()) {
    res.config.precision = model::precision_from_spec(opt.recipe);
    model::validate(res.config.precision, "--recipe " + opt.recipe, res.config.num_hidden_layers);
  }
  res.recipe = res.config.precision.recipe;
  res.batch = opt.batch;
  res.seq = opt.seq;
  res.threads = max_threads();
  const model::ModelConfig& c = res.config;

  model::Model m(c);
  m.init(opt.seed);
  m.set_recompute(opt.recompute);
  m.set_head_chunk_rows(opt.head_chunk_rows);
  train::AdamWConfig adamw_config;
  if (c.precision.optimizer_moments == model::StoreFormat::kBf16) adamw_config.moments = train::MomentPrecision::kBf16;
  train::AdamW adamw(m.registry(), adamw_config);
  res.moments = train::to_string(adamw.moment_precision());

  const int64_t B = opt.batch, T = opt.seq;
  std::vector<ops::Index> tokens(static_cast<size_t>(B * (T + 1)));
  const Philox rng(opt.seed, 7);
  for (size_t i = 0; i < tokens.size(); ++i)
    tokens[i] = std::min<ops::Index>(static_cast<ops::Index>(rng.uniform(i) * static_cast<float>(c.vocab_size)),
                                     static_cast<ops::Index>(c.vocab_size - 1));

  std::vector<double> fb_ms, opt_ms, cpu_ms;
  for (int s = 0; s < opt.warmup + opt.steps; ++s) {
    const double cpu0 = process_cpu_ms();
    const Timer step;
    m.registry().zero_grad();
    const Timer fb;
    const model::Losses l = m.forward_backward(tokens.data(), B, T);
    const double fb_time = fb.ms();
    if (opt.optimizer) adamw.step(m.registry(), 1e-4);
    const double total = step.ms();
    const double cpu = process_cpu_ms() - cpu0;
    if (s == 0) res.first_loss = l.loss;
    res.last_loss = l.loss;
    if (s < opt.warmup) continue;
    res.step_ms.push_back(total);
    fb_ms.push_back(fb_time);
    opt_ms.push_back(total - fb_time);
    cpu_ms.push_back(cpu);
  }
  res.cpu_ms_per_step = median(cpu_ms);
  res.ms_per_step = median(res.step_ms);
  res.ms_forward_backward = median(fb_ms);
  res.ms_optimizer = median(opt_ms);
  res.tokens_per_s = static_cast<double>(B * T) / (res.ms_per_step * 1e-3);
  res.flops = step_flops(c, B, T);
  res.params_total = m.registry().num_parameters();
  res.saved_activation_mb = static_cast<double>(m.saved_activation_floats()) * sizeof(float) / (1024.0 * 1024.0);
  res.peak_rss_mb = peak_rss_mb();
  res.memory = step_memory(m, static_cast<int64_t>(adamw.moment_bytes()), res.peak_rss_mb);
  // The ceiling of the kernels the recipe's GEMMs run on (see step_bench.h).
  const PeakFlops peak = measure_peaks();
  const bool fp32_gemms = c.precision.format == model::GemmFormat::kFp32;
  res.peak_kind = fp32_gemms ? "fp32_fma" : "bf16_dot";
  const std::optional<double>& peak_gflops = fp32_gemms ? peak.fp32_fma_gflops : peak.bf16_dot_gflops;
  if (peak_gflops) {
    res.peak_gflops = *peak_gflops;
    res.mfu = res.flops.total() / (res.ms_per_step * 1e-3) / (res.peak_gflops * 1e9);
  }
  return res;
}

}  // namespace tinyseek::bench
