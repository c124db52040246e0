#include "fundus/train/trainer.h"

#include <csignal>

#include <atomic>
#include <chrono>
#include <fstream>
#include <set>
#include <sstream>

#include "fundus/core/csv.h"
#include "fundus/core/io.h"
#include "fundus/core/log.h"
#include "fundus/core/progress.h"
#include "fundus/core/rng.h"
#include "fundus/core/strings.h"
#include "fundus/data/dataset_io.h"
#include "fundus/eval/descriptor_health.h"
#include "fundus/eval/retrieval_eval.h"
#include "fundus/infer/checkpoint.h"
#include "fundus/infer/embed.h"
#include "fundus/infer/loader.h"
#include "fundus/loss/loss.h"
#include "fundus/model/batchnorm.h"
#include "fundus/model/device.h"
#include "fundus/model/runtime.h"
#include "fundus/model/weights_hub.h"
#include "fundus/train/distributed.h"
#include "fundus/train/feature_cache.h"

namespace fundus {

Json TrainSummary::to_json() const {
  return {{"steps", steps},
          {"epochs_completed", epochs_completed},
          {"interrupted", interrupted},
          {"select", select},
          {"best_value", best_value},
          {"best_epoch", best_epoch},
          {"images_per_second", images_per_second},
          {"comm_ms_per_step", comm_ms_per_step},
          {"last_validation", last_validation},
          {"best_checkpoint", best_checkpoint},
          {"last_checkpoint", last_checkpoint}};
}

namespace {

// ---- Ctrl-C: the first one asks the loop to checkpoint and stop; a second one kills the process.
std::atomic<int> g_interrupts{0};
extern "C" void on_sigint(int) {
  if (++g_interrupts >= 2) {
    std::signal(SIGINT, SIG_DFL);
    std::raise(SIGINT);
  }
}
class SigintGuard {
 public:
  SigintGuard() {
    g_interrupts = 0;
    struct sigaction sa {};
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_);
  }
  ~SigintGuard() { sigaction(SIGINT, &old_, nullptr); }
  bool interrupted() const { return g_interrupts > 0; }

 private:
  struct sigaction old_ {};
};

// ---- data checks before any compute ----------------------------------------------------------
struct Splits {
  Dataset train, val;
};

bool selects_on_validation(const TrainSettings& t) { return t.select != "train_loss" && t.select != "last"; }

Splits prepare_data(const TrainRequest& req) {
  FUNDUS_CHECK(file_exists(req.data), req.data << ": training manifest not found");
  LoadResult loaded = load_dataset(req.data);
  FUNDUS_CHECK(loaded.problems.empty(), req.data << ": " << loaded.problems.size()
                                                 << " problem(s); fix them or write a clean manifest with "
                                                    "`fundus dataset validate --skip-bad`:\n"
                                                 << format_problems(loaded.problems, 20));
  std::set<std::string> present;
  for (const auto& r : loaded.dataset.records) present.insert(r.split.empty() ? "(none)" : r.split);
  auto splits_text = join(std::vector<std::string>(present.begin(), present.end()), ", ");
  Splits s{loaded.dataset.subset(req.train_split), loaded.dataset.subset(req.val_split)};
  FUNDUS_CHECK(!s.train.records.empty(), req.data << ": no images in split '" << req.train_split
                                                  << "' (splits present: " << splits_text
                                                  << "); make one with `fundus dataset split`");
  FUNDUS_CHECK(!s.val.records.empty() || !selects_on_validation(req.config.train),
               req.data << ": no images in validation split '" << req.val_split << "' (splits present: " << splits_text
                        << "); train.select=" << req.config.train.select
                        << " needs one (or use train.select=last or train_loss)");
  std::vector<std::string> missing;
  for (const Dataset* d : {&s.train, &s.val})
    for (const auto& r : d->records)
      if (!file_exists(r.image_path)) missing.push_back(r.image_path);
  FUNDUS_CHECK(missing.empty(), req.data << ": " << missing.size() << " image file(s) missing, e.g. " << missing[0]);
  std::set<int> grades;
  for (const auto& r : s.train.records) grades.insert(r.grade);
  if (grades.size() < 2) FUNDUS_WARN("training split has a single grade: pair losses have no negatives");
  return s;
}

// ---- optimiser -------------------------------------------------------------------------------
std::unique_ptr<torch::optim::Optimizer> make_optimizer(const OptimConfig& c, std::vector<torch::Tensor> params) {
  if (c.name == "adam")
    return std::make_unique<torch::optim::Adam>(
        params, torch::optim::AdamOptions(c.lr).betas({c.beta1, c.beta2}).weight_decay(c.weight_decay));
  if (c.name == "adamw")
    return std::make_unique<torch::optim::AdamW>(
        params, torch::optim::AdamWOptions(c.lr).betas({c.beta1, c.beta2}).weight_decay(c.weight_decay));
  return std::make_unique<torch::optim::SGD>(
      params, torch::optim::SGDOptions(c.lr).momentum(c.momentum).weight_decay(c.weight_decay));
}

void set_lr(torch::optim::Optimizer& opt, double lr) {
  for (auto& group : opt.param_groups()) group.options().set_lr(lr);
}

std::string optimizer_bytes(torch::optim::Optimizer& opt) {
  torch::serialize::OutputArchive archive;
  opt.save(archive);
  std::ostringstream out;
  archive.save_to(out);
  return out.str();
}

void load_optimizer(torch::optim::Optimizer& opt, const std::string& bytes, const std::string& source,
                    torch::Device device) {
  FUNDUS_CHECK(!bytes.empty(), source << ": checkpoint has no optimiser state (not a training checkpoint)");
  std::istringstream in(bytes);
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(in, device);
    opt.load(archive);
  } catch (const c10::Error& e) {
    FUNDUS_THROW(source << ": optimiser state does not fit this configuration (" << e.what_without_backtrace() << ")");
  } catch (const std::exception& e) {  // e.g. bad_alloc for an absurd size in a damaged archive
    FUNDUS_THROW(source << ": unreadable optimiser state (" << e.what() << ")");
  }
}

// ---- logs ------------------------------------------------------------------------------------
const std::vector<std::string> kCsvColumns = {"kind",
                                              "epoch",
                                              "step",
                                              "lr",
                                              "loss",
                                              "ftl",
                                              "batch_hard",
                                              "contrastive",
                                              "ce",
                                              "bce",
                                              "relevance_mean",
                                              "mean_cos",
                                              "ftl_blind",
                                              "images_per_s",
                                              "train_loss",
                                              "train_ftl",
                                              "train_ftl_blind",
                                              "train_mean_cos",
                                              "val_P@10",
                                              "val_mAP@10",
                                              "val_macro_P@10",
                                              "val_macro_mAP@10",
                                              "chance_P@10",
                                              "chance_macro_P@10",
                                              "val_mean_cos",
                                              "val_relative_spread",
                                              "val_health",
                                              "seconds"};

class MetricsLog {
 public:
  MetricsLog(const std::string& dir, bool append) {
    auto mode = append ? std::ios::app : std::ios::trunc;
    std::string csv = join_path(dir, "metrics.csv");
    bool header = !append || !file_exists(csv);
    jsonl_.open(join_path(dir, "metrics.jsonl"), mode);
    csv_.open(csv, mode);
    FUNDUS_CHECK(jsonl_ && csv_, dir << ": cannot write metrics files");
    if (header) csv_ << csv_line(kCsvColumns);
  }
  void write(const Json& row) {
    jsonl_ << row.dump() << "\n";
    std::vector<std::string> fields;
    for (const auto& c : kCsvColumns) {
      auto it = row.find(c);
      if (it == row.end() || it->is_null()) fields.emplace_back();
      else fields.push_back(it->is_string() ? it->get<std::string>() : it->dump());
    }
    csv_ << csv_line(fields);
    jsonl_.flush();
    csv_.flush();
  }

 private:
  std::ofstream jsonl_, csv_;
};

// ---- validation: val queries against the train gallery ---------------------------------------
EvalSet eval_set(const Embeddings& e, const Dataset& d) {
  EvalSet s{VectorsView{e.data.data(), e.rows, e.dim}, {}, {}};
  for (const auto& r : d.records) {
    s.keys.push_back({r.id, r.patient});
    s.grades.push_back(r.grade);
  }
  return s;
}

// Distributed: every rank embeds its share of the images, rank 0 evaluates and shares the result.
Json validate(RetrievalNetImpl& net, const RunConfig& cfg, const Splits& splits, Communicator* comm) {
  net.eval();
  EmbedOptions eo;
  eo.batch_size = cfg.train.val_batch_size;
  eo.workers = cfg.train.workers;
  eo.cache_dir = cfg.train.cache_dir;
  eo.label = "validate";
  auto embed = [&](const Dataset& d) {
    return comm ? embed_dataset_sharded(*comm, net, cfg.preprocess, d, eo) : embed_dataset(net, cfg.preprocess, d, eo);
  };
  Embeddings q = embed(splits.val);
  Embeddings g = embed(splits.train);
  if (comm && !comm->is_main()) {
    net.train();
    return Json::parse(comm->broadcast_bytes(""));
  }
  EvalOptions opt;
  opt.ks = {1, 5, 10};
  opt.exclude_same_patient = true;  // fellow-eye leakage off, whatever the split
  opt.progress = false;
  opt.chance_rounds = 50;
  RetrievalReport r = evaluate_retrieval(eval_set(q, splits.val), eval_set(g, splits.train), opt);
  DescriptorHealth health = assess_descriptors(g.data.data(), g.rows, g.dim);
  if (health.flagged())
    FUNDUS_WARN("validation: training-set descriptors " << health.summary() << "; " << health.advice());
  net.train();
  Json result = {{"val_mean_cos", health.mean_cosine},
                 {"val_relative_spread", health.relative_spread},
                 {"val_health", health.status},
                 {"val_P@10", r.value("micro", "P@10")},
                 {"val_mAP@10", r.value("micro", "mAP@10")},
                 {"val_macro_P@10", r.value("macro", "P@10")},
                 {"val_macro_mAP@10", r.value("macro", "mAP@10")},
                 {"val_kNN_acc", r.knn_accuracy},
                 {"chance_P@10", r.chance("micro", "P@10")},
                 {"chance_macro_P@10", r.chance("macro", "P@10")}};
  if (comm) comm->broadcast_bytes(result.dump());
  return result;
}

// What must be the same on every rank of a distributed run (Communicator's join check): the
// configuration except the per-machine resources and folders, and the request's options. out_dir
// and data are paths, which may differ between machines; the data itself is checked after loading.
std::string rank_agreement(const TrainRequest& req) {
  Json config = req.config.to_json();
  for (const char* k : {"threads", "workers", "prefetch_batches", "cache_dir", "feature_cache_dir"})
    config["train"].erase(k);
  std::string text = "resume=" + std::to_string(req.resume) + "\ndevice=" + req.device +
                     "\nprecision=" + req.precision + "\ntrain_split=" + req.train_split +
                     "\nval_split=" + req.val_split + "\n";
  const Json flat = config.flatten();  // a named object: items() of a temporary would dangle
  for (const auto& [key, value] : flat.items()) text += "config" + key + "=" + value.dump() + "\n";
  return text;
}

// The identity of the loaded splits (ids, grades, order), compared across ranks.
std::string data_identity(const Splits& s) {
  std::string text;
  for (const Dataset* d : {&s.train, &s.val}) {
    for (const auto& r : d->records) text += r.id + "\t" + std::to_string(r.grade) + "\n";
    text += "--\n";
  }
  return text;
}

// The config fields that must match for an exact resume (epochs, threads, workers may change).
Json resume_identity(Json config) {
  for (const char* k : {"epochs", "threads", "workers", "prefetch_batches", "stop_after_steps", "cache_dir",
                        "feature_cache_dir", "val_batch_size", "val_every", "channels_last", "bn_recalibration_images"})
    config["train"].erase(k);
  config.erase("preset");
  return config;
}

struct RunState {
  int epoch = 0;        // next epoch to run
  int64_t batch = 0;    // next batch within it
  int64_t step = 0;     // global steps done
  double loss_sum = 0;  // running sums of the current epoch (for train_loss selection)
  int64_t loss_count = 0;
  double ftl_sum = 0, blind_sum = 0, cos_sum = 0;  // collapse guards: FTL vs its label-blind value
  int64_t guard_count = 0;
  double best_value = 0;
  int best_epoch = -1;
  Json history = Json::array();
  Json last_validation;

  Json to_json() const {
    return {{"epoch", epoch},
            {"batch", batch},
            {"step", step},
            {"loss_sum", loss_sum},
            {"loss_count", loss_count},
            {"best_value", best_value},
            {"best_epoch", best_epoch},
            {"history", history},
            {"last_validation", last_validation},
            {"guards", {ftl_sum, blind_sum, cos_sum, guard_count}}};
  }
  static RunState from_json(const Json& j) {
    RunState s;
    s.epoch = j.at("epoch");
    s.batch = j.at("batch");
    s.step = j.at("step");
    s.loss_sum = j.at("loss_sum");
    s.loss_count = j.at("loss_count");
    s.best_value = j.at("best_value");
    s.best_epoch = j.at("best_epoch");
    s.history = j.at("history");
    s.last_validation = j.value("last_validation", Json());
    if (j.contains("guards")) {
      const Json& g = j.at("guards");
      s.ftl_sum = g.at(0);
      s.blind_sum = g.at(1);
      s.cos_sum = g.at(2);
      s.guard_count = g.at(3);
    }
    return s;
  }
  void reset_epoch_sums() {
    loss_sum = ftl_sum = blind_sum = cos_sum = 0;
    loss_count = guard_count = 0;
  }
};

// Collapse guards at the end of an epoch: FTL against its label-blind value and the mean cosine of
// the training batches (loss/loss.h). Adds the epoch means to `row`, warns, returns text for the log.
std::string epoch_guards(const RunState& st, const LossConfig& loss_cfg, int epoch, Json& row) {
  if (st.guard_count == 0) return "";
  const double n = double(st.guard_count);
  const double cos = st.cos_sum / n;
  row["train_mean_cos"] = cos;
  std::string text = strprintf(", batch mean cosine %.3f", cos);
  if (loss_cfg.ftl_weight > 0) {
    const double ftl = st.ftl_sum / n, blind = st.blind_sum / n;
    row["train_ftl"] = ftl;
    row["train_ftl_blind"] = blind;
    text = strprintf(", FTL %.4f (label-blind %.4f)", ftl, blind) + text;
    if (blind > 0 && ftl > 0.99 * blind)
      FUNDUS_WARN("epoch " << epoch << ": the fine triplet loss " << strprintf("%.4f", ftl)
                           << (ftl > blind ? " is above" : " is less than 1% below") << " its label-blind value "
                           << strprintf("%.4f (%+.1f%%)", blind, 100.0 * (ftl / blind - 1.0))
                           << ": the embedding is not (yet) using the grades (loss/fine_triplet.h)");
  }
  if (cos > 0.99)
    FUNDUS_WARN("epoch " << epoch << ": training descriptors are nearly identical (batch mean cosine "
                         << strprintf("%.4f", cos) << "): the embedding is collapsing");
  return text;
}

// Precise BatchNorm before every validation and checkpoint: a fixed, seeded subset of the training
// images, un-augmented, in training-sized batches (model/batchnorm.h says why).
class BatchNormCalibrator {
 public:
  BatchNormCalibrator(const Dataset& train, const RunConfig& cfg) {
    const int64_t n = std::min<int64_t>(cfg.train.bn_recalibration_images, int64_t(train.size()));
    if (n <= 0) return;
    std::vector<int64_t> order(train.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = int64_t(i);
    Rng rng(Rng::derive(cfg.train.seed, 0xB47C4));
    rng.shuffle(order);
    order.resize(size_t(n));
    std::sort(order.begin(), order.end());
    subset_.source = train.source;
    for (int64_t i : order) subset_.records.push_back(train.records[size_t(i)]);
    LoaderOptions lo;
    lo.preprocess = cfg.preprocess;
    lo.normalization = Normalization::none();  // the network normalises its [0,1] input
    lo.workers = cfg.train.workers;
    lo.cache_dir = cfg.train.cache_dir;
    options_ = eval_loader_options(lo, cfg.sampler.batch_size);
  }
  bool enabled() const { return !subset_.records.empty(); }

  /// Recalibrates and leaves the model in eval mode; returns the record stored in checkpoints.
  Json run(RetrievalNetImpl& net) {
    if (!enabled()) return Json{{"recalibrated", false}};
    DataLoader loader(subset_, options_);
    loader.start_epoch(0);
    const torch::Device device = module_device(net);
    BatchNormRecalibration r = recalibrate_batchnorm(net, [&]() -> torch::Tensor {
      auto b = loader.next();
      return b ? b->images.to(device) : torch::Tensor();
    });
    return {{"recalibrated", true}, {"images", r.images}, {"batches", r.batches}, {"layers", r.layers}};
  }

 private:
  Dataset subset_;
  LoaderOptions options_;
};

// One training run, in the order train_model() calls its steps: setup (the constructor), then per
// epoch start_epoch(), train_step() for every batch and end_epoch(), then summary(). An interruption
// (Ctrl-C, train.stop_after_steps) ends a step with a checkpoint and stops the loop.
class Training {
 public:
  explicit Training(const TrainRequest& req)
      : req_(req),
        cfg_(req.config),
        loss_cfg_(LossConfig::from_json(cfg_.loss)),
        device_(resolve_device_for_rank(req.device, req.distributed.local_rank)),
        precision_(parse_precision(req.precision)),
        ckpt_dir_(join_path(req.out_dir, "checkpoints")),
        last_path_(join_path(ckpt_dir_, "last.ckpt")),
        best_path_(join_path(ckpt_dir_, "best.ckpt")),
        net_(nullptr) {
    FUNDUS_CHECK(!loss_cfg_.needs_logits() || cfg_.model.head_classes > 0,
                 "loss uses ce/bce but model.head_classes is 0 (no classifier head)");
    check_precision(precision_, device_, /*training=*/true);
    join_ranks_and_check_data();
    build_model();
    resume_or_start();
    make_data_loader();
    start_run();
  }

  int first_epoch() const { return st_.epoch; }
  int epochs() const { return cfg_.train.epochs; }
  bool main_rank() const { return main_rank_; }

  /// Freezing, training mode and the epoch's batch plan.
  void start_epoch(int epoch) {
    const bool frozen = epoch < cfg_.optim.freeze_backbone_epochs;
    for (auto& p : net_->backbone->parameters()) p.set_requires_grad(!frozen);
    net_->freeze_stages();
    net_->train();
    plan_.clear();
    if (feature_cache_ || dp_) plan_ = loader_->epoch_plan(epoch);
    if (!feature_cache_) loader_->start_epoch(epoch, st_.batch);
  }
  int64_t first_batch() const { return st_.batch; }
  int64_t batches_per_epoch() const { return per_epoch_; }

  enum class Step { done, end_of_data, interrupted };
  /// One optimisation step on batch `b` of `epoch`: forward, loss, backward, update, logs; on an
  /// interruption it saves the checkpoint to resume from.
  Step train_step(int epoch, int64_t b) {
    if (skip_partial_batch(epoch, b)) return Step::done;
    const auto timing_before = dp_ ? dp_->timing() : DataParallel::Timing{};
    const double lr = cfg_.optim.lr_at(epoch + double(b) / double(per_epoch_), cfg_.train.epochs);
    auto t0 = std::chrono::steady_clock::now();
    double data_wait = 0;  // seconds this step waited for the loader (0 when it kept ahead)
    ModelOutput out;
    torch::Tensor grades;
    {
      AutocastGuard autocast(precision_, device_);  // the forward pass; loss and backward in fp32
      if (feature_cache_) {
        if (b >= int64_t(plan_.size())) return Step::end_of_data;
        out = forward_cached(epoch, plan_[size_t(b)], grades);
      }
      set_lr(*optimizer_, lr);
      if (!feature_cache_) {
        auto batch = loader_->next();
        if (!batch) return Step::end_of_data;
        const auto t_data = std::chrono::steady_clock::now();  // waiting for data is not training time
        data_wait = std::chrono::duration<double>(t_data - t0).count();
        t0 = t_data;
        grades = batch->grades.to(device_, /*non_blocking=*/true);
        out = net_->forward(batch->images.to(device_, /*non_blocking=*/true));
      }
    }
    auto fp32 = [](const torch::Tensor& t) { return t.defined() ? t.to(torch::kFloat32) : t; };
    LossInputs inputs{fp32(out.descriptor), fp32(out.branch_h), fp32(out.branch_v), fp32(out.logits), grades};
    if (dp_) inputs = dp_->gather_loss_inputs(inputs);  // the loss sees the whole global batch
    LossResult loss = compute_loss(loss_cfg_, inputs);
    optimizer_->zero_grad();
    loss.total.backward();
    bool stop_vote = sigint_->interrupted();
    if (dp_) stop_vote = dp_->reduce_gradients(net_->parameters(), stop_vote);  // the same answer on every rank
    if (cfg_.optim.clip_grad_norm > 0) torch::nn::utils::clip_grad_norm_(net_->parameters(), cfg_.optim.clip_grad_norm);
    optimizer_->step();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    record_step(epoch, b, lr, seconds, data_wait, inputs.grades.size(0), loss, timing_before);
    const bool stop_requested = cfg_.train.stop_after_steps > 0 && st_.step >= cfg_.train.stop_after_steps;
    if (!stop_vote && !stop_requested) return Step::done;
    batchnorm_record_ = recalibrate();
    if (main_rank_) save_checkpoint(last_path_, make_checkpoint(true));
    progress_->finish("interrupted");
    FUNDUS_INFO("interrupted at step " << st_.step << ": checkpoint saved to " << last_path_
                                       << "; continue with --resume");
    return Step::interrupted;
  }

  /// End of epoch: collapse guards, precise BatchNorm, validation, selection, checkpoints, log.
  void end_epoch(int epoch) {
    const int epochs = cfg_.train.epochs;
    const bool lower_is_better = cfg_.train.select == "train_loss", select_last = cfg_.train.select == "last";
    double train_loss = st_.loss_count ? st_.loss_sum / double(st_.loss_count) : 0.0;
    Json epoch_row = {{"kind", "epoch"}, {"epoch", epoch + 1}, {"step", st_.step}, {"train_loss", train_loss}};
    std::string guard_text = epoch_guards(st_, loss_cfg_, epoch + 1, epoch_row);
    batchnorm_record_ = recalibrate();
    bool validate_now =
        !splits_.val.records.empty() && ((epoch + 1) % cfg_.train.val_every == 0 || epoch + 1 == epochs);
    if (validate_now) {
      st_.last_validation = validate(*net_, cfg_, splits_, comm_.get());
      epoch_row.update(st_.last_validation);
    }
    epoch_row["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start_).count();
    if (log_) log_->write(epoch_row);
    st_.history.push_back(epoch_row);
    bool has_value = lower_is_better || select_last || validate_now;
    double value = lower_is_better ? train_loss
                   : select_last   ? double(epoch + 1)
                   : validate_now  ? epoch_row.value(cfg_.train.select, 0.0)
                                   : 0.0;
    bool improved =
        has_value && (st_.best_epoch < 0 || (lower_is_better ? value < st_.best_value : value > st_.best_value));
    if (improved) {
      st_.best_value = value;
      st_.best_epoch = epoch + 1;
    }
    st_.epoch = epoch + 1;
    st_.batch = 0;
    st_.reset_epoch_sums();
    if (main_rank_) {
      if (improved) save_checkpoint(best_path_, make_checkpoint(false));
      save_checkpoint(last_path_, make_checkpoint(true));
    }
    std::string val_text =
        validate_now ? strprintf(" val P@10 %.3f mAP@10 %.3f macro-P@10 %.3f (chance %.3f / %.3f)",
                                 epoch_row["val_P@10"].get<double>(), epoch_row["val_mAP@10"].get<double>(),
                                 epoch_row["val_macro_P@10"].get<double>(), epoch_row["chance_P@10"].get<double>(),
                                 epoch_row["chance_macro_P@10"].get<double>())
                     : "";
    FUNDUS_INFO("epoch " << epoch + 1 << "/" << epochs << ": train loss " << strprintf("%.4f", train_loss) << guard_text
                         << val_text << (improved && !select_last ? "  [best]" : ""));
  }

  /// After the last epoch. With no training at all (train.epochs 0, not a resume) the initial model
  /// (e.g. frozen ImageNet features, the baseline every trained model must beat) is the run's result.
  void finish_epochs() {
    progress_->finish();
    if (cfg_.train.epochs != 0 || req_.resume) return;
    batchnorm_record_ = recalibrate();
    st_.best_epoch = 0;
    if (main_rank_) {
      save_checkpoint(best_path_, make_checkpoint(false));
      save_checkpoint(last_path_, make_checkpoint(true));
    }
  }

  /// The run's summary, from the state: the same fields whether it ended or was interrupted.
  TrainSummary summary(bool interrupted) const {
    TrainSummary s;
    s.interrupted = interrupted;
    s.select = cfg_.train.select;
    s.steps = st_.step;
    s.epochs_completed = st_.epoch;
    s.best_value = st_.best_value;
    s.best_epoch = st_.best_epoch;
    s.best_checkpoint = st_.best_epoch >= 0 ? best_path_ : "";
    s.last_checkpoint = last_path_;
    s.last_validation = st_.last_validation;
    s.images_per_second = images_seen_ / std::max(1e-9, train_seconds_);
    s.comm_ms_per_step = comm_steps_ ? 1e3 * comm_seconds_ / double(comm_steps_) : 0.0;
    return s;
  }

  /// Rank 0 after a completed run: best.pth (Python interop) and summary.json.
  void write_results(const TrainSummary& s) const {
    if (file_exists(best_path_))
      write_state_dict(join_path(req_.out_dir, "best.pth"), load_checkpoint(best_path_).model);
    save_json_file(join_path(req_.out_dir, "summary.json"), s.to_json());
  }

 private:
  // Distributed: join the other ranks first, so that a rank failing a check below ends their waits.
  void join_ranks_and_check_data() {
    if (req_.distributed.distributed())
      comm_ = std::make_unique<Communicator>(req_.distributed, device_, rank_agreement(req_));
    main_rank_ = !comm_ || comm_->is_main();
    quiet_ = std::make_unique<QuietUnlessMain>(main_rank_);
    // Missing pretrained weights ("imagenet" not fetched) fail now, not after the data preparation.
    if (!req_.resume && main_rank_) resolve_pretrained(cfg_.model.pretrained, backbone_name(cfg_.model.backbone));
    if (cfg_.model.frozen_stages > 0 && cfg_.model.pretrained.empty())
      FUNDUS_WARN("model.frozen_stages " << cfg_.model.frozen_stages
                                         << " without pretrained weights: those stages stay at their random "
                                            "initialisation; give --pretrained, or set model.frozen_stages=0");
    splits_ = prepare_data(req_);
    if (comm_)
      comm_->check_same_everywhere("the training data (" + req_.data + ": ids, grades, splits)",
                                   data_identity(splits_));
    if (main_rank_) {  // the run folder is rank 0's alone (it need not exist on the other machines)
      FUNDUS_CHECK(req_.resume || !file_exists(last_path_),
                   req_.out_dir << " already holds a run; continue it with --resume or choose another --out");
      FUNDUS_CHECK(!req_.resume || file_exists(last_path_), last_path_ << ": nothing to resume (checkpoint not found)");
      make_dirs(ckpt_dir_);
    }
  }

  void build_model() {
    // Local processes share the cores: threads = 0 means this process's share.
    threads_ = set_compute_threads(cfg_.train.threads > 0
                                       ? cfg_.train.threads
                                       : std::max(1, available_cores() / req_.distributed.local_world_size));
    seed_torch(cfg_.train.seed);
    net_ = RetrievalNet(cfg_.model, /*load_weights=*/!req_.resume && main_rank_);
    if (cfg_.train.channels_last) net_->use_channels_last(true);  // before the optimizer sees the parameters
    net_->to(device_);
    optimizer_ = make_optimizer(cfg_.optim, net_->parameters());
  }

  // Rank 0 resumes from its checkpoint; every rank then starts from rank 0's model (and, on
  // --resume, its optimiser state and position).
  void resume_or_start() {
    if (req_.resume && main_rank_) {
      Checkpoint ckpt = load_checkpoint(last_path_);
      FUNDUS_CHECK(resume_identity(ckpt.meta["config"]) == resume_identity(cfg_.to_json()),
                   last_path_ << ": the configuration differs from the run's (only train.epochs, threads, "
                                 "workers and logging may change on --resume)");
      load_into(*net_, ckpt.model, {});
      load_optimizer(*optimizer_, ckpt.optimizer_state, last_path_, device_);
      st_ = RunState::from_json(ckpt.meta.at("state"));
      FUNDUS_INFO("resuming " << req_.out_dir << " at epoch " << st_.epoch + 1 << ", batch " << st_.batch << " (step "
                              << st_.step << ")");
    }
    if (comm_) {
      dp_ = std::make_unique<DataParallel>(*comm_, *net_);
      dp_->broadcast_state(*net_);
      if (req_.resume) {
        std::string bytes = comm_->broadcast_bytes(main_rank_ ? optimizer_bytes(*optimizer_) : "");
        if (!main_rank_) load_optimizer(*optimizer_, bytes, "rank 0's optimiser state", device_);
        st_ = RunState::from_json(Json::parse(comm_->broadcast_bytes(main_rank_ ? st_.to_json().dump() : "")));
      }
      FUNDUS_INFO("distributed: " << comm_->world_size() << " processes (" << comm_->backend() << "), global batch "
                                  << cfg_.sampler.batch_size << " split across them, synchronised BatchNorm");
    }
    if (main_rank_) save_json_file(join_path(req_.out_dir, "config.json"), cfg_.to_json());
  }

  void make_data_loader() {
    LoaderOptions lo;
    lo.sampler = cfg_.sampler;
    lo.preprocess = cfg_.preprocess;
    lo.augment = cfg_.train.augment;
    lo.augmentation = cfg_.augment;
    lo.normalization = Normalization::none();  // the network normalises its [0,1] input
    lo.seed = cfg_.train.seed;
    lo.workers = cfg_.train.workers;
    lo.prefetch_batches = cfg_.train.prefetch_batches;
    lo.cache_dir = cfg_.train.cache_dir;
    if (dp_) {
      lo.shard_index = dp_->rank();
      lo.shard_count = dp_->world_size();
    }
    lo.pin_memory = device_.is_cuda();
    loader_ = std::make_unique<DataLoader>(splits_.train, lo);
    per_epoch_ = loader_->batches_per_epoch();
    if (cfg_.train.max_steps_per_epoch > 0) per_epoch_ = std::min(per_epoch_, cfg_.train.max_steps_per_epoch);
    for (const auto& r : splits_.train.records) all_grades_.push_back(r.grade);
  }

  // Logs, Ctrl-C, BatchNorm calibration, progress and the optional feature cache.
  void start_run() {
    FUNDUS_INFO("train: " << splits_.train.size() << " images (" << per_epoch_ << " batches of "
                          << cfg_.sampler.batch_size << "), val: " << splits_.val.size() << ", " << cfg_.train.epochs
                          << " epochs, " << threads_ << " threads, model " << backbone_name(cfg_.model.backbone) << "/"
                          << attention_name(cfg_.model.attention) << " " << cfg_.model.input_size << "px");
    if (main_rank_) log_ = std::make_unique<MetricsLog>(req_.out_dir, req_.resume);
    sigint_ = std::make_unique<SigintGuard>();  // from here on, Ctrl-C ends the run with a checkpoint
    calibrator_ = std::make_unique<BatchNormCalibrator>(splits_.train, cfg_);
    run_start_ = std::chrono::steady_clock::now();
    progress_ =
        std::make_unique<Progress>("train", std::max<int64_t>(0, per_epoch_ * cfg_.train.epochs - st_.step), "step");
    // Frozen backbone stages computed once per augmented copy (train/feature_cache.h).
    if (cfg_.train.feature_cache > 0) {
      feature_cache_ = std::make_unique<FeatureCache>(*net_, splits_.train, cfg_);
      const int copies = feature_cache_->copies();
      FUNDUS_INFO(
          "feature cache: " << copies << " cop" << (copies == 1 ? "y" : "ies") << " of the frozen stages' output, "
                            << strprintf("%.0f MB", double(feature_cache_->bytes()) / 1e6) << ", "
                            << feature_cache_->loaded_from_disk() << " entries from "
                            << (cfg_.train.feature_cache_dir.empty() ? "(no folder)" : cfg_.train.feature_cache_dir));
    }
  }

  // A final partial batch with fewer images than processes would leave a process without any:
  // every rank skips it (the single-process run would not).
  bool skip_partial_batch(int epoch, int64_t b) {
    if (!dp_ || b >= int64_t(plan_.size()) || int64_t(plan_[size_t(b)].size()) >= dp_->world_size()) return false;
    if (!feature_cache_) loader_->next();
    if (skipped_batches_++ == 0)
      FUNDUS_WARN("distributed: skipping batch " << b + 1 << " of epoch " << epoch + 1 << " ("
                                                 << plan_[size_t(b)].size() << " image(s) for " << dp_->world_size()
                                                 << " processes); use sampler.drop_last or another batch size");
    st_.batch = b + 1;
    return true;
  }

  // The forward pass from the feature cache for this rank's slice of the global batch `rows`.
  ModelOutput forward_cached(int epoch, std::vector<int64_t> rows, torch::Tensor& grades) {
    if (dp_) {
      auto [first, last] = shard_range(int64_t(rows.size()), dp_->rank(), dp_->world_size());
      rows = std::vector<int64_t>(rows.begin() + first, rows.begin() + last);
    }
    std::vector<int64_t> g;
    for (int64_t i : rows) g.push_back(all_grades_[size_t(i)]);
    grades = torch::tensor(g, torch::kInt64).to(device_);
    torch::Tensor f = feature_cache_->batch(rows, epoch % feature_cache_->copies(), cfg_.train.channels_last);
    return net_->forward_from_frozen(f.to(device_), int64_t(rows.size()));
  }

  // Position, running sums, the step's log row and the progress line.
  void record_step(int epoch, int64_t b, double lr, double seconds, double data_wait, int64_t n, const LossResult& loss,
                   const DataParallel::Timing& timing_before) {
    train_seconds_ += seconds;
    images_seen_ += n;
    ++st_.step;
    st_.batch = b + 1;
    const double total = loss.parts.at("total");
    st_.loss_sum += total;
    ++st_.loss_count;
    if (loss.parts.count("mean_cos")) {
      st_.cos_sum += loss.parts.at("mean_cos");
      st_.ftl_sum += loss.parts.count("ftl") ? loss.parts.at("ftl") : 0.0;
      st_.blind_sum += loss.parts.count("ftl_blind") ? loss.parts.at("ftl_blind") : 0.0;
      ++st_.guard_count;
    }
    Json row = {
        {"kind", "step"}, {"epoch", epoch + 1},          {"step", st_.step},   {"lr", lr},
        {"loss", total},  {"images_per_s", n / seconds}, {"seconds", seconds}, {"data_wait_ms", 1e3 * data_wait}};
    for (const auto& [k, v] : loss.parts)
      if (k != "total") row[k] = v;
    if (dp_) {  // communication time of this step (milliseconds)
      const DataParallel::Timing t = dp_->timing();
      row["allreduce_ms"] = 1e3 * (t.gradients - timing_before.gradients);
      row["bn_sync_ms"] = 1e3 * (t.batchnorm - timing_before.batchnorm);
      row["gather_ms"] = 1e3 * (t.loss_gather - timing_before.loss_gather);
      comm_seconds_ += (t.gradients + t.batchnorm + t.loss_gather) -
                       (timing_before.gradients + timing_before.batchnorm + timing_before.loss_gather);
      ++comm_steps_;
    }
    if (log_) log_->write(row);
    std::string guard_text;
    if (loss.parts.count("ftl_blind")) guard_text += strprintf(" (label-blind %.3f)", loss.parts.at("ftl_blind"));
    if (loss.parts.count("mean_cos")) guard_text += strprintf(" cos %.2f", loss.parts.at("mean_cos"));
    progress_->advance(1, strprintf("ep %d/%d loss %.4f%s %.1f img/s", epoch + 1, cfg_.train.epochs, total,
                                    guard_text.c_str(), images_seen_ / std::max(1e-9, train_seconds_)));
  }

  // Distributed: rank 0 recalibrates alone (local BatchNorm statistics) and shares the buffers.
  Json recalibrate() {
    if (!dp_) return calibrator_->run(*net_);
    Json record;
    if (main_rank_) {
      DataParallel::LocalBatchNorm local(*dp_);
      record = calibrator_->run(*net_);
    }
    net_->eval();
    dp_->broadcast_buffers(*net_);
    return record;
  }

  Checkpoint make_checkpoint(bool with_optimizer) {
    Checkpoint c;
    c.meta = {{"config", cfg_.to_json()}, {"state", st_.to_json()}, {"batchnorm", batchnorm_record_}};
    c.model = module_state_dict(*net_);
    if (with_optimizer) c.optimizer_state = optimizer_bytes(*optimizer_);
    return c;
  }

  const TrainRequest& req_;
  const RunConfig& cfg_;
  const LossConfig loss_cfg_;
  const torch::Device device_;
  const Precision precision_;
  const std::string ckpt_dir_, last_path_, best_path_;
  std::unique_ptr<Communicator> comm_;
  bool main_rank_ = true;
  std::unique_ptr<QuietUnlessMain> quiet_;
  Splits splits_;
  int threads_ = 1;
  RetrievalNet net_;
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  RunState st_;
  std::unique_ptr<DataParallel> dp_;
  std::unique_ptr<DataLoader> loader_;
  int64_t per_epoch_ = 0;
  std::vector<int64_t> all_grades_;
  std::vector<std::vector<int64_t>> plan_;  // the epoch's global batches (feature cache or distributed)
  std::unique_ptr<MetricsLog> log_;
  std::unique_ptr<SigintGuard> sigint_;
  std::unique_ptr<BatchNormCalibrator> calibrator_;
  Json batchnorm_record_ = Json{{"recalibrated", false}};
  std::chrono::steady_clock::time_point run_start_;
  std::unique_ptr<Progress> progress_;
  std::unique_ptr<FeatureCache> feature_cache_;
  double train_seconds_ = 0, comm_seconds_ = 0;
  int64_t images_seen_ = 0, skipped_batches_ = 0, comm_steps_ = 0;
};

}  // namespace

TrainSummary train_model(const TrainRequest& req) {
  Training run(req);
  for (int epoch = run.first_epoch(); epoch < run.epochs(); ++epoch) {
    run.start_epoch(epoch);
    for (int64_t b = run.first_batch(); b < run.batches_per_epoch(); ++b) {
      const Training::Step step = run.train_step(epoch, b);
      if (step == Training::Step::interrupted) return run.summary(/*interrupted=*/true);
      if (step == Training::Step::end_of_data) break;
    }
    run.end_epoch(epoch);
  }
  run.finish_epochs();
  TrainSummary summary = run.summary(/*interrupted=*/false);
  if (run.main_rank()) run.write_results(summary);
  return summary;
}

}  // namespace fundus
