// Finite-difference gradient check shared by the torch test suites (header-only: the support library
// stays torch-free; only suites that link LibTorch include this).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "fundus/core/rng.h"

namespace fundus::test {

struct GradientCheck {
  double worst = 0;             // largest relative error over the checked elements
  double scale = 0;             // max |autograd gradient| over the whole leaf
  int64_t checked = 0;          // elements compared
  int64_t checked_nonzero = 0;  // of those, elements whose gradient is not negligible (> floor)
};

/// Compares autograd's gradient of the scalar f() w.r.t. `leaf` (float64, requires_grad) with central
/// differences (step eps) at `samples` elements drawn by a seeded Rng, or at every element when
/// samples <= 0. The relative error of one element is |a - n| / max(|a|, |n|, floor), where
/// floor = floor_fraction * scale: a small gradient is compared relative to itself, and only
/// gradients negligible against the largest one fall back to an error relative to that scale (so
/// that round-off in near-zero entries does not fail the check). f() must not change `leaf`.
inline GradientCheck check_gradient(const std::function<torch::Tensor()>& f, torch::Tensor leaf, int samples = 12,
                                    double eps = 1e-6, double floor_fraction = 1e-3, uint64_t seed = 7) {
  if (leaf.grad().defined()) leaf.mutable_grad().zero_();
  f().backward();
  GradientCheck r;
  EXPECT_TRUE(leaf.grad().defined()) << "f() does not depend on the leaf";
  if (!leaf.grad().defined()) return r;
  const torch::Tensor grad = leaf.grad().detach().to(torch::kDouble).flatten().clone();
  r.scale = grad.abs().max().item<double>();
  const double floor = std::max(floor_fraction * r.scale, 1e-300);
  torch::NoGradGuard no_grad;
  torch::Tensor flat = leaf.view({-1});
  const int64_t n = flat.numel();
  Rng rng(seed);
  const int64_t count = samples <= 0 ? n : samples;
  for (int64_t s = 0; s < count; ++s) {
    const int64_t i = samples <= 0 ? s : int64_t(rng.below(uint64_t(n)));
    const double orig = flat[i].item<double>();
    flat[i] = orig + eps;
    const double up = f().item<double>();
    flat[i] = orig - eps;
    const double down = f().item<double>();
    flat[i] = orig;
    const double numeric = (up - down) / (2 * eps), analytic = grad[i].item<double>();
    const double denominator = std::max({std::abs(analytic), std::abs(numeric), floor});
    r.worst = std::max(r.worst, std::abs(analytic - numeric) / denominator);
    ++r.checked;
    r.checked_nonzero += std::abs(analytic) > floor;
  }
  return r;
}

/// check_gradient plus the expectations every caller wants: the gradient is not zero (the check is
/// not vacuous), some checked element carries it, and the worst relative error is within tolerance.
inline void expect_gradient_matches(const std::function<torch::Tensor()>& f, torch::Tensor leaf, double tolerance,
                                    int samples = 12, double eps = 1e-6) {
  const GradientCheck r = check_gradient(f, leaf, samples, eps);
  EXPECT_GT(r.scale, 0.0) << "the gradient is zero everywhere: the check would be vacuous";
  EXPECT_GT(r.checked_nonzero, 0) << "every checked element has a negligible gradient";
  EXPECT_LE(r.worst, tolerance) << "relative error of autograd against central differences (" << r.checked
                                << " elements, gradient scale " << r.scale << ")";
}

}  // namespace fundus::test
