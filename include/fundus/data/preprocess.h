// Fundus preprocessing: decode (DCT-reduced when the target is much smaller), crop to the field of
// view, pad to a square, INTER_AREA resize, optional Ben Graham contrast normalisation and circular
// mask. Output: RGB CV_8UC3, size x size.
//
//   PreprocessOptions opt;                     // or PreprocessOptions::from_json(config["preprocess"])
//   opt.size = 256;
//   PreprocessResult r = preprocess_fundus_file("Patient002_L.jpg", opt);   // r.image: 256x256 RGB
//
// Steps, in order:
//   1. decode JPEGs DCT-reduced by the largest factor in {1,2,4,8} that keeps the shorter side >=
//      decode_oversample * size (2 = choose_reduce_factor(w, h, size); 1.25 halves the cost of 1024-px
//      photographs at 256 px for a mean difference of ~0.4 grey levels, docs/bench-preprocess.md).
//   2. FOV (fov.h) unless crop_fov and mask are both off; crop to its bounding box. An image with no field
//      of view at all (fov.h: blank, uniform, too small or elongated, not disc-shaped, colourless without
//      a dark surround) is refused: ImageError no_field_of_view, "x.jpg: no field of view found (the
//      image is practically uniform: brightness 0 to 0): not a fundus photograph".
//   3. resize the crop with INTER_AREA so that its longer side is `size`, centre it on a black square.
//   4. Ben Graham (optional): out = 4 I - 4 A + 128, A the local average GaussianBlur(I, sigma =
//      ben_graham_sigma * size) taken over retina pixels only (normalised convolution G*(I M) / G*M with
//      M the FOV region), so the black surround does not paint a bright ring along the FOV edge. Without
//      a FOV (or with the FOV filling the square) it is exactly the classic 4 I - 4 G*I + 128.
//   5. mask (optional, only when a FOV was found): pixels farther than mask_radius * FOV radius from
//      the FOV centre, or outside the detected FOV region (padding of clipped fields, notches), become black.
// Torch-free; every function is thread-safe. Errors (unreadable/corrupt image, bad options) throw
// fundus::Error naming the file or the option ("preprocess.size: ...").
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <opencv2/core.hpp>

#include "fundus/core/json.h"
#include "fundus/data/fov.h"
#include "fundus/data/image_io.h"

namespace fundus {

struct PreprocessOptions {
  int size = 256;                        // output side in pixels, 16..4096
  bool crop_fov = true;                  // crop to the detected FOV (off: pad the whole image)
  bool reduced_decode = true;            // DCT-scaled JPEG decoding when the target is much smaller
  double decode_oversample = 2.0;        // ... keeping the shorter side >= this x size (2: choose_reduce_factor)
  bool ben_graham = false;               // local-average contrast normalisation
  double ben_graham_sigma = 1.0 / 30.0;  // Gaussian sigma as a fraction of `size`
  bool mask = true;                      // black outside the FOV circle
  double mask_radius = 1.0;              // fraction of the FOV radius kept by the mask (Ben Graham: 0.9)
  FovOptions fov;

  /// Throws naming the offending key ("preprocess.size: must be in 16..4096, got 8").
  void validate() const;
  /// The "preprocess" config section; from_json rejects unknown keys and fills absent keys with defaults.
  Json to_json() const;
  static PreprocessOptions from_json(const Json& section);
  /// Stable string naming the algorithm version and every parameter that changes the output pixels;
  /// part of the preprocessed-image cache key. Two options with the same key give the same bytes.
  std::string cache_key() const;
};

struct PreprocessResult {
  cv::Mat image;           // RGB CV_8UC3, size x size
  cv::Mat decoded;         // the decoded (possibly reduced) input, RGB; shares memory, no copy made
  FovResult fov;           // in `decoded` pixel coordinates (multiply by `reduce` for the original)
  int reduce = 1;          // decode reduction factor (1, 2, 4 or 8)
  cv::Size original_size;  // size of the image file
  cv::Point2d out_center;  // FOV circle in output coordinates
  double out_radius = 0;
};

/// From an RGB CV_8UC3 image already in memory (reduce = 1); errors name it "image".
PreprocessResult preprocess_fundus(const cv::Mat& rgb, const PreprocessOptions& options);
/// From encoded bytes (JPEG, PNG, TIFF, BMP); `source` names the image in errors. The image policy of
/// image_io.h applies (structure, pixel cap from the header before decoding, corrupt data): failures
/// throw ImageError.
PreprocessResult preprocess_fundus_bytes(std::string_view bytes, const std::string& source,
                                         const PreprocessOptions& options, const ImageLimits& limits = {});
/// From a file (read_image_file: a directory or a missing file is an ImageError naming it).
PreprocessResult preprocess_fundus_file(const std::string& path, const PreprocessOptions& options,
                                        const ImageLimits& limits = {});

/// The FOV in original-image coordinates as JSON: {found, note, width, height, reduce, bbox:[x,y,w,h],
/// center:[x,y], radius, area_fraction, outline_error, detail (null when not measured)}.
Json fov_to_json(const PreprocessResult& result);

/// Side-by-side inspection image: the decoded input scaled to the output height with the FOV circle
/// (green) and bounding box (blue) drawn, then the preprocessed image. RGB CV_8UC3.
cv::Mat preprocess_comparison(const PreprocessResult& result);

/// One image for write_preprocess_inspection: `name` becomes the output file stem (sanitised, made unique).
struct InspectionInput {
  std::string name;
  std::string path;
};

/// For `fundus preprocess`: preprocesses every input with `threads` threads (0 = all cores) and writes
/// <out_dir>/<name>_pre.png, <out_dir>/<name>_compare.jpg and <out_dir>/fov.json ({"preprocess": options,
/// "images": [...]}). Returns the "images" array: per input {name, path, outputs, fov_to_json fields} or
/// {name, path, error} for an image that failed (the others are still written).
Json write_preprocess_inspection(const std::vector<InspectionInput>& inputs, const PreprocessOptions& options,
                                 const std::string& out_dir, int threads);
/// A readable table of that array (one row per image, errors included).
std::string format_inspection_table(const Json& images);

}  // namespace fundus
