#include "tinyseek/train/trainer.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <numbers>

#include <nlohmann/json.hpp>

#include "tinyseek/base/check.h"
#include "tinyseek/base/parallel.h"
#include "tinyseek/base/timer.h"
#include "tinyseek/bench/peak.h"
#include "tinyseek/data/prepare.h"
#include "tinyseek/io/checkpoint.h"
#include "tinyseek/model/linear_site.h"
#include "tinyseek/model/precision.h"
#include "tinyseek/model/recompute.h"
#include "tinyseek/numerics/simd.h"
#include "tinyseek/train/balance.h"
#include "tinyseek/train/clip.h"
#include "tinyseek/train/state.h"

namespace tinyseek::train {
namespace fs = std::filesystem;
using nlohmann::json;

TrainData load_train_data(const std::string& data_dir) {
  TrainData d;
  d.data_dir = fs::absolute(data_dir).lexically_normal().string();
  d.train = data::TokenSplit::load(data_dir, "train");
  d.val = data::TokenSplit::load(data_dir, "val");
  const data::DataIndex& idx = d.train->index();
  d.tokenizer_hash = idx.tokenizer_hash;
  const fs::path tok = fs::path(data_dir) / idx.tokenizer_file;
  if (fs::exists(tok)) d.tokenizer_json = io::read_text_file(tok.string(), "tokenizer");
  return d;
}

namespace {

// The MoE layer's bias tensor id for checkpoint layer `layer`.
int router_bias_id(const model::Registry& reg, int64_t layer) {
  const model::ModelIds& ids = reg.ids();
  const int64_t L = static_cast<int64_t>(ids.layers.size());
  const model::BlockIds& b = layer < L ? ids.layers[size_t(layer)] : ids.mtp[size_t(layer - L)].block;
  TS_ASSERT(b.is_moe && b.moe.bias >= 0);
  return b.moe.bias;
}

std::string human(double v) {
  char buf[32];
  if (v >= 1e6) std::snprintf(buf, sizeof buf, "%.1fM", v / 1e6);
  else if (v >= 1e3) std::snprintf(buf, sizeof buf, "%.1fk", v / 1e3);
  else std::snprintf(buf, sizeof buf, "%.0f", v);
  return buf;
}

void check_split(const data::TokenSplit& s, const char* name, int64_t window, int64_t vocab) {
  TS_CHECK(s.size() >= window, "the " << name << " split has " << s.size() << " tokens, fewer than one window of "
           << window << " (seq_len + 1)", "use more text or a smaller training.seq_len");
  TS_CHECK(s.vocab_size() <= vocab, "the data's tokenizer has " << s.vocab_size() << " tokens but the model's "
           "vocab_size is " << vocab, "set vocab_size=" << s.vocab_size() << " (or larger) in the config");
}

}  // namespace

Trainer::Trainer(const model::ModelConfig& cfg, const TrainHyper& hyper, TrainData data, TrainerOptions opt)
    : cfg_(cfg), hyper_(hyper), data_(std::move(data)), opt_(std::move(opt)), comm_(dist::world()) {
  const RunOptions& r = hyper_.run;
  TS_CHECK(r.steps > 0, "the run's planned length training.steps is not set",
           "pass --steps N or set training.steps in the config");
  TS_CHECK(r.seq_len <= cfg_.max_position_embeddings, "training.seq_len " << r.seq_len
           << " exceeds max_position_embeddings " << cfg_.max_position_embeddings,
           "lower seq_len or raise max_position_embeddings");
  TS_CHECK(r.seq_len > cfg_.num_nextn_predict_layers, "training.seq_len " << r.seq_len
           << " must exceed num_nextn_predict_layers " << cfg_.num_nextn_predict_layers, "use a longer sequence");
  TS_CHECK(data_.train && data_.val, "the trainer needs train and val splits", "pass --data");
  const int64_t window = r.seq_len + 1;
  check_split(*data_.train, "train", window, cfg_.vocab_size);
  check_split(*data_.val, "val", window, cfg_.vocab_size);
  const int N = comm_.size();
  dist::check_expert_parallel(opt_.expert_parallel, N, cfg_.n_routed_experts);
  if (comm_.distributed()) {
    TS_CHECK(r.batch_size % N == 0, "training.batch_size " << r.batch_size << " is not divisible by the " << N
             << " ranks (each rank trains on batch_size/ranks sequences of every micro-batch)",
             "use a batch_size that is a multiple of " << N << ", or another -np");
    TS_CHECK(cfg_.precision.scaling == model::Scaling::kOnline, "delayed scaling is not supported with more than "
             "one rank yet (each rank's amax histories would see only its own rows)",
             "use precision.scaling=online, or train on one process");
    TS_CHECK(opt_.telemetry_every == 0, "--numerics-telemetry is not supported with more than one rank yet",
             "run the telemetry on one process");
    // Only rank 0 speaks; the others print nothing but errors.
    if (!comm_.is_root()) opt_.print = false;
  }

  model_ = std::make_unique<model::Model>(cfg_);
  model_->set_recompute(model::parse_recompute(r.recompute));
  model_->set_norm_up_recompute(r.recompute_norm_up);
  dp_ = std::make_unique<dist::DataParallel>(comm_, model_->registry());
  AdamWConfig ac = hyper_.adamw;
  if (cfg_.precision.optimizer_moments == model::StoreFormat::kBf16) ac.moments = MomentPrecision::kBf16;
  hyper_.adamw.moments = ac.moments;
  if (opt_.expert_parallel > 1) {
    const model::GemmFormat f = cfg_.precision.format;
    const bool fp8_recipe = f == model::GemmFormat::kE4M3 || f == model::GemmFormat::kE5M2 || f == model::GemmFormat::kHybrid;
    ep_ = std::make_unique<dist::ExpertParallel>(comm_, model_->registry(), ac, opt_.ep_fp8_dispatch.value_or(fp8_recipe));
    ep_->attach(*model_);
  } else {
    adamw_ = std::make_unique<AdamW>(model_->registry(), ac, dp_->my_shard());
  }
  loader_ = std::make_unique<data::WindowLoader>(data_.train, data::LoaderOptions{window, 0, r.data_seed, true});
  lr_ = lr_schedule(hyper_, r.steps);
  lambda_ = mtp_lambda_schedule(hyper_);
  gamma_ = bias_speed_schedule(hyper_);
  batch_.resize(static_cast<size_t>(r.batch_size * window));
  if (opt_.print) {
    const bench::PeakFlops p = bench::measure_peaks(3, 0.02);
    peak_gflops_ = cfg_.precision.format == model::GemmFormat::kFp32 ? p.fp32_fma_gflops : p.bf16_dot_gflops;
  }
}

void Trainer::init_fresh() {
  model_->init(cfg_.training.seed);
  if (ep_) ep_->reset_optimizer();
  else adamw_->reset();
  loader_->reset();
  step_ = tokens_seen_ = bad_in_row_ = 0;
  if (root_writes()) metrics_ = MetricsLog(opt_.run_dir, -1);
}

namespace {

// "precision.<field>: <checkpoint> vs <now>" for every field where the maps differ.
std::vector<std::string> precision_differences(const model::PrecisionMap& saved, const model::PrecisionMap& now) {
  const json a = model::precision_to_json(saved), b = model::precision_to_json(now);
  std::vector<std::string> out;
  for (const auto& [k, v] : a.items())
    if (!b.contains(k) || b[k] != v) out.push_back("precision." + k + ": " + v.dump() + " vs " + (b.contains(k) ? b[k].dump() : "-"));
  return out;
}

// Evaluation forwards quantize without recording amaxes; restores recording on any exit.
class AmaxRecordingPaused {
 public:
  explicit AmaxRecordingPaused(const model::Registry& r) : r_(r) { model::set_linear_amax_recording(r_, false); }
  ~AmaxRecordingPaused() { model::set_linear_amax_recording(r_, true); }
  AmaxRecordingPaused(const AmaxRecordingPaused&) = delete;
  AmaxRecordingPaused& operator=(const AmaxRecordingPaused&) = delete;

 private:
  const model::Registry& r_;
};

}  // namespace

void Trainer::resume(const std::string& run_dir) {
  const std::string dir = io::resolve_checkpoint_dir(run_dir);
  const json saved = io::read_json_file(dir + "/config.json", "checkpoint config");
  const std::vector<std::string> diff = io::architecture_differences(saved, model::to_json(cfg_));
  if (!diff.empty()) {
    std::string list;
    for (const std::string& d : diff) list += "\n    " + d;
    TS_FAIL("checkpoint " << dir << " was written for another model config (checkpoint vs current):" << list,
            "resume with the run's own config (omit --config) or start a new run with --out");
  }
  // The map the checkpoint trained with (a config without a precision section is fp32).
  const model::PrecisionMap saved_precision =
      model::precision_from_json(saved.value("precision", json::object()), dir + "/config.json: precision");
  const std::vector<std::string> pdiff = precision_differences(saved_precision, cfg_.precision);
  if (!pdiff.empty()) {
    std::string list;
    for (const std::string& d : pdiff) list += "\n    " + d;
    TS_CHECK(opt_.allow_precision_change, "checkpoint " << dir << " was trained with another precision map "
             "(checkpoint vs current):" << list,
             "resume with the checkpoint's map (omit --recipe and precision.* overrides), or pass "
             "--allow-precision-change to continue under the new map (not bit-identical to either run)");
    if (opt_.print)
      std::printf("precision map changed on resume (checkpoint vs now):%s\n(optimizer moments converted if needed, "
                  "delayed-scaling histories start afresh)\n", list.c_str());
  }
  io::load_model_safetensors(model_->registry(), dir + "/model.safetensors");
  if (comm_.distributed()) {
    // The checkpoint holds the unsharded optimizer (any rank count wrote it): every rank
    // reads it whole and keeps its shard.
    AdamW full(model_->registry(), hyper_.adamw);
    load_optimizer_state(full, model_->registry(), dir + "/optimizer.safetensors", !pdiff.empty());
    if (ep_) ep_->scatter_optimizer(full);
    else dist::DataParallel::scatter_optimizer(full, *adamw_);
  } else {
    load_optimizer_state(*adamw_, model_->registry(), dir + "/optimizer.safetensors", !pdiff.empty());
  }
  if (pdiff.empty()) load_scaling_state(model_->registry(), dir + "/scaling.safetensors");
  const TrainerState st = read_trainer_state(dir + "/trainer_state.json");
  check_router_biases(st, model_->registry());
  TS_CHECK(st.loader.window == loader_->window(), "checkpoint " << dir << " was trained with seq_len "
           << st.loader.window - 1 << ", the config says " << hyper_.run.seq_len,
           "resume with the same training.seq_len");
  TS_CHECK(data_.tokenizer_hash == 0 || st.tokenizer_hash == 0 || st.tokenizer_hash == data_.tokenizer_hash,
           "the data's tokenizer differs from the one the checkpoint " << dir << " was trained with",
           "resume with the run's data directory (" << st.data_dir << ")");
  loader_->restore(st.loader);
  step_ = st.step;
  tokens_seen_ = st.tokens_seen;
  bad_in_row_ = st.bad_steps_in_row;
  last_lr_ = st.lr;
  last_save_step_ = step_;
  if (root_writes()) metrics_ = MetricsLog(opt_.run_dir, step_);
}

void Trainer::set_mtp_lambda(double lambda) {
  model_->set_mtp_lambda(lambda);
}

StepRecord Trainer::train_step() {
  const RunOptions& r = hyper_.run;
  const int64_t B = r.batch_size, T = r.seq_len, k = r.grad_accum;
  const int64_t N = comm_.size(), rows = B / N;  // this rank's rows of every micro-batch
  const int32_t* my_rows = batch_.data() + comm_.rank() * rows * (T + 1);
  Timer timer;
  StepRecord rec;
  rec.lr = lr_.at(step_);
  rec.mtp_lambda = lambda_.at(step_);
  set_mtp_lambda(rec.mtp_lambda);
  model::Registry& reg = model_->registry();
  reg.zero_grad();
  const bool telemetry = opt_.telemetry_every > 0 && (step_ + 1) % opt_.telemetry_every == 0;
  if (telemetry) model::set_linear_telemetry(reg, true);

  const std::vector<int64_t> moe = model_->moe_layers();
  const int64_t E = cfg_.n_routed_experts;
  std::vector<int64_t> load(moe.size() * static_cast<size_t>(E), 0);  // [layers, E] over the step
  model::Losses sum;
  sum.loss_mtp.assign(static_cast<size_t>(cfg_.num_nextn_predict_layers), 0.0);
  for (int64_t micro = 0; micro < k; ++micro) {
    loader_->next(batch_.data(), B);  // every rank reads the global micro-batch
    const model::Losses l = model_->forward_backward(my_rows, rows, T);
    sum.loss += l.loss, sum.loss_main += l.loss_main, sum.loss_balance += l.loss_balance;
    for (size_t d = 0; d < l.loss_mtp.size(); ++d) sum.loss_mtp[d] += l.loss_mtp[d];
    for (size_t li = 0; li < moe.size(); ++li) {
      const int32_t* c = model_->load_counts(moe[li]);
      for (int64_t e = 0; e < E; ++e) load[li * size_t(E) + size_t(e)] += c[e];
    }
  }
  if (comm_.distributed()) {
    // Σ of the ranks' means in rank order (each rank's mean is over the same token count).
    std::vector<double> v = {sum.loss, sum.loss_main, sum.loss_balance};
    v.insert(v.end(), sum.loss_mtp.begin(), sum.loss_mtp.end());
    v = comm_.allreduce_sum_ordered(v);
    sum.loss = v[0], sum.loss_main = v[1], sum.loss_balance = v[2];
    std::copy(v.begin() + 3, v.end(), sum.loss_mtp.begin());
    comm_.allreduce_sum(load);  // exact integer sums
  }
  // Mean over the k micro-batches of every rank (k·N for one process is k).
  const double inv_k = 1.0 / static_cast<double>(k * N);
  rec.losses = {sum.loss * inv_k, sum.loss_main * inv_k, sum.loss_mtp, sum.loss_balance * inv_k};
  for (double& x : rec.losses.loss_mtp) x *= inv_k;
  if (opt_.after_backward) opt_.after_backward(step_, reg);
  if (telemetry) {
    // Forward and backward of every micro-batch are done: the step's GEMMs are all in.
    const std::vector<model::LinearTelemetryRecord> records = model::collect_linear_telemetry(reg, true);
    model::set_linear_telemetry(reg, false);
    rec.numerics = model::linear_telemetry_json(records);
    telemetry_.add_step(records);
  }

  // The step's gradient is Σ/(k·N): its norm is the raw norm / (k·N), and 1/(k·N) joins
  // the clip factor. With one process the reduction is a no-op and the norm the unsharded one.
  if (ep_) ep_->reduce_gradients(reg);
  else dp_->reduce_gradients(reg);
  const double raw_norm = ep_ ? ep_->grad_norm(reg) : dp_->grad_norm(reg);
  rec.grad_norm = raw_norm * inv_k;
  const bool finite = std::isfinite(rec.losses.loss) && std::isfinite(raw_norm);
  if (finite) {
    const float scale = static_cast<float>(static_cast<double>(clip_factor(rec.grad_norm, hyper_.grad_clip)) * inv_k);
    if (ep_) {
      ep_->step(reg, rec.lr, scale);
      ep_->allgather_params(reg);
    } else {
      adamw_->step(reg, rec.lr, scale);
      dp_->allgather_params(reg);
    }
    const double gamma = gamma_.at(step_);
    for (size_t li = 0; li < moe.size(); ++li)
      bias_update(reg.param(router_bias_id(reg, moe[li])), load.data() + li * size_t(E), E, gamma);
    reg.params_changed();
    bad_in_row_ = 0;
  } else {
    rec.skipped = true;
    ++bad_in_row_;
    if (comm_.is_root())
      std::fprintf(stderr,
                 "warning: step %lld: non-finite loss or gradient (loss %g, grad norm %g): update skipped "
                 "(%lld in a row; abort after %lld)\n",
                 static_cast<long long>(step_ + 1), rec.losses.loss, rec.grad_norm, static_cast<long long>(bad_in_row_),
                 static_cast<long long>(r.max_bad_steps));
  }
  for (size_t li = 0; li < moe.size(); ++li)
    rec.imbalance = std::max(rec.imbalance, load_imbalance(load.data() + li * size_t(E), E));
  ++step_;
  last_lr_ = rec.lr;
  tokens_seen_ += k * B * T;  // the global batch
  rec.step = step_;
  rec.tokens = tokens_seen_;
  rec.ms = timer.ms();
  rec.tokens_per_s = static_cast<double>(k * B * T) / (rec.ms * 1e-3);
  // Each rank measured its own peak (rank 0's stands for all).
  if (peak_gflops_ && *peak_gflops_ > 0)
    rec.mfu = rec.tokens_per_s * flops_per_token() / (*peak_gflops_ * 1e9 * static_cast<double>(N));
  TS_CHECK(bad_in_row_ < r.max_bad_steps, "aborting: " << bad_in_row_ << " steps in a row had a non-finite loss "
           "or gradient (last: loss " << rec.losses.loss << ", grad norm " << rec.grad_norm << ")",
           "lower training.lr or raise training.warmup_steps; the last checkpoint is intact and can be resumed");
  return rec;
}

EvalResult Trainer::evaluate(int64_t max_batches) {
  const int64_t B = hyper_.run.batch_size, T = hyper_.run.seq_len;
  data::WindowLoader val(data_.val, data::LoaderOptions{T + 1, 0, 0, false});
  set_mtp_lambda(lambda_.at(step_));
  const AmaxRecordingPaused paused(model_->registry());
  // Batch b is evaluated by rank b mod N; the per-batch nats are summed over ranks (each
  // entry is nonzero on one rank only, so the sum is exact) and folded in batch order: the
  // same value as one process evaluating every batch.
  std::vector<double> batch_nats;
  int64_t rows_total = 0;
  for (int64_t b = 0; max_batches <= 0 || b < max_batches; ++b) {
    const int64_t rows = val.next(batch_.data(), B);
    if (rows == 0) break;
    batch_nats.push_back(0.0);
    rows_total += rows;
    if (ep_) {
      // Every MoE layer needs every rank: each evaluates its rows of the batch (all of them
      // when the rows do not split evenly; rank 0's count then).
      const int64_t n = comm_.size();
      const bool split = rows % n == 0;
      const int64_t mine = split ? rows / n : rows;
      const model::Losses l =
          model_->forward(batch_.data() + (split ? comm_.rank() * mine * (T + 1) : 0), mine, T);
      if (split || comm_.is_root()) batch_nats.back() = l.loss_main * static_cast<double>(mine * T);
      continue;
    }
    if (b % comm_.size() != comm_.rank()) continue;
    const model::Losses l = model_->forward(batch_.data(), rows, T);
    batch_nats.back() = l.loss_main * static_cast<double>(rows * T);
  }
  if (comm_.distributed()) batch_nats = comm_.allreduce_sum_ordered(batch_nats);
  double nats = 0;
  for (double n : batch_nats) nats += n;
  EvalResult e;
  e.step = step_;
  e.tokens = rows_total * T;
  e.val_loss = e.tokens > 0 ? nats / static_cast<double>(e.tokens) : 0.0;
  e.perplexity = std::exp(e.val_loss);
  // Bits per byte: the split's text bytes per token converts nats/token to bits/byte
  // (tokenizer-independent, so runs with different vocabularies compare).
  const double bytes_per_token = data_.val->text_bytes() > 0 && data_.val->size() > 0
                                     ? static_cast<double>(data_.val->text_bytes()) / static_cast<double>(data_.val->size())
                                     : 0.0;
  e.bits_per_byte = bytes_per_token > 0 ? e.val_loss / std::numbers::ln2 / bytes_per_token : 0.0;
  return e;
}

double Trainer::flops_per_token() const {
  const model::Registry& reg = model_->registry();
  const double K = static_cast<double>(cfg_.num_experts_per_tok), E = static_cast<double>(cfg_.n_routed_experts);
  double matmul = 0;
  for (const model::TensorInfo& t : reg.tensors()) {
    double n = static_cast<double>(t.numel);
    switch (t.role) {
      case model::Role::kLinear:
        if (t.name.find(".mlp.experts.") != std::string::npos) n *= K / E;  // only K of E experts run
        matmul += n;
        break;
      case model::Role::kHead: matmul += n * double(1 + cfg_.num_nextn_predict_layers); break;
      case model::Role::kRouter:
      case model::Role::kMtpProj: matmul += n; break;
      default: break;  // gathers and elementwise work
    }
  }
  // Causal attention: per layer and token, H·(dqk + dv)·T/2 multiply-adds forward.
  const double T = static_cast<double>(hyper_.run.seq_len);
  const double attn = static_cast<double>(cfg_.num_total_layers()) * static_cast<double>(cfg_.num_attention_heads) *
                      static_cast<double>(cfg_.qk_head_dim() + cfg_.v_head_dim) * T / 2 * 2;
  return 6 * matmul + 3 * attn;
}

json Trainer::run_config_json() const {
  json j = model::to_json(cfg_);
  const json h = to_json(hyper_);
  for (const auto& [k, v] : h.items()) j["training"][k] = v;
  return j;
}

void Trainer::save_checkpoint() {
  // Collective under data parallelism: every rank sends its optimizer shard to rank 0.
  if (opt_.run_dir.empty() || last_save_step_ == step_) return;
  std::unique_ptr<AdamW> gathered;
  if (comm_.distributed()) {
    if (comm_.is_root()) gathered = std::make_unique<AdamW>(model_->registry(), hyper_.adamw);
    // Expert parallel: rank 0 also receives the owners' experts into its registry.
    if (ep_) ep_->gather_checkpoint(model_->registry(), gathered.get());
    else dp_->gather_optimizer(*adamw_, gathered.get());
    if (!comm_.is_root()) {
      last_save_step_ = step_;
      return;
    }
  }
  const AdamW& optimizer = gathered ? *gathered : *adamw_;
  TrainerState st;
  st.step = step_;
  st.tokens_seen = tokens_seen_;
  st.bad_steps_in_row = bad_in_row_;
  st.lr = last_lr_;
  st.next_lr = lr_.at(step_);
  st.mtp_lambda = lambda_.at(step_);
  st.loader = loader_->state();
  st.data_seed = hyper_.run.data_seed;
  st.init_seed = cfg_.training.seed;
  st.data_dir = data_.data_dir;
  st.tokenizer_hash = data_.tokenizer_hash;
  collect_router_biases(st, *model_);
  const json config = run_config_json();
  io::save_checkpoint_atomic(opt_.run_dir, step_, [&](const std::string& dir) {
    io::write_file_synced(dir + "/config.json", config.dump(2) + "\n");
    io::write_model_safetensors(model_->registry(), dir + "/model.safetensors");
    if (!data_.tokenizer_json.empty()) io::write_file_synced(dir + "/tokenizer.json", data_.tokenizer_json);
    write_optimizer_state(optimizer, model_->registry(), dir + "/optimizer.safetensors");
    write_scaling_state(model_->registry(), dir + "/scaling.safetensors");
    write_trainer_state(st, dir + "/trainer_state.json");
  });
  last_save_step_ = step_;
}

void Trainer::print_header(int64_t until) {
  if (!opt_.print) return;
  const RunOptions& r = hyper_.run;
  std::printf("model: %s\n", model::summary(cfg_).c_str());
  std::printf("parameters: %s, training FLOPs/token ~%s\n",
              human(static_cast<double>(model_->registry().num_parameters())).c_str(), human(flops_per_token()).c_str());
  std::printf("run: B %lld x T %lld x accum %lld = %lld tokens/step, steps %lld -> %lld (planned %lld), lr %s %g -> %g "
              "(warmup %lld), moments %s, recompute %s%s\n",
              (long long)r.batch_size, (long long)r.seq_len, (long long)r.grad_accum,
              (long long)(r.batch_size * r.seq_len * r.grad_accum), (long long)step_, (long long)until,
              (long long)r.steps, to_string(hyper_.schedule), hyper_.lr, hyper_.min_lr, (long long)hyper_.warmup_steps,
              to_string(hyper_.adamw.moments), r.recompute.c_str(),
              r.recompute != "none"    ? ""
              : r.recompute_norm_up ? " (norms and MLA up-projections recomputed: recompute_norm_up)"
                                    : " (norms and MLA up-projections kept: recompute_norm_up false)");
  std::printf("data: %s (train %s tokens, val %s tokens)\n", data_.data_dir.empty() ? "(memory)" : data_.data_dir.c_str(),
              human(double(data_.train->size())).c_str(), human(double(data_.val->size())).c_str());
  std::printf("threads %d, SIMD %s, peak %s\n", max_threads(), to_string(simd_path()),
              peak_gflops_ ? (human(*peak_gflops_ * 1e9) + "FLOP/s").c_str() : "unknown");
  if (comm_.distributed()) {
    size_t largest = 0;
    for (const dist::Range& sh : ep_ ? ep_->dense_shards() : dp_->shards()) largest = std::max(largest, sh.size());
    std::printf("data parallel: %d ranks x %lld sequences of each micro-batch; gradients reduce-scattered in %zu MiB "
                "buckets (after the backward, not overlapped); ZeRO-1 optimizer shards of <= %s elements; "
                "%sB sent per rank per step\n",
                comm_.size(), (long long)(r.batch_size / comm_.size()),
                dist::DataParallel::kBucketElems * sizeof(float) >> 20, human(double(largest)).c_str(),
                human(double(ep_ ? ep_->dense_bytes_per_step() : dp_->bytes_per_step())).c_str());
    if (ep_)
      std::printf("expert parallel: %d ranks x %lld routed experts per MoE layer, their gradients and moments on the "
                  "owner; %s parameters data parallel; token dispatch in %s, combine and its backward in %s\n",
                  comm_.size(), (long long)ep_->dispatch().experts_per_rank(),
                  human(double(ep_->dense_elements())).c_str(), ep_->dispatch().fp8() ? "FP8 E4M3 (1x128 scales)" : "FP32",
                  cfg_.precision.moe_combine == model::StoreFormat::kBf16 ? "BF16" : "FP32");
  }
  std::printf("precision:\n%s", model::precision_table(cfg_.precision, cfg_.num_hidden_layers).c_str());
  if (opt_.telemetry_every > 0)
    std::printf("numerics telemetry: every %lld steps (metrics.jsonl \"numerics\"; shadow GEMMs make those steps slower)\n",
                static_cast<long long>(opt_.telemetry_every));
  std::fflush(stdout);
}

void Trainer::log_step(const StepRecord& r, int64_t until) {
  json j;
  j["step"] = r.step;
  j["loss"] = r.losses.loss;
  j["loss_main"] = r.losses.loss_main;
  j["loss_mtp"] = r.losses.loss_mtp;
  j["loss_balance"] = r.losses.loss_balance;
  j["lr"] = r.lr;
  j["grad_norm"] = r.grad_norm;
  j["tokens_per_s"] = r.tokens_per_s;
  j["ms"] = r.ms;
  j["mfu"] = r.mfu ? json(*r.mfu) : json(nullptr);
  j["imbalance"] = r.imbalance;
  j["mtp_lambda"] = r.mtp_lambda;
  j["tokens"] = r.tokens;
  j["skipped"] = r.skipped;
  if (r.numerics) j["numerics"] = *r.numerics;
  // JSON has no NaN: a skipped step's non-finite values are written as null.
  for (const char* key : {"loss", "loss_main", "loss_balance", "grad_norm"})
    if (!std::isfinite(j[key].get<double>())) j[key] = nullptr;
  for (auto& v : j["loss_mtp"])
    if (!std::isfinite(v.get<double>())) v = nullptr;
  metrics_.append(j);
  if (!opt_.print) return;
  std::string line = "step " + std::to_string(r.step) + "/" + std::to_string(until);
  char buf[96];
  std::snprintf(buf, sizeof buf, " | loss %.4f | main %.4f", r.losses.loss, r.losses.loss_main);
  line += buf;
  if (!r.losses.loss_mtp.empty()) {
    line += " | mtp";
    for (double m : r.losses.loss_mtp) {
      std::snprintf(buf, sizeof buf, " %.3f", m);
      line += buf;
    }
  }
  std::snprintf(buf, sizeof buf, " | norm %.3f | lr %.2e | %.0f ms | %s tok/s", r.grad_norm, r.lr, r.ms,
                human(r.tokens_per_s).c_str());
  line += buf;
  if (r.mfu) {
    std::snprintf(buf, sizeof buf, " | MFU %.1f%%", *r.mfu * 100);
    line += buf;
  }
  if (cfg_.has_moe_layers()) {
    std::snprintf(buf, sizeof buf, " | imb %.2f", r.imbalance);
    line += buf;
  }
  if (r.skipped) line += " | SKIPPED";
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

void Trainer::log_eval(const EvalResult& e) {
  json j;
  j["step"] = e.step;
  j["val_loss"] = e.val_loss;
  j["val_perplexity"] = e.perplexity;
  j["val_bits_per_byte"] = e.bits_per_byte;
  j["val_tokens"] = e.tokens;
  metrics_.append(j);
  last_eval_step_ = e.step;
  if (opt_.print) {
    std::printf("eval step %lld | val loss %.4f | ppl %.2f | %.4f bits/byte | %lld tokens\n",
                static_cast<long long>(e.step), e.val_loss, e.perplexity, e.bits_per_byte,
                static_cast<long long>(e.tokens));
    std::fflush(stdout);
  }
}

void Trainer::write_plot() {
  if (!root_writes()) return;
  write_loss_plot((fs::path(opt_.run_dir) / "loss.svg").string(), metrics_.train_curve(), metrics_.val_curve(),
                  "tinyseek: " + fs::path(opt_.run_dir).filename().string());
}

bool Trainer::stop_requested() const {
  const int64_t local = opt_.stop_flag && *opt_.stop_flag ? 1 : 0;
  // A signal may reach the ranks at different steps: they stop together at the first step
  // boundary where any rank has it.
  return comm_.allreduce_max(local) != 0;
}

Trainer::Stop Trainer::run(int64_t until) {
  const RunOptions& r = hyper_.run;
  print_header(until);
  const Timer wall;
  const auto comm_seconds = [&] { return ep_ ? ep_->comm_seconds() : dp_->comm_seconds(); };
  const auto bytes_sent = [&] { return ep_ ? ep_->bytes_sent() : dp_->bytes_sent(); };
  const double comm_before = comm_seconds();
  const size_t bytes_before = bytes_sent();
  // Rank 0's share of the run's wall time in the gradient/parameter collectives (waiting for
  // slower ranks included), printed when the run ends.
  const auto print_comm = [&] {
    if (!opt_.print || !comm_.distributed()) return;
    std::printf("%s: rank 0 sent %sB, %.1f%% of the run's wall time in %s\n",
                ep_ ? "expert parallel" : "data parallel", human(double(bytes_sent() - bytes_before)).c_str(),
                100.0 * (comm_seconds() - comm_before) / std::max(wall.seconds(), 1e-9),
                ep_ ? "gradient/parameter collectives and token exchanges" : "gradient/parameter collectives");
  };
  bool stopped = false;
  while (step_ < until) {
    if ((stopped = stop_requested())) break;
    const StepRecord rec = train_step();
    log_step(rec, until);
    if (r.eval_every > 0 && step_ % r.eval_every == 0 && step_ < until) {
      log_eval(evaluate(r.eval_batches));
      write_plot();
    }
    if (r.save_every > 0 && step_ % r.save_every == 0) save_checkpoint();
  }
  if (!stopped) stopped = stop_requested();  // a signal during the last step
  if (stopped) {
    save_checkpoint();
    write_plot();
    if (opt_.print && !telemetry_.empty()) std::printf("%s", telemetry_.table().c_str());
    print_comm();
    if (opt_.print) std::printf("stopped by a signal at step %lld; checkpoint saved\n", static_cast<long long>(step_));
    return Stop::kSignal;
  }
  if (last_eval_step_ != step_) log_eval(evaluate(r.eval_batches));
  save_checkpoint();
  write_plot();
  if (opt_.print && !telemetry_.empty()) std::printf("%s", telemetry_.table().c_str());
  print_comm();
  return Stop::kReachedStep;
}

}  // namespace tinyseek::train
