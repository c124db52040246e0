#include "fundus/loss/fine_triplet.h"

#include <algorithm>
#include <cmath>

#include "checks.h"
#include "fundus/core/error.h"

namespace fundus {

namespace F = torch::nn::functional;

Degree parse_degree(const std::string& name) {
  if (name == "none") return Degree::none;
  if (name == "ratio") return Degree::ratio;
  if (name == "minmax") return Degree::minmax;
  FUNDUS_THROW("degree '" << name << "' is not one of none, ratio, minmax");
}

const char* degree_name(Degree degree) {
  switch (degree) {
    case Degree::none:
      return "none";
    case Degree::ratio:
      return "ratio";
    case Degree::minmax:
      return "minmax";
  }
  return "?";
}

torch::Tensor relevance_degree(const torch::Tensor& branch_h, const torch::Tensor& branch_v) {
  detail::check_floating_2d(branch_h, "branch_h");
  detail::check_floating_2d(branch_v, "branch_v");
  FUNDUS_CHECK(branch_h.sizes() == branch_v.sizes(),
               "branch_h " << branch_h.sizes() << " and branch_v " << branch_v.sizes() << " differ in shape");
  torch::NoGradGuard no_grad;
  return F::cosine_similarity(branch_h, branch_v, F::CosineSimilarityFuncOptions().dim(1)).clamp_min(1e-6).detach();
}

torch::Tensor cosine_matrix(const torch::Tensor& x) {
  auto n = F::normalize(x, F::NormalizeFuncOptions().p(2).dim(1).eps(1e-12));
  return n.mm(n.t());
}

double ftl_label_blind_reference(int64_t positives, int64_t negatives, const FtlOptions& options) {
  if (positives <= 0 || negatives <= 0) return 0.0;
  const double m = options.margin, gamma = options.gamma;
  const double w = options.degree == Degree::ratio ? 1.0 : gamma;
  // Per-pair logits at a common similarity s (alpha_p = 1 + m - s >= 0 on [-1, 1]); the sum is a
  // piecewise quadratic, so a fine grid plus a local refinement finds its minimum.
  auto f = [&](double s) { return w * (s - 1 - m) * (s - 1 + m) + gamma * std::max(0.0, s + m) * (s - m); };
  double best_s = -1, best = f(-1);
  for (int i = 1; i <= 2000; ++i) {
    double s = -1 + i * 0.001;
    if (f(s) < best) best = f(best_s = s);
  }
  for (double step = 0.0005; step > 1e-9; step /= 2)
    for (double s : {best_s - step, best_s + step})
      if (s >= -1 && s <= 1 && f(s) < best) best = f(best_s = s);
  double x = std::log(double(positives)) + std::log(double(negatives)) + best;
  return x > 30 ? x : std::log1p(std::exp(x));  // softplus
}

torch::Tensor fine_triplet_loss(const torch::Tensor& descriptors, const torch::Tensor& relevance,
                                const torch::Tensor& grades, const FtlOptions& options) {
  detail::check_floating_2d(descriptors, "descriptors");
  const int64_t batch = descriptors.size(0);
  detail::check_grades(grades, batch);
  FUNDUS_CHECK(options.margin >= 0 && options.margin < 1, "ftl.margin " << options.margin << " outside [0, 1)");
  FUNDUS_CHECK(options.gamma > 0, "ftl.gamma " << options.gamma << " must be > 0");
  torch::Tensor r;
  if (options.degree != Degree::none) {
    FUNDUS_CHECK(relevance.defined() && relevance.dim() == 1 && relevance.size(0) == batch,
                 "relevance: expected shape [" << batch << "] for degree=" << degree_name(options.degree)
                                               << (relevance.defined() ? "" : ", got undefined"));
    // The degree weights the pairs but is not learned through this loss (method.md: detached); the
    // clamp keeps r_j / r_i finite for any caller (relevance_degree already clamps).
    r = relevance.detach().to(descriptors.scalar_type()).clamp_min(1e-6);
  }

  auto pairs = detail::upper_pairs(batch, descriptors.device());
  auto same = grades.unsqueeze(1) == grades.unsqueeze(0);
  auto pos = pairs & same, neg = pairs & ~same;
  if (!detail::both_nonempty(pos, neg)) return detail::zero_loss(descriptors);

  const double m = options.margin, gamma = options.gamma;
  auto s = cosine_matrix(descriptors);
  auto alpha_p = torch::relu(1.0 + m - s), alpha_n = torch::relu(s + m);
  if (options.detach_alpha) {
    alpha_p = alpha_p.detach();
    alpha_n = alpha_n.detach();
  }
  torch::Tensor w;  // [B, B], row i / column j
  switch (options.degree) {
    case Degree::none:
      w = torch::full_like(s, gamma).detach();
      break;
    case Degree::ratio:
      w = r.unsqueeze(0) / r.unsqueeze(1);
      break;  // w_ij = r_j / r_i
    case Degree::minmax:
      w = gamma * torch::minimum(r.unsqueeze(0), r.unsqueeze(1)) / torch::maximum(r.unsqueeze(0), r.unsqueeze(1));
      break;
  }
  auto logit_p = -w * alpha_p * (s - (1.0 - m));
  auto logit_n = gamma * alpha_n * (s - m);
  auto lse_p = torch::logsumexp(logit_p.masked_select(pos), 0);
  auto lse_n = torch::logsumexp(logit_n.masked_select(neg), 0);
  return F::softplus(lse_p + lse_n);
}

}  // namespace fundus
