#include "tinyseek/bench/step_bench.h"

#include <sys/resource.h>
#include <time.h>

#include <algorithm>
#include <memory>
#include <optional>

#include "tinyseek/base/check.h"
#include "tinyseek/base/parallel.h"
#include "tinyseek/base/rng.h"
#include "tinyseek/base/timer.h"
#include "tinyseek/bench/peak.h"
#include "tinyseek/dist/comm.h"
#include "tinyseek/dist/data_parallel.h"
#include "tinyseek/dist/expert_parallel.h"
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
                                                         double peak_rss_mib, int64_t moment_elements) {
  const model::Registry& r = m.registry();
  const int64_t params = static_cast<int64_t>(r.params().size());
  const int64_t moments = moment_elements >= 0 ? moment_elements : params;
  const model::LinearMemory lin = model::linear_memory(r);
  const model::Model::SavedBytes saved = m.saved_bytes_by_kind();
  std::vector<std::pair<std::string, int64_t>> mem = {
      {"master_weights", params * 4},
      {"grads", static_cast<int64_t>(r.grads().size()) * 4},
      {"optimizer_moments", 2 * moments * moment_bytes},
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

namespace {

// The communicator's counters at one moment (the differences around a step are its traffic).
struct CommSnapshot {
  dist::CommStats kind[3];
  static CommSnapshot take(const dist::Comm& c) {
    return {{c.stats(dist::CommKind::kGradients), c.stats(dist::CommKind::kExperts), c.stats(dist::CommKind::kOther)}};
  }
};

}  // namespace

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

  // Under mpirun: the trainer's layout and its refusals (train/trainer.cc).
  dist::Comm& comm = dist::world();
  const int64_t N = comm.size();
  dist::check_expert_parallel(opt.expert_parallel, comm.size(), c.n_routed_experts);
  if (comm.distributed()) {
    TS_CHECK(opt.batch % N == 0, "--batch " << opt.batch << " is not divisible by the " << N << " ranks (--batch is "
             "the global batch; each rank runs batch/ranks sequences)", "use a --batch that is a multiple of " << N);
    TS_CHECK(c.precision.scaling == model::Scaling::kOnline, "delayed scaling is not supported with more than one "
             "rank (as in train)", "use precision.scaling=online (the fp8 recipe's default)");
  }

  model::Model m(c);
  m.init(opt.seed);
  m.set_recompute(opt.recompute);
  m.set_norm_up_recompute(opt.recompute_norm_up);
  m.set_head_chunk_rows(opt.head_chunk_rows);
  train::AdamWConfig adamw_config;
  if (c.precision.optimizer_moments == model::StoreFormat::kBf16) adamw_config.moments = train::MomentPrecision::kBf16;
  model::Registry& reg = m.registry();
  // One process: AdamW over everything. mpirun: DP (AdamW on the ZeRO-1 shard) or EP (its
  // own optimizer pieces); declared after the model, so released before it.
  std::unique_ptr<dist::DataParallel> dp;
  std::unique_ptr<dist::ExpertParallel> ep;
  std::unique_ptr<train::AdamW> adamw;
  int64_t moment_elements = -1;
  if (!comm.distributed()) {
    adamw = std::make_unique<train::AdamW>(reg, adamw_config);
  } else if (opt.expert_parallel > 1) {
    const model::GemmFormat f = c.precision.format;
    const bool fp8_recipe = f == model::GemmFormat::kE4M3 || f == model::GemmFormat::kE5M2 || f == model::GemmFormat::kHybrid;
    ep = std::make_unique<dist::ExpertParallel>(comm, reg, adamw_config, fp8_recipe);  // train's default dispatch
    ep->attach(m);  // the MoE layers exchange tokens through it
    moment_elements = static_cast<int64_t>(ep->dense_shards()[size_t(comm.rank())].size() + ep->my_expert_elements());
  } else {
    dp = std::make_unique<dist::DataParallel>(comm, reg);
    adamw = std::make_unique<train::AdamW>(reg, adamw_config, dp->my_shard());
    moment_elements = static_cast<int64_t>(dp->my_shard().size());
  }
  res.moments = train::to_string(adamw_config.moments);

  const int64_t B = opt.batch, T = opt.seq, rows = B / N;
  std::vector<ops::Index> tokens(static_cast<size_t>(B * (T + 1)));
  const Philox rng(opt.seed, 7);
  for (size_t i = 0; i < tokens.size(); ++i)
    tokens[i] = std::min<ops::Index>(static_cast<ops::Index>(rng.uniform(i) * static_cast<float>(c.vocab_size)),
                                     static_cast<ops::Index>(c.vocab_size - 1));
  const ops::Index* my_rows = tokens.data() + comm.rank() * rows * (T + 1);

  // Under mpirun: per timed step, the communicator's traffic, and the routers' counts.
  comm.set_split_wait(comm.distributed());
  const std::vector<int64_t> moe = m.moe_layers();
  const int64_t E = c.n_routed_experts;
  std::vector<int64_t> load(ep ? moe.size() * size_t(E) : 0, 0);  // this rank's rows per expert, Σ timed steps
  std::vector<double> comm_ms, wait_ms, share;
  CommSnapshot timed_start{};

  std::vector<double> fb_ms, opt_ms, cpu_ms;
  for (int s = 0; s < opt.warmup + opt.steps; ++s) {
    const CommSnapshot before = CommSnapshot::take(comm);
    if (s == opt.warmup) timed_start = before;
    const double cpu0 = process_cpu_ms();
    const Timer step;
    reg.zero_grad();
    const Timer fb;
    const model::Losses l = m.forward_backward(my_rows, rows, T);
    const double fb_time = fb.ms();
    if (opt.optimizer) {
      if (!comm.distributed()) {
        adamw->step(reg, 1e-4);
      } else if (ep) {
        ep->reduce_gradients(reg);
        ep->step(reg, 1e-4, 1.0f);
        ep->allgather_params(reg);
        reg.params_changed();
      } else {
        dp->reduce_gradients(reg);
        adamw->step(reg, 1e-4);
        dp->allgather_params(reg);
        reg.params_changed();
      }
    }
    const double total = step.ms();
    const double cpu = process_cpu_ms() - cpu0;
    if (s == 0) res.first_loss = l.loss;
    res.last_loss = l.loss;
    if (s < opt.warmup) continue;
    res.step_ms.push_back(total);
    fb_ms.push_back(fb_time);
    opt_ms.push_back(total - fb_time);
    cpu_ms.push_back(cpu);
    if (comm.distributed()) {
      const CommSnapshot after = CommSnapshot::take(comm);
      double sec = 0, wait = 0;
      for (int k = 0; k < 3; ++k) {
        sec += after.kind[k].seconds - before.kind[k].seconds;
        wait += after.kind[k].wait_seconds - before.kind[k].wait_seconds;
      }
      comm_ms.push_back(sec * 1e3);
      wait_ms.push_back(wait * 1e3);
      share.push_back(sec * 1e3 / total);
      for (size_t li = 0; li < moe.size() && ep; ++li) {
        const int32_t* cnt = m.load_counts(moe[li]);
        for (int64_t e = 0; e < E; ++e) load[li * size_t(E) + size_t(e)] += cnt[e];
      }
    }
  }
  const CommSnapshot timed_end = CommSnapshot::take(comm);
  comm.set_split_wait(false);
  res.cpu_ms_per_step = median(cpu_ms);
  res.ms_per_step = median(res.step_ms);
  res.ms_forward_backward = median(fb_ms);
  res.ms_optimizer = median(opt_ms);
  res.tokens_per_s = static_cast<double>(B * T) / (res.ms_per_step * 1e-3);
  res.flops = step_flops(c, B, T);
  res.params_total = reg.num_parameters();
  res.saved_activation_mb = static_cast<double>(m.saved_activation_floats()) * sizeof(float) / (1024.0 * 1024.0);
  res.peak_rss_mb = peak_rss_mb();
  const size_t moment_bytes = adamw_config.moments == train::MomentPrecision::kBf16 ? 2 : 4;
  res.memory = step_memory(m, static_cast<int64_t>(moment_bytes), res.peak_rss_mb, moment_elements);

  if (comm.distributed()) {
    // The losses: every rank's mean over its rows, averaged (the global batch's mean).
    const std::vector<double> losses = comm.allreduce_sum_ordered(std::vector<double>{res.first_loss, res.last_loss});
    res.first_loss = losses[0] / static_cast<double>(N);
    res.last_loss = losses[1] / static_cast<double>(N);
    DistStepStats d;
    d.ranks = comm.size();
    d.expert_parallel = ep ? comm.size() : 1;
    d.ep_fp8_dispatch = ep && ep->dispatch().fp8();
    d.param_floats = static_cast<int64_t>(reg.params().size());
    d.reduced_floats = static_cast<int64_t>(ep ? ep->dense_elements() : reg.params().size());
    d.moe_layers = ep ? static_cast<int64_t>(moe.size()) : 0;
    // Rows to other ranks: this rank's rows of experts it does not own; rows from them: every
    // rank's rows of my experts minus my own (Σ over ranks of the load counts).
    double sent = 0, received = 0;
    if (ep) {
      std::vector<int64_t> all = load;
      comm.allreduce_sum(all);
      const int64_t e0 = ep->dispatch().first_expert(), e1 = e0 + ep->dispatch().experts_per_rank();
      for (size_t i = 0; i < load.size(); ++i) {
        const int64_t e = static_cast<int64_t>(i % size_t(E));
        if (e >= e0 && e < e1) received += static_cast<double>(all[i] - load[i]);
        else sent += static_cast<double>(load[i]);
      }
    }
    const double steps = static_cast<double>(opt.steps);
    const auto bytes = [&](dist::CommKind k) {
      const size_t i = static_cast<size_t>(k);
      return static_cast<double>(timed_end.kind[i].bytes_sent - timed_start.kind[i].bytes_sent) / steps;
    };
    const std::vector<double> mine = {static_cast<double>(rows * T) / (res.ms_per_step * 1e-3),
                                      res.ms_per_step,
                                      bytes(dist::CommKind::kGradients),
                                      bytes(dist::CommKind::kExperts),
                                      bytes(dist::CommKind::kOther),
                                      median(comm_ms),
                                      median(wait_ms),
                                      median(share),
                                      sent / steps,
                                      received / steps};
    const std::vector<double> every = comm.allgather(mine);
    for (int64_t r = 0; r < N; ++r) {
      const double* v = every.data() + r * static_cast<int64_t>(mine.size());
      d.per_rank.push_back({v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9]});
    }
    res.dist = std::move(d);
  }

  // The ceiling of the kernels the recipe's GEMMs run on (see step_bench.h).
  const PeakFlops peak = measure_peaks();
  const bool fp32_gemms = c.precision.format == model::GemmFormat::kFp32;
  res.peak_kind = fp32_gemms ? "fp32_fma" : "bf16_dot";
  const std::optional<double>& peak_gflops = fp32_gemms ? peak.fp32_fma_gflops : peak.bf16_dot_gflops;
  if (peak_gflops) {
    res.peak_gflops = *peak_gflops;
    // Under mpirun every rank has its own peak (rank 0's measurement stands for all).
    res.mfu = res.flops.total() / (res.ms_per_step * 1e-3) / (res.peak_gflops * 1e9 * static_cast<double>(N));
  }
  return res;
}

}  // namespace tinyseek::bench
