// Helpers for the model tests: tensor comparison, state-dict access, BatchNorm randomisation
// (finite-difference gradient checks: tests/support/gradient_check.h).
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

}  // namespace fundus::test
