// Splits: patient-disjoint, stratified, deterministic and pinned; the authors' image-level protocol.
#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <set>

#include <gtest/gtest.h>

#include "dataset_fixtures.h"
#include "fundus/core/csv.h"
#include "fundus/core/error.h"
#include "fundus/core/io.h"
#include "fundus/core/json.h"
#include "fundus/core/rng.h"
#include "fundus/core/strings.h"
#include "fundus/data/dataset_io.h"
#include "fundus/data/split.h"
#include "test_support.h"

namespace fundus {
namespace {

// `patients` patients with a Rahim-like grade mix; 4 in 5 have both eyes, the fellow eye's grade is
// the same or one lower. No files: splitting does not read images.
Dataset synthetic(int patients, uint64_t seed = 1) {
  const double weights[kNumGrades] = {0.47, 0.17, 0.28, 0.05, 0.03};
  Rng rng(seed);
  Dataset d;
  d.source = "synthetic";
  for (int p = 0; p < patients; ++p) {
    double u = rng.uniform();
    int g = 0;
    while (g < kNumGrades - 1 && u >= weights[g]) u -= weights[g++];
    std::string pid = strprintf("P%04d", p);
    d.records.push_back({pid + "_L", pid + "_L.jpg", g, pid, "L", "", 0});
    if (rng.uniform() < 0.8)
      d.records.push_back({pid + "_R", pid + "_R.jpg", std::max(0, g - int(rng.below(2))), pid, "R", "", 0});
  }
  return d;
}

std::map<std::string, std::string> assignment(const Dataset& d) {
  std::map<std::string, std::string> m;
  for (const CaseRecord& r : d.records) m[r.id] = r.split;
  return m;
}

TEST(DatasetSplit, PatientModeIsDisjointAndStratified) {
  Dataset d = synthetic(1000);
  Dataset s = split_dataset(d, {});
  std::map<std::string, std::set<std::string>> splits_of;
  for (const CaseRecord& r : s.records) {
    ASSERT_TRUE(r.split == "train" || r.split == "val" || r.split == "test") << r.id;
    splits_of[r.patient].insert(r.split);
  }
  for (const auto& [p, in] : splits_of) EXPECT_EQ(in.size(), 1u) << "patient " << p << " on two sides";

  SplitSummary sum = summarize_split(s);
  EXPECT_EQ(sum.leakage.test_patients_in_train, 0);
  EXPECT_EQ(sum.leakage.test_patients_in_gallery, 0);
  EXPECT_EQ(sum.leakage.test_images_patient_in_gallery, 0);
  EXPECT_EQ(sum.train.images + sum.val.images + sum.test.images, int64_t(d.size()));
  // Per grade, each split is within 2 images (one patient) of its target share.
  for (int g = 0; g < kNumGrades; ++g) {
    double n = double(sum.train.grades[g] + sum.val.grades[g] + sum.test.grades[g]);
    ASSERT_GT(n, 20) << "grade " << g;
    // Worst-eye strata: a grade-g image can sit in a grade-(g+1) patient, so allow a few more.
    EXPECT_NEAR(sum.test.grades[g] / n, 0.2, 0.05) << "grade " << g;
    EXPECT_NEAR(sum.val.grades[g] / n, 0.1, 0.05) << "grade " << g;
  }
  EXPECT_NEAR(double(sum.test.images) / double(d.size()), 0.2, 0.01);
  EXPECT_NEAR(double(sum.val.images) / double(d.size()), 0.1, 0.01);
}

TEST(DatasetSplit, FoldsArePatientDisjointStratifiedAndDeterministic) {
  Dataset d = synthetic(500);
  const int k = 5;
  std::vector<int> folds = assign_folds(d, k, 11);
  ASSERT_EQ(folds.size(), d.size());
  std::map<std::string, std::set<int>> folds_of;
  std::vector<std::array<int64_t, kNumGrades>> per_fold(k);
  std::array<int64_t, kNumGrades> per_grade{};
  for (size_t i = 0; i < d.size(); ++i) {
    ASSERT_GE(folds[i], 0);
    ASSERT_LT(folds[i], k);
    folds_of[d.records[i].patient].insert(folds[i]);
    per_fold[size_t(folds[i])][size_t(d.records[i].grade)] += 1;
    per_grade[size_t(d.records[i].grade)] += 1;
  }
  for (const auto& [p, in] : folds_of) EXPECT_EQ(in.size(), 1u) << "patient " << p << " in two folds";
  for (int g = 0; g < kNumGrades; ++g)
    for (int f = 0; f < k; ++f)  // patients bring two images and strata are worst-eye: within 5% of the grade
      EXPECT_NEAR(double(per_fold[size_t(f)][size_t(g)]), double(per_grade[size_t(g)]) / k,
                  std::max(3.0, 0.05 * double(per_grade[size_t(g)])))
          << "grade " << g << " fold " << f;
  EXPECT_EQ(assign_folds(d, k, 11), folds);
  EXPECT_NE(assign_folds(d, k, 12), folds);
  // Row order does not matter.
  Dataset reversed = d;
  std::reverse(reversed.records.begin(), reversed.records.end());
  std::vector<int> rf = assign_folds(reversed, k, 11);
  for (size_t i = 0; i < d.size(); ++i) EXPECT_EQ(rf[d.size() - 1 - i], folds[i]);
  EXPECT_THROW(assign_folds(d, 1, 11), Error);
  EXPECT_THROW(assign_folds(synthetic(3), 4, 11), Error);
}

TEST(DatasetSplit, DeterministicOrderIndependentAndPinned) {
  Dataset d = synthetic(300);
  Dataset a = split_dataset(d, {});
  Dataset b = split_dataset(d, {});
  EXPECT_EQ(assignment(a), assignment(b));

  // Row order does not matter.
  Dataset shuffled = d;
  Rng rng(99);
  rng.shuffle(shuffled.records);
  EXPECT_EQ(assignment(split_dataset(shuffled, {})), assignment(a));

  // Different seeds give different splits.
  SplitOptions other;
  other.seed = 12;
  EXPECT_NE(assignment(split_dataset(d, other)), assignment(a));

  // Pinned: a change here changes every published split. Update only on purpose.
  EXPECT_EQ(summarize_split(a).assignment_sha256, "f02ee794a4b69b57f4afeac24d1e12c6fc78087a2baf7782ae292d7ecbfeacd9");
  SplitOptions image;
  image.mode = SplitMode::image;
  EXPECT_EQ(summarize_split(split_dataset(d, image), image).assignment_sha256,
            "694d3a9e9dbde1d550945ab9b9e01132a4655d67eb0c0272f9d00aaa2d744e7d");
}

TEST(DatasetSplit, ImageModeReproducesTheAuthorsSizes) {
  SplitOptions o;
  o.mode = SplitMode::image;
  for (int patients : {50, 200}) {
    Dataset d = synthetic(patients);
    const int64_t n = int64_t(d.size());
    SplitSummary s = summarize_split(split_dataset(d, o), o);
    const int64_t n_test = int64_t(std::ceil(0.2 * double(n) - 1e-9));
    const int64_t n_val = int64_t(std::ceil(0.1 * double(n - n_test) - 1e-9));
    EXPECT_EQ(s.test.images, n_test) << n;
    EXPECT_EQ(s.val.images, n_val) << n;
    EXPECT_EQ(s.train.images, n - n_test - n_val) << n;
  }
  // 100 images: 80/20, then 90/10 of the 80 -> 72/8/20.
  Dataset hundred;
  for (int i = 0; i < 100; ++i) hundred.records.push_back({strprintf("i%03d", i), "", i % 5, "", "", "", 0});
  SplitSummary s = summarize_split(split_dataset(hundred, o), o);
  EXPECT_EQ(s.train.images, 72);
  EXPECT_EQ(s.val.images, 8);
  EXPECT_EQ(s.test.images, 20);
  EXPECT_EQ(s.leakage.test_patients_in_train, 0);  // no patient ids: nothing can be counted
  EXPECT_EQ(s.images_without_patient, 100);
  EXPECT_NE(format_split_summary(s).find("note: 100 images have no patient id"), std::string::npos);

  // With both eyes per patient, image mode leaks: many test patients have their other eye in train.
  Dataset d = synthetic(500);
  SplitSummary leaky = summarize_split(split_dataset(d, o), o);
  EXPECT_GT(leaky.leakage.test_patients_in_train, leaky.leakage.test_patients / 4);
  EXPECT_GE(leaky.leakage.test_patients_in_gallery, leaky.leakage.test_patients_in_train);
  EXPECT_GT(leaky.leakage.test_images_patient_in_gallery, 0);

  // The stage seeds matter independently.
  SplitOptions o2 = o;
  o2.seed2 = 23;
  Dataset x = split_dataset(d, o), y = split_dataset(d, o2);
  int test_same = 0, test_total = 0;
  for (size_t i = 0; i < x.records.size(); ++i)
    if (x.records[i].split == "test") {
      ++test_total;
      test_same += y.records[i].split == "test";
    }
  EXPECT_EQ(test_same, test_total);  // stage 1 unchanged
  EXPECT_NE(assignment(x), assignment(y));
}

TEST(DatasetSplit, LeakageCountsHandBuiltCase) {
  // P1: L train, R test -> in train. P2: L val, R test -> in gallery only. P3: test only. X: no patient.
  Dataset d;
  d.records = {{"p1l", "", 0, "P1", "L", "train", 0}, {"p1r", "", 0, "P1", "R", "test", 0},
               {"p2l", "", 1, "P2", "L", "val", 0},   {"p2r", "", 1, "P2", "R", "test", 0},
               {"p3l", "", 2, "P3", "L", "test", 0},  {"x", "", 4, "", "", "test", 0}};
  SplitLeakage L = summarize_split(d).leakage;
  EXPECT_EQ(L.test_patients, 4);
  EXPECT_EQ(L.test_patients_in_train, 1);
  EXPECT_EQ(L.test_patients_in_gallery, 2);
  EXPECT_EQ(L.test_images, 4);
  EXPECT_EQ(L.test_images_patient_in_gallery, 2);
}

TEST(DatasetSplit, RejectsBadOptionsAndDuplicateIds) {
  Dataset d = synthetic(10);
  SplitOptions o;
  o.val_fraction = 0.5;
  o.test_fraction = 0.5;
  EXPECT_THROW(split_dataset(d, o), Error);
  o.val_fraction = -0.1;
  EXPECT_THROW(split_dataset(d, o), Error);
  d.records.push_back(d.records[0]);
  EXPECT_THROW(split_dataset(d, {}), Error);
  EXPECT_THROW(parse_split_mode("patients"), Error);
}

TEST(DatasetSplit, ZeroValFractionGivesNoVal) {
  SplitOptions o;
  o.val_fraction = 0;
  SplitSummary s = summarize_split(split_dataset(synthetic(200), o));
  EXPECT_EQ(s.val.images, 0);
  EXPECT_GT(s.test.images, 0);
}

TEST(DatasetSplit, WritesManifestsAndSummary) {
  test::TempDir dir;
  Dataset d;
  for (int p = 0; p < 12; ++p)
    for (const char* eye : {"L", "R"}) {
      std::string id = strprintf("P%02d_%s", p, eye);
      test::write_test_image(dir.file("data/" + id + ".jpg"), 32, 24, p);
      d.records.push_back({id, dir.file("data/" + id + ".jpg"), p % 5, strprintf("P%02d", p), eye, "", 0});
    }
  Dataset s = split_dataset(d, {});
  SplitSummary sum = summarize_split(s);
  write_split(dir.file("out"), s, sum);

  LoadResult all = load_dataset(dir.file("out/manifest.csv"));
  EXPECT_EQ(all.format, DatasetFormat::manifest);
  ASSERT_TRUE(all.problems.empty()) << format_problems(all.problems);
  EXPECT_EQ(assignment(all.dataset), assignment(s));
  size_t total = 0;
  for (const char* name : {"train", "val", "test"}) {
    LoadResult part = load_dataset(dir.file(std::string("out/") + name + ".csv"));
    ASSERT_TRUE(part.problems.empty()) << format_problems(part.problems);
    for (const CaseRecord& r : part.dataset.records) EXPECT_EQ(r.split, name);
    total += part.dataset.size();
  }
  EXPECT_EQ(total, d.size());

  Json j = load_json_file(dir.file("out/split.json"));
  EXPECT_EQ(j["options"]["mode"], "patient");
  EXPECT_EQ(j["assignment_sha256"], sum.assignment_sha256);
  EXPECT_EQ(j["leakage"]["test_patients_in_train"], 0);
  EXPECT_EQ(j["splits"]["test"]["images"], sum.test.images);
  EXPECT_EQ(j["splits"]["train"]["grades"].size(), 5u);
  std::string table = format_split_summary(sum);
  EXPECT_NE(table.find("leakage: 0 of"), std::string::npos) << table;
  EXPECT_NE(table.find("Moderate"), std::string::npos) << table;
}

TEST(DatasetSplit, RahimPatientSplitHasNoLeakage) {
  FUNDUS_REQUIRE_SHARED_DATASET(dir, "rahim-dr");
  Dataset d = load_dataset(dir + "/labels.csv").dataset;
  SplitSummary s = summarize_split(split_dataset(d, {}));
  EXPECT_EQ(s.leakage.test_patients_in_gallery, 0);
  EXPECT_EQ(s.train.images + s.val.images + s.test.images, 356);
  EXPECT_NEAR(double(s.test.images) / 356.0, 0.2, 0.02);
  for (int g = 0; g < kNumGrades; ++g) EXPECT_GE(s.test.grades[g], 1) << "grade " << g;

  SplitOptions image;
  image.mode = SplitMode::image;
  SplitSummary i = summarize_split(split_dataset(d, image), image);
  EXPECT_EQ(i.test.images, 72);  // ceil(0.2 * 356)
  EXPECT_EQ(i.val.images, 29);   // ceil(0.1 * 284)
  EXPECT_GT(i.leakage.test_patients_in_train, 0);
}

}  // namespace
}  // namespace fundus
