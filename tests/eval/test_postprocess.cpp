// Retrieval post-processing (eval/postprocess.h): spec parsing, whitening algebra, expansion.
#include <cmath>

#include <gtest/gtest.h>

#include "fundus/core/error.h"
#include "fundus/core/rng.h"
#include "fundus/eval/postprocess.h"

namespace fundus {
namespace {

std::vector<CaseKey> keys(const std::string& prefix, int n) {
  std::vector<CaseKey> k;
  for (int i = 0; i < n; ++i) k.push_back({prefix + std::to_string(i), prefix + "p" + std::to_string(i)});
  return k;
}

TEST(Postprocess, SpecsParseCanonicallyAndRejectNonsense) {
  EXPECT_TRUE(parse_postprocess("none").is_identity());
  EXPECT_EQ(parse_postprocess("none").to_string(), "none");
  PostprocessSpec s = parse_postprocess("aqe:n=3,alpha=2+pcaw:dims=16");
  EXPECT_TRUE(s.whiten);
  EXPECT_EQ(s.whiten_dims, 16);
  EXPECT_EQ(s.aqe_n, 3);
  EXPECT_DOUBLE_EQ(s.aqe_alpha, 2);
  EXPECT_EQ(s.to_string(), "pcaw:dims=16,shrink=0.1+aqe:n=3,alpha=2");
  EXPECT_EQ(parse_postprocess(s.to_string()).to_string(), s.to_string());
  EXPECT_THROW(parse_postprocess("pca"), Error);
  EXPECT_THROW(parse_postprocess("aqe:n=1.5"), Error);
  EXPECT_THROW(parse_postprocess("aqe:k=2"), Error);
  EXPECT_THROW(parse_postprocess("dba:n=x"), Error);
}

TEST(Postprocess, WhiteningDecorrelatesTheGalleryWithUnitVariance) {
  // Correlated 2-d data: whitened (no shrink), the gallery's covariance is the identity times a
  // common factor before normalisation; check on the projection directly.
  Rng rng(5);
  const int n = 400;
  std::vector<float> g;
  for (int i = 0; i < n; ++i) {
    double a = rng.normal(), b = rng.normal();
    g.push_back(float(3 * a + 0.5 * b));
    g.push_back(float(3 * a - 0.5 * b));
  }
  Whitening w = learn_whitening({g.data(), n, 2}, 0, 0.0);
  ASSERT_EQ(w.out_dim, 2);
  // Projected, centred, unnormalised coordinates have unit variance and no correlation.
  double s00 = 0, s11 = 0, s01 = 0;
  for (int i = 0; i < n; ++i) {
    double c0 = g[size_t(2 * i)] - w.mean[0], c1 = g[size_t(2 * i + 1)] - w.mean[1];
    double y0 = w.projection[0] * c0 + w.projection[1] * c1, y1 = w.projection[2] * c0 + w.projection[3] * c1;
    s00 += y0 * y0;
    s11 += y1 * y1;
    s01 += y0 * y1;
  }
  // cv::PCA's covariance divides by n: unit variance in that normalisation.
  EXPECT_NEAR(s00 / n, 1.0, 1e-3);
  EXPECT_NEAR(s11 / n, 1.0, 1e-3);
  EXPECT_NEAR(s01 / n, 0.0, 1e-3);
  std::vector<float> out = w.apply({g.data(), n, 2});
  EXPECT_NEAR(std::hypot(out[0], out[1]), 1.0, 1e-6);
  // A gallery spans at most rows - 1 directions.
  EXPECT_EQ(learn_whitening({g.data(), 3, 2}).out_dim, 2);
  EXPECT_EQ(learn_whitening({g.data(), 2, 2}).out_dim, 1);
  EXPECT_THROW(learn_whitening({g.data(), 1, 2}), Error);
}

TEST(Postprocess, QueryExpansionAddsTheNearestGalleryItemsWeightedBySimilarity) {
  // Gallery: e0, e1, and (e0 + e1)/sqrt2. Query q = e0: nearest are e0 (1.0) then the diagonal (0.707).
  const float r = float(1 / std::sqrt(2.0));
  std::vector<float> g = {1, 0, 0, 1, r, r}, q = {1, 0};
  auto gk = keys("g", 3), qk = keys("q", 1);
  int64_t dim = 2;
  PostprocessSpec s = parse_postprocess("aqe:n=2,alpha=1");
  apply_postprocess(s, q, qk, g, gk, dim, false);
  // q' = normalise(e0 + 1 * e0 + 0.707 * diag) = normalise((2.5, 0.5)).
  const double x = 2.5, y = 0.5, n = std::hypot(x, y);
  EXPECT_NEAR(q[0], x / n, 1e-5);
  EXPECT_NEAR(q[1], y / n, 1e-5);
  EXPECT_EQ(g, (std::vector<float>{1, 0, 0, 1, r, r})) << "aqe leaves the gallery alone";
}

TEST(Postprocess, DatabaseAugmentationNeverUsesTheItemAsItsOwnNeighbour) {
  // Two items at cosine 0: with n=1 and alpha=1 each adds the other with weight 0: unchanged.
  std::vector<float> g = {1, 0, 0, 1}, q = {1, 0};
  auto gk = keys("g", 2), qk = keys("q", 1);
  int64_t dim = 2;
  apply_postprocess(parse_postprocess("dba:n=1,alpha=1"), q, qk, g, gk, dim, false);
  EXPECT_FLOAT_EQ(g[0], 1);
  EXPECT_FLOAT_EQ(g[1], 0);
}

TEST(Postprocess, SamePatientExclusionKeepsTheFellowEyeOutOfTheExpansion) {
  std::vector<float> g = {1, 0, 0, 1}, q = {0.8f, 0.6f};
  std::vector<CaseKey> gk = {{"g0", "P1"}, {"g1", "P2"}}, qk = {{"q0", "P1"}};
  int64_t dim = 2;
  std::vector<float> qa = q, ga = g;
  apply_postprocess(parse_postprocess("aqe:n=1,alpha=1"), qa, qk, ga, gk, dim, true);
  // Only g1 (patient P2) may expand: q' = normalise((0.8, 0.6 + 0.6)).
  const double n = std::hypot(0.8, 1.2);
  EXPECT_NEAR(qa[0], 0.8 / n, 1e-5);
  EXPECT_NEAR(qa[1], 1.2 / n, 1e-5);
}

}  // namespace
}  // namespace fundus
