#include "fundus/data/augment.h"

#include <cmath>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "fundus/core/error.h"

namespace fundus {

void AugmentOptions::validate() const {
  FUNDUS_CHECK(rotation_deg >= 0 && rotation_deg <= 180,
               "augment.rotation_deg: must be in [0, 180], got " << rotation_deg);
  FUNDUS_CHECK(scale >= 0 && scale < 1, "augment.scale: must be in [0, 1), got " << scale);
  FUNDUS_CHECK(brightness >= 0 && brightness < 1, "augment.brightness: must be in [0, 1), got " << brightness);
  FUNDUS_CHECK(contrast >= 0 && contrast < 1, "augment.contrast: must be in [0, 1), got " << contrast);
  FUNDUS_CHECK(gamma >= 0 && gamma <= 4, "augment.gamma: must be in [0, 4], got " << gamma);
  FUNDUS_CHECK(hflip >= 0 && hflip <= 1, "augment.hflip: a probability in [0, 1], got " << hflip);
  FUNDUS_CHECK(vflip >= 0 && vflip <= 1, "augment.vflip: a probability in [0, 1], got " << vflip);
}

Json AugmentOptions::to_json() const {
  return Json{{"rotation_deg", rotation_deg},
              {"scale", scale},
              {"brightness", brightness},
              {"contrast", contrast},
              {"gamma", gamma},
              {"hflip", hflip},
              {"vflip", vflip}};
}

AugmentOptions AugmentOptions::from_json(const Json& j) {
  JsonFields f(j, "augment", {"rotation_deg", "scale", "brightness", "contrast", "gamma", "hflip", "vflip"});
  AugmentOptions o;
  f.read("rotation_deg", o.rotation_deg);
  f.read("scale", o.scale);
  f.read("brightness", o.brightness);
  f.read("contrast", o.contrast);
  f.read("gamma", o.gamma);
  f.read("hflip", o.hflip);
  f.read("vflip", o.vflip);
  o.validate();
  return o;
}

AugmentOptions AugmentOptions::none() {
  AugmentOptions o;
  o.rotation_deg = o.scale = o.brightness = o.contrast = o.gamma = 0;
  return o;
}

bool AugmentParams::is_identity() const {
  return angle_deg == 0 && scale == 1 && brightness == 1 && contrast == 1 && gamma == 1 && !hflip && !vflip;
}

AugmentParams sample_augment(const AugmentOptions& o, Rng& rng) {
  auto sym = [&](double range) { return (2 * rng.uniform() - 1) * range; };  // uniform in [-range, range)
  AugmentParams p;
  p.angle_deg = sym(o.rotation_deg);
  p.scale = 1 + sym(o.scale);
  p.brightness = 1 + sym(o.brightness);
  p.contrast = 1 + sym(o.contrast);
  p.gamma = std::exp(sym(std::log1p(o.gamma)));
  p.hflip = rng.uniform() < o.hflip;
  p.vflip = rng.uniform() < o.vflip;
  return p;
}

cv::Mat apply_augment(const cv::Mat& image, const AugmentParams& p) {
  FUNDUS_CHECK(!image.empty() && image.type() == CV_8UC3,
               "apply_augment: expected a CV_8UC3 image, got type " << image.type());
  cv::Mat out;  // never an alias of `image` before an OpenCV call writes into it
  if (p.angle_deg != 0 || p.scale != 1) {
    cv::Point2f centre(float(image.cols - 1) / 2.f, float(image.rows - 1) / 2.f);  // exact image centre
    cv::warpAffine(image, out, cv::getRotationMatrix2D(centre, p.angle_deg, p.scale), image.size(), cv::INTER_LINEAR,
                   cv::BORDER_CONSTANT, cv::Scalar::all(0));
  } else {
    out = image;
  }
  if (p.hflip || p.vflip) {
    cv::Mat flipped;
    cv::flip(out, flipped, p.hflip && p.vflip ? -1 : p.hflip ? 1 : 0);
    out = flipped;
  }
  if (p.brightness != 1 || p.contrast != 1 || p.gamma != 1) {
    cv::Mat ch[3], fov;
    cv::split(out, ch);
    cv::max(ch[0], ch[1], fov);
    cv::max(fov, ch[2], fov);
    fov = fov > 0;
    cv::Scalar mean = cv::mean(out, fov);
    const double m = (mean[0] + mean[1] + mean[2]) / (3 * 255.0);
    cv::Mat lut(1, 256, CV_8U);
    for (int v = 0; v < 256; ++v) {
      double x = ((v / 255.0 - m) * p.contrast + m) * p.brightness;
      x = std::pow(std::min(1.0, std::max(0.0, x)), p.gamma);
      lut.at<uint8_t>(v) = cv::saturate_cast<uint8_t>(std::lround(255 * x));
    }
    cv::Mat mapped;
    cv::LUT(out, lut, mapped);
    mapped.setTo(cv::Scalar::all(0), fov == 0);
    out = mapped;
  }
  return out.data == image.data ? image.clone() : out;
}

cv::Mat augment_image(const cv::Mat& image, const AugmentOptions& options, Rng& rng) {
  return apply_augment(image, sample_augment(options, rng));
}

}  // namespace fundus
