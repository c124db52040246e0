// `fundus preprocess` end to end: files written, fov.json contents, --data/--limit, exit codes.
#include <gtest/gtest.h>
#include <opencv2/imgproc.hpp>

#include "fundus/core/io.h"
#include "fundus/core/json.h"
#include "fundus/data/image_io.h"
#include "test_preprocess_fixtures.h"
#include "test_support.h"

namespace fundus {
namespace {

using test::shell_quote;

TEST(PreprocessCli, WritesBeforeAfterImagesAndFovJson) {
  test::TempDir dir;
  make_dirs(dir.file("x"));
  write_image_rgb(dir.file("x/a.jpg"), test::synthetic_field({300, 200}, {140, 100}, 90));
  write_image_rgb(dir.file("x/b.png"), test::synthetic_field({200, 200}, {100, 100}, 80, 0.2, 4));
  test::CommandResult r =
      test::run_cli("preprocess " + shell_quote(dir.file("x/a.jpg")) + " " + shell_quote(dir.file("x/b.png")) +
                    " --out " + shell_quote(dir.file("out")) + " --size 96 --ben-graham");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("a "), std::string::npos) << r.output;
  cv::Mat pre = decode_image_rgb(dir.file("out/a_pre.png"));
  EXPECT_EQ(pre.size(), cv::Size(96, 96));
  cv::Mat cmp = decode_image_rgb(dir.file("out/b_compare.jpg"));
  EXPECT_EQ(cmp.size(), cv::Size(96 + 4 + 96, 96));
  Json j = load_json_file(dir.file("out/fov.json"));
  EXPECT_EQ(j["preprocess"]["size"], 96);
  EXPECT_EQ(j["preprocess"]["ben_graham"], true);
  ASSERT_EQ(j["images"].size(), 2u);
  const Json& a = j["images"][0];
  EXPECT_EQ(a["name"], "a");
  EXPECT_EQ(a["found"], true);
  EXPECT_NEAR(a["center"][0].get<double>(), 140, 2);
  EXPECT_NEAR(a["radius"].get<double>(), 90, 2);
  EXPECT_EQ(a["width"], 300);
  EXPECT_EQ(j["images"][1]["found"], true);  // the dark one too
}

TEST(PreprocessCli, DatasetWithLimitAndErrors) {
  test::TempDir dir;
  Dataset d = test::synthetic_dataset(dir.file("d"), 5);
  std::string csv = "image,grade\n";
  for (auto& rec : d.records) csv += "images/" + rec.id + ".jpg," + std::to_string(rec.grade) + "\n";
  write_file_atomic(dir.file("d/labels.csv"), csv);
  test::CommandResult r = test::run_cli("preprocess --data " + shell_quote(dir.file("d/labels.csv")) +
                                        " --limit 3 --no-mask --out " + shell_quote(dir.file("out")) + " --size 64");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(file_exists(dir.file("out/case2_pre.png")));
  EXPECT_FALSE(file_exists(dir.file("out/case3_pre.png")));
  EXPECT_EQ(load_json_file(dir.file("out/fov.json"))["images"].size(), 3u);

  r = test::run_cli("preprocess " + shell_quote(dir.file("nope.jpg")) + " " + shell_quote(d.records[0].image_path) +
                    " --out " + shell_quote(dir.file("out2")));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("nope.jpg: image file not found"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("error: 1 of 2 images"), std::string::npos) << r.output;
  EXPECT_TRUE(file_exists(dir.file("out2/case0_pre.png")));  // the good one is still written

  r = test::run_cli("preprocess --out " + shell_quote(dir.file("out3")));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("no images given"), std::string::npos) << r.output;
  r = test::run_cli("preprocess " + shell_quote(d.records[0].image_path) + " --out " + shell_quote(dir.file("out4")) +
                    " --size 4");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("preprocess.size"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace fundus
