// Global pooling of a feature map [B,C,H,W] -> [B,C] (float32 or float64, any device).
//   gem  : (mean_hw clamp(x, eps)^p)^(1/p), p learnable (one scalar, init 3), eps 1e-6
//   avg  : mean over H,W          max: max over H,W
//   rmac : R-MAC (Tolias et al. 2016), regions at L=3 scales with 40% overlap as in cirtorch's
//          rmac(): the global max plus each region's max-pooled vector, each L2-normalised, summed.
// Modules are not thread-safe (one forward at a time per instance).
#pragma once

#include <string>

#include <torch/torch.h>

#include "fundus/model/model_config.h"  // PoolingKind, pooling_choices()

namespace fundus {

/// GeM with exponent p ([1] or scalar tensor, differentiable).
torch::Tensor gem_pool(const torch::Tensor& x, const torch::Tensor& p, double eps = 1e-6);
torch::Tensor rmac_pool(const torch::Tensor& x, int levels = 3, double eps = 1e-6);

class PoolingImpl : public torch::nn::Module {
 public:
  explicit PoolingImpl(PoolingKind kind, double gem_p = 3.0, double eps = 1e-6);
  torch::Tensor forward(const torch::Tensor& x);
  PoolingKind kind() const { return kind_; }
  /// GeM's learnable exponent, registered as "p" ([1]); undefined for other kinds.
  torch::Tensor p;

 private:
  PoolingKind kind_;
  double eps_;
};
TORCH_MODULE(Pooling);

}  // namespace fundus
