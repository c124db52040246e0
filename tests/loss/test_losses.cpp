// Losses on hand-computed cases, finite-difference gradients (float64), edge cases and the config.
#include <cmath>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "fundus/core/error.h"
#include "fundus/core/rng.h"
#include "fundus/loss/baseline_losses.h"
#include "fundus/loss/fine_triplet.h"
#include "fundus/loss/loss.h"
#include "gradient_check.h"

namespace fundus {
namespace {

const auto kF64 = torch::TensorOptions().dtype(torch::kFloat64);

torch::Tensor grades_of(std::vector<int64_t> g) { return torch::tensor(g, torch::kLong); }

torch::Tensor random_matrix(int64_t rows, int64_t cols, uint64_t seed) {
  Rng rng(seed);
  std::vector<double> v(static_cast<size_t>(rows * cols));
  for (auto& x : v) x = rng.normal();
  return torch::tensor(v, kF64).reshape({rows, cols});
}

torch::Tensor positive_relevance(int64_t n, uint64_t seed) {
  Rng rng(seed);
  std::vector<double> v(static_cast<size_t>(n));
  for (auto& x : v) x = rng.uniform(0.2, 1.0);
  return torch::tensor(v, kF64);
}

// Three unit descriptors: D0 = (1,0), D1 = (0,1), D2 = (1,0); grades 0, 0, 1.
// s01 = 0, s02 = 1, s12 = 0; P = {(0,1)}, Q = {(0,2), (1,2)}.
torch::Tensor toy_descriptors() { return torch::tensor({1.0, 0.0, 0.0, 1.0, 1.0, 0.0}, kF64).reshape({3, 2}); }

TEST(FineTripletLoss, HandComputedNoDegree) {
  // m = 0.25, w = gamma = 1:
  //   P (0,1): -1 * relu(1.25 - 0) * (0 - 0.75)   = 0.9375
  //   Q (0,2):  relu(1 + 0.25) * (1 - 0.25)        = 0.9375
  //   Q (1,2):  relu(0 + 0.25) * (0 - 0.25)        = -0.0625
  //   L = log(1 + e^0.9375 * (e^0.9375 + e^-0.0625))
  FtlOptions o;
  o.degree = Degree::none;
  double expected = std::log(1 + std::exp(0.9375) * (std::exp(0.9375) + std::exp(-0.0625)));
  auto loss = fine_triplet_loss(toy_descriptors(), {}, grades_of({0, 0, 1}), o);
  EXPECT_NEAR(loss.item<double>(), expected, 1e-12);
  EXPECT_NEAR(expected, 2.2945, 1e-4);
  // gamma = 2 scales the negatives and w: P: 2 * 0.9375; Q: 2 * 0.9375, 2 * -0.0625.
  o.gamma = 2;
  expected = std::log(1 + std::exp(1.875) * (std::exp(1.875) + std::exp(-0.125)));
  EXPECT_NEAR(fine_triplet_loss(toy_descriptors(), {}, grades_of({0, 0, 1}), o).item<double>(), expected, 1e-12);
}

TEST(FineTripletLoss, HandComputedDegrees) {
  // r = (1, 0.5, 0.25): only the positive pair (0,1) is weighted, w01 = r1/r0 = 0.5 (ratio) and
  // min/max = 0.5 (minmax) -> positive logit 0.5 * 0.9375 = 0.46875.
  auto r = torch::tensor({1.0, 0.5, 0.25}, kF64);
  double expected = std::log(1 + std::exp(0.46875) * (std::exp(0.9375) + std::exp(-0.0625)));
  for (Degree d : {Degree::ratio, Degree::minmax}) {
    FtlOptions o;
    o.degree = d;
    EXPECT_NEAR(fine_triplet_loss(toy_descriptors(), r, grades_of({0, 0, 1}), o).item<double>(), expected, 1e-12)
        << degree_name(d);
  }
  // Swap samples 0 and 1: the pair is now (r_i, r_j) = (0.5, 1): ratio gives w = 2, minmax still 0.5.
  auto swapped = torch::tensor({0.0, 1.0, 1.0, 0.0, 1.0, 0.0}, kF64).reshape({3, 2});
  auto r_swapped = torch::tensor({0.5, 1.0, 0.25}, kF64);
  // After the swap, s01 = 0, s02 = 0, s12 = 1; Q = (0,2): 0.25 * -0.25, (1,2): 1.25 * 0.75.
  FtlOptions ratio;
  ratio.degree = Degree::ratio;
  double expected_ratio = std::log(1 + std::exp(2 * 0.9375) * (std::exp(0.9375) + std::exp(-0.0625)));
  EXPECT_NEAR(fine_triplet_loss(swapped, r_swapped, grades_of({0, 0, 1}), ratio).item<double>(), expected_ratio, 1e-12);
  FtlOptions minmax;
  EXPECT_NEAR(fine_triplet_loss(swapped, r_swapped, grades_of({0, 0, 1}), minmax).item<double>(), expected, 1e-12);
}

TEST(FineTripletLoss, MinmaxIsOrderInvariantRatioIsNot) {
  // minmax weights are symmetric in (i, j), so the pair set and its weights do not depend on the
  // batch order; the authors' ratio r_j / r_i does (documented in fine_triplet.h).
  auto d = random_matrix(10, 6, 1);
  auto g = grades_of({0, 1, 2, 0, 1, 2, 0, 0, 3, 1});
  auto r = positive_relevance(10, 2);
  auto perm = torch::tensor(std::vector<int64_t>{7, 3, 9, 0, 5, 1, 8, 2, 6, 4}, torch::kLong);
  FtlOptions minmax, ratio;
  ratio.degree = Degree::ratio;
  double a = fine_triplet_loss(d, r, g, minmax).item<double>();
  double b = fine_triplet_loss(d.index_select(0, perm), r.index_select(0, perm), g.index_select(0, perm), minmax)
                 .item<double>();
  EXPECT_NEAR(a, b, 1e-12);
  double c = fine_triplet_loss(d, r, g, ratio).item<double>();
  double e = fine_triplet_loss(d.index_select(0, perm), r.index_select(0, perm), g.index_select(0, perm), ratio)
                 .item<double>();
  EXPECT_GT(std::abs(c - e), 1e-4);
}

void expect_zero_with_finite_grad(const torch::Tensor& loss, const torch::Tensor& x) {
  EXPECT_EQ(loss.item<double>(), 0.0);
  EXPECT_TRUE(loss.requires_grad());
  loss.backward();
  ASSERT_TRUE(x.grad().defined());
  EXPECT_TRUE(torch::isfinite(x.grad()).all().item<bool>());
  EXPECT_EQ(x.grad().abs().max().item<double>(), 0.0);
}

TEST(FineTripletLoss, EmptyPairSetsGiveExactZero) {
  for (Degree deg : {Degree::none, Degree::ratio, Degree::minmax}) {
    FtlOptions o;
    o.degree = deg;
    auto r = positive_relevance(4, 3);
    {  // one grade only: no negative pair
      auto x = random_matrix(4, 5, 4).requires_grad_(true);
      expect_zero_with_finite_grad(fine_triplet_loss(x, r, grades_of({2, 2, 2, 2}), o), x);
    }
    {  // all grades different: no positive pair
      auto x = random_matrix(4, 5, 5).requires_grad_(true);
      expect_zero_with_finite_grad(fine_triplet_loss(x, r, grades_of({0, 1, 2, 3}), o), x);
    }
    {  // a single sample
      auto x = random_matrix(1, 5, 6).requires_grad_(true);
      expect_zero_with_finite_grad(fine_triplet_loss(x, r.slice(0, 0, 1), grades_of({1}), o), x);
    }
  }
}

TEST(FineTripletLoss, LargeGammaNeverOverflows) {
  auto x = random_matrix(8, 4, 7).requires_grad_(true);
  auto g = grades_of({0, 0, 1, 1, 2, 2, 0, 1});
  FtlOptions o;
  o.gamma = 1e4;
  auto r = positive_relevance(8, 8);
  auto loss = fine_triplet_loss(x, r, g, o);
  // The naive log(1 + sum exp * sum exp) overflows double here.
  auto s = cosine_matrix(x.detach());
  double naive_neg = 0;
  for (int i = 0; i < 8; ++i)
    for (int j = i + 1; j < 8; ++j)
      if (g[i].item<int64_t>() != g[j].item<int64_t>()) {
        double sij = s[i][j].item<double>();
        naive_neg += std::exp(o.gamma * std::max(0.0, sij + 0.25) * (sij - 0.25));
      }
  EXPECT_TRUE(std::isinf(naive_neg));
  EXPECT_TRUE(std::isfinite(loss.item<double>()));
  EXPECT_GT(loss.item<double>(), 100.0);
  loss.backward();
  EXPECT_TRUE(torch::isfinite(x.grad()).all().item<bool>());
  // float32 as well
  auto xf = x.detach().to(torch::kFloat32).requires_grad_(true);
  auto lf = fine_triplet_loss(xf, r.to(torch::kFloat32), g, o);
  lf.backward();
  EXPECT_TRUE(std::isfinite(lf.item<double>()));
  EXPECT_TRUE(torch::isfinite(xf.grad()).all().item<bool>());
}

// Central differences on every coordinate of x (float64) against autograd (tests/support/gradient_check.h).
template <typename Fn>
void check_loss_gradient(Fn loss_fn, const torch::Tensor& x0) {
  auto x = x0.clone().requires_grad_(true);
  // Step 1e-5: the loss (~1) loses ~1e-16 / step to round-off, the third-order term ~step^2.
  test::expect_gradient_matches([&] { return loss_fn(x); }, x, 1e-6, /*samples=*/0, /*eps=*/1e-5);
}

TEST(FineTripletLoss, FiniteDifferenceGradients) {
  auto x0 = random_matrix(7, 5, 11);
  auto g = grades_of({0, 1, 0, 2, 1, 0, 2});
  auto r = positive_relevance(7, 12);
  for (Degree deg : {Degree::none, Degree::ratio, Degree::minmax})
    for (bool detach : {false, true}) {
      SCOPED_TRACE(std::string(degree_name(deg)) + (detach ? " detach" : ""));
      FtlOptions o;
      o.degree = deg;
      o.detach_alpha = detach;
      o.gamma = 1.7;
      o.margin = 0.3;
      if (!detach) {
        check_loss_gradient([&](const torch::Tensor& x) { return fine_triplet_loss(x, r, g, o); }, x0);
      } else {
        // Detached alphas are constants in backward, so compare with differences where alpha is frozen
        // at x0: the loss below re-evaluates FTL with alphas taken from x0.
        auto frozen = [&](const torch::Tensor& x) {
          auto s0 = cosine_matrix(x0);
          auto s = cosine_matrix(x);
          auto alpha_p = torch::relu(1 + o.margin - s0), alpha_n = torch::relu(s0 + o.margin);
          auto r2 = r;
          torch::Tensor w = deg == Degree::none    ? torch::full_like(s, o.gamma)
                            : deg == Degree::ratio ? r2.unsqueeze(0) / r2.unsqueeze(1)
                                                   : o.gamma * torch::minimum(r2.unsqueeze(0), r2.unsqueeze(1)) /
                                                         torch::maximum(r2.unsqueeze(0), r2.unsqueeze(1));
          auto pairs = torch::ones({7, 7}, torch::kBool).triu(1);
          auto same = g.unsqueeze(1) == g.unsqueeze(0);
          auto lp = torch::logsumexp((-w * alpha_p * (s - (1 - o.margin))).masked_select(pairs & same), 0);
          auto ln = torch::logsumexp((o.gamma * alpha_n * (s - o.margin)).masked_select(pairs & ~same), 0);
          return torch::nn::functional::softplus(lp + ln);
        };
        auto x = x0.clone().requires_grad_(true);
        fine_triplet_loss(x, r, g, o).backward();
        auto xf = x0.clone().requires_grad_(true);
        frozen(xf).backward();
        EXPECT_LT((x.grad() - xf.grad()).abs().max().item<double>(), 1e-12);
        check_loss_gradient(frozen, x0);
      }
    }
}

TEST(FineTripletLoss, RejectsBadInput) {
  auto x = random_matrix(4, 3, 1);
  EXPECT_THROW(fine_triplet_loss(x, positive_relevance(4, 1), grades_of({0, 1, 0}), {}), Error);
  EXPECT_THROW(fine_triplet_loss(x, {}, grades_of({0, 1, 0, 1}), {}), Error);  // minmax needs r
  // Zero relevance is clamped at 1e-6 (as relevance_degree does), so even ratio stays finite.
  FtlOptions ratio;
  ratio.degree = Degree::ratio;
  EXPECT_TRUE(
      std::isfinite(fine_triplet_loss(x, torch::zeros({4}, kF64), grades_of({0, 1, 0, 1}), ratio).item<double>()));
  EXPECT_THROW(fine_triplet_loss(x.reshape({12}), {}, grades_of({0}), {}), Error);
  EXPECT_THROW(fine_triplet_loss(x, positive_relevance(4, 1), grades_of({0, 1, 0, 1}).to(torch::kInt), {}), Error);
  FtlOptions bad;
  bad.margin = 1.5;
  EXPECT_THROW(fine_triplet_loss(x, positive_relevance(4, 1), grades_of({0, 1, 0, 1}), bad), Error);
  EXPECT_THROW(parse_degree("max"), Error);
}

TEST(RelevanceDegree, CosineClampedAndDetached) {
  // rows: cos((1,0),(1,1)) = 1/sqrt(2); cos((1,0),(-1,0)) = -1 -> clamped to 1e-6; cos((2,0),(3,0)) = 1.
  auto h = torch::tensor({1.0, 0.0, 1.0, 0.0, 2.0, 0.0}, kF64).reshape({3, 2}).requires_grad_(true);
  auto v = torch::tensor({1.0, 1.0, -1.0, 0.0, 3.0, 0.0}, kF64).reshape({3, 2});
  auto r = relevance_degree(h, v);
  EXPECT_FALSE(r.requires_grad());
  EXPECT_EQ(r.scalar_type(), torch::kFloat64);
  EXPECT_NEAR(r[0].item<double>(), 1 / std::sqrt(2.0), 1e-12);
  EXPECT_NEAR(r[1].item<double>(), 1e-6, 1e-18);
  EXPECT_NEAR(r[2].item<double>(), 1.0, 1e-12);
  EXPECT_THROW(relevance_degree(h, v.slice(0, 0, 2)), Error);
}

TEST(BatchHardTriplet, HandComputed) {
  // Cosine distances of the toy batch: d01 = 1, d02 = 0, d12 = 1; grades 0, 0, 1; margin 0.1.
  // anchor 0: hardest positive d01 = 1, hardest negative d02 = 0 -> relu(1 - 0 + 0.1) = 1.1
  // anchor 1: d10 = 1, d12 = 1 -> 0.1; anchor 2 has no positive and is skipped. Mean = 0.6.
  EXPECT_NEAR(batch_hard_triplet_loss(toy_descriptors(), grades_of({0, 0, 1}), 0.1).item<double>(), 0.6, 1e-12);
}

TEST(BatchHardTriplet, FiniteDifferenceAndEmpty) {
  auto x0 = random_matrix(8, 4, 21);
  auto g = grades_of({0, 1, 0, 2, 1, 0, 2, 1});
  check_loss_gradient([&](const torch::Tensor& x) { return batch_hard_triplet_loss(x, g, 0.5); }, x0);
  auto x = random_matrix(3, 4, 22).requires_grad_(true);
  expect_zero_with_finite_grad(batch_hard_triplet_loss(x, grades_of({0, 1, 2}), 0.1), x);
  auto y = random_matrix(1, 4, 23).requires_grad_(true);
  expect_zero_with_finite_grad(batch_hard_triplet_loss(y, grades_of({0}), 0.1), y);
}

TEST(Contrastive, HandComputed) {
  // P = {(0,1)}: 1 - s01 = 1. Q = {(0,2): relu(1 - 0.5) = 0.5, (1,2): relu(0 - 0.5) = 0} -> mean 0.25.
  EXPECT_NEAR(contrastive_loss(toy_descriptors(), grades_of({0, 0, 1}), 0.5).item<double>(), 1.25, 1e-12);
  auto x = random_matrix(1, 4, 24).requires_grad_(true);
  expect_zero_with_finite_grad(contrastive_loss(x, grades_of({3}), 0.5), x);
  check_loss_gradient(
      [&](const torch::Tensor& v) {
        return contrastive_loss(v, grades_of({0, 1, 0, 1, 1}), -0.2);
      },
      random_matrix(5, 3, 25));
}

TEST(ClassifierLosses, HandComputed) {
  auto logits = torch::tensor({2.0, -1.0, 0.0}, kF64).reshape({1, 3});
  // CE = -2 + log(e^2 + e^-1 + e^0)
  EXPECT_NEAR(softmax_cross_entropy_loss(logits, grades_of({0})).item<double>(),
              -2 + std::log(std::exp(2.0) + std::exp(-1.0) + 1.0), 1e-12);
  // BCE against (1, 0, 0): mean(log(1 + e^-2), log(1 + e^-1), log 2)
  EXPECT_NEAR(sigmoid_bce_loss(logits, grades_of({0})).item<double>(),
              (std::log1p(std::exp(-2.0)) + std::log1p(std::exp(-1.0)) + std::log(2.0)) / 3, 1e-12);
  EXPECT_THROW(softmax_cross_entropy_loss(logits, grades_of({3})), Error);
  EXPECT_THROW(sigmoid_bce_loss(logits, grades_of({0, 1})), Error);
}

TEST(LossConfig, ParsesValidatesAndRoundTrips) {
  auto c = LossConfig::from_json(Json::parse(R"({"ftl": {"weight": 0.5, "degree": "ratio", "gamma": 2},
                                                 "ce": {"weight": 0.1}})"));
  EXPECT_EQ(c.ftl_weight, 0.5);
  EXPECT_EQ(c.ftl.degree, Degree::ratio);
  EXPECT_EQ(c.ftl.gamma, 2);
  EXPECT_EQ(c.ftl.margin, 0.25);
  EXPECT_EQ(c.ce_weight, 0.1);
  EXPECT_EQ(c.batch_hard_margin, 0.1);
  EXPECT_EQ(c.contrastive_margin, 0.5);
  auto again = LossConfig::from_json(c.to_json());
  EXPECT_EQ(again.to_json(), c.to_json());
  EXPECT_EQ(LossConfig::from_json(Json::object()).to_json()["ftl"]["degree"], "minmax");

  auto expect_error = [](const char* text, const char* needle) {
    try {
      LossConfig::from_json(Json::parse(text), "train.json: loss");
      ADD_FAILURE() << "accepted " << text;
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error(R"({"ftll": {}})", "unknown key 'ftll'");
  expect_error(R"({"ftl": {"margni": 0.2}})", "unknown key 'margni'");
  expect_error(R"({"ftl": {"degree": "max"}})", "degree 'max'");
  expect_error(R"({"ftl": {"weight": -1}})", "loss.ftl.weight");
  expect_error(R"({"ftl": {"weight": 0}})", "every loss weight is 0");
  expect_error(R"({"ftl": {"gamma": 0}})", "loss.ftl.gamma");
  expect_error(R"({"ce": 1})", "loss.ce: expected an object");
}

TEST(FineTripletLoss, LabelBlindReference) {
  // The closed form for m = 0.25, gamma = 1: softplus(ln|P| + ln|Q| + 0.375) (minimum at s = 0.5).
  const double expected = std::log1p(std::exp(std::log(30.0) + std::log(160.0) + 0.375));
  EXPECT_NEAR(ftl_label_blind_reference(30, 160), expected, 1e-6);
  EXPECT_NEAR(expected, 8.8515, 1e-4);  // the issue's batch of 5 grades x 4
  EXPECT_EQ(ftl_label_blind_reference(0, 10), 0.0);
  EXPECT_EQ(ftl_label_blind_reference(10, 0), 0.0);
  // An embedding that ignores labels, all pairwise cosines 0.5 (u_i = (e_0 + e_i) / sqrt 2), gives
  // exactly the reference with degree none.
  const int b = 8;
  auto x = torch::zeros({b, b + 1}, torch::kFloat64);
  for (int i = 0; i < b; ++i) {
    x[i][0] = 1;
    x[i][i + 1] = 1;
  }
  x = x / std::sqrt(2.0);
  auto g = grades_of({0, 0, 1, 1, 2, 2, 3, 3});
  FtlOptions none;
  none.degree = Degree::none;
  EXPECT_NEAR(fine_triplet_loss(x, {}, g, none).item<double>(), ftl_label_blind_reference(4, 24, none), 1e-9);
  // Other margins and gammas: the reference is the minimum over s, so no common similarity beats it.
  FtlOptions o;
  o.margin = 0.4;
  o.gamma = 2;
  o.degree = Degree::none;
  double ref = ftl_label_blind_reference(4, 24, o);
  for (double s = -1; s <= 1.0001; s += 0.05) {
    auto y = torch::full({b, b}, s, torch::kFloat64);
    auto u = torch::zeros({b, b}, torch::kFloat64);
    // A Gram matrix with every off-diagonal entry s: rows of its Cholesky factor (s > -1/(b-1)).
    if (s <= -1.0 / (b - 1) + 1e-9 || s >= 1 - 1e-9) continue;
    y.fill_diagonal_(1.0);
    u = torch::linalg::cholesky(y);
    EXPECT_GE(fine_triplet_loss(u, {}, g, o).item<double>(), ref - 1e-9) << "s = " << s;
  }
}

TEST(ComputeLoss, ReportsCollapseGuards) {
  // Identical descriptors: mean cosine 1; the label-blind value for 3 grades x 2.
  auto x = torch::ones({6, 4}, torch::kFloat64);
  auto g = grades_of({0, 0, 1, 1, 2, 2});
  LossConfig c;
  c.ftl.degree = Degree::none;
  auto r = compute_loss(c, {x, {}, {}, {}, g});
  EXPECT_NEAR(r.parts.at("mean_cos"), 1.0, 1e-12);
  EXPECT_NEAR(r.parts.at("ftl_blind"), ftl_label_blind_reference(3, 12, c.ftl), 1e-12);
  // Orthogonal descriptors: mean cosine 0.
  auto e = torch::eye(6, torch::kFloat64);
  EXPECT_NEAR(compute_loss(c, {e, {}, {}, {}, g}).parts.at("mean_cos"), 0.0, 1e-12);
}

TEST(ComputeLoss, WeightedSumAndParts) {
  auto x = random_matrix(6, 4, 31).requires_grad_(true);
  auto h = random_matrix(6, 3, 32).abs(), v = random_matrix(6, 3, 33).abs();
  auto logits = random_matrix(6, 5, 34).requires_grad_(true);
  auto g = grades_of({0, 1, 0, 4, 1, 4});
  LossConfig c;
  c.batch_hard_weight = 0.5;
  c.contrastive_weight = 0.25;
  c.ce_weight = 2;
  c.bce_weight = 3;
  auto res = compute_loss(c, {x, h, v, logits, g});
  auto r = relevance_degree(h, v);
  double ftl = fine_triplet_loss(x, r, g, c.ftl).item<double>();
  double bh = batch_hard_triplet_loss(x, g, 0.1).item<double>();
  double con = contrastive_loss(x, g, 0.5).item<double>();
  double ce = softmax_cross_entropy_loss(logits, g).item<double>();
  double bce = sigmoid_bce_loss(logits, g).item<double>();
  EXPECT_NEAR(res.parts.at("ftl"), ftl, 1e-12);
  EXPECT_NEAR(res.parts.at("batch_hard"), bh, 1e-12);
  EXPECT_NEAR(res.parts.at("contrastive"), con, 1e-12);
  EXPECT_NEAR(res.parts.at("ce"), ce, 1e-12);
  EXPECT_NEAR(res.parts.at("bce"), bce, 1e-12);
  EXPECT_NEAR(res.parts.at("relevance_mean"), r.mean().item<double>(), 1e-12);
  double total = ftl + 0.5 * bh + 0.25 * con + 2 * ce + 3 * bce;
  EXPECT_NEAR(res.parts.at("total"), total, 1e-12);
  EXPECT_NEAR(res.total.item<double>(), total, 1e-12);
  res.total.backward();
  EXPECT_TRUE(x.grad().defined() && logits.grad().defined());

  // Inactive losses do not appear; missing inputs are clear errors.
  LossConfig only_ftl;
  only_ftl.ftl.degree = Degree::none;
  auto r2 = compute_loss(only_ftl, {x, {}, {}, {}, g});
  EXPECT_EQ(r2.parts.size(), 4u);  // ftl, ftl_blind, mean_cos, total
  try {
    compute_loss(c, {x, h, v, {}, g});
    ADD_FAILURE() << "ce without logits accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no classifier head"), std::string::npos) << e.what();
  }
  EXPECT_THROW(compute_loss(LossConfig{}, {x, {}, {}, {}, g}), Error);  // minmax without branches
}

}  // namespace
}  // namespace fundus
