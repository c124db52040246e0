#include "fundus/retrieval/localisation.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "fundus/core/error.h"
#include "fundus/core/io.h"
#include "fundus/core/progress.h"
#include "fundus/core/strings.h"
#include "fundus/data/dataset_io.h"
#include "fundus/retrieval/model_runner.h"

namespace fundus {

LocalisationScore localisation_score(const cv::Mat& heat, const cv::Mat& lesion_in, const cv::Mat& fov_in,
                                     double tolerance_px) {
  FUNDUS_CHECK(!heat.empty() && heat.type() == CV_32FC1, "localisation: heat map must be CV_32FC1");
  FUNDUS_CHECK(lesion_in.size() == heat.size() && (lesion_in.type() == CV_32FC1 || lesion_in.type() == CV_8UC1),
               "localisation: lesion mask must be CV_32FC1 or CV_8UC1 of the heat map's size");
  FUNDUS_CHECK(fov_in.empty() || (fov_in.size() == heat.size() && fov_in.type() == CV_8UC1),
               "localisation: FOV mask must be CV_8UC1 of the heat map's size");
  FUNDUS_CHECK(tolerance_px >= 0, "localisation: tolerance must be >= 0");
  cv::Mat lesion;
  if (lesion_in.type() == CV_8UC1) cv::Mat(lesion_in > 0).convertTo(lesion, CV_32F, 1.0 / 255);
  else lesion = lesion_in;
  cv::Mat fov = fov_in.empty() ? cv::Mat(heat.size(), CV_8UC1, cv::Scalar(255)) : cv::Mat(fov_in != 0);

  double mass = 0, mass_lesion = 0, lesion_area = 0, fov_area = 0;
  for (int y = 0; y < heat.rows; ++y) {
    const float* h = heat.ptr<float>(y);
    const float* l = lesion.ptr<float>(y);
    const uint8_t* f = fov.ptr<uint8_t>(y);
    for (int x = 0; x < heat.cols; ++x) {
      if (!f[x]) continue;
      FUNDUS_CHECK(h[x] >= 0 && std::isfinite(h[x]), "localisation: heat map values must be finite and >= 0");
      mass += h[x];
      mass_lesion += double(h[x]) * l[x];
      lesion_area += l[x];
      fov_area += 1;
    }
  }
  FUNDUS_CHECK(lesion_area > 0, "localisation: no lesion pixel inside the field of view");
  LocalisationScore s;
  s.lesion_share = lesion_area / fov_area;
  s.attention_in_lesion = mass > 0 ? mass_lesion / mass : s.lesion_share;
  s.ratio = s.attention_in_lesion / s.lesion_share;

  // Distance of every pixel to the nearest lesion pixel (coverage > 0).
  cv::Mat dist;
  cv::distanceTransform(cv::Mat(lesion <= 0), dist, cv::DIST_L2, cv::DIST_MASK_PRECISE);
  int64_t near = 0;
  for (int y = 0; y < dist.rows; ++y)
    for (int x = 0; x < dist.cols; ++x)
      if (fov.at<uint8_t>(y, x) && dist.at<float>(y, x) <= tolerance_px) ++near;
  s.pointing_chance = double(near) / fov_area;
  if (mass > 0) {
    cv::Point peak;
    cv::minMaxLoc(heat, nullptr, nullptr, nullptr, &peak, fov);
    s.pointing_distance = dist.at<float>(peak);
    s.pointing_hit = s.pointing_distance <= tolerance_px;
  } else {
    s.pointing_distance = std::numeric_limits<double>::quiet_NaN();
  }
  return s;
}

cv::Mat map_to_preprocessed(const cv::Mat& aligned, const PreprocessResult& r, const PreprocessOptions& o) {
  FUNDUS_CHECK(!aligned.empty() && !r.decoded.empty(), "map_to_preprocessed: empty image or result");
  const cv::Size d = r.decoded.size();
  const cv::Rect box = o.crop_fov ? r.fov.bbox : cv::Rect(0, 0, d.width, d.height);
  // The placement of preprocess_fundus (preprocess.cpp): longer side of the box -> size, centred.
  const int side = std::max(box.width, box.height);
  const double scale = double(o.size) / side;
  const int rw = std::clamp(int(std::lround(box.width * scale)), 1, o.size);
  const int rh = std::clamp(int(std::lround(box.height * scale)), 1, o.size);
  const int ox = (o.size - rw) / 2, oy = (o.size - rh) / 2;
  // The box in the aligned image's pixels.
  const double sx = double(aligned.cols) / d.width, sy = double(aligned.rows) / d.height;
  cv::Rect src(cv::Point(int(std::lround(box.x * sx)), int(std::lround(box.y * sy))),
               cv::Point(int(std::lround(box.br().x * sx)), int(std::lround(box.br().y * sy))));
  src &= cv::Rect(0, 0, aligned.cols, aligned.rows);
  FUNDUS_CHECK(src.area() > 0, "map_to_preprocessed: the crop box is outside the aligned image");
  cv::Mat f, resized;
  aligned(src).convertTo(f, CV_MAKETYPE(CV_32F, aligned.channels()));
  cv::resize(f, resized, cv::Size(rw, rh), 0, 0, cv::INTER_AREA);
  cv::Mat out = cv::Mat::zeros(o.size, o.size, CV_MAKETYPE(CV_32F, aligned.channels()));
  resized.copyTo(out(cv::Rect(ox, oy, rw, rh)));
  return out;
}

Json LocalisationReport::to_json() const {
  auto jnum = [](double v) { return std::isfinite(v) ? Json(v) : Json(nullptr); };
  Json rows = Json::array();
  for (const LocalisationImage& i : per_image)
    rows.push_back({{"id", i.id},
                    {"grade", i.grade},
                    {"attention_in_lesion", jnum(i.score.attention_in_lesion)},
                    {"lesion_share", jnum(i.score.lesion_share)},
                    {"ratio", jnum(i.score.ratio)},
                    {"pointing_hit", i.score.pointing_hit},
                    {"pointing_distance", jnum(i.score.pointing_distance)},
                    {"pointing_chance", jnum(i.score.pointing_chance)}});
  return Json{{"method", method},
              {"input_size", input_size},
              {"tolerance_px", tolerance_px},
              {"images", images},
              {"evaluated", evaluated()},
              {"without_lesions", without_lesions},
              {"mean_attention_in_lesion", jnum(mean_attention_in_lesion)},
              {"mean_lesion_share", jnum(mean_lesion_share)},
              {"mean_ratio", jnum(mean_ratio)},
              {"median_ratio", jnum(median_ratio)},
              {"ratio_of_means", jnum(ratio_of_means)},
              {"pointing_hit_rate", jnum(pointing_hit_rate)},
              {"pointing_chance", jnum(pointing_chance)},
              {"per_image", rows}};
}

std::string LocalisationReport::to_text() const {
  return strprintf(
      "localisation (%s, %d px input): %lld images with lesions (%lld without skipped)\n"
      "  attention mass on lesions   %.4f   (lesions cover %.4f of the field of view)\n"
      "  concentration ratio         %.2f mean, %.2f median, %.2f ratio of means   (1 = uniform)\n"
      "  pointing game (<= %.0f px)   %.3f hit rate   (chance %.3f)\n",
      method.c_str(), input_size, static_cast<long long>(evaluated()), static_cast<long long>(without_lesions),
      mean_attention_in_lesion, mean_lesion_share, mean_ratio, median_ratio, ratio_of_means, tolerance_px,
      pointing_hit_rate, pointing_chance);
}

LocalisationReport evaluate_localisation(ModelRunner& model, const LocalisationOptions& o) {
  FUNDUS_CHECK(!o.masks_dir.empty(), "localisation: no masks folder (--masks DIR/masks of `fundus synth`)");
  FUNDUS_CHECK(o.tolerance_px >= 0, "localisation: tolerance must be >= 0, got " << o.tolerance_px);
  LoadResult loaded = load_dataset(o.data);
  FUNDUS_CHECK(loaded.problems.empty(), o.data << ": " << loaded.problems.size() << " bad rows; fix them first:\n"
                                               << format_problems(loaded.problems, 5));
  Dataset ds = o.splits.empty() ? loaded.dataset : loaded.dataset.subset(o.splits);
  FUNDUS_CHECK(!ds.records.empty(), o.data << ": no records in split(s) '" << o.splits << "'");
  const PreprocessOptions& pre = model.preprocess();

  LocalisationReport rep;
  rep.input_size = pre.size;
  rep.tolerance_px = o.tolerance_px;
  std::unique_ptr<Progress> progress;
  if (o.progress) progress = std::make_unique<Progress>("localisation", int64_t(ds.size()), "img");
  for (const CaseRecord& rec : ds.records) {
    if (o.limit > 0 && rep.evaluated() >= o.limit) break;
    ++rep.images;
    if (progress) progress->advance();
    const std::string mask_path = join_path(o.masks_dir, rec.id + ".png");
    FUNDUS_CHECK(file_exists(mask_path), mask_path << ": lesion mask not found for case '" << rec.id << "'");
    cv::Mat mask = cv::imread(mask_path, cv::IMREAD_UNCHANGED);
    FUNDUS_CHECK(!mask.empty() && mask.type() == CV_8UC1, mask_path << ": expected a one-channel 8-bit mask");
    PreprocessResult p = preprocess_fundus_file(rec.image_path, pre);
    FUNDUS_CHECK(mask.size() == p.original_size, mask_path << ": mask is " << mask.cols << "x" << mask.rows
                                                           << " but the image is " << p.original_size.width << "x"
                                                           << p.original_size.height);
    cv::Mat lesion, fov;
    cv::Mat(mask > 0).convertTo(lesion, CV_32F, 1.0 / 255);
    lesion = map_to_preprocessed(lesion, p, pre);
    fov = map_to_preprocessed(p.fov.mask, p, pre) > 127;
    cv::Mat lesion_in_fov = cv::Mat::zeros(lesion.size(), CV_32F);
    lesion.copyTo(lesion_in_fov, fov);
    if (cv::sum(lesion_in_fov)[0] <= 0) {
      ++rep.without_lesions;
      continue;
    }
    Explanation e = model.explain(p.image, o.explain);
    rep.method = e.method;
    rep.per_image.push_back({rec.id, rec.grade, localisation_score(e.heat, lesion, fov, o.tolerance_px)});
  }
  if (progress) progress->finish();
  const double n = double(rep.evaluated());
  if (n == 0) return rep;
  std::vector<double> ratios;
  for (const LocalisationImage& i : rep.per_image) {
    rep.mean_attention_in_lesion += i.score.attention_in_lesion / n;
    rep.mean_lesion_share += i.score.lesion_share / n;
    rep.mean_ratio += i.score.ratio / n;
    rep.pointing_hit_rate += (i.score.pointing_hit ? 1.0 : 0.0) / n;
    rep.pointing_chance += i.score.pointing_chance / n;
    ratios.push_back(i.score.ratio);
  }
  std::sort(ratios.begin(), ratios.end());
  const size_t m = ratios.size();
  rep.median_ratio = m % 2 ? ratios[m / 2] : (ratios[m / 2 - 1] + ratios[m / 2]) / 2;
  rep.ratio_of_means = rep.mean_attention_in_lesion / rep.mean_lesion_share;
  return rep;
}

}  // namespace fundus
