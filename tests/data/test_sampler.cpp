// Batch samplers: order and coverage, determinism per (seed, epoch), P x K composition of balanced
// batches, sampling with replacement inside small grades, batch counts, options.
#include <algorithm>
#include <map>
#include <set>

#include <gtest/gtest.h>

#include "fundus/data/sampler.h"
#include "test_preprocess_fixtures.h"

namespace fundus {
namespace {

using test::error_of;

SamplerOptions kind(SamplerKind k, int64_t batch, bool drop_last = false) {
  SamplerOptions o;
  o.kind = k;
  o.batch_size = batch;
  o.drop_last = drop_last;
  return o;
}

std::vector<int> imbalanced_grades() {  // 100 / 30 / 10 / 3 / 1, interleaved
  std::vector<int> g;
  int counts[5] = {100, 30, 10, 3, 1};
  for (int round = 0; round < 100; ++round)
    for (int k = 0; k < 5; ++k)
      if (round < counts[k]) g.push_back(k);
  return g;
}

TEST(Sampler, SequentialInOrderWithPartialLastBatch) {
  BatchSampler s(std::vector<int>(10, 0), kind(SamplerKind::sequential, 4), 1);
  EXPECT_EQ(s.batches_per_epoch(), 3);
  auto e = s.epoch(0);
  ASSERT_EQ(e.size(), 3u);
  EXPECT_EQ(e[0], (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_EQ(e[2], (std::vector<int64_t>{8, 9}));
  EXPECT_EQ(s.epoch(5), e);  // epochs do not matter
  BatchSampler dropped(std::vector<int>(10, 0), kind(SamplerKind::sequential, 4, true), 1);
  EXPECT_EQ(dropped.batches_per_epoch(), 2);
  EXPECT_EQ(dropped.epoch(0).size(), 2u);
}

TEST(Sampler, ShuffledIsAPermutationDeterministicPerSeedAndEpoch) {
  BatchSampler s(std::vector<int>(50, 1), kind(SamplerKind::shuffled, 8), 7);
  EXPECT_EQ(s.batches_per_epoch(), 7);
  auto flat = [](const std::vector<std::vector<int64_t>>& e) {
    std::vector<int64_t> v;
    for (auto& b : e) v.insert(v.end(), b.begin(), b.end());
    return v;
  };
  std::vector<int64_t> e0 = flat(s.epoch(0)), e1 = flat(s.epoch(1));
  std::vector<int64_t> sorted = e0;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 50; ++i) EXPECT_EQ(sorted[size_t(i)], i);
  EXPECT_NE(e0, e1);
  EXPECT_EQ(flat(s.epoch(1)), e1);
  EXPECT_EQ(flat(BatchSampler(std::vector<int>(50, 1), kind(SamplerKind::shuffled, 8), 7).epoch(1)), e1);
  EXPECT_NE(flat(BatchSampler(std::vector<int>(50, 1), kind(SamplerKind::shuffled, 8), 8).epoch(1)), e1);
  // Pinned first values: the order must not change across machines or releases (resume relies on it).
  BatchSampler pin(std::vector<int>(10, 0), kind(SamplerKind::shuffled, 10), 1);
  EXPECT_EQ(pin.epoch(0)[0], (std::vector<int64_t>{1, 0, 3, 9, 7, 2, 5, 8, 4, 6}));
  BatchSampler dropped(std::vector<int>(50, 1), kind(SamplerKind::shuffled, 8, true), 7);
  EXPECT_EQ(dropped.batches_per_epoch(), 6);
  for (auto& b : dropped.epoch(3)) EXPECT_EQ(b.size(), 8u);
}

TEST(Sampler, BalancedBatchesArePGradesTimesKImages) {
  std::vector<int> grades = imbalanced_grades();
  ASSERT_EQ(grades.size(), 144u);
  SamplerOptions o = kind(SamplerKind::balanced, 16);
  o.grades_per_batch = 4;
  BatchSampler s(grades, o, 3);
  EXPECT_EQ(s.batches_per_epoch(), 9);  // ceil(144 / 16)
  std::map<int, int> chosen;
  for (int64_t e = 0; e < 40; ++e) {
    auto batches = s.epoch(e);
    ASSERT_EQ(int64_t(batches.size()), 9);
    std::map<int64_t, int> grade0_uses;
    for (auto& b : batches) {
      ASSERT_EQ(b.size(), 16u);
      std::map<int, int> per_grade;
      for (int64_t i : b) ++per_grade[grades[size_t(i)]];
      ASSERT_EQ(per_grade.size(), 4u);
      for (auto& [g, n] : per_grade) {
        EXPECT_EQ(n, 4);
        ++chosen[g];
      }
      for (int64_t i : b)
        if (grades[size_t(i)] == 0) ++grade0_uses[i];
    }
    // 100 grade-0 images and at most 9 x 4 = 36 draws: no image repeats within the epoch.
    for (auto& [i, n] : grade0_uses) EXPECT_EQ(n, 1);
  }
  // Every grade is picked with probability 4/5 per batch (360 batches).
  for (int g = 0; g < 5; ++g) EXPECT_NEAR(chosen[g] / 360.0, 0.8, 0.07) << "grade " << g;
}

TEST(Sampler, SmallGradesAreSampledWithReplacement) {
  std::vector<int> grades = imbalanced_grades();  // grade 4 has a single image (index 4)
  SamplerOptions o = kind(SamplerKind::balanced, 15);
  o.grades_per_batch = 5;
  o.batches_per_epoch = 6;
  BatchSampler s(grades, o, 11);
  EXPECT_EQ(s.batches_per_epoch(), 6);
  for (auto& b : s.epoch(0)) {
    EXPECT_EQ(std::count(b.begin(), b.end(), 4), 3);  // the one PDR image fills its 3 slots
    std::map<int, std::set<int64_t>> distinct;
    for (int64_t i : b) distinct[grades[size_t(i)]].insert(i);
    EXPECT_EQ(distinct[3].size(), 3u);  // 3 images, 3 slots, drawn from a shuffled cycle: all distinct
  }
}

TEST(Sampler, BalancedSplitsUnevenBatchesAndCapsP) {
  std::vector<int> grades = imbalanced_grades();
  SamplerOptions o = kind(SamplerKind::balanced, 10);
  o.grades_per_batch = 3;
  BatchSampler s(grades, o, 2);
  for (auto& b : s.epoch(0)) {
    std::map<int, int> per_grade;
    for (int64_t i : b) ++per_grade[grades[size_t(i)]];
    std::vector<int> counts;
    for (auto& [g, n] : per_grade) counts.push_back(n);
    std::sort(counts.begin(), counts.end());
    EXPECT_EQ(counts, (std::vector<int>{3, 3, 4}));
  }
  // Only two grades present: P = 4 is capped at 2.
  SamplerOptions two = kind(SamplerKind::balanced, 8);
  two.grades_per_batch = 4;
  BatchSampler t({0, 0, 0, 2, 2, 0, 2}, two, 1);
  for (auto& b : t.epoch(0)) {
    EXPECT_EQ(std::count_if(b.begin(), b.end(), [&](int64_t i) { return i == 3 || i == 4 || i == 6; }), 4);
  }
}

TEST(Sampler, BalancedIsDeterministicPerSeedAndEpoch) {
  std::vector<int> grades = imbalanced_grades();
  SamplerOptions o = kind(SamplerKind::balanced, 16);
  BatchSampler a(grades, o, 5), b(grades, o, 5), c(grades, o, 6);
  EXPECT_EQ(a.epoch(2), b.epoch(2));
  EXPECT_NE(a.epoch(2), a.epoch(3));
  EXPECT_NE(a.epoch(2), c.epoch(2));
}

TEST(Sampler, ErrorsAndOptions) {
  EXPECT_NE(error_of([] { BatchSampler({}, SamplerOptions{}, 1); }).find("empty"), std::string::npos);
  EXPECT_NE(error_of([] {
              BatchSampler({0, 7}, kind(SamplerKind::balanced, 2), 1);
            }).find("grade 7"),
            std::string::npos);
  EXPECT_NO_THROW(BatchSampler({0, 7}, kind(SamplerKind::shuffled, 2), 1));  // ungraded data may be shuffled
  EXPECT_NE(error_of([] {
              BatchSampler({0, 1}, kind(SamplerKind::shuffled, 4, true), 1);
            }).find("drop_last"),
            std::string::npos);
  EXPECT_NE(error_of([] { kind(SamplerKind::shuffled, 0).validate(); }).find("sampler.batch_size"), std::string::npos);

  SamplerOptions o = kind(SamplerKind::balanced, 32);
  o.grades_per_batch = 5;
  o.batches_per_epoch = 100;
  SamplerOptions back = SamplerOptions::from_json(o.to_json());
  EXPECT_EQ(back.to_json(), o.to_json());
  EXPECT_EQ(o.to_json()["kind"], "balanced");
  EXPECT_NE(error_of([] {
              SamplerOptions::from_json(Json{{"kind", "random"}});
            }).find("unknown sampler 'random'"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              SamplerOptions::from_json(Json{{"batch", 3}});
            }).find("unknown key 'batch'"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              SamplerOptions::from_json(Json{{"grades_per_batch", 6}});
            }).find("sampler.grades_per_batch"),
            std::string::npos);
}

}  // namespace
}  // namespace fundus
