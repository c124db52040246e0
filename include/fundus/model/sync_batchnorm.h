// BatchNorm2d that, in training mode and when a BatchNormSync is attached, normalises with the
// statistics of the whole global batch across processes (PyTorch's SyncBatchNorm, which LibTorch's
// C++ API lacks). Every BatchNorm2d of our networks is this type; without a sync (the default, and
// always in eval mode) it computes what torch::nn::BatchNorm2d computes, with the same parameters,
// buffers and names (checkpoints and torchvision weights load unchanged).
//
// Why: in data-parallel training each process sees only its share of the global batch. With local
// statistics a 2-process run with 2 x b images would not be the single-process run with 2b images
// (train/distributed.h promises that it is); synchronised statistics make it so, to float rounding.
//
// Forward (training, synced): local count, mean and M2 per channel -> one all_gather -> the global
// mean and biased variance (Chan's parallel formula); running statistics updated exactly like
// BatchNorm2d (unbiased variance, momentum or cumulative average). Backward: one all_reduce of
// (sum dy, sum dy * x_hat) per channel; the weight and bias gradients stay local (the trainer's
// gradient all-reduce sums them). Every rank must run the same layers in the same order.
// The model component does not know c10d: the trainer supplies the collectives (BatchNormSync).
// Thread safety: as any module (one forward at a time).
#pragma once

#include <memory>

#include <torch/torch.h>

namespace fundus {

/// The two collectives SyncBatchNorm needs, implemented by the distributed trainer.
class BatchNormSync {
 public:
  virtual ~BatchNormSync() = default;
  /// [k] of this rank -> [world, k] (every rank's, rank order).
  virtual torch::Tensor all_gather(const torch::Tensor& t) = 0;
  /// Elementwise sum over ranks, in place.
  virtual void all_reduce_sum(torch::Tensor& t) = 0;
};

// Its own module rather than a subclass of torch::nn::BatchNorm2dImpl: a subclass needs
// BatchNormImplBase<2>::pretty_print, which LibTorch 1.13 does not export (link error).
class SyncBatchNorm2dImpl : public torch::nn::Cloneable<SyncBatchNorm2dImpl> {
 public:
  explicit SyncBatchNorm2dImpl(int64_t num_features) : SyncBatchNorm2dImpl(torch::nn::BatchNormOptions(num_features)) {}
  explicit SyncBatchNorm2dImpl(const torch::nn::BatchNormOptions& options);
  /// Registers weight, bias, running_mean, running_var, num_batches_tracked (BatchNorm2d's names).
  void reset() override;
  void reset_running_stats();
  void reset_parameters();
  torch::Tensor forward(const torch::Tensor& input);
  void pretty_print(std::ostream& stream) const override;
  /// nullptr = plain BatchNorm2d.
  void set_sync(std::shared_ptr<BatchNormSync> sync) { sync_ = std::move(sync); }
  bool synced() const { return sync_ != nullptr; }

  torch::nn::BatchNormOptions options;
  torch::Tensor weight, bias, running_mean, running_var, num_batches_tracked;

 private:
  std::shared_ptr<BatchNormSync> sync_;
};
TORCH_MODULE(SyncBatchNorm2d);

/// Attaches `sync` (nullptr: detaches) to every SyncBatchNorm2d in `module`; returns how many.
int64_t set_batchnorm_sync(torch::nn::Module& module, const std::shared_ptr<BatchNormSync>& sync);

}  // namespace fundus
