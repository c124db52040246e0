// Data-parallel training on c10d (LibTorch has no C++ DistributedDataParallel): what the trainer
// adds when a run has several processes (infer/launcher.h starts them, infer/communicator.h
// connects them).
//
// The contract: a run of W processes with global batch B (sampler.batch_size) computes what one
// process computes with batch B, to float rounding:
//   - batches: every rank plans the same global batches (same seed); rank r takes the contiguous
//     slice shard_range(B, r, W) of each (infer/loader.h LoaderOptions::shard_*), with exactly the
//     augmentation the single process would give those rows;
//   - BatchNorm: training-mode statistics over the global batch (model/sync_batchnorm.h);
//   - loss: every rank evaluates the loss on the whole global batch (gather_loss_inputs: descriptors,
//     mirror branches, logits and grades of all ranks; this rank's rows are its own tensors, so
//     gradients flow to them, the other rows are constants). The sum over ranks of the local
//     gradients is then the single-process gradient, so reduce_gradients SUMS (no division by W:
//     each rank already holds the gradient of the global mean loss restricted to its rows);
//   - parameters: rank 0's initial (or resumed) state is broadcast; identical gradients and
//     optimiser steps keep the ranks identical.
// Rank 0 alone reads and writes the run folder (checkpoints, logs, progress). Checkpoints hold no
// trace of W, so --resume works with any number of processes.
// Failure: any collective throws fundus::Error when a peer has gone (infer/communicator.h).
// Not thread-safe; one DataParallel per training run and process.
#pragma once

#include <memory>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "fundus/infer/communicator.h"
#include "fundus/loss/loss.h"
#include "fundus/model/retrieval_net.h"

namespace fundus {

class DataParallel {
 public:
  /// Attaches synchronised BatchNorm to `net` (detached again on destruction).
  DataParallel(Communicator& comm, torch::nn::Module& net);
  ~DataParallel();
  DataParallel(const DataParallel&) = delete;
  DataParallel& operator=(const DataParallel&) = delete;

  Communicator& comm() { return comm_; }
  int rank() const { return comm_.rank(); }
  int world_size() const { return comm_.world_size(); }
  bool is_main() const { return comm_.is_main(); }

  /// Rank 0's parameters and buffers (running statistics) into every rank's module.
  void broadcast_state(torch::nn::Module& module);
  /// Rank 0's buffers only (after BatchNorm recalibration on rank 0).
  void broadcast_buffers(torch::nn::Module& module);

  /// The global batch's loss inputs. Each defined field of `local` ([b_r, ...], rows of this rank)
  /// becomes [B, ...] in rank order; rows of other ranks are detached copies, this rank's rows are
  /// the local tensors themselves (with their graph). One all_gather of the packed fields.
  LossInputs gather_loss_inputs(const LossInputs& local);

  /// Sums the gradients of `params` over the ranks in place (flattened into buckets of at most
  /// `bucket_bytes`; parameters without a gradient are skipped: the same on every rank, as the
  /// graphs are the same). `stop_vote`: this rank wants to stop (Ctrl-C); returns whether any
  /// rank voted, the same answer everywhere (the vote rides in the last bucket).
  bool reduce_gradients(const std::vector<torch::Tensor>& params, bool stop_vote, int64_t bucket_bytes = 25 << 20);

  /// While alive, BatchNorm uses local statistics (rank-local forward passes in training mode,
  /// e.g. the BatchNorm recalibration that rank 0 runs alone).
  class LocalBatchNorm {
   public:
    explicit LocalBatchNorm(DataParallel& dp);
    ~LocalBatchNorm();

   private:
    DataParallel& dp_;
  };

  /// Seconds spent in each kind of communication so far.
  struct Timing {
    double gradients = 0, batchnorm = 0, loss_gather = 0;
  };
  Timing timing() const;

 private:
  class Sync;
  Communicator& comm_;
  torch::nn::Module& net_;
  std::shared_ptr<Sync> sync_;
  double gradient_seconds_ = 0, gather_seconds_ = 0;
};

}  // namespace fundus
