// Field of view (FOV) of a fundus photograph: the bright, roughly circular retina on a dark surround.
//
// Method (on a copy downscaled by an integer step to at most FovOptions::work_size px, results mapped back):
//   1. level = per-pixel max(R, G, B): the retina is red even in dark photographs, the surround is black.
//   2. threshold t = bg + max(min_contrast, threshold_fraction * (p99 - bg)), bg = 1st percentile of level:
//      adapts to dark images and to photographs without any black surround.
//   3. morphological opening (cuts noise and thin bridges to text/labels in the corners), the largest
//      connected component, holes filled (dark lesions, the fovea).
//   4. circle: least-squares (Kasa) fit to the component's outline, ignoring outline points on the image
//      border (fields clipped at top/bottom) and, in two rounds, outliers (camera notches, tabs).
// When the image shows no field of view at all, the result is the whole image with found = false,
// no_field_of_view = true and a note saying why; preprocessing refuses such images (ImageError
// no_field_of_view), so a query never gets a grade estimate for them:
//   - too small (shorter side < FovOptions::min_side) or too elongated (sides beyond max_aspect : 1):
//     a 1x1 pixel, a 2x10000 strip;
//   - practically uniform (the 1st and 99th percentile levels closer than min_contrast): all black,
//     all white, uniform grey;
//   - no bright component covering min_area_fraction of the image;
//   - no disc-shaped field (the median distance of the bright region's outline to its fitted circle
//     exceeds max_outline_error x radius, or there is no dark surround at all) and colours that are not a
//     retina's (colour dominance below min_colour_dominance: a retina is red-orange, red well above green,
//     even when over- or under-exposed): a document, a page on a table, a grey or white photograph;
//   - a featureless field (detail below min_detail): a flat disc, a drawing, a field blurred or exposed
//     beyond any structure. Every photograph shows vessels; `detail` is the RMS of the band-pass (Gaussian
//     sigma r/200 minus sigma r/25, r the field's radius) over the local mean in the green channel
//     (vessels are darkest there; the middle channel in RGB and BGR alike), inside the field minus a
//     3-sigma rim. On rahim-dr it is 0.021-0.148, still >= 0.012 when the photographs are blurred by 2% of
//     the radius and >= 0.015 when they are shrunk to 48-256 px; a flat disc gives < 0.001.
// A disc-shaped field is accepted whatever its colour (red-free photographs are grey). A retina-coloured
// image without a disc-shaped field (a photograph cropped inside the field) keeps the whole-image
// fallback: found = false, no_field_of_view = false.
//
// Torch-free, thread-safe (no shared state). Throws fundus::Error only for an empty or non-8-bit image.
#pragma once

#include <string>

#include <opencv2/core.hpp>

namespace fundus {

struct FovOptions {
  double min_contrast = 8;          // threshold at least this far above the background level (0-255)
  double threshold_fraction = 0.1;  // ... and this fraction of the background-to-bright range
  double min_area_fraction = 0.05;  // smaller components are not a field of view
  int work_size = 512;              // detection runs on a copy with longer side <= this
  // Not a fundus photograph (see above); rejections never change the pixels of accepted images.
  int min_side = 16;                   // px of the image given to detect_fov
  double max_aspect = 4.0;             // longer / shorter side
  double max_outline_error = 0.04;     // median |outline distance - radius| / radius (real fields: < 0.012)
  double min_colour_dominance = 0.15;  // (largest - second) / largest mean channel (real retinas: > 0.26)
  double min_detail = 0.004;           // RMS relative vessel-scale contrast (photographs: >= 0.012, see above)
};

struct FovResult {
  bool found = false;             // false: whole-image fallback, `note` says why
  bool no_field_of_view = false;  // true: not a fundus photograph at all (implies !found), `note` says why
  std::string note;               // "" when found
  cv::Mat mask;                   // CV_8UC1, 255 inside the FOV (all 255 on fallback); input size, or input
                                  //   size / mask_step when detect_fov was asked for the coarse mask
  int mask_step = 1;              // mask pixel (i, j) covers input pixels [i, i+1) * mask_step
  cv::Rect bbox;                  // bounding box of the mask, input pixel coordinates
  cv::Point2d center;             // fitted circle, continuous pixel coordinates (pixel i covers [i, i+1))
  double radius = 0;              //   may extend beyond the image when the field is clipped
  double area_fraction = 0;       // mask pixels / image pixels
  double outline_error = 0;       // median |outline distance to the circle| / radius (0 when no circle was fitted)
  double detail = -1;             // RMS relative vessel-scale contrast inside the field (see above); -1 when
                                  //   not measured (no field of view, or a field too small to judge)
};

/// Detects the FOV of an RGB (or BGR: the channel max is order-free) CV_8UC3 or grey CV_8UC1 image.
/// full_mask = false leaves the mask at the detection resolution (mask_step > 1 for large images),
/// which saves upscaling it when the caller only needs it downscaled anyway.
FovResult detect_fov(const cv::Mat& image, const FovOptions& options = {}, bool full_mask = true);

/// The whole-image fallback result for an image of `size` (found = false, `note` as given).
FovResult whole_image_fov(cv::Size size, const std::string& note);

}  // namespace fundus
