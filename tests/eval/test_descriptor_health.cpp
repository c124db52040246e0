// Descriptor health (eval/descriptor_health.h): hand-computed statistics and the verdicts.
#include <cmath>

#include <gtest/gtest.h>

#include "fundus/core/error.h"
#include "fundus/core/rng.h"
#include "fundus/eval/descriptor_health.h"

namespace fundus {
namespace {

TEST(DescriptorHealth, IdenticalRowsAreCollapsed) {
  std::vector<float> rows;
  for (int i = 0; i < 10; ++i) rows.insert(rows.end(), {0.6f, 0.8f, 0.0f});
  DescriptorHealth h = assess_descriptors(rows.data(), 10, 3);
  EXPECT_NEAR(h.mean_cosine, 1.0, 1e-12);
  EXPECT_NEAR(h.dim_spread, 0.0, 1e-7);
  EXPECT_EQ(h.status, "collapsed");
  EXPECT_TRUE(h.flagged());
  EXPECT_EQ(h.nn_sample, 10);
  EXPECT_NEAR(h.nn_p50, 1.0, 1e-6);
  EXPECT_DOUBLE_EQ(h.nn_duplicate_share, 1.0);
  EXPECT_NE(h.advice().find("meaningless"), std::string::npos);
}

TEST(DescriptorHealth, OrthonormalRowsHaveZeroMeanCosine) {
  // Rows e_0..e_3 (scaled: rows are normalised first). Pairwise cosines are 0; each dimension holds
  // one 1 and three 0s: std = sqrt(1/4 - 1/16) = sqrt(3)/4.
  std::vector<float> rows(16, 0.0f);
  for (int i = 0; i < 4; ++i) rows[size_t(i * 4 + i)] = float(i + 1);
  DescriptorHealth h = assess_descriptors(rows.data(), 4, 4);
  EXPECT_NEAR(h.mean_cosine, 0.0, 1e-12);
  EXPECT_NEAR(h.dim_spread, std::sqrt(3.0) / 4.0, 1e-12);
  EXPECT_NEAR(h.relative_spread, std::sqrt(3.0) / 2.0, 1e-12);
  EXPECT_NEAR(h.nn_p50, 0.0, 1e-12);
  EXPECT_EQ(h.status, "ok");
  EXPECT_EQ(h.advice(), "");
}

TEST(DescriptorHealth, TinyDifferencesAreDegenerateNotOk) {
  // A common direction plus noise of 3e-2: cosines ~0.9996, distinguishable but barely.
  Rng rng(3);
  std::vector<float> rows;
  for (int i = 0; i < 50; ++i)
    for (int j = 0; j < 64; ++j) rows.push_back(float(1.0 + 3e-2 * rng.normal()));
  DescriptorHealth h = assess_descriptors(rows.data(), 50, 64);
  EXPECT_GT(h.mean_cosine, 0.999);
  EXPECT_LT(h.mean_cosine, 0.9999);
  EXPECT_EQ(h.status, "degenerate") << h.summary();
  // Random Gaussian rows are healthy.
  for (auto& v : rows) v = float(rng.normal());
  EXPECT_EQ(assess_descriptors(rows.data(), 50, 64).status, "ok");
}

TEST(DescriptorHealth, TooFewRowsAndBadInput) {
  std::vector<float> two = {1, 0, 0, 1};
  EXPECT_EQ(assess_descriptors(two.data(), 2, 2).status, "too_few");
  std::vector<float> bad = {1, 0, 0, 1, NAN, 0};
  try {
    assess_descriptors(bad.data(), 3, 2);
    FAIL() << "a NaN must be reported";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("row 2"), std::string::npos) << e.what();
  }
}

TEST(DescriptorHealth, JsonRoundTrip) {
  std::vector<float> rows = {1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 0};
  DescriptorHealth h = assess_descriptors(rows.data(), 4, 3);
  DescriptorHealth back = DescriptorHealth::from_json(h.to_json());
  EXPECT_EQ(back.to_json(), h.to_json());
  EXPECT_THROW(DescriptorHealth::from_json(Json::object()), Error);
}

}  // namespace
}  // namespace fundus
