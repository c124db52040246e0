// The training/evaluation data loader: decode + preprocess (optionally through the on-disk cache),
// augment, convert to tensors, in worker threads with a bounded prefetch.
//
//   DataLoader loader(train_set, options);
//   for (int64_t e = start_epoch; e < epochs; ++e) {
//     loader.start_epoch(e, e == start_epoch ? resume_batch : 0);
//     while (auto batch = loader.next()) step(batch->images, batch->grades);
//   }
//
// Determinism: batch b of epoch e (indices, order, augmentation, image bytes) depends only on
// (options, seed, e, b), never on the number of workers or on timing: the sampler plans the epoch from
// (seed, e) and each sample is augmented with Rng(derive(derive(seed, e), position in epoch)).
// Threads: batch b is built by worker (b - first) % workers and handed over through that worker's
// BoundedQueue (capacity ceil(prefetch_batches / workers)), so next() returns batches in order and at
// most about prefetch_batches + workers batches are held ahead of the consumer.
// Errors: an unreadable or corrupt image makes next() throw fundus::Error naming the file and the case
// id; the workers are stopped and joined first. Destroying the loader (or calling start_epoch) mid-epoch
// stops and joins the workers. A DataLoader is used from one thread (the trainer's); it is not copyable.
#pragma once

#include <atomic>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <torch/torch.h>

#include "fundus/core/case.h"
#include "fundus/core/concurrency.h"
#include "fundus/data/augment.h"
#include "fundus/data/preprocess.h"
#include "fundus/data/preprocess_cache.h"
#include "fundus/data/sampler.h"
#include "fundus/infer/tensor.h"

namespace fundus {

struct Batch {
  torch::Tensor images;          // [B,3,H,W] float32, normalised as LoaderOptions::normalization
  torch::Tensor grades;          // [B] int64
  std::vector<std::string> ids;  // CaseRecord::id of each row
  std::vector<int64_t> indices;  // index into the Dataset of each row (this shard's rows only)
  int64_t epoch = 0, batch = 0;  // position of this batch
};

struct LoaderOptions {
  SamplerOptions sampler;  // kind, batch_size, drop_last, P
  PreprocessOptions preprocess;
  bool augment = false;         // train: true
  AugmentOptions augmentation;  // used when augment is on
  Normalization normalization = Normalization::imagenet();
  uint64_t seed = 1;         // sampler order and augmentation
  int workers = 2;           // 0 = available_cores()
  int prefetch_batches = 4;  // batches built ahead of next()
  std::string cache_dir;     // "" = no disk cache
  // Data-parallel training (train/distributed.h): deliver only the rows shard_range(n, shard_index,
  // shard_count) of every planned batch of n rows, augmented exactly as the unsharded loader would
  // augment those rows (same positions in the epoch).
  int shard_index = 0, shard_count = 1;
  // Batch tensors in page-locked memory, for fast asynchronous copies to a CUDA device. Needs a
  // CUDA-enabled LibTorch (throws at the first batch otherwise); off on CPU.
  bool pin_memory = false;

  void validate() const;
};

/// Options for one in-order pass without augmentation (embedding, evaluation): sequential sampler,
/// no drop_last, augment off; preprocessing, normalisation, workers and cache as in `base`.
LoaderOptions eval_loader_options(const LoaderOptions& base, int64_t batch_size);

class DataLoader {
 public:
  DataLoader(const Dataset& dataset, LoaderOptions options);
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  int64_t batches_per_epoch() const { return sampler_.batches_per_epoch(); }
  /// The dataset indices of every batch of `epoch`, as next() would deliver them (no decoding).
  std::vector<std::vector<int64_t>> epoch_plan(int64_t epoch) const { return sampler_.epoch(epoch); }
  /// Begins epoch `epoch` at batch `skip_batches` (exact resume); stops any epoch in progress.
  void start_epoch(int64_t epoch, int64_t skip_batches = 0);
  /// The next batch of the current epoch, nullopt at its end. Throws when a worker failed.
  std::optional<Batch> next();

  const LoaderOptions& options() const { return options_; }
  /// Cache counters (all zero without a cache).
  PreprocessCache::Stats cache_stats() const;

 private:
  struct Item {
    std::optional<Batch> batch;
    std::exception_ptr error;
  };
  Batch build_batch(int64_t b) const;
  cv::Mat load_image(int64_t index, int64_t position) const;
  void stop_workers();

  Dataset dataset_;
  LoaderOptions options_;
  BatchSampler sampler_;
  std::unique_ptr<PreprocessCache> cache_;

  int64_t epoch_ = -1;
  std::vector<std::vector<int64_t>> plan_;
  int64_t first_ = 0, cursor_ = 0;
  std::vector<std::unique_ptr<BoundedQueue<Item>>> queues_;
  std::vector<std::thread> workers_;
  std::atomic<bool> stop_{false};
};

}  // namespace fundus
