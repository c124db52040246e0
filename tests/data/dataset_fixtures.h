// Small real datasets on disk for the dataset reader/validator/split tests (data and CLI suites):
// real JPEG/PNG files written with OpenCV, CSVs written as text.
#pragma once

#include <cmath>
#include <string>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "fundus/core/io.h"
#include "fundus/data/image_io.h"

namespace fundus::test {

/// A w x h RGB fundus-like image: a textured orange disc (so that JPEG has real entropy data and the
/// field-of-view check finds a retina) on a nearly black surround; `seed` varies it.
inline cv::Mat fundus_like_image(int w, int h, int seed = 0) {
  cv::Mat img(h, w, CV_8UC3);
  const double r = 0.45 * std::min(w, h);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      img.at<cv::Vec3b>(y, x) = std::hypot(x + 0.5 - w / 2.0, y + 0.5 - h / 2.0) <= r
                                    ? cv::Vec3b(uint8_t(170 + ((x * 3 + seed * 17) & 63)),
                                                uint8_t(70 + ((y * 5 + seed) & 31)), uint8_t(20 + ((x ^ y) & 15)))
                                    : cv::Vec3b::all(uint8_t((x + y + seed) & 3));
  return img;
}

/// Writes a real image (format by extension: .jpg/.jpeg/.png), creating the folder.
inline void write_test_image(const std::string& path, int w = 64, int h = 48, int seed = 0) {
  make_dirs(parent_dir(path));
  write_image_rgb(path, fundus_like_image(w, h, seed));
}

inline void write_text(const std::string& path, const std::string& text) {
  make_dirs(parent_dir(path));
  write_file_atomic(path, text);
}

}  // namespace fundus::test
