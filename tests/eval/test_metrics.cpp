// Ranking metrics, k-NN vote, QWK and chance floors on hand-computed cases.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include <gtest/gtest.h>

#include "fundus/core/error.h"
#include "fundus/eval/chance.h"
#include "fundus/eval/metrics.h"

namespace fundus {
namespace {

double at(const std::vector<double>& m, const std::vector<int>& ks, const std::string& family, int k) {
  return m[ranking_metric_index(family + "@" + std::to_string(k), ks)];
}

TEST(RankingMetrics, HandComputedList) {
  // Query grade 2; ranked item grades 2, 0, 2, 4, 1, 2 -> rel = 1,0,1,0,0,1 (n = 6, R = 3).
  // hits_r = 1,1,2,2,2,3; rel_r * P@r is 1 at r=1, 2/3 at r=3, 3/6 at r=6.
  // Gains 1 - |2 - g|/4 = 1, .5, 1, .5, .75, 1; ideal order 1, 1, 1, .75, .5, .5.
  // k = 10 exceeds n: ranks 7..10 are misses.
  std::vector<uint8_t> rel = {1, 0, 1, 0, 0, 1};
  std::vector<double> gain;
  for (int g : {2, 0, 2, 4, 1, 2}) gain.push_back(graded_gain(2, g));
  EXPECT_EQ(gain, (std::vector<double>{1, .5, 1, .5, .75, 1}));
  std::vector<int> ks = {1, 3, 5, 10};
  auto m = ranking_metrics(rel, gain, ks);
  ASSERT_EQ(m.size(), num_ranking_metrics(ks.size()));
  EXPECT_DOUBLE_EQ(at(m, ks, "P", 1), 1.0);
  EXPECT_DOUBLE_EQ(at(m, ks, "P", 3), 2.0 / 3);
  EXPECT_DOUBLE_EQ(at(m, ks, "P", 5), 2.0 / 5);
  EXPECT_DOUBLE_EQ(at(m, ks, "P", 10), 3.0 / 10);  // divides by k, not by n
  EXPECT_DOUBLE_EQ(at(m, ks, "mAP", 1), 1.0);
  EXPECT_DOUBLE_EQ(at(m, ks, "mAP", 3), (1 + 2.0 / 3) / 3);
  EXPECT_DOUBLE_EQ(at(m, ks, "mAP", 5), (1 + 2.0 / 3) / 5);
  EXPECT_DOUBLE_EQ(at(m, ks, "mAP", 10), (1 + 2.0 / 3 + 0.5) / 10);
  EXPECT_DOUBLE_EQ(at(m, ks, "AP", 1), 1.0);  // / min(1, 3)
  EXPECT_DOUBLE_EQ(at(m, ks, "AP", 3), (1 + 2.0 / 3) / 3);
  EXPECT_DOUBLE_EQ(at(m, ks, "AP", 5), (1 + 2.0 / 3) / 3);  // / min(5, 3)
  EXPECT_DOUBLE_EQ(at(m, ks, "AP", 10), (1 + 2.0 / 3 + 0.5) / 3);
  for (int k : ks) EXPECT_DOUBLE_EQ(at(m, ks, "Recall", k), 1.0);
  const double l3 = std::log2(3.0), l5 = std::log2(5.0), l6 = std::log2(6.0), l7 = std::log2(7.0);
  EXPECT_DOUBLE_EQ(at(m, ks, "NDCG", 1), 1.0);
  double dcg3 = 1 + .5 / l3 + 1 / 2.0, idcg3 = 1 + 1 / l3 + 1 / 2.0;
  EXPECT_NEAR(at(m, ks, "NDCG", 3), dcg3 / idcg3, 1e-12);
  EXPECT_NEAR(at(m, ks, "NDCG", 3), 0.851959, 1e-6);
  double dcg5 = dcg3 + .5 / l5 + .75 / l6, idcg5 = idcg3 + .75 / l5 + .5 / l6;
  EXPECT_NEAR(at(m, ks, "NDCG", 5), dcg5 / idcg5, 1e-12);
  EXPECT_NEAR(at(m, ks, "NDCG", 10), (dcg5 + 1 / l7) / (idcg5 + .5 / l7), 1e-12);
  EXPECT_DOUBLE_EQ(m[ranking_metric_index("MAP@R", ks)], (1 + 2.0 / 3) / 3);  // ranks 1..R=3
  EXPECT_DOUBLE_EQ(m[ranking_metric_index("MRR", ks)], 1.0);
  EXPECT_EQ(ranking_metric_index("NDCG@5", ks), 4 * ks.size() + 2);  // after P, mAP, AP, Recall
  EXPECT_EQ(ranking_metric_names(ks).back(), "MRR");
}

TEST(RankingMetrics, TableGivesNamesLayoutAndIndex) {
  const std::vector<int> ks = {1, 4};
  EXPECT_EQ(ranking_metric_names(ks),
            (std::vector<std::string>{"P@1", "P@4", "mAP@1", "mAP@4", "AP@1", "AP@4", "Recall@1", "Recall@4", "NDCG@1",
                                      "NDCG@4", "MAP@R", "MRR"}));
  EXPECT_EQ(num_ranking_metrics(ks.size()), 12u);
  EXPECT_EQ(ranking_metric_index("MRR", ks), 11u);
  EXPECT_THROW(ranking_metric_index("P@7", ks), Error);
  EXPECT_THROW(ranking_metric_index("kNN-acc", ks), Error);
  // ranking_values reads each row's formula from the sums: k = 4, 1 hit, R = 2.
  RankSums s;
  s.k = 4;
  s.hits = 1;
  s.any_hit = 1;
  s.precision_sum = 0.5;
  s.dcg = 0.25;
  s.idcg = 0.5;
  s.relevant = 2;
  s.precision_sum_at_r = 0.5;
  s.reciprocal_rank = 0.5;
  RankSums one = s;
  one.k = 1;
  one.hits = one.any_hit = one.precision_sum = one.dcg = 0;
  EXPECT_EQ(ranking_values({one, s}), (std::vector<double>{0, 0.25, 0, 0.125, 0, 0.25, 0, 1, 0, 0.5, 0.25, 0.5}));
}

TEST(RankingMetrics, LateFirstHitAndNoRelevantItem) {
  // rel = 0,0,1,1 (R = 2): MRR = 1/3 (past both k_max and R); MAP@R over ranks 1..2 = 0; AP@5 = (1/3 + 2/4) / 2.
  std::vector<int> ks = {2, 5};
  auto m = ranking_metrics({0, 0, 1, 1}, {0, 0, 1, 1}, ks);
  EXPECT_DOUBLE_EQ(m[ranking_metric_index("MRR", ks)], 1.0 / 3);
  EXPECT_DOUBLE_EQ(m[ranking_metric_index("MAP@R", ks)], 0.0);
  EXPECT_DOUBLE_EQ(at(m, ks, "AP", 5), (1.0 / 3 + 2.0 / 4) / 2);
  EXPECT_DOUBLE_EQ(at(m, ks, "Recall", 2), 0.0);
  EXPECT_DOUBLE_EQ(at(m, ks, "Recall", 5), 1.0);
  EXPECT_DOUBLE_EQ(at(m, ks, "NDCG", 2), 0.0);  // gains 0, 0 in the top 2

  // No relevant item: AP, MAP@R, MRR are 0 (not NaN); NDCG still uses the graded gains.
  auto none = ranking_metrics({0, 0, 0}, {0.75, 0.5, 0.25}, ks);
  for (size_t i = 0; i < none.size(); ++i) {
    bool graded = i >= ranking_metric_index("NDCG@2", ks) && i < ranking_metric_index("MAP@R", ks);
    EXPECT_EQ(none[i] == 0.0, !graded) << ranking_metric_names(ks)[i];
  }
  EXPECT_DOUBLE_EQ(at(none, ks, "NDCG", 5), 1.0);  // already in the ideal order
  // Empty list (nothing eligible): all zeros.
  for (double v : ranking_metrics({}, {}, ks)) EXPECT_EQ(v, 0.0);
}

TEST(RankingMetrics, RelevanceRules) {
  EXPECT_TRUE(is_relevant(1, 1, RelevanceRule::same_grade));
  EXPECT_FALSE(is_relevant(1, 0, RelevanceRule::same_grade));
  EXPECT_TRUE(is_relevant(1, 0, RelevanceRule::referable));  // both non-referable
  EXPECT_TRUE(is_relevant(2, 4, RelevanceRule::referable));  // both referable
  EXPECT_FALSE(is_relevant(1, 2, RelevanceRule::referable));
  EXPECT_EQ(parse_relevance_rule("referable"), RelevanceRule::referable);
  EXPECT_THROW(parse_relevance_rule("same"), Error);
  EXPECT_DOUBLE_EQ(graded_gain(0, 4), 0.0);
  EXPECT_DOUBLE_EQ(graded_gain(3, 2), 0.75);
  EXPECT_THROW(check_cutoffs({}), Error);
  EXPECT_THROW(check_cutoffs({5, 1}), Error);
  EXPECT_THROW(check_cutoffs({0, 1}), Error);
  EXPECT_NO_THROW(check_cutoffs({1, 5, 10}));
}

TEST(KnnVote, WeightedTiesAndNegativeScores) {
  // weights: 0.9+e (g0), 0.5+e (g1), 0.5+e (g1), 0+e (g0): g1 = 1.000002 beats g0 = 0.900002.
  auto v = knn_vote({0, 1, 1, 0}, {0.9f, 0.5f, 0.5f, -0.2f});
  EXPECT_EQ(v.grade, 1);
  double w09 = double(0.9f) + 1e-6, w05 = double(0.5f) + 1e-6;
  EXPECT_NEAR(v.confidence, 2 * w05 / (w09 + 2 * w05 + 1e-6), 1e-12);
  auto tie = knn_vote({2, 1}, {0.5f, 0.5f});  // equal weights: the lower grade
  EXPECT_EQ(tie.grade, 1);
  EXPECT_DOUBLE_EQ(tie.confidence, 0.5);
  auto negative = knn_vote({3, 3, 0}, {-1.f, -1.f, -1.f});  // epsilon only: a vote by count
  EXPECT_EQ(negative.grade, 3);
  EXPECT_NEAR(negative.confidence, 2.0 / 3, 1e-12);
  EXPECT_EQ(knn_vote({}, {}).grade, -1);
  EXPECT_THROW(knn_vote({7}, {0.f}), Error);
}

TEST(QuadraticKappa, HandComputed3x3) {
  // O = [[2,1,0],[0,2,1],[1,0,3]], n = 10, weights (i-j)^2/4 = [[0,.25,1],[.25,0,.25],[1,.25,0]].
  // sum w O = .25*1 + .25*1 + 1*1 = 1.5. Row sums 3,3,4; column sums 3,3,4; E = r c^T / 10:
  // sum w E = (.25*9 + 1*12 + .25*9 + .25*12 + 1*12 + .25*12) / 10 = 3.45. kappa = 1 - 1.5/3.45 = 13/23.
  EXPECT_NEAR(quadratic_weighted_kappa({{2, 1, 0}, {0, 2, 1}, {1, 0, 3}}), 13.0 / 23, 1e-12);
}

TEST(QuadraticKappa, KnownValues) {
  // Values sklearn.metrics.cohen_kappa_score(y1, y2, weights="quadratic") gives:
  // perfect agreement -> 1; y1 = [0,1], y2 = [1,0] -> -1; y1 = [0,0,1,1], y2 = [0,1,0,1] -> 0.
  EXPECT_DOUBLE_EQ(quadratic_weighted_kappa({{3, 0, 0}, {0, 2, 0}, {0, 0, 5}}), 1.0);
  EXPECT_DOUBLE_EQ(quadratic_weighted_kappa({{0, 1}, {1, 0}}), -1.0);
  EXPECT_DOUBLE_EQ(quadratic_weighted_kappa({{1, 1}, {1, 1}}), 0.0);
  // y1 = [0,1,2,3,4], y2 = [0,2,2,3,3] (5 classes): O has diagonal 0,_,2,3 and off-diagonal (1->2), (4->3).
  // sum w O = (1 + 1)/16 = 0.125; rows 1,1,1,1,1, cols 1,0,2,2,0; sum w E = sum_ij (i-j)^2/16 * r_i c_j / 5
  // = [0 + (c0*(0+1+4+9+16) + c2*(4+1+0+1+4) + c3*(9+4+1+0+1))/16]/5 = (30 + 20 + 30)/80 = 1.0,
  // kappa = 1 - 0.125 = 0.875.
  auto c = make_confusion(5);
  for (auto [t, p] : {std::pair{0, 0}, {1, 2}, {2, 2}, {3, 3}, {4, 3}}) ++c[size_t(t)][size_t(p)];
  EXPECT_NEAR(quadratic_weighted_kappa(c), 0.875, 1e-12);
  // Undefined: both raters constant on one class (sklearn returns nan), or no samples.
  EXPECT_TRUE(std::isnan(quadratic_weighted_kappa({{4, 0}, {0, 0}})));
  EXPECT_TRUE(std::isnan(quadratic_weighted_kappa(make_confusion(5))));
}

// Brute force: the mean of ranking_metrics over all n! orders of the pool.
std::vector<double> all_permutations_mean(std::vector<uint8_t> rel, std::vector<double> gain,
                                          const std::vector<int>& ks) {
  std::vector<size_t> order(rel.size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::vector<double> sum(num_ranking_metrics(ks.size()), 0.0);
  int count = 0;
  do {
    std::vector<uint8_t> r;
    std::vector<double> g;
    for (size_t i : order) {
      r.push_back(rel[i]);
      g.push_back(gain[i]);
    }
    auto m = ranking_metrics(r, g, ks);
    for (size_t i = 0; i < m.size(); ++i) sum[i] += m[i];
    ++count;
  } while (std::next_permutation(order.begin(), order.end()));
  for (auto& v : sum) v /= count;
  return sum;
}

TEST(ChanceFloors, ClosedFormsMatchAllPermutations) {
  // Pools of a tiny gallery (query grade 1, items of grades 1,1,0,2,3,1 and variants), k up to past n.
  std::vector<int> ks = {1, 2, 3, 5, 8};
  struct Pool {
    std::vector<int> grades;
  };
  for (const Pool& pool : {Pool{{1, 1, 0, 2, 3, 1, 4}}, Pool{{1, 0, 2, 3, 4, 0}}, Pool{{0, 2, 3, 4}}, Pool{{1, 1, 1}},
                           Pool{{1}}, Pool{{2}}}) {
    std::vector<uint8_t> rel;
    std::vector<double> gain;
    for (int g : pool.grades) {
      rel.push_back(is_relevant(1, g, RelevanceRule::same_grade));
      gain.push_back(graded_gain(1, g));
    }
    auto exact = chance_metrics(rel, gain, ks);
    auto brute = all_permutations_mean(rel, gain, ks);
    auto names = ranking_metric_names(ks);
    for (size_t i = 0; i < exact.size(); ++i)
      EXPECT_NEAR(exact[i], brute[i], 1e-12) << names[i] << " pool of " << pool.grades.size();
  }
}

TEST(ChanceFloors, HandValuesAndMonteCarlo) {
  // n = 4, R = 1: P@k = 1/4 (k <= n) and 4/4/8 = 1/8 at k = 8; MRR = (1 + 1/2 + 1/3 + 1/4)/4 = 25/48.
  std::vector<int> ks = {1, 2, 8};
  std::vector<uint8_t> rel = {0, 1, 0, 0};
  std::vector<double> gain = {0.5, 1, 0.75, 0};
  auto c = chance_metrics(rel, gain, ks);
  EXPECT_DOUBLE_EQ(at(c, ks, "P", 1), 0.25);
  EXPECT_DOUBLE_EQ(at(c, ks, "P", 8), 0.125);
  EXPECT_DOUBLE_EQ(at(c, ks, "Recall", 2), 0.5);  // 1 - (3/4)(2/3)
  EXPECT_DOUBLE_EQ(c[ranking_metric_index("MRR", ks)], 25.0 / 48);
  EXPECT_DOUBLE_EQ(c[ranking_metric_index("MAP@R", ks)], 0.25);  // R = 1: P(relevant item first)
  auto mc = chance_metrics_monte_carlo(rel, gain, ks, 2000, 7);
  for (size_t i = 0; i < c.size(); ++i) EXPECT_NEAR(mc[i], c[i], 0.03) << ranking_metric_names(ks)[i];
  EXPECT_EQ(mc, chance_metrics_monte_carlo(rel, gain, ks, 2000, 7));  // seeded
}

TEST(ChanceFloors, AuthorsSplitSanityReference) {
  // method.md: on the authors' Kaggle split, chance P@k = 0.571 and their mAP@10 = 0.452. The Kaggle
  // DR training set has 25810 / 2443 / 5292 / 873 / 708 images per grade; queries with that mix
  // against a gallery with that mix (leave-one-out) give the micro-averaged floors below.
  std::vector<int64_t> counts = {25810, 2443, 5292, 873, 708};
  int64_t total = std::accumulate(counts.begin(), counts.end(), int64_t(0));
  std::vector<int> ks = {5, 10, 20, 50};
  double p_at_10 = 0, map_at_10 = 0, p_at_50 = 0;
  for (int q = 0; q < 5; ++q) {
    std::vector<uint8_t> rel;
    std::vector<double> gain;
    for (int g = 0; g < 5; ++g)
      for (int64_t i = 0; i < counts[size_t(g)] - (g == q); ++i) {
        rel.push_back(g == q);
        gain.push_back(graded_gain(q, g));
      }
    auto c = chance_metrics(rel, gain, ks);
    double share = double(counts[size_t(q)]) / double(total);
    p_at_10 += share * at(c, ks, "P", 10);
    p_at_50 += share * at(c, ks, "P", 50);
    map_at_10 += share * at(c, ks, "mAP", 10);
  }
  EXPECT_NEAR(p_at_10, 0.571, 0.004);
  EXPECT_NEAR(p_at_50, p_at_10, 1e-12);  // P@k chance does not depend on k
  EXPECT_NEAR(map_at_10, 0.452, 0.004);
}

}  // namespace
}  // namespace fundus
