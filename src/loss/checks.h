// Input checks shared by the loss functions (private to the loss component).
#pragma once

#include <torch/torch.h>

#include "fundus/core/error.h"

namespace fundus::detail {

inline void check_floating_2d(const torch::Tensor& x, const char* what) {
  FUNDUS_CHECK(x.defined(), what << ": tensor is undefined");
  FUNDUS_CHECK(x.dim() == 2, what << ": expected shape [B, n], got " << x.sizes());
  FUNDUS_CHECK(torch::isFloatingType(x.scalar_type()), what << ": expected a floating dtype, got " << x.scalar_type());
}

/// grades: [B] int64. Values are only checked when they index logits (num_classes > 0): the pair
/// losses compare grades for equality, and every value check costs a device sync.
inline void check_grades(const torch::Tensor& grades, int64_t batch, int64_t num_classes = 0) {
  FUNDUS_CHECK(grades.defined(), "grades: tensor is undefined");
  FUNDUS_CHECK(grades.dim() == 1 && grades.size(0) == batch,
               "grades: expected shape [" << batch << "], got " << grades.sizes());
  FUNDUS_CHECK(grades.scalar_type() == torch::kLong, "grades: expected int64, got " << grades.scalar_type());
  if (batch == 0 || num_classes <= 0) return;
  auto [lo, hi] = torch::aminmax(grades);
  auto range = torch::stack({lo, hi}).cpu();
  int64_t min = range[0].item<int64_t>(), max = range[1].item<int64_t>();
  FUNDUS_CHECK(min >= 0, "grades: negative grade " << min);
  FUNDUS_CHECK(max < num_classes,
               "grades: grade " << max << " has no logit (logits have " << num_classes << " classes)");
}

/// Whether both boolean masks have a true entry, with a single device sync.
inline bool both_nonempty(const torch::Tensor& a, const torch::Tensor& b) {
  auto any = torch::stack({a.any(), b.any()}).cpu();
  return any[0].item<bool>() && any[1].item<bool>();
}

/// Exactly 0, but attached to x's graph so backward() works and yields zero gradients.
inline torch::Tensor zero_loss(const torch::Tensor& x) { return x.sum() * 0.0; }

/// Boolean [B, B] mask of the pairs i < j.
inline torch::Tensor upper_pairs(int64_t batch, const torch::Device& device) {
  return torch::ones({batch, batch}, torch::TensorOptions().dtype(torch::kBool).device(device)).triu(1);
}

}  // namespace fundus::detail
