// Augmentation: determinism per seed, exact geometry (identity, quarter turns, flips), photometric
// values computed by hand, the black surround, parameter ranges and options.
#include <cmath>

#include <gtest/gtest.h>
#include <opencv2/imgproc.hpp>

#include "fundus/data/augment.h"
#include "test_preprocess_fixtures.h"

namespace fundus {
namespace {

using test::error_of;
using test::same_bytes;

cv::Mat field(int size = 96, uint64_t seed = 3) {
  return test::synthetic_field({size, size}, {size / 2.0, size / 2.0}, size * 0.45, 1.0, seed);
}

TEST(Augment, SameSeedSameBytesOtherSeedOtherBytes) {
  cv::Mat img = field();
  AugmentOptions o;
  Rng a(42), b(42), c(43);
  cv::Mat x = augment_image(img, o, a), y = augment_image(img, o, b), z = augment_image(img, o, c);
  EXPECT_TRUE(same_bytes(x, y));
  EXPECT_FALSE(same_bytes(x, z));
  EXPECT_FALSE(same_bytes(x, img));
  // The generators advanced identically: the next draws agree too.
  EXPECT_TRUE(same_bytes(augment_image(img, o, a), augment_image(img, o, b)));
}

TEST(Augment, SamplingConsumesSevenNumbersWhateverTheOptions) {
  for (AugmentOptions o : {AugmentOptions(), AugmentOptions::none()}) {
    Rng rng(9), ref(9);
    sample_augment(o, rng);
    for (int i = 0; i < 7; ++i) ref.next_u64();
    EXPECT_EQ(rng.state(), ref.state());
  }
  Rng rng(1);
  EXPECT_TRUE(sample_augment(AugmentOptions::none(), rng).is_identity());
}

TEST(Augment, IdentityParamsReturnAnEqualCopy) {
  cv::Mat img = field();
  cv::Mat out = apply_augment(img, AugmentParams{});
  EXPECT_TRUE(same_bytes(out, img));
  EXPECT_NE(out.data, img.data);
}

TEST(Augment, QuarterTurnsAndFlipsAreExact) {
  cv::Mat img = field(64);
  AugmentParams p;
  p.angle_deg = 90;  // counter-clockwise
  cv::Mat expect;
  cv::rotate(img, expect, cv::ROTATE_90_COUNTERCLOCKWISE);
  EXPECT_LE(cv::norm(apply_augment(img, p), expect, cv::NORM_INF), 1.0);
  p.angle_deg = 180;
  cv::rotate(img, expect, cv::ROTATE_180);
  EXPECT_LE(cv::norm(apply_augment(img, p), expect, cv::NORM_INF), 1.0);
  AugmentParams h;
  h.hflip = true;
  cv::flip(img, expect, 1);
  EXPECT_TRUE(same_bytes(apply_augment(img, h), expect));
  h.vflip = true;
  cv::flip(img, expect, -1);
  EXPECT_TRUE(same_bytes(apply_augment(img, h), expect));
}

TEST(Augment, ScaleShrinksTheFieldAboutTheCentre) {
  cv::Mat img = cv::Mat::zeros(101, 101, CV_8UC3);
  cv::circle(img, {50, 50}, 40, cv::Scalar(200, 100, 50), cv::FILLED);
  AugmentParams p;
  p.scale = 0.5;
  cv::Mat out = apply_augment(img, p);
  cv::Mat ch;
  cv::extractChannel(out, ch, 0);
  cv::Rect box = cv::boundingRect(ch > 100);
  EXPECT_NEAR(box.width, 41, 2);
  EXPECT_NEAR(box.x + box.width / 2.0, 50.5, 1.0);
  EXPECT_NEAR(cv::countNonZero(ch > 100), CV_PI * 20 * 20, 60);
}

TEST(Augment, RotationKeepsTheSurroundBlack) {
  cv::Mat img = field(96);
  img.setTo(cv::Scalar::all(0), ~test::disc_mask(img.size(), {48, 48}, 96 * 0.45));  // as preprocessing masks it
  AugmentParams p;
  p.angle_deg = 37;
  p.brightness = 1.3;
  p.contrast = 0.8;
  p.gamma = 0.7;
  cv::Mat out = apply_augment(img, p);
  cv::Mat outside = ~test::disc_mask(img.size(), {48, 48}, 96 * 0.45 + 1.5);
  cv::Mat grey;
  cv::cvtColor(out, grey, cv::COLOR_RGB2GRAY);
  EXPECT_EQ(cv::countNonZero(grey & outside), 0);
}

TEST(Augment, PhotometricValuesByHand) {
  // FOV with two levels 80 and 120 (mean m = 100/255) on black.
  cv::Mat img = cv::Mat::zeros(10, 10, CV_8UC3);
  img(cv::Rect(2, 2, 3, 6)).setTo(cv::Scalar::all(80));
  img(cv::Rect(5, 2, 3, 6)).setTo(cv::Scalar::all(120));
  auto value = [](const cv::Mat& m, int x) { return int(m.at<cv::Vec3b>(4, x)[1]); };
  AugmentParams p;
  p.brightness = 1.2;  // 80 -> 96, 120 -> 144
  cv::Mat b = apply_augment(img, p);
  EXPECT_EQ(value(b, 3), 96);
  EXPECT_EQ(value(b, 6), 144);
  EXPECT_EQ(value(b, 0), 0);
  p = AugmentParams{};
  p.contrast = 1.5;  // about the mean 100: 80 -> 70, 120 -> 130
  cv::Mat c = apply_augment(img, p);
  EXPECT_EQ(value(c, 3), 70);
  EXPECT_EQ(value(c, 6), 130);
  EXPECT_EQ(value(c, 9), 0);
  p = AugmentParams{};
  p.gamma = 2.0;  // 255 (v/255)^2: 80 -> 25.1, 120 -> 56.5
  cv::Mat g = apply_augment(img, p);
  EXPECT_EQ(value(g, 3), 25);
  EXPECT_EQ(value(g, 6), 56);
  p.gamma = 1.0;
  p.brightness = 3.0;  // saturates
  EXPECT_EQ(value(apply_augment(img, p), 6), 255);
}

TEST(Augment, SampledParametersStayInRange) {
  AugmentOptions o;
  o.rotation_deg = 30;
  o.scale = 0.1;
  o.gamma = 0.25;
  o.hflip = 0.5;
  Rng rng(5);
  double angle_sum = 0;
  int flips = 0;
  const int n = 4000;
  for (int i = 0; i < n; ++i) {
    AugmentParams p = sample_augment(o, rng);
    ASSERT_LE(std::abs(p.angle_deg), 30);
    ASSERT_GE(p.scale, 0.9);
    ASSERT_LE(p.scale, 1.1);
    ASSERT_GE(p.gamma, 1 / 1.25 - 1e-12);
    ASSERT_LE(p.gamma, 1.25 + 1e-12);
    ASSERT_FALSE(p.vflip);
    angle_sum += p.angle_deg;
    flips += p.hflip;
  }
  EXPECT_NEAR(angle_sum / n, 0, 1.5);
  EXPECT_NEAR(flips / double(n), 0.5, 0.03);
}

TEST(AugmentOptions, JsonRoundTripAndValidation) {
  AugmentOptions o;
  o.rotation_deg = 45;
  o.vflip = 0.5;
  AugmentOptions back = AugmentOptions::from_json(o.to_json());
  EXPECT_EQ(back.to_json(), o.to_json());
  EXPECT_DOUBLE_EQ(AugmentOptions::from_json(Json::object()).rotation_deg, 180);
  EXPECT_NE(error_of([] {
              AugmentOptions::from_json(Json{{"rotate", 10}});
            }).find("unknown key 'rotate'"),
            std::string::npos);
  EXPECT_NE(error_of([] { AugmentOptions::from_json(Json{{"hflip", 2}}); }).find("augment.hflip"), std::string::npos);
  EXPECT_NE(error_of([] {
              AugmentOptions::from_json(Json{{"scale", -0.1}});
            }).find("augment.scale"),
            std::string::npos);
  EXPECT_THROW(apply_augment(cv::Mat::zeros(4, 4, CV_8UC1), AugmentParams{}), Error);
}

}  // namespace
}  // namespace fundus
