// The trainer: `fundus train --config C --data MANIFEST --out RUN_DIR [--resume]`.
//
// Run folder:
//   config.json            resolved configuration (also inside every checkpoint)
//   checkpoints/last.ckpt  written atomically after every epoch and on interruption (Ctrl-C)
//   checkpoints/best.ckpt  the epoch that is best by train.select
//   best.pth               the best model's state_dict in torch.save format (Python interop)
//   metrics.jsonl          one JSON object per step ("kind":"step") and per epoch ("kind":"epoch")
//   metrics.csv            the same as a table
//   summary.json           final summary
//
// Exact resume: a checkpoint stores the model, the optimiser state, the next (epoch, batch) and the
// running epoch-loss sums; batches are a pure function of (seed, epoch, batch) and learning rates of
// (epoch, batch), so a resumed run reproduces the uninterrupted run's per-step losses.
// Wrong data fails before any compute: missing manifest or images, an empty train split, an empty
// validation split when the selection needs one.
// Several processes (request.distributed, train/distributed.h): one process per rank, each calling
// train_model with its own DistributedOptions; together they compute the single-process run with the
// same configuration (global batch = sampler.batch_size). Rank 0 alone reads and writes out_dir.
// Torch-free header.
#pragma once

#include <string>

#include "fundus/core/json.h"
#include "fundus/infer/launcher.h"
#include "fundus/infer/run_config.h"

namespace fundus {

struct TrainRequest {
  RunConfig config;
  std::string data;  // manifest (any format load_dataset reads) with a split column
  std::string out_dir;
  bool resume = false;  // continue from out_dir/checkpoints/last.ckpt
  std::string train_split = "train";
  std::string val_split = "val";
  DistributedOptions distributed;  // world_size > 1: this process is one rank of a distributed run
  std::string device = "cpu";      // cpu | cuda | auto (model/runtime.h resolve_device)
  std::string precision = "fp32";  // fp32 | bf16 (CUDA autocast, model/device.h)
};

struct TrainSummary {
  int64_t steps = 0;  // global steps done (including those before a resume)
  int epochs_completed = 0;
  bool interrupted = false;  // Ctrl-C or train.stop_after_steps
  std::string select;        // the selection metric
  double best_value = 0;
  int best_epoch = -1;
  double images_per_second = 0;  // training throughput (all processes together when distributed)
  double comm_ms_per_step = 0;   // distributed: mean communication time per step (gradients, BatchNorm, loss)
  Json last_validation;          // metrics of the last validation
  std::string best_checkpoint, last_checkpoint;
  Json to_json() const;
};

TrainSummary train_model(const TrainRequest& request);

}  // namespace fundus
