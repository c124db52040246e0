#include "fundus/loss/baseline_losses.h"

#include <limits>

#include "checks.h"
#include "fundus/core/error.h"
#include "fundus/loss/fine_triplet.h"

namespace fundus {

namespace F = torch::nn::functional;

torch::Tensor batch_hard_triplet_loss(const torch::Tensor& descriptors, const torch::Tensor& grades, double margin) {
  detail::check_floating_2d(descriptors, "descriptors");
  const int64_t batch = descriptors.size(0);
  detail::check_grades(grades, batch);
  FUNDUS_CHECK(margin >= 0, "batch_hard.margin " << margin << " must be >= 0");
  auto same = grades.unsqueeze(1) == grades.unsqueeze(0);
  auto self = torch::eye(batch, torch::TensorOptions().dtype(torch::kBool).device(descriptors.device()));
  auto pos = same & ~self, neg = ~same;
  auto valid = pos.any(1) & neg.any(1);  // anchors with both a positive and a negative
  if (!valid.any().item<bool>()) return detail::zero_loss(descriptors);

  const double inf = std::numeric_limits<double>::infinity();
  auto d = 1.0 - cosine_matrix(descriptors);
  auto hardest_pos = std::get<0>(d.masked_fill(~pos, -inf).max(1));
  auto hardest_neg = std::get<0>(d.masked_fill(~neg, inf).min(1));
  auto per_anchor = torch::relu(hardest_pos - hardest_neg + margin);
  return per_anchor.masked_select(valid).mean();
}

torch::Tensor contrastive_loss(const torch::Tensor& descriptors, const torch::Tensor& grades, double margin) {
  detail::check_floating_2d(descriptors, "descriptors");
  const int64_t batch = descriptors.size(0);
  detail::check_grades(grades, batch);
  FUNDUS_CHECK(margin > -1 && margin < 1, "contrastive.margin " << margin << " outside (-1, 1)");
  auto pairs = detail::upper_pairs(batch, descriptors.device());
  auto same = grades.unsqueeze(1) == grades.unsqueeze(0);
  auto pos = pairs & same, neg = pairs & ~same;
  auto s = cosine_matrix(descriptors);
  auto any = torch::stack({pos.any(), neg.any()}).cpu();  // one sync for both emptiness tests
  auto total = detail::zero_loss(descriptors);
  if (any[0].item<bool>()) total = total + (1.0 - s.masked_select(pos)).mean();
  if (any[1].item<bool>()) total = total + torch::relu(s.masked_select(neg) - margin).mean();
  return total;
}

namespace {
void check_logits(const torch::Tensor& logits, const torch::Tensor& grades) {
  detail::check_floating_2d(logits, "logits");
  FUNDUS_CHECK(logits.size(0) > 0, "logits: empty batch");
  FUNDUS_CHECK(logits.size(1) > 1, "logits: need at least 2 classes, got " << logits.size(1));
  detail::check_grades(grades, logits.size(0), logits.size(1));
}
}  // namespace

torch::Tensor softmax_cross_entropy_loss(const torch::Tensor& logits, const torch::Tensor& grades) {
  check_logits(logits, grades);
  return F::cross_entropy(logits, grades);
}

torch::Tensor sigmoid_bce_loss(const torch::Tensor& logits, const torch::Tensor& grades) {
  check_logits(logits, grades);
  auto target = F::one_hot(grades, logits.size(1)).to(logits.scalar_type());
  return F::binary_cross_entropy_with_logits(logits, target);
}

}  // namespace fundus
