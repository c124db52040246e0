// Training-time augmentation of preprocessed fundus images (RGB CV_8UC3, black outside the FOV).
//
//   Rng rng(Rng::derive(seed, sample));                 // one generator per sample
//   AugmentParams p = sample_augment(options, rng);     // always draws the same count of numbers
//   cv::Mat out = apply_augment(image, p);
//
// Geometry about the image centre: rotation by any angle (the fundus is round) and scale jitter
// (bilinear, black border), then optional flips (off by default: the model builds its own mirrored
// views, method.md section 2). Photometric, inside the FOV only (all-black pixels stay black):
// v -> 255 * clamp(((v/255 - m) * contrast + m) * brightness, 0, 1) ^ gamma, m = mean FOV intensity.
// Randomness only via fundus::Rng: the same seed gives the same bytes on any machine and thread.
// Thread-safe (pure functions). Bad options throw fundus::Error naming the key ("augment.gamma: ...").
#pragma once

#include <opencv2/core.hpp>

#include "fundus/core/json.h"
#include "fundus/core/rng.h"

namespace fundus {

struct AugmentOptions {
  double rotation_deg = 180;  // angle uniform in [-rotation_deg, rotation_deg], degrees, counter-clockwise
  double scale = 0.1;         // zoom uniform in [1 - scale, 1 + scale]
  double brightness = 0.2;    // factor uniform in [1 - brightness, 1 + brightness]
  double contrast = 0.2;      // factor uniform in [1 - contrast, 1 + contrast]
  double gamma = 0.2;         // exponent log-uniform in [1 / (1 + gamma), 1 + gamma]
  double hflip = 0;           // probability of a horizontal flip (left-right)
  double vflip = 0;           // probability of a vertical flip (up-down)

  void validate() const;
  /// The "augment" config section (unknown keys rejected, absent keys default).
  Json to_json() const;
  static AugmentOptions from_json(const Json& section);
  /// All ranges zero: no augmentation at all.
  static AugmentOptions none();
};

struct AugmentParams {
  double angle_deg = 0, scale = 1, brightness = 1, contrast = 1, gamma = 1;
  bool hflip = false, vflip = false;
  bool is_identity() const;
};

/// Draws one parameter set; consumes exactly 7 numbers from `rng` whatever the options.
AugmentParams sample_augment(const AugmentOptions& options, Rng& rng);
/// Applies `params` to an RGB (or any 3-channel) CV_8UC3 image; returns a new image of the same size.
cv::Mat apply_augment(const cv::Mat& image, const AugmentParams& params);
/// sample_augment + apply_augment.
cv::Mat augment_image(const cv::Mat& image, const AugmentOptions& options, Rng& rng);

}  // namespace fundus
