// Synthetic fields of view with known geometry, and small on-disk datasets of them, for the
// preprocessing, cache, augmentation and loader tests.
#pragma once

#include <cmath>
#include <functional>
#include <string>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "fundus/core/case.h"
#include "fundus/core/error.h"
#include "fundus/core/io.h"
#include "fundus/core/rng.h"
#include "fundus/data/image_io.h"
#include "test_support.h"  // test::error_of

namespace fundus::test {

/// 255 where the pixel centre (x + 0.5, y + 0.5) lies within `r` of `c`.
inline cv::Mat disc_mask(cv::Size size, cv::Point2d c, double r) {
  cv::Mat m(size, CV_8UC1);
  for (int y = 0; y < size.height; ++y)
    for (int x = 0; x < size.width; ++x) m.at<uint8_t>(y, x) = std::hypot(x + 0.5 - c.x, y + 0.5 - c.y) <= r ? 255 : 0;
  return m;
}

/// A fundus-like RGB image: an orange retina (vignetted, noisy, a few dark vessels) inside `disc`,
/// a nearly black noisy surround. `gain` scales the retina (0.15 gives a very dark photograph).
inline cv::Mat synthetic_field(cv::Size size, cv::Point2d c, double r, double gain = 1.0, uint64_t seed = 1) {
  Rng rng(seed);
  cv::Mat img(size, CV_8UC3);
  for (int y = 0; y < size.height; ++y)
    for (int x = 0; x < size.width; ++x) {
      double d = std::hypot(x + 0.5 - c.x, y + 0.5 - c.y) / r;
      cv::Vec3b& p = img.at<cv::Vec3b>(y, x);
      if (d <= 1.0) {
        double v = gain * (1.0 - 0.35 * d * d);
        double n = rng.uniform(-8, 8) * gain;
        p = cv::Vec3b(cv::saturate_cast<uint8_t>(210 * v + n), cv::saturate_cast<uint8_t>(105 * v + n / 2),
                      cv::saturate_cast<uint8_t>(45 * v + n / 4));
      } else {
        auto bg = uint8_t(rng.below(4));
        p = cv::Vec3b(bg, bg, bg);
      }
    }
  // Vessels: darker red arcs, clipped to the retina.
  cv::Mat vessels = cv::Mat::zeros(size, CV_8UC1);
  for (int k = 0; k < 4; ++k)
    cv::ellipse(vessels, cv::Point(int(c.x), int(c.y)), cv::Size(int(r * (0.3 + 0.15 * k)), int(r * (0.5 + 0.1 * k))),
                20.0 * k, 0, 300, cv::Scalar(255), std::max(1, int(r / 60)));
  vessels &= disc_mask(size, c, r);
  img.setTo(cv::Scalar(120 * gain, 30 * gain, 20 * gain), vessels);
  return img;
}

inline double iou(const cv::Mat& a, const cv::Mat& b) {
  double inter = cv::countNonZero(a & b), uni = cv::countNonZero(a | b);
  return uni > 0 ? inter / uni : 0.0;
}

inline double mean_abs_diff(const cv::Mat& a, const cv::Mat& b) {
  cv::Mat d;
  cv::absdiff(a, b, d);
  cv::Scalar s = cv::mean(d);
  return (s[0] + s[1] + s[2]) / 3.0;
}

inline bool same_bytes(const cv::Mat& a, const cv::Mat& b) {
  return a.size() == b.size() && a.type() == b.type() && cv::countNonZero(a.reshape(1) != b.reshape(1)) == 0;
}

/// A dataset of `n` synthetic JPEG fundus photographs (w x h, varying centre and radius), grade i % 5,
/// written under `dir`/images.
inline Dataset synthetic_dataset(const std::string& dir, int n, cv::Size size = {120, 96}) {
  Dataset d;
  d.source = dir;
  make_dirs(dir + "/images");
  for (int i = 0; i < n; ++i) {
    CaseRecord r;
    r.id = "case" + std::to_string(i);
    r.image_path = dir + "/images/" + r.id + ".jpg";
    r.grade = i % 5;
    r.patient = "p" + std::to_string(i / 2);
    cv::Point2d c(size.width / 2.0 + (i % 3 - 1) * 6, size.height / 2.0 + (i % 2) * 4);
    write_image_rgb(r.image_path,
                    synthetic_field(size, c, size.height * (0.42 + 0.02 * (i % 3)), 1.0, uint64_t(100 + i)));
    d.records.push_back(r);
  }
  return d;
}

}  // namespace fundus::test
