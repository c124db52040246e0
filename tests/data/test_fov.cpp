// Field-of-view detection: synthetic fields with known centre and radius (centred, dark, notched,
// off-centre, clipped, with corner labels, large), fallbacks, and crops of the real rahim-dr-tiny images.
#include <cmath>
#include <tuple>

#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "fundus/core/concurrency.h"
#include "fundus/core/csv.h"
#include "fundus/core/io.h"
#include "fundus/core/rng.h"
#include "fundus/data/fov.h"
#include "fundus/data/image_io.h"
#include "fundus/data/preprocess.h"
#include "fundus/data/synth.h"
#include "test_preprocess_fixtures.h"
#include "test_support.h"

namespace fundus {
namespace {

using test::disc_mask;
using test::iou;
using test::synthetic_field;

// Detects the FOV of a synthetic field and checks mask IoU and circle parameters against the truth.
void expect_fov(const cv::Mat& img, const cv::Mat& truth, cv::Point2d c, double r, double tol = 0.01) {
  FovResult f = detect_fov(img);
  ASSERT_TRUE(f.found) << f.note;
  EXPECT_TRUE(f.note.empty());
  ASSERT_EQ(f.mask.size(), img.size());
  ASSERT_EQ(f.mask.type(), CV_8UC1);
  EXPECT_GT(iou(f.mask, truth), 0.95);
  EXPECT_NEAR(f.center.x, c.x, tol * r);
  EXPECT_NEAR(f.center.y, c.y, tol * r);
  EXPECT_NEAR(f.radius, r, tol * r);
  // The fitted circle covers the true disc.
  EXPECT_GT(iou(disc_mask(img.size(), f.center, f.radius), disc_mask(img.size(), c, r)), 0.97);
  EXPECT_EQ(f.bbox, cv::boundingRect(f.mask));
  EXPECT_NEAR(f.area_fraction, cv::countNonZero(f.mask) / double(img.total()), 0.01);
}

TEST(Fov, CentredCircle) {
  cv::Size size(400, 300);
  cv::Point2d c(200, 150);
  cv::Mat img = synthetic_field(size, c, 130);
  expect_fov(img, disc_mask(size, c, 130), c, 130);
  FovResult f = detect_fov(img);
  EXPECT_NEAR(f.bbox.x, 70, 2);
  EXPECT_NEAR(f.bbox.width, 260, 3);
}

TEST(Fov, DarkImage) {
  cv::Size size(360, 300);
  cv::Point2d c(175.5, 152.25);
  double r = 120;
  cv::Mat img = synthetic_field(size, c, r, 0.14, 7);  // retina red channel ~20-30 on a 0-3 surround
  double max_red;
  cv::minMaxLoc(img.reshape(1, 0), nullptr, &max_red);
  ASSERT_LT(max_red, 40);
  expect_fov(img, disc_mask(size, c, r), c, r);
}

TEST(Fov, NotchedBorder) {
  cv::Size size(400, 400);
  cv::Point2d c(200, 200);
  double r = 160;
  cv::Mat img = synthetic_field(size, c, r, 1.0, 3);
  // A camera notch: a rectangular bite into the rim at the upper right.
  cv::Point2d rim(c.x + r * std::cos(-CV_PI / 4), c.y + r * std::sin(-CV_PI / 4));
  cv::RotatedRect bite(rim, cv::Size2f(float(0.25 * r), float(0.2 * r)), -45.f);
  cv::Point2f corners[4];
  bite.points(corners);
  std::vector<cv::Point> poly(corners, corners + 4);
  cv::fillConvexPoly(img, poly, cv::Scalar::all(0));
  cv::Mat truth = disc_mask(size, c, r);
  cv::fillConvexPoly(truth, poly, cv::Scalar(0));
  ASSERT_LT(cv::countNonZero(truth), cv::countNonZero(disc_mask(size, c, r)) - 300);  // the notch is real
  expect_fov(img, truth, c, r);                                                       // the circle ignores the notch
}

TEST(Fov, OffCentreField) {
  cv::Size size(420, 300);
  cv::Point2d c(140.5, 170);
  double r = 110;
  expect_fov(synthetic_field(size, c, r, 1.0, 4), disc_mask(size, c, r), c, r);
}

TEST(Fov, FieldClippedAtTopAndBottom) {
  // Like rahim-dr: the circle is wider than the image is tall.
  cv::Size size(512, 342);
  cv::Point2d c(256, 171);
  double r = 186;
  cv::Mat img = synthetic_field(size, c, r, 1.0, 5);
  expect_fov(img, disc_mask(size, c, r), c, r);
  FovResult f = detect_fov(img);
  EXPECT_EQ(f.bbox.y, 0);
  EXPECT_EQ(f.bbox.height, 342);
  EXPECT_GT(f.radius, 342 / 2.0 + 10);  // radius from the side arcs, not from the clipped height
}

TEST(Fov, TextLabelsInCornersAreIgnored) {
  cv::Size size(480, 360);
  cv::Point2d c(250, 185);
  double r = 150;
  cv::Mat img = synthetic_field(size, c, r, 0.8, 6);
  cv::putText(img, "OD 2021-03-04", cv::Point(4, 20), cv::FONT_HERSHEY_SIMPLEX, 0.55, cv::Scalar::all(255), 2);
  cv::putText(img, "ID 00417", cv::Point(360, 350), cv::FONT_HERSHEY_SIMPLEX, 0.5, cv::Scalar::all(230), 2);
  cv::rectangle(img, cv::Rect(440, 4, 30, 18), cv::Scalar::all(255), cv::FILLED);  // a logo
  expect_fov(img, disc_mask(size, c, r), c, r);
  FovResult f = detect_fov(img);
  EXPECT_GE(f.bbox.y, 30);        // above: text rows excluded
  EXPECT_LE(f.bbox.br().x, 405);  // right: logo and text excluded
}

TEST(Fov, LargeImageUsesDownscaledDetectionAccurately) {
  cv::Size size(1600, 1100);
  cv::Point2d c(801.3, 548.7);
  double r = 530;
  expect_fov(synthetic_field(size, c, r, 1.0, 8), disc_mask(size, c, r), c, r, 0.005);
}

TEST(Fov, CoarseMaskAgreesWithTheFullOne) {
  cv::Size size(1601, 1103);  // not a multiple of the step: the remainder must still be covered
  cv::Point2d c(820, 560);
  double r = 540;  // clipped at the bottom
  cv::Mat img = synthetic_field(size, c, r, 1.0, 9);
  FovResult full = detect_fov(img), coarse = detect_fov(img, FovOptions{}, false);
  ASSERT_TRUE(coarse.found);
  EXPECT_EQ(full.mask_step, 1);
  EXPECT_EQ(coarse.mask_step, 4);  // ceil(1601 / 512)
  EXPECT_EQ(coarse.mask.size(), cv::Size(400, 275));
  EXPECT_EQ(coarse.center, full.center);
  EXPECT_EQ(coarse.radius, full.radius);
  EXPECT_NEAR(coarse.bbox.x, full.bbox.x, 4);
  EXPECT_NEAR(coarse.bbox.width, full.bbox.width, 8);
  EXPECT_EQ(coarse.bbox.br().y, 1103);  // touches the bottom edge like the full box
  EXPECT_EQ(full.bbox.br().y, 1103);
  cv::Mat up;
  cv::resize(coarse.mask, up, cv::Size(1600, 1100), 0, 0, cv::INTER_NEAREST);
  EXPECT_GT(iou(up, full.mask(cv::Rect(0, 0, 1600, 1100))), 0.98);
}

TEST(Fov, GreyImageInput) {
  cv::Size size(300, 300);
  cv::Point2d c(150, 150);
  cv::Mat rgb = synthetic_field(size, c, 120), grey;
  cv::cvtColor(rgb, grey, cv::COLOR_RGB2GRAY);
  expect_fov(grey, disc_mask(size, c, 120), c, 120);
}

TEST(Fov, BlackImageFallsBackToWholeImage) {
  cv::Mat black = cv::Mat::zeros(200, 300, CV_8UC3);
  FovResult f = detect_fov(black);
  EXPECT_FALSE(f.found);
  EXPECT_TRUE(f.no_field_of_view);
  EXPECT_NE(f.note.find("no field of view"), std::string::npos) << f.note;
  EXPECT_EQ(f.bbox, cv::Rect(0, 0, 300, 200));
  EXPECT_EQ(cv::countNonZero(f.mask), 300 * 200);
  EXPECT_DOUBLE_EQ(f.area_fraction, 1.0);
  EXPECT_DOUBLE_EQ(f.center.x, 150);
  EXPECT_DOUBLE_EQ(f.center.y, 100);
}

TEST(Fov, TinyBrightSpotIsNotAField) {
  cv::Mat img = cv::Mat::zeros(200, 300, CV_8UC3);
  cv::circle(img, {50, 50}, 12, cv::Scalar(200, 100, 50), cv::FILLED);  // 0.8% of the image
  FovResult f = detect_fov(img);
  EXPECT_FALSE(f.found);
  EXPECT_TRUE(f.no_field_of_view);
  EXPECT_NE(f.note.find("covers"), std::string::npos) << f.note;
}

TEST(Fov, ColourlessImageWithoutDarkSurroundHasNoField) {
  cv::Mat img(240, 320, CV_8UC3, cv::Scalar(120, 140, 160));
  cv::randu(img, cv::Scalar::all(80), cv::Scalar::all(200));
  FovResult f = detect_fov(img);
  EXPECT_FALSE(f.found);
  EXPECT_TRUE(f.no_field_of_view);
  EXPECT_NE(f.note.find("no dark surround, and the colours are not a retina's"), std::string::npos) << f.note;
  EXPECT_EQ(f.bbox, cv::Rect(0, 0, 320, 240));
}

// A photograph cropped inside the field: retina-coloured, no rim. It is used whole, not refused.
TEST(Fov, RetinaColouredImageWithoutDarkSurroundUsesTheWholeImage) {
  cv::Mat img(240, 320, CV_8UC3);
  cv::randu(img, cv::Scalar(150, 60, 20), cv::Scalar(230, 110, 50));
  FovResult f = detect_fov(img);
  EXPECT_FALSE(f.found);
  EXPECT_FALSE(f.no_field_of_view) << f.note;
  EXPECT_NE(f.note.find("no dark surround"), std::string::npos) << f.note;
  // With dark patches at the edges the region is no longer the whole image, and not a disc either.
  cv::rectangle(img, cv::Rect(0, 0, 60, 40), cv::Scalar::all(0), cv::FILLED);
  cv::rectangle(img, cv::Rect(260, 200, 60, 40), cv::Scalar::all(0), cv::FILLED);
  f = detect_fov(img);
  EXPECT_FALSE(f.found);
  EXPECT_FALSE(f.no_field_of_view) << f.note;
  EXPECT_EQ(f.bbox, cv::Rect(0, 0, 320, 240));
  // A red-free (grey) photograph with its disc is a field, whatever its colour.
  cv::Mat grey;
  cv::cvtColor(synthetic_field({300, 300}, {150, 150}, 120), grey, cv::COLOR_RGB2GRAY);
  cv::cvtColor(grey, grey, cv::COLOR_GRAY2RGB);
  EXPECT_TRUE(detect_fov(grey).found);
}

// A page of text: black strokes on paper of `paper` (RGB).
cv::Mat text_page(cv::Size size, cv::Scalar paper, uint64_t seed) {
  cv::Mat page(size, CV_8UC3, paper);
  Rng rng(seed);
  for (int y = 40; y < size.height - 30; y += 28) {
    std::string line;
    for (int k = 0; k < 40; ++k) line += rng.below(6) == 0 ? ' ' : char('a' + rng.below(26));
    cv::putText(page, line, {20, y}, cv::FONT_HERSHEY_SIMPLEX, 0.6, cv::Scalar::all(25), 1, cv::LINE_AA);
  }
  return page;
}

// Issue 9 item 3: inputs that are not fundus photographs have no field of view, with a reason.
TEST(Fov, NonFundusInputsHaveNoFieldOfView) {
  cv::Mat strip(10000, 2, CV_8UC3);
  cv::randu(strip, cv::Scalar::all(0), cv::Scalar::all(255));
  cv::Mat table(900, 1200, CV_8UC3, cv::Scalar(35, 30, 25));  // a page photographed on a dark desk
  text_page({600, 800}, cv::Scalar::all(235), 3).copyTo(table(cv::Rect(300, 50, 600, 800)));
  cv::Mat tilted(900, 1200, CV_8UC3, cv::Scalar::all(20));
  cv::fillConvexPoly(tilted, std::vector<cv::Point>{{350, 80}, {900, 140}, {860, 850}, {300, 800}},
                     cv::Scalar(240, 235, 230));
  for (int y = 150; y < 780; y += 30) cv::line(tilted, {380, y}, {840, y + 20}, cv::Scalar::all(40), 2);
  cv::Mat gradient(480, 640, CV_8UC3);
  for (int y = 0; y < 480; ++y) gradient.row(y).setTo(cv::Scalar::all(y * 255 / 479));
  // Discs of a retina's colour and shape but without any structure: drawn, or exposed/blurred to nothing.
  auto flat_disc = [](cv::Scalar rgb) {
    cv::Mat disc = cv::Mat::zeros(480, 640, CV_8UC3);
    cv::circle(disc, {320, 240}, 210, rgb, cv::FILLED, cv::LINE_AA);
    return disc;
  };
  cv::Mat jpeg_disc;
  {
    std::vector<uchar> buf;
    cv::imencode(".jpg", flat_disc(cv::Scalar(200, 90, 30)), buf, {cv::IMWRITE_JPEG_QUALITY, 75});
    jpeg_disc = cv::imdecode(buf, cv::IMREAD_COLOR);
  }
  cv::Mat shaded(480, 640, CV_8UC3);  // retina-coloured, no rim, smooth shading only
  for (int y = 0; y < 480; ++y) shaded.row(y).setTo(cv::Scalar(200, 90, 30) * (0.75 + 0.25 * y / 479.0));
  cv::Mat washed_out;
  cv::GaussianBlur(synthetic_field({640, 480}, {320, 240}, 210), washed_out, cv::Size(), 60);
  washed_out.setTo(cv::Scalar::all(0), ~disc_mask({640, 480}, {320, 240}, 210));
  const std::vector<std::tuple<std::string, cv::Mat, std::string>> cases = {
      {"black", cv::Mat::zeros(480, 640, CV_8UC3), "practically uniform: brightness 0 to 0"},
      {"white", cv::Mat(480, 640, CV_8UC3, cv::Scalar::all(255)), "practically uniform: brightness 255 to 255"},
      {"grey", cv::Mat(480, 640, CV_8UC3, cv::Scalar::all(128)), "practically uniform"},
      {"1x1", cv::Mat(1, 1, CV_8UC3, cv::Scalar(200, 90, 40)), "an image of 1x1 pixels is too small"},
      {"2x10000", strip, "an image of 2x10000 pixels is too small"},
      {"1000x20", cv::Mat(20, 1000, CV_8UC3, cv::Scalar(200, 90, 40)), "too elongated"},
      {"text page", text_page({800, 1000}, cv::Scalar::all(245), 1),
       "no dark surround, and the colours are not a retina's"},
      {"yellowish page", text_page({800, 1000}, cv::Scalar(240, 215, 170), 2), "the colours are not a retina's"},
      {"page on a desk", table, "not a disc"},
      {"tilted page", tilted, "not a disc"},
      {"gradient", gradient, "not a disc"},
      {"flat orange disc", flat_disc(cv::Scalar(200, 90, 30)), "the field is featureless"},
      {"flat dark disc", flat_disc(cv::Scalar(25, 12, 5)), "the field is featureless"},
      {"flat white disc", flat_disc(cv::Scalar::all(255)), "the field is featureless"},
      {"flat disc through JPEG", jpeg_disc, "the field is featureless"},
      {"field blurred to nothing", washed_out, "the field is featureless"},
      {"shaded retina-coloured image", shaded, "the field is featureless"},
  };
  for (const auto& [what, img, reason] : cases) {
    FovResult f = detect_fov(img);
    EXPECT_TRUE(f.no_field_of_view) << what << ": " << f.note;
    EXPECT_FALSE(f.found) << what;
    EXPECT_NE(f.note.find("no field of view found ("), std::string::npos) << what << ": " << f.note;
    EXPECT_NE(f.note.find(reason), std::string::npos) << what << ": " << f.note;
    EXPECT_EQ(f.bbox, cv::Rect(0, 0, img.cols, img.rows)) << what;
  }
}

// The other side of the same decision: no real or synthetic photograph is refused. Every image of the
// shared sets through the real path (file -> preprocess), and `fundus synth` images of every size.
TEST(Fov, NoPhotographIsRefused) {
  std::vector<std::string> paths;
  for (const char* name : {"rahim-dr", "rahim-dr-tiny"}) {
    std::string dir = test::shared_dataset(name);
    if (dir.empty()) continue;
    CsvTable labels = read_csv(dir + "/labels.csv");
    size_t col = labels.require_column("image");
    for (const CsvRow& row : labels.rows) paths.push_back(dir + "/images/" + labels.field(row, col));
  }
  std::vector<std::string> refused(paths.size());
  parallel_for(int64_t(paths.size()), 2, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      PreprocessResult r = preprocess_fundus_file(paths[size_t(i)], PreprocessOptions{});  // throws when refused
      if (!r.fov.found) refused[size_t(i)] = r.fov.note;
    }
  });
  for (size_t i = 0; i < paths.size(); ++i) EXPECT_EQ(refused[i], "") << paths[i];
  if (!paths.empty()) {
    EXPECT_EQ(paths.size(), 356u + 25u);
  }

  test::TempDir tmp;
  for (int size : {64, 96, 160, 512}) {
    SynthOptions o;
    o.count = size == 512 ? 10 : 40;
    o.size = size;
    o.seed = uint64_t(size);
    o.out_dir = tmp.file("s" + std::to_string(size));
    o.threads = 2;
    SynthDatasetResult r = generate_synthetic_dataset(o);
    for (const SynthDatasetRow& row : r.rows) {
      const std::string path = join_path(o.out_dir, "images/" + row.entry.id + ".jpg");
      FovResult f = preprocess_fundus_file(path, PreprocessOptions{}).fov;
      EXPECT_TRUE(f.found) << path << ": " << f.note;
    }
  }
  if (paths.empty()) GTEST_SKIP() << "shared datasets absent: only synthetic photographs were checked";
}

// The detail check refuses blank discs (above) but no photograph: vessels survive defocus by 2% of
// the radius, shrinking to 48 px and a 5x underexposure. Checked on synthetic fields and, when the
// shared set is here, on the real rahim-dr-tiny photographs.
TEST(Fov, DefocusedSmallAndDarkPhotographsKeepTheirField) {
  std::vector<std::pair<std::string, cv::Mat>> photos;
  for (int i = 0; i < 3; ++i)
    photos.emplace_back("synthetic " + std::to_string(i),
                        synthetic_field({400, 300}, {200, 150}, 125 + 5 * i, 1.0, uint64_t(7 + i)));
  const std::string dir = test::shared_dataset("rahim-dr-tiny");
  if (!dir.empty()) {
    CsvTable labels = read_csv(dir + "/labels.csv");
    const size_t col = labels.require_column("image");
    for (const CsvRow& row : labels.rows) {
      const std::string path = dir + "/images/" + labels.field(row, col);
      photos.emplace_back(path, decode_image_rgb(path));
    }
  }
  for (const auto& [name, photo] : photos) {
    SCOPED_TRACE(name);
    const FovResult plain = detect_fov(photo);
    ASSERT_TRUE(plain.found) << plain.note;
    EXPECT_GT(plain.detail, 0.012);
    cv::Mat defocused, small, dark;
    cv::GaussianBlur(photo, defocused, cv::Size(), 0.02 * plain.radius);
    const double shrink = 48.0 / std::max(photo.cols, photo.rows);
    cv::resize(photo, small, cv::Size(), shrink, shrink, cv::INTER_AREA);
    photo.convertTo(dark, -1, 0.2);
    for (const auto& [what, img] :
         {std::pair<const char*, cv::Mat>{"defocused", defocused}, {"48 px", small}, {"underexposed", dark}}) {
      const FovResult f = detect_fov(img);
      EXPECT_TRUE(f.found) << what << ": " << f.note;
      EXPECT_GT(f.detail, 2 * FovOptions{}.min_detail) << what;
    }
  }
  if (dir.empty()) GTEST_SKIP() << "rahim-dr-tiny absent: only synthetic fields were checked";
}

TEST(Fov, RejectsWrongImageTypes) {
  EXPECT_THROW(detect_fov(cv::Mat()), Error);
  EXPECT_THROW(detect_fov(cv::Mat::zeros(10, 10, CV_32FC3)), Error);
}

TEST(Fov, RealTinyImagesCropToTheRetina) {
  FUNDUS_REQUIRE_SHARED_DATASET(dir, "rahim-dr-tiny");
  CsvTable labels = read_csv(dir + "/labels.csv");
  size_t col = labels.require_column("image");
  ASSERT_EQ(labels.rows.size(), 25u);
  for (const CsvRow& row : labels.rows) {
    std::string path = dir + "/images/" + labels.field(row, col);
    SCOPED_TRACE(path);
    cv::Mat img = decode_image_rgb(path);
    FovResult f = detect_fov(img);
    ASSERT_TRUE(f.found) << f.note;
    // These fields are clipped at the top and bottom (the retina is ~1.18x the image height): the box
    // spans the fitted diameter horizontally and the whole height vertically.
    EXPECT_NEAR(f.bbox.width, 2 * f.radius, 0.03 * 2 * f.radius);
    EXPECT_NEAR(f.bbox.height, std::min(double(img.rows), 2 * f.radius), 0.03 * 2 * f.radius);
    EXPECT_NEAR(f.center.x, f.bbox.x + f.bbox.width / 2.0, 2.0);
    // Bright pixels (the retina) lie inside the crop, and the crop is mostly retina.
    cv::Mat ch[3], level, bright;
    cv::split(img, ch);
    cv::max(ch[0], ch[1], level);
    cv::max(level, ch[2], level);
    bright = level > 40;
    double inside = cv::countNonZero(bright(f.bbox)) / double(cv::countNonZero(bright));
    EXPECT_GT(inside, 0.95);
    EXPECT_GT(cv::countNonZero(bright(f.bbox)) / double(f.bbox.area()), 0.8);
    EXPECT_GT(f.radius, 0.45 * img.rows);
    EXPECT_LT(f.radius, 0.75 * img.rows);
  }
}

}  // namespace
}  // namespace fundus
