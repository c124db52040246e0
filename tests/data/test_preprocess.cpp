// Fundus preprocessing: geometry of crop/pad/resize, reduced decoding against full decoding + INTER_AREA,
// Ben Graham statistics, the circular mask, options (JSON, validation, cache key) and errors.
#include <cmath>

#include <gtest/gtest.h>
#include <opencv2/imgproc.hpp>

#include "fundus/core/io.h"
#include "fundus/data/image_io.h"
#include "fundus/data/preprocess.h"
#include "fundus/data/synth.h"
#include "test_preprocess_fixtures.h"
#include "test_support.h"

namespace fundus {
namespace {

using test::disc_mask;
using test::error_of;
using test::mean_abs_diff;
using test::synthetic_field;

PreprocessOptions opts(int size, bool mask = true) {
  PreprocessOptions o;
  o.size = size;
  o.mask = mask;
  return o;
}

TEST(Preprocess, CropsPadsAndCentresTheField) {
  cv::Size size(420, 300);
  cv::Point2d c(140.5, 170);  // off-centre
  double r = 110;
  PreprocessResult p = preprocess_fundus(synthetic_field(size, c, r), opts(128));
  ASSERT_EQ(p.image.type(), CV_8UC3);
  ASSERT_EQ(p.image.size(), cv::Size(128, 128));
  EXPECT_EQ(p.reduce, 1);
  EXPECT_EQ(p.original_size, size);
  ASSERT_TRUE(p.fov.found);
  // The field now fills the square: centre in the middle, radius half the side.
  EXPECT_NEAR(p.out_center.x, 64, 1.0);
  EXPECT_NEAR(p.out_center.y, 64, 1.0);
  EXPECT_NEAR(p.out_radius, 64, 1.5);
  FovResult again = detect_fov(p.image);
  ASSERT_TRUE(again.found);
  EXPECT_NEAR(again.center.x, 64, 1.5);
  EXPECT_NEAR(again.radius, 64, 2.0);
  // Corners are black, the centre is retina.
  EXPECT_EQ(p.image.at<cv::Vec3b>(0, 0), cv::Vec3b(0, 0, 0));
  EXPECT_GT(p.image.at<cv::Vec3b>(64, 64)[0], 100);
}

TEST(Preprocess, ClippedFieldIsPaddedSymmetrically) {
  cv::Size size(512, 342);
  cv::Point2d c(256, 171);
  PreprocessResult p = preprocess_fundus(synthetic_field(size, c, 186), opts(186));
  ASSERT_EQ(p.image.size(), cv::Size(186, 186));
  // bbox 372 x 342 -> 186 x 171 centred: 7 black rows above, 8 below.
  cv::Mat row_sum;
  cv::reduce(p.image.reshape(1, p.image.rows), row_sum, 1, cv::REDUCE_MAX);
  EXPECT_EQ(row_sum.at<uint8_t>(6), 0);
  EXPECT_GT(row_sum.at<uint8_t>(8), 50);
  EXPECT_GT(row_sum.at<uint8_t>(177), 50);
  EXPECT_EQ(row_sum.at<uint8_t>(179), 0);
}

TEST(Preprocess, WithoutCropTheWholeImageIsPadded) {
  cv::Mat img = synthetic_field({200, 100}, {100, 50}, 45);
  PreprocessOptions o = opts(100, false);
  o.crop_fov = false;
  PreprocessResult p = preprocess_fundus(img, o);
  cv::Mat expect = cv::Mat::zeros(100, 100, CV_8UC3), half;
  cv::resize(img, half, {100, 50}, 0, 0, cv::INTER_AREA);
  half.copyTo(expect(cv::Rect(0, 25, 100, 50)));
  EXPECT_TRUE(test::same_bytes(p.image, expect));
}

TEST(Preprocess, MaskZeroesOutsideTheCircleOnly) {
  cv::Mat img = synthetic_field({300, 300}, {150, 150}, 120);
  // A bright square ring outside the retina that survives cropping without the mask.
  cv::rectangle(img, cv::Rect(28, 28, 244, 244), cv::Scalar(90, 90, 90), 1);
  PreprocessOptions o = opts(128, false);
  o.fov.min_area_fraction = 0.05;
  PreprocessResult plain = preprocess_fundus(img, o);
  o.mask = true;
  o.mask_radius = 0.8;
  PreprocessResult masked = preprocess_fundus(img, o);
  ASSERT_TRUE(masked.fov.found);
  double r = masked.out_radius * 0.8;
  int outside_nonzero = 0, inside_changed = 0, inside = 0;
  for (int y = 0; y < 128; ++y)
    for (int x = 0; x < 128; ++x) {
      double d = std::hypot(x + 0.5 - masked.out_center.x, y + 0.5 - masked.out_center.y);
      cv::Vec3b m = masked.image.at<cv::Vec3b>(y, x);
      if (d > r + 1) outside_nonzero += m != cv::Vec3b(0, 0, 0);
      if (d < r - 1) {
        ++inside;
        inside_changed += m != plain.image.at<cv::Vec3b>(y, x);
      }
    }
  EXPECT_EQ(outside_nonzero, 0);
  EXPECT_EQ(inside_changed, 0);
  EXPECT_GT(inside, 0.6 * CV_PI * r * r);
  // The unmasked image does have content in the ring 0.8r..r.
  EXPECT_GT(cv::countNonZero(plain.image.reshape(1) != masked.image.reshape(1)), 1000);
}

TEST(Preprocess, NoFieldFoundMeansNoMask) {
  // Retina-coloured texture filling the image: a photograph cropped inside the field.
  cv::Mat img(120, 160, CV_8UC3);
  cv::randu(img, cv::Scalar(150, 60, 20), cv::Scalar(230, 110, 50));
  PreprocessResult p = preprocess_fundus(img, opts(64, true));
  EXPECT_FALSE(p.fov.found);
  EXPECT_FALSE(p.fov.note.empty());
  // Whole image, letterboxed: 64 x 48 of content, nothing masked away.
  EXPECT_EQ(cv::countNonZero(p.image.reshape(1).colRange(0, 64 * 3).rowRange(8, 56) == 0), 0);
}

TEST(Preprocess, BenGrahamOfUniformImageIsMidGreyAndAmplifiesDetail) {
  cv::Mat flat(64, 64, CV_8UC3, cv::Scalar(100, 60, 30));
  PreprocessOptions o = opts(64, false);
  o.crop_fov = false;
  o.ben_graham = true;
  PreprocessResult p = preprocess_fundus(flat, o);
  EXPECT_EQ(cv::countNonZero(p.image.reshape(1) != 128), 0);  // 4 I - 4 I + 128

  // A 1-pixel dot of +10 on that flat field: out = 128 + 4 * 10 * (delta - w), w the weight of the
  // normalised Gaussian kernel (sigma = 64/30, OpenCV's float kernel size round(8 sigma + 1) | 1)
  // at that offset, computed here by hand from the separable 1-D kernel.
  cv::Mat dot = flat.clone();
  dot.at<cv::Vec3b>(32, 32) += cv::Vec3b(10, 10, 10);
  PreprocessResult q = preprocess_fundus(dot, o);
  double sigma = 64.0 / 30.0;
  int ksize = int(std::lround(sigma * 8 + 1)) | 1;
  double sum = 0;
  for (int i = -(ksize / 2); i <= ksize / 2; ++i) sum += std::exp(-i * i / (2 * sigma * sigma));
  auto w1 = [&](int i) { return std::exp(-i * i / (2 * sigma * sigma)) / sum; };
  for (int ch = 0; ch < 3; ++ch) {
    EXPECT_NEAR(q.image.at<cv::Vec3b>(32, 32)[ch], 128 + 40 * (1 - w1(0) * w1(0)), 0.51);
    EXPECT_NEAR(q.image.at<cv::Vec3b>(32, 33)[ch], 128 - 40 * w1(0) * w1(1), 0.51);  // darkened surround
    EXPECT_NEAR(q.image.at<cv::Vec3b>(30, 34)[ch], 128 - 40 * w1(2) * w1(2), 0.51);
  }
  EXPECT_EQ(q.image.at<cv::Vec3b>(2, 2)[0], 128);  // far away: unchanged mid grey
}

TEST(Preprocess, BenGrahamAveragesOverTheRetinaOnlySoTheEdgeHasNoRing) {
  // A uniform retina on black, clipped at top and bottom: a plain blur would mix in the black surround
  // and the padding, giving values far above 128 along the edges; averaging over the retina keeps 128.
  cv::Mat img = cv::Mat::zeros(300, 400, CV_8UC3);
  img.setTo(cv::Scalar(150, 80, 40), test::disc_mask(img.size(), {200, 150}, 170));
  PreprocessOptions o = opts(128);
  o.fov.min_detail = 0;  // a featureless field is refused by default; here it is the point
  o.ben_graham = true;
  PreprocessResult p = preprocess_fundus(img, o);
  ASSERT_TRUE(p.fov.found);
  cv::Mat grey;
  cv::extractChannel(p.image, grey, 1);
  // Away from the outermost 2 px (blended with black by the resize), every retina pixel is 128 +- 1.
  cv::Mat core;
  cv::erode(grey > 0, core, cv::getStructuringElement(cv::MORPH_ELLIPSE, cv::Size(5, 5)), cv::Point(-1, -1), 1,
            cv::BORDER_CONSTANT, cv::Scalar(0));
  ASSERT_GT(cv::countNonZero(core), 0.6 * 128 * 128);
  EXPECT_EQ(cv::countNonZero(core & ((grey < 127) | (grey > 129))), 0);
  // The classic formula on the same pixels does have the ring.
  PreprocessOptions plain = opts(128);
  plain.fov.min_detail = 0;
  cv::Mat f, blur;
  preprocess_fundus(img, plain).image.convertTo(f, CV_32F);
  cv::GaussianBlur(f, blur, cv::Size(0, 0), 128 / 30.0);
  cv::Mat classic;
  cv::addWeighted(f, 4.0, blur, -4.0, 128.0, classic, CV_8U);
  cv::extractChannel(classic, classic, 1);
  EXPECT_GT(cv::countNonZero(core & (classic > 140)), 300);
  // The padding rows of the clipped field are masked although they lie inside the circle.
  EXPECT_NEAR(p.out_radius, 64, 1);
  EXPECT_EQ(cv::countNonZero(grey.row(2)), 0);
  EXPECT_EQ(cv::countNonZero(grey.row(125)), 0);
}

TEST(Preprocess, BenGrahamStatisticsOnAFundus) {
  SynthCaseSpec spec;
  spec.size = 384;
  spec.grade = 3;
  SynthCase c = render_synthetic_fundus(spec);
  PreprocessOptions o = opts(256);
  PreprocessResult plain = preprocess_fundus(c.image, o);
  o.ben_graham = true;
  o.mask_radius = 0.9;
  PreprocessResult bg = preprocess_fundus(c.image, o);
  cv::Mat inner = disc_mask(bg.image.size(), bg.out_center, bg.out_radius * 0.75);
  cv::Scalar mean, stddev, plain_mean, plain_std;
  cv::meanStdDev(bg.image, mean, stddev, inner);
  cv::meanStdDev(plain.image, plain_mean, plain_std, inner);
  // Local average removed: every channel centres on 128 whatever its brightness in the photograph.
  for (int ch = 0; ch < 3; ++ch) {
    EXPECT_NEAR(mean[ch], 128, 12) << "channel " << ch;
    EXPECT_GT(stddev[ch], 2.0);
  }
  EXPECT_GT(std::abs(plain_mean[0] - plain_mean[2]), 40);  // the photograph itself is far from grey
  // Black outside 0.9 r.
  cv::Mat outer = ~disc_mask(bg.image.size(), bg.out_center, bg.out_radius * 0.9 + 1);
  cv::Mat max_ch;
  cv::extractChannel(bg.image, max_ch, 0);
  EXPECT_EQ(cv::countNonZero(max_ch & outer), 0);
}

TEST(Preprocess, ReducedDecodeMatchesFullDecodeWithInterArea) {
  test::TempDir dir;
  SynthCaseSpec spec;
  spec.size = 1024;
  spec.grade = 2;
  std::string path = dir.file("big.jpg");
  write_image_rgb(path, render_synthetic_fundus(spec).image, 95);
  for (int reduce : {2, 4}) {
    SCOPED_TRACE("reduce " + std::to_string(reduce));
    cv::Mat reduced = decode_image_rgb(path, reduce), full = decode_image_rgb(path, 1), area;
    ASSERT_EQ(reduced.size(), cv::Size(1024 / reduce, 1024 / reduce));
    cv::resize(full, area, reduced.size(), 0, 0, cv::INTER_AREA);
    EXPECT_LT(mean_abs_diff(reduced, area), 1.5);
  }
  // End to end: 1024 -> 128 decodes at 1/4 and stays within a small tolerance of full decoding.
  PreprocessOptions o = opts(128);
  PreprocessResult fast = preprocess_fundus_file(path, o);
  EXPECT_EQ(fast.reduce, 4);
  EXPECT_EQ(fast.original_size, cv::Size(1024, 1024));
  EXPECT_EQ(fast.decoded.size(), cv::Size(256, 256));
  o.reduced_decode = false;
  PreprocessResult slow = preprocess_fundus_file(path, o);
  EXPECT_EQ(slow.reduce, 1);
  EXPECT_LT(mean_abs_diff(fast.image, slow.image), 2.0);
  EXPECT_GT(mean_abs_diff(fast.image, slow.image), 0.0);  // it really took the other path
  // A smaller oversampling margin decodes smaller still: 1024 / 8 = 128 >= 1.0 x 128.
  o.reduced_decode = true;
  o.decode_oversample = 1.0;
  EXPECT_EQ(preprocess_fundus_file(path, o).reduce, 8);
  // The FOV reported in original coordinates agrees between the two.
  Json a = fov_to_json(fast), b = fov_to_json(slow);
  EXPECT_NEAR(a["center"][0].get<double>(), b["center"][0].get<double>(), 4.0);
  EXPECT_NEAR(a["radius"].get<double>(), b["radius"].get<double>(), 4.0);
  EXPECT_EQ(a["width"], 1024);
  EXPECT_EQ(a["reduce"], 4);
}

TEST(Preprocess, FileBytesAndMemoryGiveTheSameImage) {
  test::TempDir dir;
  cv::Mat img = synthetic_field({200, 160}, {100, 80}, 70);
  write_image_rgb(dir.file("a.png"), img.clone());  // clone: write_image_rgb swaps channels of its argument in place
  PreprocessOptions o = opts(64);
  PreprocessResult from_file = preprocess_fundus_file(dir.file("a.png"), o);
  PreprocessResult from_mem = preprocess_fundus(img, o);
  EXPECT_TRUE(test::same_bytes(from_file.image, from_mem.image));
}

TEST(Preprocess, RealImageAt256) {
  FUNDUS_REQUIRE_SHARED_DATASET(dir, "rahim-dr");
  PreprocessResult p = preprocess_fundus_file(dir + "/images/Patient002_L.jpg", opts(256));
  EXPECT_EQ(p.original_size, cv::Size(1024, 685));
  EXPECT_EQ(p.reduce, 1);  // 685 / 2 < 2 * 256: no DCT reduction at this size
  ASSERT_TRUE(p.fov.found);
  EXPECT_NEAR(p.out_center.x, 128, 2);
  EXPECT_NEAR(p.out_center.y, 128, 2);
  EXPECT_NEAR(p.out_radius, 128, 3);
  PreprocessResult small = preprocess_fundus_file(dir + "/images/Patient002_L.jpg", opts(128));
  EXPECT_EQ(small.reduce, 2);
  EXPECT_NEAR(small.out_radius, 64, 2);
  // 1.25x oversampling decodes these at half size for 256 px, nearly indistinguishable.
  PreprocessOptions fast = opts(256);
  fast.decode_oversample = 1.25;
  PreprocessResult half = preprocess_fundus_file(dir + "/images/Patient002_L.jpg", fast);
  EXPECT_EQ(half.reduce, 2);
  EXPECT_LT(mean_abs_diff(half.image, p.image), 1.0);
}

TEST(PreprocessOptions, JsonRoundTripAndValidation) {
  PreprocessOptions o;
  o.size = 512;
  o.ben_graham = true;
  o.mask_radius = 0.9;
  o.fov.min_contrast = 12;
  o.decode_oversample = 1.5;
  PreprocessOptions back = PreprocessOptions::from_json(o.to_json());
  EXPECT_EQ(back.to_json(), o.to_json());
  EXPECT_EQ(back.cache_key(), o.cache_key());
  // Absent keys take defaults.
  PreprocessOptions partial = PreprocessOptions::from_json(Json{{"size", 224}});
  EXPECT_EQ(partial.size, 224);
  EXPECT_TRUE(partial.mask);
  EXPECT_NE(error_of([] {
              PreprocessOptions::from_json(Json{{"sise", 224}});
            }).find("unknown key 'sise'"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              PreprocessOptions::from_json(Json{{"size", 8}});
            }).find("preprocess.size"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              PreprocessOptions::from_json(Json{{"mask_radius", 0}});
            }).find("preprocess.mask_radius"),
            std::string::npos);
  EXPECT_THROW(PreprocessOptions::from_json(Json{{"size", "big"}}), std::exception);
}

TEST(PreprocessOptions, CacheKeyNamesExactlyWhatChangesPixels) {
  PreprocessOptions a;
  EXPECT_EQ(a.cache_key(), PreprocessOptions().cache_key());
  EXPECT_NE(a.cache_key().find("size=256"), std::string::npos);
  PreprocessOptions b = a;
  b.size = 224;
  EXPECT_NE(a.cache_key(), b.cache_key());
  b = a;
  b.ben_graham = true;
  EXPECT_NE(a.cache_key(), b.cache_key());
  b = a;
  b.ben_graham_sigma = 0.05;  // irrelevant while Ben Graham is off
  EXPECT_EQ(a.cache_key(), b.cache_key());
  b.ben_graham = true;
  PreprocessOptions c = b;
  c.ben_graham_sigma = 0.04;
  EXPECT_NE(b.cache_key(), c.cache_key());
  b = a;
  b.decode_oversample = 1.25;
  EXPECT_NE(a.cache_key(), b.cache_key());
  b.reduced_decode = false;  // irrelevant without reduced decoding
  PreprocessOptions c2 = a;
  c2.reduced_decode = false;
  EXPECT_EQ(b.cache_key(), c2.cache_key());
  b = a;
  b.mask_radius = 0.95;
  EXPECT_NE(a.cache_key(), b.cache_key());
  b = a;
  b.fov.threshold_fraction = 0.2;
  EXPECT_NE(a.cache_key(), b.cache_key());
}

TEST(Preprocess, ErrorsNameTheFile) {
  test::TempDir dir;
  EXPECT_NE(error_of([&] {
              preprocess_fundus_file(dir.file("missing.jpg"), opts(64));
            }).find("missing.jpg: image file not found"),
            std::string::npos);
  write_image_rgb(dir.file("cut.jpg"), synthetic_field({200, 160}, {100, 80}, 70));
  std::string bytes = read_file(dir.file("cut.jpg"));
  write_file_atomic(dir.file("cut.jpg"), bytes.substr(0, bytes.size() / 2));
  std::string msg = error_of([&] { preprocess_fundus_file(dir.file("cut.jpg"), opts(64)); });
  EXPECT_NE(msg.find("cut.jpg: truncated JPEG"), std::string::npos) << msg;
  write_file_atomic(dir.file("text.jpg"), "hello, not an image");
  msg = error_of([&] { preprocess_fundus_file(dir.file("text.jpg"), opts(64)); });
  EXPECT_NE(msg.find("text.jpg"), std::string::npos) << msg;
  EXPECT_THROW(preprocess_fundus(cv::Mat(), opts(64)), Error);
}

TEST(Preprocess, ComparisonImageHasBothHalves) {
  cv::Mat img = synthetic_field({300, 200}, {150, 100}, 90);
  PreprocessResult p = preprocess_fundus(img, opts(100));
  cv::Mat cmp = preprocess_comparison(p);
  EXPECT_EQ(cmp.rows, 100);
  EXPECT_EQ(cmp.cols, 150 + 4 + 100);
  EXPECT_TRUE(test::same_bytes(cmp(cv::Rect(154, 0, 100, 100)), p.image));
}

}  // namespace
}  // namespace fundus
