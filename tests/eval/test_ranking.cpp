// Exact ranking: order, ties, exclusion rules, k_max, threads, bad input.
#include <cmath>
#include <limits>

#include <gtest/gtest.h>

#include "fundus/core/error.h"
#include "fundus/core/rng.h"
#include "fundus/eval/ranking.h"

namespace fundus {
namespace {

std::vector<CaseKey> keys(std::vector<std::pair<const char*, const char*>> list) {
  std::vector<CaseKey> out;
  for (auto& [id, patient] : list) out.push_back({id, patient});
  return out;
}

TEST(ExactRanking, OrderAndTies) {
  // Gallery rows: g0 = (0,1), g1 = (1,0), g2 = (1,0) (same score as g1), g3 = (.6,.8), g4 = (-1,0).
  // Query (1,0): scores 0, 1, 1, .6, -1 -> order g1, g2 (tie: lower row first), g3, g0, g4.
  std::vector<float> g = {0, 1, 1, 0, 1, 0, .6f, .8f, -1, 0};
  std::vector<float> q = {1, 0};
  auto gk = keys({{"g0", ""}, {"g1", ""}, {"g2", ""}, {"g3", ""}, {"g4", ""}});
  auto r = rank_queries({q.data(), 1, 2}, keys({{"q", ""}}), {g.data(), 5, 2}, gk);
  EXPECT_EQ(r.k, 5);
  EXPECT_EQ(r.index, (std::vector<int64_t>{1, 2, 3, 0, 4}));
  EXPECT_EQ(r.score, (std::vector<float>{1, 1, .6f, 0, -1}));
  EXPECT_EQ(r.eligible, (std::vector<int64_t>{5}));
  // Top 2 (partial sort) keeps the same tie order; k_max past the gallery is clamped.
  RankingOptions o;
  o.k_max = 2;
  EXPECT_EQ(rank_queries({q.data(), 1, 2}, keys({{"q", ""}}), {g.data(), 5, 2}, gk, o).index,
            (std::vector<int64_t>{1, 2}));
  // Reverse the tied rows' order in memory: still the lower row first.
  std::vector<float> q2 = {0.6f, 0.8f};  // scores: .8, .6, .6, 1, -.6 -> g3, g0, g1, g2, g4
  EXPECT_EQ(rank_queries({q2.data(), 1, 2}, keys({{"q", ""}}), {g.data(), 5, 2}, gk).index,
            (std::vector<int64_t>{3, 0, 1, 2, 4}));
}

TEST(ExactRanking, ExcludesSelfAndOptionallySamePatient) {
  // Leave-one-out over 4 cases: a and b are the two eyes of patient P, c has no patient, d is patient Q.
  std::vector<float> v = {1, 0, .8f, .6f, 0, 1, -1, 0};
  auto k = keys({{"a", "P"}, {"b", "P"}, {"c", ""}, {"d", "Q"}});
  VectorsView view{v.data(), 4, 2};
  auto r = rank_queries(view, k, view, k);
  EXPECT_EQ(r.k, 4);
  // a: b .8, c 0, d -1 (a itself excluded; the last slot is empty).
  EXPECT_EQ(std::vector<int64_t>(r.index.begin(), r.index.begin() + 4), (std::vector<int64_t>{1, 2, 3, -1}));
  EXPECT_TRUE(std::isnan(r.score[3]));
  EXPECT_EQ(r.eligible, (std::vector<int64_t>{3, 3, 3, 3}));
  RankingOptions o;
  o.exclude_same_patient = true;
  auto p = rank_queries(view, k, view, k, o);
  EXPECT_EQ(std::vector<int64_t>(p.index.begin(), p.index.begin() + 4), (std::vector<int64_t>{2, 3, -1, -1}));
  // b loses a; c (unknown patient) only loses itself; d only itself.
  EXPECT_EQ(p.eligible, (std::vector<int64_t>{2, 2, 3, 3}));
  // An unknown patient never matches a patient named like its id.
  auto tricky = keys({{"x", ""}, {"y", "x"}});
  ExactRanker ranker({v.data(), 2, 2}, tricky, true);
  EXPECT_EQ(ranker.excluded({"x", ""}), (std::vector<int64_t>{0}));
  EXPECT_EQ(ranker.excluded({"z", "x"}), (std::vector<int64_t>{1}));
}

TEST(ExactRanking, ThreadCountDoesNotChangeResults) {
  Rng rng(5);
  const int64_t nq = 37, ng = 101, dim = 19;
  std::vector<float> q(size_t(nq * dim)), g(size_t(ng * dim));
  for (auto& x : q) x = float(rng.normal());
  for (auto& x : g) x = float(std::round(rng.normal() * 2) / 2);  // coarse values: many exact ties
  std::vector<CaseKey> qk, gk;
  for (int64_t i = 0; i < nq; ++i) qk.push_back({"q" + std::to_string(i), ""});
  for (int64_t i = 0; i < ng; ++i) gk.push_back({"g" + std::to_string(i), "p" + std::to_string(i / 3)});
  RankingOptions one, many;
  one.threads = 1;
  many.threads = 4;
  one.k_max = many.k_max = 15;
  auto a = rank_queries({q.data(), nq, dim}, qk, {g.data(), ng, dim}, gk, one);
  auto b = rank_queries({q.data(), nq, dim}, qk, {g.data(), ng, dim}, gk, many);
  EXPECT_EQ(a.index, b.index);
  EXPECT_EQ(a.score, b.score);
  // Every row is in ranking order.
  for (int64_t i = 0; i < nq; ++i)
    for (int64_t r = 1; r < a.k; ++r) {
      size_t at = size_t(i * a.k + r);
      EXPECT_TRUE(ranks_before({a.score[at - 1], a.index[at - 1]}, {a.score[at], a.index[at]}));
    }
}

TEST(ExactRanking, DotProductAndBadInput) {
  std::vector<float> a(21), b(21);
  double expected = 0;
  for (int i = 0; i < 21; ++i) {
    a[size_t(i)] = float(i) * 0.5f;
    b[size_t(i)] = float(21 - i);
    expected += double(a[size_t(i)]) * double(b[size_t(i)]);
  }
  EXPECT_FLOAT_EQ(dot_product(a.data(), b.data(), 21), float(expected));
  std::vector<float> g = {1, 0, std::numeric_limits<float>::quiet_NaN(), 0};
  try {
    ExactRanker({g.data(), 2, 2}, keys({{"a", ""}, {"b", ""}}), false);
    ADD_FAILURE() << "NaN accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("gallery row 1"), std::string::npos) << e.what();
  }
  std::vector<float> ok = {1, 0, 0, 1};
  EXPECT_THROW(ExactRanker({ok.data(), 2, 2}, keys({{"a", ""}}), false), Error);            // key count
  EXPECT_THROW(ExactRanker({ok.data(), 2, 2}, keys({{"a", ""}, {"", ""}}), false), Error);  // empty id
  std::vector<float> q = {1, 0, 0};
  EXPECT_THROW(rank_queries({q.data(), 1, 3}, keys({{"q", ""}}), {ok.data(), 2, 2}, keys({{"a", ""}, {"b", ""}})),
               Error);  // dimension mismatch
}

}  // namespace
}  // namespace fundus
