// Lesion localisation of explanation maps, measured on images with pixel lesion masks (the synthetic
// set: `fundus synth` writes DIR/masks/<id>.png aligned with DIR/images/<id>.jpg).
//
// Geometry: the network sees the preprocessed image (FOV crop, scale, centred on a square), so the
// mask is put through exactly the same crop/scale/placement (map_to_preprocessed) before comparing.
// Masks are mapped as coverage in [0,1] (area interpolation): a lesion smaller than an output pixel
// still counts with its area instead of vanishing or growing to a whole pixel.
//
// Per image, inside the field of view (the black surround can hold no lesion):
//   attention_in_lesion = sum(heat * lesion) / sum(heat)     share of the heat mass on lesions
//   lesion_share        = sum(lesion) / FOV pixels           what a uniform map would score
//   ratio               = attention_in_lesion / lesion_share (> 1: attention concentrates on lesions)
//   pointing game: hit when the heat maximum lies within tolerance_px of a lesion pixel;
//   pointing_chance     = share of FOV pixels within tolerance_px of a lesion (a random point's hit rate)
// A map without any mass (all zeros, e.g. an untrained, perfectly uniform attention block) counts as
// uniform: attention_in_lesion = lesion_share, ratio 1, no pointing hit.
//
// Torch-free header; evaluate_localisation runs the model (ModelRunner). Thread safety: the metric
// functions are pure; evaluate_localisation uses the model from one thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "fundus/core/json.h"
#include "fundus/data/preprocess.h"
#include "fundus/retrieval/explain.h"

namespace fundus {

class ModelRunner;

struct LocalisationScore {
  double attention_in_lesion = 0;
  double lesion_share = 0;
  double ratio = 0;
  bool pointing_hit = false;
  double pointing_distance = 0;  // px from the heat maximum to the nearest lesion pixel (NaN: no maximum)
  double pointing_chance = 0;
};

/// heat: CV_32FC1 >= 0; lesion: CV_32FC1 coverage in [0,1] (or CV_8UC1, > 0 = lesion); fov: CV_8UC1,
/// non-zero inside (empty = the whole image). Same sizes. Throws when the FOV has no lesion pixel.
LocalisationScore localisation_score(const cv::Mat& heat, const cv::Mat& lesion, const cv::Mat& fov,
                                     double tolerance_px);

/// Maps an image aligned with the photograph (any resolution proportional to it: the original, the
/// decoded image, the coarse FOV mask) through preprocess_fundus's geometry for `result` (crop to the
/// FOV box unless options.crop_fov is off, INTER_AREA resize, centred placement). Returns CV_32F with the
/// input's channels, options.size square, zero outside the placed content.
cv::Mat map_to_preprocessed(const cv::Mat& aligned, const PreprocessResult& result, const PreprocessOptions& options);

struct LocalisationOptions {
  std::string data;             // manifest or labels CSV (anything load_dataset reads)
  std::string splits = "test";  // comma-separated; "" = every record
  std::string masks_dir;        // <masks_dir>/<case id>.png, CV_8UC1, the photograph's size, 0 = no lesion
  double tolerance_px = 8;      // pointing-game tolerance in preprocessed-image pixels
  ExplainOptions explain;       // method auto|attention|gradcam
  int64_t limit = 0;            // evaluate at most this many images with lesions (0 = all)
  bool progress = true;
};

struct LocalisationImage {
  std::string id;
  int grade = -1;
  LocalisationScore score;
};

struct LocalisationReport {
  std::string method;  // Explanation::method
  int input_size = 0;
  double tolerance_px = 0;
  int64_t images = 0;           // records considered
  int64_t without_lesions = 0;  // skipped: no lesion pixel inside the FOV after mapping
  double mean_attention_in_lesion = 0, mean_lesion_share = 0;
  double mean_ratio = 0, median_ratio = 0;
  double ratio_of_means = 0;  // mean_attention_in_lesion / mean_lesion_share
  double pointing_hit_rate = 0, pointing_chance = 0;
  std::vector<LocalisationImage> per_image;

  int64_t evaluated() const { return int64_t(per_image.size()); }
  Json to_json() const;         // aggregates + per_image
  std::string to_text() const;  // readable summary
};

LocalisationReport evaluate_localisation(ModelRunner& model, const LocalisationOptions& options);

}  // namespace fundus
