// Helpers for the model tests: tensor comparison and finite-difference gradient checks.
#pragma once

#include <functional>
#include <string>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "fundus/core/rng.h"
#include "fundus/model/state_dict.h"
#include "fundus/model/sync_batchnorm.h"  // the BatchNorm2d of our networks

namespace fundus::test {

inline double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  EXPECT_EQ(a.sizes(), b.sizes());
  if (a.sizes() != b.sizes()) return 1e30;
  return (a.to(torch::kDouble) - b.to(torch::kDouble)).abs().max().item<double>();
}

inline torch::Tensor get(const StateDict& state, const std::string& name) {
  const torch::Tensor* t = state.find(name);
  EXPECT_TRUE(t) << "missing tensor '" << name << "'";
  return t ? *t : torch::zeros({1});
}

/// Non-default BatchNorm statistics and affine parameters (seeded through torch's generator), so
/// that eval-mode features of a randomly initialised network are neither zero nor saturated.
inline void randomize_batchnorm(torch::nn::Module& root) {
  torch::NoGradGuard no_grad;
  for (auto& m : root.modules(false))
    if (auto* bn = dynamic_cast<fundus::SyncBatchNorm2dImpl*>(m.get())) {
      bn->running_mean.uniform_(-0.5, 0.5);
      bn->running_var.uniform_(0.5, 2.0);
      bn->weight.uniform_(0.5, 1.5);
      bn->bias.uniform_(-0.2, 0.2);
    }
}

/// Compares autograd's gradient of the scalar f() w.r.t. `leaf` (float64, requires_grad) with central
/// differences at up to `samples` elements chosen by a seeded Rng. Returns the max relative error
/// |g - fd| / max(1, |fd|).
inline double finite_difference_error(const std::function<torch::Tensor()>& f, torch::Tensor leaf, int samples = 12,
                                      double eps = 1e-6, uint64_t seed = 7) {
  if (leaf.grad().defined()) leaf.mutable_grad().zero_();
  f().backward();
  torch::Tensor grad = leaf.grad().clone().flatten();
  Rng rng(seed);
  double worst = 0;
  torch::NoGradGuard no_grad;
  torch::Tensor flat = leaf.view({-1});
  for (int k = 0; k < samples; ++k) {
    int64_t i = static_cast<int64_t>(rng.below(static_cast<uint64_t>(flat.numel())));
    double orig = flat[i].item<double>();
    flat[i] = orig + eps;
    double up = f().item<double>();
    flat[i] = orig - eps;
    double down = f().item<double>();
    flat[i] = orig;
    double fd = (up - down) / (2 * eps);
    worst = std::max(worst, std::abs(grad[i].item<double>() - fd) / std::max(1.0, std::abs(fd)));
  }
  return worst;
}

}  // namespace fundus::test
