// A complete run configuration (JSON), its presets and its resolution:
//   preset  <-  --config FILE  <-  --set key.path=value ...   (RFC 7386 merge, unknown keys are errors)
// The resolved configuration is saved beside every output (RUN/config.json, inside checkpoints).
//
//   {"preset": "cpu",
//    "model": {...ModelConfig}, "loss": {...LossConfig}, "optim": {...}, "train": {...},
//    "sampler": {...SamplerOptions}, "preprocess": {...PreprocessOptions}, "augment": {...AugmentOptions}}
//
// preprocess.size always equals model.input_size (set from it; a different explicit value is an error).
// Torch-free: the CLI and the server parse configurations without LibTorch headers.
#pragma once

#include <string>
#include <vector>

#include "fundus/core/json.h"
#include "fundus/data/augment.h"
#include "fundus/data/preprocess.h"
#include "fundus/data/sampler.h"
#include "fundus/model/model_config.h"

namespace fundus {

/// Images per inference forward pass (embed, eval, validation) unless configured. Small on purpose:
/// each image is three backbone passes (mirror attention), and a CPU forward is no faster at 32 than
/// at 8 while holding 2.7x the memory (embed peak 1.97 GB vs 0.74 GB, docs/benchmarks.md); glibc
/// returns tensors above 32 MB to the kernel, so large batches also pay page faults every batch.
inline constexpr int64_t kInferenceBatch = 8;

struct OptimConfig {
  std::string name = "adam";  // adam | adamw | sgd
  double lr = 1e-3;
  double weight_decay = 1e-5;
  double beta1 = 0.9, beta2 = 0.999;  // adam/adamw
  double momentum = 0.9;              // sgd (Nesterov off)
  std::string schedule = "constant";  // constant | step | cosine (cosine includes the warm-up)
  double warmup_epochs = 0;           // linear warm-up from lr/100 (fractional epochs allowed)
  int step_size = 10;                 // step: multiply by step_gamma every step_size epochs
  double step_gamma = 0.1;
  double min_lr = 0;               // cosine floor
  double clip_grad_norm = 0;       // 0 = off
  int freeze_backbone_epochs = 0;  // backbone parameters frozen for the first N epochs

  static OptimConfig from_json(const Json& section, const std::string& context = "optim");
  Json to_json() const;
  /// Learning rate at fractional epoch t = epoch + batch / batches_per_epoch, for `epochs` in all.
  double lr_at(double t, int epochs) const;
};

struct TrainSettings {
  int epochs = 20;  // 0 = no training: the initial model is saved (a baseline)
  uint64_t seed = 1;
  int threads = 0;  // compute threads, 0 = all cores
  int workers = 2;  // data-loader threads
  int prefetch_batches = 4;
  bool augment = true;  // use the "augment" section on the training split
  // best checkpoint by: val_P@10 | val_mAP@10 | val_macro_P@10 | train_loss | last (the final epoch,
  // no validation split needed: for fixed recipes chosen by cross-validation)
  std::string select = "val_mAP@10";
  int val_every = 1;  // validate every N epochs (and after the last)
  int val_batch_size = kInferenceBatch;
  std::string cache_dir;            // preprocessed-image cache ("" = RUN/../cache is not assumed: none)
  int64_t stop_after_steps = 0;     // testing aid: behave as if interrupted after this global step
  int64_t max_steps_per_epoch = 0;  // 0 = the whole epoch
  // NHWC activations and weights: the same results to float rounding, ~1.3x faster on CPU with
  // oneDNN (docs/bench-model.md); used for training and by every model loaded from the checkpoint.
  bool channels_last = true;
  // Precise BatchNorm (model/batchnorm.h): before every validation and checkpoint, BatchNorm running
  // statistics are recomputed from up to this many un-augmented training images (0 = off).
  int bn_recalibration_images = 512;
  // With model.frozen_stages > 0: the frozen stages' output for this many augmented copies of every
  // training image is computed once and kept in memory (train/feature_cache.h); epoch e uses copy
  // e % copies. 0 = off (every step runs the whole network on freshly augmented images).
  int feature_cache = 0;
  std::string feature_cache_dir;  // "" = memory only; else entries are stored and reused (feature_cache.h)

  static TrainSettings from_json(const Json& section, const std::string& context = "train");
  Json to_json() const;
};

struct RunConfig {
  std::string preset;  // informational: the preset the config started from
  ModelConfig model;
  Json loss;  // validated by the trainer's LossConfig (kept as JSON to stay torch-free)
  OptimConfig optim;
  TrainSettings train;
  SamplerOptions sampler;
  PreprocessOptions preprocess;
  AugmentOptions augment;

  static RunConfig from_json(const Json& config, const std::string& context = "config");
  Json to_json() const;
};

/// "paper", "cpu", "cpu-finetune", "baseline-gem", "self-attention", "scratch", "tiny": complete run
/// configurations (run_preset_names()).
Json run_preset(const std::string& name);
const std::vector<std::string>& run_preset_names();

/// Resolves preset <- file <- overrides and validates everything (including the loss section).
RunConfig resolve_run_config(const std::string& preset, const std::string& config_file,
                             const std::vector<std::string>& overrides);

}  // namespace fundus
