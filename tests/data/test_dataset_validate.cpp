// Validation: corrupt, truncated and fake images become problems naming the CSV line; nothing crashes.
#include <map>

#include <opencv2/imgproc.hpp>

#include <gtest/gtest.h>

#include "dataset_fixtures.h"
#include "fundus/core/error.h"
#include "fundus/core/io.h"
#include "fundus/core/rng.h"
#include "fundus/data/image_io.h"
#include "fundus/data/validate.h"
#include "test_support.h"

namespace fundus {
namespace {

using test::write_test_image;
using test::write_text;

// A dataset of good and broken images:
//   line 2 good.jpg, 3 truncated.jpg (half of a real JPEG), 4 random.jpg (random bytes), 5 zero.jpg,
//   6 ok.png, 7 cut.png, 8 missing.jpg (no file), 9 header.jpg (JPEG markers around text)
std::string make_broken_dataset(const test::TempDir& dir) {
  write_test_image(dir.file("good.jpg"), 320, 240, 1);
  write_test_image(dir.file("ok.png"), 64, 48, 2);
  std::string jpeg = read_file(dir.file("good.jpg"));
  write_text(dir.file("truncated.jpg"), jpeg.substr(0, jpeg.size() / 2));
  Rng rng(5);
  std::string noise(4000, '\0');
  for (char& c : noise) c = char(rng.below(256));
  noise[0] = 'x';  // never a valid magic
  write_text(dir.file("random.jpg"), noise);
  write_text(dir.file("zero.jpg"), "");
  std::string png = read_file(dir.file("ok.png"));
  write_text(dir.file("cut.png"), png.substr(0, png.size() - 20));
  // JPEG start and end markers around text: no frame header.
  std::string fake = "\xFF\xD8";
  for (int i = 0; i < 20; ++i) fake += "not a JPEG segment ";
  write_text(dir.file("header.jpg"), fake + "\xFF\xD9");
  write_text(dir.file("labels.csv"),
             "image,grade\ngood.jpg,0\ntruncated.jpg,1\nrandom.jpg,2\nzero.jpg,3\nok.png,4\ncut.png,0\n"
             "missing.jpg,1\nheader.jpg,2\n");
  return dir.file("labels.csv");
}

TEST(DatasetValidate, ReportsEveryBrokenImageWithItsLine) {
  test::TempDir dir;
  std::string csv = make_broken_dataset(dir);
  ValidateOptions o;
  o.threads = 2;
  o.progress = false;
  ValidationResult v = validate_dataset(csv, {}, o);
  EXPECT_EQ(v.rows, 8u);
  EXPECT_EQ(v.images_checked, 7u);
  ASSERT_EQ(v.dataset.size(), 2u) << format_problems(v.problems);
  EXPECT_EQ(v.dataset.records[0].id, "good");
  EXPECT_EQ(v.dataset.records[1].image_path, dir.file("ok.png"));

  std::map<int, DatasetProblem> at;
  for (const DatasetProblem& p : v.problems) at[p.line] = p;
  ASSERT_EQ(at.size(), 6u) << format_problems(v.problems);
  for (int line : {3, 4, 5, 7, 8, 9})
    ASSERT_TRUE(at.count(line)) << "line " << line << "\n" << format_problems(v.problems);
  EXPECT_EQ(at[8].kind, ProblemKind::missing_image);
  for (int line : {3, 4, 5, 7, 9}) {
    EXPECT_EQ(at[line].kind, ProblemKind::corrupt_image);
    EXPECT_EQ(at[line].source, csv);
  }
  EXPECT_EQ(at[3].message, "image '" + dir.file("truncated.jpg") + "': truncated JPEG (no end-of-image marker)");
  EXPECT_NE(at[4].message.find("not an image"), std::string::npos) << at[4].message;
  EXPECT_NE(at[5].message.find("empty file (0 bytes)"), std::string::npos) << at[5].message;
  EXPECT_NE(at[7].message.find("truncated PNG"), std::string::npos) << at[7].message;
  EXPECT_NE(at[9].message.find("corrupt JPEG header"), std::string::npos) << at[9].message;
  EXPECT_NE(at[3].to_string().find("labels.csv:3: image '"), std::string::npos);

  // Default: fail with the full list and a count per kind.
  try {
    require_valid(v, false);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    std::string m = e.message();
    EXPECT_NE(m.find("corrupt_image " + std::to_string(v.problems.size() - 1)), std::string::npos) << m;
    EXPECT_NE(m.find("missing_image 1"), std::string::npos) << m;
    for (const DatasetProblem& p : v.problems) EXPECT_NE(m.find(p.to_string()), std::string::npos) << m;
  }
  // --skip-bad: the good rows.
  EXPECT_EQ(require_valid(v, true).size(), 2u);
  Json j = validation_to_json(v);
  EXPECT_EQ(j["usable"], 2);
  EXPECT_EQ(j["rows"], 8);
  EXPECT_EQ(j["problems"].size(), v.problems.size());
  EXPECT_EQ(j["problem_counts"]["missing_image"], 1);
}

TEST(DatasetValidate, SameProblemsWithOneOrManyThreads) {
  test::TempDir dir;
  std::string csv = make_broken_dataset(dir);
  ValidateOptions o;
  o.progress = false;
  o.threads = 1;
  ValidationResult one = validate_dataset(csv, {}, o);
  o.threads = 4;
  ValidationResult four = validate_dataset(csv, {}, o);
  EXPECT_EQ(problems_to_json(one.problems), problems_to_json(four.problems));

  std::vector<DatasetProblem> direct = check_images(load_dataset(csv).dataset, o);
  ASSERT_EQ(direct.size(), 5u);
  EXPECT_EQ(direct[0].source, dir.file("truncated.jpg"));
  EXPECT_EQ(direct[0].message, "truncated JPEG (no end-of-image marker)");
}

TEST(DatasetValidate, QuickModeDoesNotReadImages) {
  test::TempDir dir;
  std::string csv = make_broken_dataset(dir);
  ValidateOptions o;
  o.check_images = false;
  o.progress = false;
  ValidationResult v = validate_dataset(csv, {}, o);
  EXPECT_EQ(v.images_checked, 0u);
  ASSERT_EQ(v.problems.size(), 1u);
  EXPECT_EQ(v.problems[0].kind, ProblemKind::missing_image);
  EXPECT_EQ(v.dataset.size(), 7u);
}

TEST(DatasetValidate, EmptyDatasetIsAProblemEvenWithSkipBad) {
  test::TempDir dir;
  write_text(dir.file("labels.csv"), "image,grade\n");
  ValidationResult v = validate_dataset(dir.file("labels.csv"), {}, {true, 1, false});
  ASSERT_EQ(v.problems.size(), 1u);
  EXPECT_EQ(v.problems[0].kind, ProblemKind::empty_dataset);
  EXPECT_THROW(require_valid(v, true), Error);

  write_text(dir.file("bad.csv"), "image,grade\nnothere.jpg,1\n");
  ValidationResult b = validate_dataset(dir.file("bad.csv"), {}, {true, 1, false});
  ASSERT_EQ(b.problems.size(), 2u);
  EXPECT_EQ(b.problems[1].message, "no usable rows (every row has a problem)");
  EXPECT_THROW(require_valid(b, true), Error);
}

TEST(DatasetValidate, FolderLayoutProblemsNameTheImage) {
  test::TempDir dir;
  write_test_image(dir.file("root/1/a.jpg"));
  write_text(dir.file("root/1/b.jpg"), "not a jpeg at all");
  ValidationResult v = validate_dataset(dir.file("root"), {}, {true, 2, false});
  ASSERT_EQ(v.problems.size(), 1u);
  EXPECT_EQ(v.problems[0].source, dir.file("root/1/b.jpg"));
  EXPECT_EQ(v.problems[0].line, 0);
  EXPECT_EQ(v.problems[0].to_string(), dir.file("root/1/b.jpg") + ": not an image (unknown format)");
}

TEST(DatasetValidate, RahimTinyIsClean) {
  FUNDUS_REQUIRE_SHARED_DATASET(dir, "rahim-dr-tiny");
  ValidationResult v = validate_dataset(dir + "/labels.csv", {}, {true, 2, false});
  EXPECT_TRUE(v.ok()) << format_problems(v.problems);
  EXPECT_EQ(v.images_checked, 25u);
  EXPECT_EQ(v.dataset.size(), 25u);
}

// A JPEG whose middle is damaged but whose end-of-image marker is intact passes the structure check
// and "decodes" in OpenCV (grey blocks); libjpeg's corrupt-data warnings give it away. Extraneous
// bytes before a marker lose no pixel and are accepted.
TEST(DatasetValidate, DamagedMiddleWithIntactEndIsReported) {
  test::TempDir dir;
  write_test_image(dir.file("good.jpg"), 320, 240, 7);
  const std::string jpeg = read_file(dir.file("good.jpg"));
  ASSERT_GT(jpeg.size(), 2000u);
  const size_t mid = jpeg.size() / 2;
  std::string cut = jpeg.substr(0, mid) + jpeg.substr(mid + 600);            // 600 bytes of scan data lost
  std::string marker = jpeg.substr(0, mid) + "\xFF\xD3" + jpeg.substr(mid);  // a stray restart marker
  std::string extra = jpeg.substr(0, jpeg.size() - 2) + "abc" + jpeg.substr(jpeg.size() - 2);
  write_text(dir.file("cut.jpg"), cut);
  write_text(dir.file("marker.jpg"), marker);
  write_text(dir.file("extra.jpg"), extra);

  EXPECT_EQ(jpeg_data_problem(jpeg), "");
  EXPECT_EQ(jpeg_data_problem(extra), "");
  EXPECT_EQ(jpeg_data_problem("not a jpeg"), "");  // other formats are not its business
  EXPECT_NE(jpeg_data_problem(cut).find("corrupt JPEG data"), std::string::npos) << jpeg_data_problem(cut);
  EXPECT_NE(jpeg_data_problem(marker).find("corrupt JPEG data"), std::string::npos) << jpeg_data_problem(marker);
  EXPECT_EQ(image_structure_problem(cut), "");  // what the structure check alone would miss

  write_text(dir.file("labels.csv"), "image,grade\ngood.jpg,0\ncut.jpg,1\nmarker.jpg,2\nextra.jpg,3\n");
  ValidateOptions o;
  o.progress = false;
  ValidationResult v = validate_dataset(dir.file("labels.csv"), {}, o);
  ASSERT_EQ(v.dataset.size(), 2u) << format_problems(v.problems);
  EXPECT_EQ(v.dataset.records[1].id, "extra");
  ASSERT_EQ(v.problems.size(), 2u);
  EXPECT_EQ(v.problems[0].line, 3);
  EXPECT_NE(v.problems[0].to_string().find("cut.jpg"), std::string::npos) << v.problems[0].to_string();
  EXPECT_NE(v.problems[0].message.find("corrupt JPEG data"), std::string::npos) << v.problems[0].message;
  EXPECT_EQ(v.problems[1].line, 4);
}

// Issue 10 items 7 and 9: validation applies the same image policy as every other command (a
// decompression bomb is refused from its header, never decoded) and says when a name is a directory.
TEST(DatasetValidate, SamePolicyAsDecodingAndClearMessages) {
  test::TempDir dir;
  write_test_image(dir.file("good.png"), 64, 48, 3);
  std::string png = read_file(dir.file("good.png"));
  for (int k = 0; k < 4; ++k)
    png[size_t(16 + k)] = png[size_t(20 + k)] = char(k == 2 ? 0x2e : k == 3 ? 0xe0 : 0);  // 12000 x 12000
  write_text(dir.file("bomb.png"), png);
  make_dirs(dir.file("x.jpg"));
  write_text(dir.file("labels.csv"), "image,grade\ngood.png,0\nbomb.png,1\nx.jpg,2\n");
  ValidateOptions o;
  o.progress = false;
  ValidationResult v = validate_dataset(dir.file("labels.csv"), {}, o);
  ASSERT_EQ(v.problems.size(), 2u) << format_problems(v.problems);
  EXPECT_EQ(v.problems[0].line, 3);
  EXPECT_EQ(v.problems[0].kind, ProblemKind::corrupt_image);
  EXPECT_NE(v.problems[0].message.find("12000x12000 = 144000000 pixels exceeds the limit of 40000000 pixels"),
            std::string::npos)
      << v.problems[0].message;
  EXPECT_EQ(v.problems[1].line, 4);
  EXPECT_EQ(v.problems[1].kind, ProblemKind::missing_image);
  EXPECT_EQ(v.problems[1].message, "image 'x.jpg' is a directory (" + dir.file("x.jpg") + "), not an image file");
  // The same files through check_images (records that point at them directly).
  Dataset d;
  d.records.resize(2);
  d.records[0].image_path = dir.file("bomb.png");
  d.records[1].image_path = dir.file("x.jpg");
  std::vector<DatasetProblem> direct = check_images(d, o);
  ASSERT_EQ(direct.size(), 2u);
  EXPECT_EQ(direct[1].message, "is a directory, not an image file");
  EXPECT_EQ(direct[1].kind, ProblemKind::missing_image);
}

// Issue 9 item 3: images without a field of view are their own problem kind, by line.
TEST(DatasetValidate, ImagesWithoutFieldOfViewAreReported) {
  test::TempDir dir;
  write_test_image(dir.file("good.jpg"), 320, 240, 1);
  write_image_rgb(dir.file("black.jpg"), cv::Mat::zeros(240, 320, CV_8UC3));
  cv::Mat page(400, 300, CV_8UC3, cv::Scalar::all(240));
  for (int y = 30; y < 380; y += 24)
    cv::putText(page, "lorem ipsum dolor sit", {10, y}, cv::FONT_HERSHEY_SIMPLEX, 0.6, cv::Scalar::all(20));
  write_image_rgb(dir.file("page.png"), page);
  write_text(dir.file("labels.csv"), "image,grade\ngood.jpg,0\nblack.jpg,1\npage.png,2\n");
  ValidateOptions o;
  o.progress = false;
  ValidationResult v = validate_dataset(dir.file("labels.csv"), {}, o);
  ASSERT_EQ(v.dataset.size(), 1u) << format_problems(v.problems);
  ASSERT_EQ(v.problems.size(), 2u);
  EXPECT_EQ(v.problems[0].kind, ProblemKind::no_field_of_view);
  EXPECT_EQ(v.problems[0].line, 3);
  EXPECT_EQ(v.problems[0].message,
            "image '" + dir.file("black.jpg") +
                "': no field of view found (the image is practically uniform: brightness 0 to 0): "
                "not a fundus photograph");
  EXPECT_EQ(v.problems[1].kind, ProblemKind::no_field_of_view);
  EXPECT_NE(v.problems[1].message.find("the colours are not a retina's"), std::string::npos) << v.problems[1].message;
  EXPECT_EQ(count_problem_kinds(v.problems).at("no_field_of_view"), 2);
}

}  // namespace
}  // namespace fundus
