// Dataset statistics from a hand-built dataset with known sizes, and the shared real data.
#include <gtest/gtest.h>

#include "dataset_fixtures.h"
#include "fundus/core/io.h"
#include "fundus/data/dataset_io.h"
#include "fundus/data/dataset_stats.h"
#include "test_support.h"

namespace fundus {
namespace {

TEST(DatasetStats, CountsSizesAndFormats) {
  test::TempDir dir;
  test::write_test_image(dir.file("a.jpg"), 100, 80);
  test::write_test_image(dir.file("b.jpg"), 300, 200);
  test::write_test_image(dir.file("c.png"), 50, 40);
  test::write_test_image(dir.file("d.jpg"), 120, 90);
  test::write_text(dir.file("e.jpg"), "garbage");
  test::write_text(dir.file("labels.csv"),
                   "image,grade,patient,eye,split\n"
                   "a.jpg,0,P1,L,train\nb.jpg,2,P1,R,train\nc.png,2,P2,L,test\nd.jpg,4,,,\ne.jpg,2,P3,R,test\n");
  LoadResult r = load_dataset(dir.file("labels.csv"));
  ASSERT_TRUE(r.problems.empty());
  DatasetStats st = compute_dataset_stats(r.dataset, {true, 2});
  EXPECT_EQ(st.images, 5);
  EXPECT_EQ(st.grades, (std::array<int64_t, kNumGrades>{1, 0, 3, 0, 1}));
  EXPECT_EQ(st.patients, 4);  // P1, P2, P3 and d (no patient: its own)
  EXPECT_EQ(st.images_without_patient, 1);
  EXPECT_EQ(st.patients_with_both_eyes, 1);
  EXPECT_EQ(st.left, 2);
  EXPECT_EQ(st.right, 2);
  EXPECT_EQ(st.eye_unknown, 1);
  EXPECT_EQ(st.splits.at("train"), 2);
  EXPECT_EQ(st.splits.at("test"), 2);
  EXPECT_EQ(st.splits.at(""), 1);
  EXPECT_EQ(st.images_read, 4);
  EXPECT_EQ(st.unreadable, 1);
  // widths 50,100,120,300 -> lower median 100; heights 40,80,90,200 -> 80
  EXPECT_EQ(st.width.min, 50);
  EXPECT_EQ(st.width.median, 100);
  EXPECT_EQ(st.width.max, 300);
  EXPECT_EQ(st.height.min, 40);
  EXPECT_EQ(st.height.median, 80);
  EXPECT_EQ(st.height.max, 200);
  EXPECT_EQ(st.formats.at("jpeg"), 3);
  EXPECT_EQ(st.formats.at("png"), 1);

  Json j = stats_to_json(st);
  EXPECT_EQ(j["grades"][2]["name"], "Moderate");
  EXPECT_EQ(j["grades"][2]["images"], 3);
  EXPECT_EQ(j["splits"]["none"], 1);
  EXPECT_EQ(j["image_sizes"]["width"]["median"], 100);
  std::string table = format_stats(st);
  EXPECT_NE(table.find("Moderate        3   60.0%"), std::string::npos) << table;
  EXPECT_NE(table.find("unreadable headers: 1"), std::string::npos) << table;

  DatasetStats quick = compute_dataset_stats(r.dataset, {false, 1});
  EXPECT_EQ(quick.images_read, 0);
  EXPECT_EQ(quick.grades, st.grades);
}

TEST(DatasetStats, ReportsRowsLeftOutLikeValidate) {
  // Regression: rows with an unknown split (or eye) used to vanish from the counts without a word.
  test::TempDir dir;
  test::write_text(dir.file("labels.csv"),
                   "image,grade,patient,eye,split\n"
                   "a.jpg,0,P1,L,train\nb.jpg,2,P1,R,holdout\nc.jpg,2,P2,L,test\nd.jpg,4,P3,X,train\n");
  for (const char* f : {"a.jpg", "b.jpg", "c.jpg", "d.jpg"}) test::write_text(dir.file(f), "not read");
  LoadResult r = load_dataset(dir.file("labels.csv"));
  DatasetStats st = compute_dataset_stats(r, {false, 1});
  EXPECT_EQ(st.images, 2);
  ASSERT_EQ(st.left_out.size(), 2u);
  EXPECT_EQ(st.left_out[0].line, 3);
  std::string table = format_stats(st);
  EXPECT_NE(table.find("2 rows left out of these counts"), std::string::npos) << table;
  EXPECT_NE(table.find(dir.file("labels.csv") + ":3: split 'holdout' is not train, val or test"), std::string::npos)
      << table;
  EXPECT_NE(table.find(dir.file("labels.csv") + ":5: "), std::string::npos) << table;
  Json j = stats_to_json(st);
  EXPECT_EQ(j["rows_left_out"], 2);
  EXPECT_EQ(j["left_out"][0]["line"], 3);
  EXPECT_EQ(j["left_out"][0]["kind"], "bad_field");

  DatasetStats clean = compute_dataset_stats(r.dataset, {false, 1});
  EXPECT_EQ(format_stats(clean).find("left out"), std::string::npos);
  EXPECT_EQ(stats_to_json(clean)["rows_left_out"], 0);
}

TEST(DatasetStats, Rahim) {
  FUNDUS_REQUIRE_SHARED_DATASET(dir, "rahim-dr");
  DatasetStats st = compute_dataset_stats(load_dataset(dir + "/labels.csv").dataset, {true, 2});
  EXPECT_EQ(st.grades, (std::array<int64_t, kNumGrades>{166, 60, 99, 17, 14}));
  EXPECT_EQ(st.patients, 178);
  EXPECT_EQ(st.patients_with_both_eyes, 178);
  EXPECT_EQ(st.images_read, 356);
  EXPECT_EQ(st.width.max, 1024);  // longer side 1024 px
  EXPECT_EQ(st.formats.at("jpeg"), 356);
}

}  // namespace
}  // namespace fundus
