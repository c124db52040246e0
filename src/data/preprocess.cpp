#include "fundus/data/preprocess.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <set>

#include <opencv2/core/version.hpp>
#include <opencv2/imgproc.hpp>

#include "fundus/core/concurrency.h"
#include "fundus/core/error.h"
#include "fundus/core/io.h"
#include "fundus/core/progress.h"
#include "fundus/core/strings.h"
#include "fundus/data/image_io.h"

namespace fundus {

void PreprocessOptions::validate() const {
  FUNDUS_CHECK(size >= 16 && size <= 4096, "preprocess.size: must be in 16..4096, got " << size);
  FUNDUS_CHECK(ben_graham_sigma > 0 && ben_graham_sigma <= 1,
               "preprocess.ben_graham_sigma: must be in (0, 1] (a fraction of the size), got " << ben_graham_sigma);
  FUNDUS_CHECK(decode_oversample >= 1 && decode_oversample <= 8,
               "preprocess.decode_oversample: must be in [1, 8], got " << decode_oversample);
  FUNDUS_CHECK(mask_radius > 0 && mask_radius <= 2, "preprocess.mask_radius: must be in (0, 2], got " << mask_radius);
  FUNDUS_CHECK(fov.min_contrast >= 0 && fov.min_contrast < 255,
               "preprocess.fov_min_contrast: must be in [0, 255), got " << fov.min_contrast);
  FUNDUS_CHECK(fov.threshold_fraction >= 0 && fov.threshold_fraction < 1,
               "preprocess.fov_threshold_fraction: must be in [0, 1), got " << fov.threshold_fraction);
  FUNDUS_CHECK(fov.min_area_fraction >= 0 && fov.min_area_fraction < 1,
               "preprocess.fov_min_area_fraction: must be in [0, 1), got " << fov.min_area_fraction);
  FUNDUS_CHECK(fov.work_size >= 32 && fov.work_size <= 8192,
               "preprocess.fov_work_size: must be in 32..8192, got " << fov.work_size);
}

Json PreprocessOptions::to_json() const {
  return Json{{"size", size},
              {"crop_fov", crop_fov},
              {"reduced_decode", reduced_decode},
              {"decode_oversample", decode_oversample},
              {"ben_graham", ben_graham},
              {"ben_graham_sigma", ben_graham_sigma},
              {"mask", mask},
              {"mask_radius", mask_radius},
              {"fov_min_contrast", fov.min_contrast},
              {"fov_threshold_fraction", fov.threshold_fraction},
              {"fov_min_area_fraction", fov.min_area_fraction},
              {"fov_work_size", fov.work_size}};
}

PreprocessOptions PreprocessOptions::from_json(const Json& j) {
  JsonFields f(j, "preprocess",
               {"size", "crop_fov", "reduced_decode", "decode_oversample", "ben_graham", "ben_graham_sigma", "mask",
                "mask_radius", "fov_min_contrast", "fov_threshold_fraction", "fov_min_area_fraction", "fov_work_size"});
  PreprocessOptions o;
  f.read("size", o.size);
  f.read("crop_fov", o.crop_fov);
  f.read("reduced_decode", o.reduced_decode);
  f.read("decode_oversample", o.decode_oversample);
  f.read("ben_graham", o.ben_graham);
  f.read("ben_graham_sigma", o.ben_graham_sigma);
  f.read("mask", o.mask);
  f.read("mask_radius", o.mask_radius);
  f.read("fov_min_contrast", o.fov.min_contrast);
  f.read("fov_threshold_fraction", o.fov.threshold_fraction);
  f.read("fov_min_area_fraction", o.fov.min_area_fraction);
  f.read("fov_work_size", o.fov.work_size);
  o.validate();
  return o;
}

std::string PreprocessOptions::cache_key() const {
  // Bump the version whenever the algorithm changes its output; OpenCV's resize may change between
  // releases, so its version is part of the key too.
  std::string key = strprintf("fundus-preprocess/v2;opencv=%s;size=%d;crop_fov=%d;reduced_decode=%d", CV_VERSION, size,
                              int(crop_fov), int(reduced_decode));
  if (reduced_decode) key += strprintf(";oversample=%.9g", decode_oversample);
  if (ben_graham) key += strprintf(";ben_graham=%.9g", ben_graham_sigma);
  if (mask) key += strprintf(";mask=%.9g", mask_radius);
  if (crop_fov || mask)
    key += strprintf(";fov=%.9g,%.9g,%.9g,%d", fov.min_contrast, fov.threshold_fraction, fov.min_area_fraction,
                     fov.work_size);
  return key;
}

namespace {

PreprocessResult finish(const cv::Mat& decoded, int reduce, cv::Size original, const PreprocessOptions& o,
                        const std::string& source) {
  PreprocessResult r;
  r.decoded = decoded;
  r.reduce = reduce;
  r.original_size = original;
  r.fov = (o.crop_fov || o.mask) ? detect_fov(decoded, o.fov, false)
                                 : whole_image_fov(decoded.size(), "FOV detection disabled");
  // No confident answer for what is not a fundus photograph: no descriptor, no grade estimate.
  if (r.fov.no_field_of_view)
    FUNDUS_IMAGE_ERROR(ImageProblem::no_field_of_view, source << ": " << r.fov.note << ": not a fundus photograph");
  const cv::Rect box = o.crop_fov ? r.fov.bbox : cv::Rect(0, 0, decoded.cols, decoded.rows);

  // Longer side of the crop -> size, centred on a black square.
  const int side = std::max(box.width, box.height);
  const double scale = double(o.size) / side;
  const int rw = std::clamp(int(std::lround(box.width * scale)), 1, o.size);
  const int rh = std::clamp(int(std::lround(box.height * scale)), 1, o.size);
  cv::Mat resized;
  cv::resize(decoded(box), resized, cv::Size(rw, rh), 0, 0, cv::INTER_AREA);
  const int ox = (o.size - rw) / 2, oy = (o.size - rh) / 2;
  r.image = cv::Mat::zeros(o.size, o.size, CV_8UC3);
  resized.copyTo(r.image(cv::Rect(ox, oy, rw, rh)));
  const double fx = double(rw) / box.width, fy = double(rh) / box.height;
  r.out_center = cv::Point2d(ox + (r.fov.center.x - box.x) * fx, oy + (r.fov.center.y - box.y) * fy);
  r.out_radius = r.fov.radius * (fx + fy) / 2;

  if (!o.ben_graham && !(o.mask && r.fov.found)) return r;
  // Where the photograph shows retina, in output coordinates: the FOV mask when one was found, else the
  // whole content (not the padding).
  cv::Mat region = cv::Mat::zeros(r.image.size(), CV_8UC1);
  if (r.fov.found) {
    const int st = r.fov.mask_step;  // the mask is coarse: map the box onto it
    const cv::Rect mbox =
        cv::Rect(cv::Point(box.x / st, box.y / st), cv::Point((box.br().x + st - 1) / st, (box.br().y + st - 1) / st)) &
        cv::Rect(0, 0, r.fov.mask.cols, r.fov.mask.rows);
    cv::resize(r.fov.mask(mbox), region(cv::Rect(ox, oy, rw, rh)), cv::Size(rw, rh), 0, 0, cv::INTER_AREA);
    cv::threshold(region, region, 127, 255, cv::THRESH_BINARY);
  } else {
    region(cv::Rect(ox, oy, rw, rh)).setTo(255);
  }

  if (o.ben_graham) {
    // The local average is taken over the retina only (normalised convolution): a plain blur mixes in the
    // black surround and paints a bright ring along the FOV edge. Farther than ~3 sigma from the region's
    // edge this is exactly 4 I - 4 G*I + 128. The weights also skip the outermost 2 px of the region
    // (resizing blends them with the surround). In float: an 8-bit blur would round the average, and the
    // x4 gain would turn that into steps of 4.
    const double sigma = o.ben_graham_sigma * o.size;
    cv::Mat f, m, num, den;
    r.image.convertTo(f, CV_32F);
    cv::erode(region, m, cv::getStructuringElement(cv::MORPH_ELLIPSE, cv::Size(5, 5)), cv::Point(-1, -1), 1,
              cv::BORDER_CONSTANT, cv::Scalar(0));
    m.convertTo(m, CV_32F, 1.0 / 255);
    cv::Mat m3;
    cv::merge(std::vector<cv::Mat>{m, m, m}, m3);
    cv::GaussianBlur(f.mul(m3), num, cv::Size(0, 0), sigma);
    cv::GaussianBlur(m, den, cv::Size(0, 0), sigma);
    cv::max(den, 1e-6, den);
    cv::merge(std::vector<cv::Mat>{den, den, den}, m3);
    cv::divide(num, m3, num);
    cv::addWeighted(f, 4.0, num, -4.0, 128.0, r.image, CV_8U);  // rounds and saturates
  }
  if (o.mask && r.fov.found) {
    // Inside the circle and inside the retina (padding of clipped fields, notches). cv::circle puts pixel
    // centres on integers, ours are at i + 0.5; 4 fractional bits of precision.
    cv::Mat keep = cv::Mat::zeros(r.image.size(), CV_8UC1);
    cv::circle(keep,
               cv::Point(int(std::lround((r.out_center.x - 0.5) * 16)), int(std::lround((r.out_center.y - 0.5) * 16))),
               int(std::lround(r.out_radius * o.mask_radius * 16)), cv::Scalar(255), cv::FILLED, cv::LINE_8, 4);
    keep &= region;
    r.image.setTo(cv::Scalar::all(0), keep == 0);
  }
  return r;
}

}  // namespace

PreprocessResult preprocess_fundus(const cv::Mat& rgb, const PreprocessOptions& o) {
  o.validate();
  FUNDUS_CHECK(!rgb.empty() && rgb.type() == CV_8UC3, "preprocess_fundus: expected a non-empty RGB CV_8UC3 image");
  return finish(rgb, 1, rgb.size(), o, "image");
}

PreprocessResult preprocess_fundus_bytes(std::string_view bytes, const std::string& source, const PreprocessOptions& o,
                                         const ImageLimits& limits) {
  o.validate();
  // The header (and the pixel cap) first: it decides the DCT reduction, and nothing big is decoded
  // for a file the policy refuses.
  const ImageInfo info = check_image_bytes(bytes, source, limits);
  int reduce = 1;
  if (info.format == ImageFormat::jpeg &&
      o.reduced_decode)  // choose_reduce_factor keeps the shorter side >= 2 * target
    reduce = choose_reduce_factor(info.width, info.height, int(std::ceil(o.size * o.decode_oversample / 2)));
  cv::Mat decoded = decode_image_rgb_bytes(bytes, source, reduce, limits);
  return finish(decoded, reduce, reduce == 1 ? decoded.size() : cv::Size(info.width, info.height), o, source);
}

PreprocessResult preprocess_fundus_file(const std::string& path, const PreprocessOptions& o,
                                        const ImageLimits& limits) {
  return preprocess_fundus_bytes(read_image_file(path), path, o, limits);
}

Json fov_to_json(const PreprocessResult& r) {
  const double sx = double(r.original_size.width) / r.decoded.cols,
               sy = double(r.original_size.height) / r.decoded.rows;
  const FovResult& f = r.fov;
  auto round2 = [](double v) { return std::round(v * 100) / 100; };
  return Json{{"found", f.found},
              {"note", f.note},
              {"width", r.original_size.width},
              {"height", r.original_size.height},
              {"reduce", r.reduce},
              {"bbox",
               {int(std::lround(f.bbox.x * sx)), int(std::lround(f.bbox.y * sy)), int(std::lround(f.bbox.width * sx)),
                int(std::lround(f.bbox.height * sy))}},
              {"center", {round2(f.center.x * sx), round2(f.center.y * sy)}},
              {"radius", round2(f.radius * (sx + sy) / 2)},
              {"area_fraction", std::round(f.area_fraction * 1e4) / 1e4},
              {"outline_error", std::round(f.outline_error * 1e4) / 1e4},
              {"detail", f.detail < 0 ? Json(nullptr) : Json(std::round(f.detail * 1e4) / 1e4)}};
}

cv::Mat preprocess_comparison(const PreprocessResult& r) {
  const int h = r.image.rows;
  const double s = double(h) / r.decoded.rows;
  cv::Mat left;
  cv::resize(r.decoded, left, cv::Size(std::max(1, int(std::lround(r.decoded.cols * s))), h), 0, 0, cv::INTER_AREA);
  const FovResult& f = r.fov;
  if (f.found) {
    cv::rectangle(left, cv::Rect(int(f.bbox.x * s), int(f.bbox.y * s), int(f.bbox.width * s), int(f.bbox.height * s)),
                  cv::Scalar(0, 128, 255), 2, cv::LINE_AA);
    cv::circle(left, cv::Point(int(std::lround(f.center.x * s)), int(std::lround(f.center.y * s))),
               int(std::lround(f.radius * s)), cv::Scalar(0, 255, 0), 2, cv::LINE_AA);
  }
  cv::Mat gap(h, 4, CV_8UC3, cv::Scalar::all(255)), out;
  cv::hconcat(std::vector<cv::Mat>{left, gap, r.image}, out);
  return out;
}

namespace {
// File-name-safe, unique stems.
std::vector<std::string> output_stems(const std::vector<InspectionInput>& inputs) {
  std::vector<std::string> stems;
  std::set<std::string> used;
  for (const auto& in : inputs) {
    std::string s = in.name.empty() ? "image" : in.name;
    for (char& c : s)
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') c = '_';
    std::string unique = s;
    for (int k = 2; used.count(unique); ++k) unique = s + "_" + std::to_string(k);
    used.insert(unique);
    stems.push_back(unique);
  }
  return stems;
}
}  // namespace

Json write_preprocess_inspection(const std::vector<InspectionInput>& inputs, const PreprocessOptions& options,
                                 const std::string& out_dir, int threads) {
  options.validate();
  make_dirs(out_dir);
  const std::vector<std::string> stems = output_stems(inputs);
  std::vector<Json> rows(inputs.size());
  Progress progress("preprocess", int64_t(inputs.size()), "img");
  parallel_for(int64_t(inputs.size()), threads > 0 ? threads : available_cores(), [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const InspectionInput& in = inputs[size_t(i)];
      Json row{{"name", in.name}, {"path", in.path}};
      try {
        PreprocessResult r = preprocess_fundus_file(in.path, options);
        const std::string pre = stems[size_t(i)] + "_pre.png", cmp = stems[size_t(i)] + "_compare.jpg";
        // write_image_rgb may convert its argument in place: hand it copies.
        write_image_rgb(join_path(out_dir, cmp), preprocess_comparison(r), 90);
        write_image_rgb(join_path(out_dir, pre), r.image.clone());
        row.update(fov_to_json(r));
        row["outputs"] = {pre, cmp};
      } catch (const Error& e) {
        row["error"] = e.message();
      }
      rows[size_t(i)] = std::move(row);
      progress.advance();
    }
  });
  progress.finish();
  Json images = Json::array();
  for (auto& r : rows) images.push_back(std::move(r));
  save_json_file(join_path(out_dir, "fov.json"), Json{{"preprocess", options.to_json()}, {"images", images}});
  return images;
}

std::string format_inspection_table(const Json& images) {
  std::string out = strprintf("%-24s %-10s %-6s %-5s %-16s %-8s %-7s %s\n", "image", "original", "reduce", "fov",
                              "centre", "radius", "detail", "bbox x,y,w,h");
  for (const Json& row : images) {
    std::string name = row.value("name", std::string());
    if (row.contains("error")) {
      out += strprintf("%-24s error: %s\n", name.c_str(), row["error"].get<std::string>().c_str());
      continue;
    }
    const Json& b = row["bbox"];
    const Json detail = row.value("detail", Json());
    out += strprintf("%-24s %-10s %-6d %-5s %-16s %-8.1f %-7s %d,%d,%d,%d%s\n", name.c_str(),
                     strprintf("%dx%d", row["width"].get<int>(), row["height"].get<int>()).c_str(),
                     row["reduce"].get<int>(), row["found"].get<bool>() ? "yes" : "no",
                     strprintf("%.1f,%.1f", row["center"][0].get<double>(), row["center"][1].get<double>()).c_str(),
                     row["radius"].get<double>(),
                     detail.is_number() ? strprintf("%.4f", detail.get<double>()).c_str() : "-", b[0].get<int>(),
                     b[1].get<int>(), b[2].get<int>(), b[3].get<int>(),
                     row["found"].get<bool>() ? "" : ("  (" + row["note"].get<std::string>() + ")").c_str());
  }
  return out;
}

}  // namespace fundus
