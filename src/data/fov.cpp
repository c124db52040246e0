#include "fundus/data/fov.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

#include <opencv2/imgproc.hpp>

#include "fundus/core/error.h"
#include "fundus/core/strings.h"

namespace fundus {

namespace {

// Value below which `fraction` of the pixels of a CV_8UC1 image lie.
int percentile(const cv::Mat& level, double fraction) {
  std::array<int64_t, 256> hist{};
  for (int y = 0; y < level.rows; ++y) {
    const uint8_t* p = level.ptr<uint8_t>(y);
    for (int x = 0; x < level.cols; ++x) ++hist[p[x]];
  }
  int64_t want = int64_t(fraction * double(level.total())), seen = 0;
  for (int v = 0; v < 256; ++v) {
    seen += hist[size_t(v)];
    if (seen > want) return v;
  }
  return 255;
}

struct Circle {
  double cx = 0, cy = 0, r = 0;
  bool ok = false;
};

// Algebraic least-squares circle (Kasa): x^2 + y^2 + D x + E y + F = 0, in coordinates centred on the
// points' mean for conditioning.
Circle kasa_fit(const std::vector<cv::Point2d>& pts) {
  Circle c;
  if (pts.size() < 8) return c;
  double mx = 0, my = 0;
  for (auto& p : pts) mx += p.x, my += p.y;
  mx /= double(pts.size()), my /= double(pts.size());
  cv::Matx33d ata = cv::Matx33d::zeros();
  cv::Vec3d atb(0, 0, 0);
  for (auto& p : pts) {
    double x = p.x - mx, y = p.y - my;
    cv::Vec3d a(x, y, 1.0);
    double b = -(x * x + y * y);
    ata += a * a.t();
    atb += a * b;
  }
  cv::Vec3d sol;
  if (!cv::solve(ata, atb, sol, cv::DECOMP_SVD)) return c;
  c.cx = -sol[0] / 2 + mx;
  c.cy = -sol[1] / 2 + my;
  double r2 = sol[0] * sol[0] / 4 + sol[1] * sol[1] / 4 - sol[2];
  if (!(r2 > 0)) return c;
  c.r = std::sqrt(r2);
  c.ok = true;
  return c;
}

// Kasa fit with two rounds of outlier removal: notches and tabs sit well inside or outside the circle
// through the rest of the outline.
Circle robust_circle(std::vector<cv::Point2d> pts) {
  Circle c = kasa_fit(pts);
  for (int round = 0; round < 2 && c.ok; ++round) {
    std::vector<double> resid(pts.size());
    for (size_t i = 0; i < pts.size(); ++i) resid[i] = std::abs(std::hypot(pts[i].x - c.cx, pts[i].y - c.cy) - c.r);
    std::vector<double> sorted = resid;
    std::nth_element(sorted.begin(), sorted.begin() + long(sorted.size() / 2), sorted.end());
    double limit = std::max(1.0, 3.0 * 1.4826 * sorted[sorted.size() / 2]);
    std::vector<cv::Point2d> kept;
    for (size_t i = 0; i < pts.size(); ++i)
      if (resid[i] <= limit) kept.push_back(pts[i]);
    if (kept.size() == pts.size() || kept.size() < 16) break;
    pts.swap(kept);
    c = kasa_fit(pts);
  }
  return c;
}

// The whole image, marked as showing no field of view at all.
FovResult no_fov(cv::Size size, const std::string& why) {
  FovResult r = whole_image_fov(size, "no field of view found (" + why + ")");
  r.no_field_of_view = true;
  return r;
}

// (largest - second largest) / largest of the mean channel values: a retina is red-orange (red well
// above green, 0.26 to 0.6 on real photographs); grey, white and yellowish paper are not (< 0.11).
// Order-free (RGB or BGR); a grey image has none.
double colour_dominance(const cv::Mat& img) {
  if (img.channels() != 3) return 0;
  const cv::Scalar m = cv::mean(img);
  double v[3] = {m[0], m[1], m[2]};
  std::sort(v, v + 3);
  return v[2] > 0 ? (v[2] - v[1]) / v[2] : 0;
}

// Vessel-scale structure of `img` inside `region` (CV_8UC1, 255 = retina) for a field of `radius`
// pixels: RMS of (fine blur - coarse blur) / coarse blur in the green (middle) channel, away from the
// region's edge (3 coarse sigmas), where the rim itself would count as structure. -1 when too little
// of the region is left to judge.
double field_detail(const cv::Mat& img, const cv::Mat& region, double radius) {
  const double fine = std::max(0.7, radius / 200), coarse = std::max(radius / 25, 3 * fine);
  const int rim = int(std::ceil(3 * coarse));
  cv::Mat inner;
  cv::erode(region, inner, cv::getStructuringElement(cv::MORPH_ELLIPSE, cv::Size(2 * rim + 1, 2 * rim + 1)), {-1, -1},
            1, cv::BORDER_CONSTANT, cv::Scalar(0));
  if (cv::countNonZero(inner) < 64) return -1;
  cv::Mat green, sharp, local;
  if (img.channels() == 3) cv::extractChannel(img, green, 1);
  else green = img;
  green.convertTo(green, CV_32F);
  cv::GaussianBlur(green, sharp, cv::Size(), fine);
  cv::GaussianBlur(green, local, cv::Size(), coarse);
  // The floor keeps a few grey levels of noise in a black region from counting as contrast.
  cv::Mat relative = (sharp - local) / cv::max(local, 4.0);
  return std::sqrt(cv::mean(relative.mul(relative), inner)[0]);
}

// Whether a measured field is featureless, and the note that says so.
bool featureless(double detail, const FovOptions& o) { return detail >= 0 && detail < o.min_detail; }
std::string featureless_note(double detail, const FovOptions& o) {
  return strprintf(
      "the field is featureless: its vessel-scale contrast is %.2f%%, photographs show 1%% or more "
      "(limit %.1f%%)",
      100 * detail, 100 * o.min_detail);
}
}  // namespace

FovResult whole_image_fov(cv::Size size, const std::string& note) {
  FovResult r;
  r.found = false;
  r.note = note;
  r.mask = cv::Mat(size, CV_8UC1, cv::Scalar(255));
  r.bbox = cv::Rect(0, 0, size.width, size.height);
  r.center = cv::Point2d(size.width / 2.0, size.height / 2.0);
  r.radius = std::max(size.width, size.height) / 2.0;
  r.area_fraction = 1.0;
  return r;
}

FovResult detect_fov(const cv::Mat& image, const FovOptions& o, bool full_mask) {
  FUNDUS_CHECK(!image.empty(), "detect_fov: empty image");
  FUNDUS_CHECK(image.depth() == CV_8U && (image.channels() == 1 || image.channels() == 3),
               "detect_fov: expected an 8-bit grey or 3-channel image, got type " << image.type());
  FUNDUS_CHECK(o.work_size >= 32, "fov: work_size must be >= 32, got " << o.work_size);
  const cv::Size full = image.size();
  const int shorter = std::min(full.width, full.height), longer = std::max(full.width, full.height);
  if (shorter < o.min_side)
    return no_fov(full,
                  strprintf("an image of %dx%d pixels is too small for a fundus photograph", full.width, full.height));
  if (longer > o.max_aspect * shorter)
    return no_fov(
        full, strprintf("an image of %dx%d pixels is too elongated for a fundus photograph", full.width, full.height));

  // 1. Channel max on a copy downscaled by an integer step: INTER_AREA's fast path (4x faster than a
  //    fractional scale); the last (size % step) rows and columns are left out of the detection.
  const int step = std::max(1, (std::max(full.width, full.height) + o.work_size - 1) / o.work_size);
  const cv::Rect used(0, 0, std::min(full.width, std::max(1, full.width / step) * step),
                      std::min(full.height, std::max(1, full.height / step) * step));
  cv::Mat small;
  if (step > 1)
    cv::resize(image(used), small, cv::Size(std::max(1, full.width / step), std::max(1, full.height / step)), 0, 0,
               cv::INTER_AREA);
  else small = image;
  cv::Mat level;
  if (small.channels() == 3) {
    cv::Mat ch[3];
    cv::split(small, ch);
    cv::max(ch[0], ch[1], level);
    cv::max(level, ch[2], level);
  } else {
    level = small;
  }
  const double sx = double(used.width) / small.cols, sy = double(used.height) / small.rows;

  // 2. Adaptive threshold.
  int bg = percentile(level, 0.01), hi = percentile(level, 0.99);
  double lowest = 0, highest = 0;
  cv::minMaxLoc(level, &lowest, &highest);
  if (highest - lowest < o.min_contrast)
    return no_fov(full, strprintf("the image is practically uniform: brightness %.0f to %.0f", lowest, highest));
  double t = bg + std::max(o.min_contrast, o.threshold_fraction * (hi - bg));
  cv::Mat binary = level > t;

  // 3. Opening, largest component, holes filled.
  int k = std::max(3, int(std::lround(0.01 * std::max(small.cols, small.rows)))) | 1;
  cv::morphologyEx(binary, binary, cv::MORPH_OPEN, cv::getStructuringElement(cv::MORPH_ELLIPSE, cv::Size(k, k)));
  cv::Mat labels, stats, centroids;
  int n = cv::connectedComponentsWithStats(binary, labels, stats, centroids, 8, CV_32S);
  int best = 0;
  for (int i = 1; i < n; ++i)
    if (best == 0 || stats.at<int>(i, cv::CC_STAT_AREA) > stats.at<int>(best, cv::CC_STAT_AREA)) best = i;
  const double small_area = double(small.total());
  if (best == 0 || stats.at<int>(best, cv::CC_STAT_AREA) < o.min_area_fraction * small_area)
    return no_fov(full, best == 0 ? strprintf("no bright region above level %.0f", t)
                                  : strprintf("the largest bright region covers %.1f%% of the image",
                                              100.0 * stats.at<int>(best, cv::CC_STAT_AREA) / small_area));
  cv::Mat component = labels == best;
  std::vector<std::vector<cv::Point>> contours;
  cv::findContours(component, contours, cv::RETR_EXTERNAL, cv::CHAIN_APPROX_NONE);
  FUNDUS_CHECK(!contours.empty(), "detect_fov: internal error (component without outline)");
  size_t outline = 0;
  for (size_t i = 1; i < contours.size(); ++i)
    if (contours[i].size() > contours[outline].size()) outline = i;
  cv::Mat filled = cv::Mat::zeros(small.size(), CV_8UC1);
  cv::drawContours(filled, contours, int(outline), cv::Scalar(255), cv::FILLED);
  double area = cv::countNonZero(filled) / small_area;
  // Without a dark surround, a retina-coloured image is a photograph cropped inside the field (the
  // whole image is used); a colourless one is not a fundus photograph.
  const bool retina_coloured = colour_dominance(small) >= o.min_colour_dominance;
  // A retina-coloured image used whole must still show a retina's structure.
  auto whole = [&](const std::string& note) {
    const double detail =
        field_detail(small, cv::Mat(small.size(), CV_8UC1, cv::Scalar(255)), std::min(small.cols, small.rows) / 2.0);
    if (featureless(detail, o)) return no_fov(full, featureless_note(detail, o));
    FovResult w = whole_image_fov(full, note);
    w.detail = detail;
    return w;
  };
  if (area > 0.995) {
    if (!retina_coloured) return no_fov(full, "no dark surround, and the colours are not a retina's");
    return whole("no dark surround: the bright region fills the image, using the whole image");
  }
  FovResult r;
  r.found = true;
  r.area_fraction = area;
  if (step == 1) {
    r.mask = filled;
    r.bbox = cv::boundingRect(r.mask);
  } else if (full_mask) {
    cv::Mat up;
    cv::resize(filled, up, used.size(), 0, 0, cv::INTER_LINEAR);
    cv::threshold(up, up, 127, 255, cv::THRESH_BINARY);
    cv::copyMakeBorder(up, r.mask, 0, full.height - used.height, 0, full.width - used.width, cv::BORDER_REPLICATE);
    r.bbox = cv::boundingRect(r.mask);
  } else {
    r.mask = filled;
    r.mask_step = step;
    cv::Rect b = cv::boundingRect(filled);  // scaled up; a box touching the right/bottom edge keeps touching it
    int x1 = b.br().x == small.cols ? full.width : b.br().x * step,
        y1 = b.br().y == small.rows ? full.height : b.br().y * step;
    r.bbox = cv::Rect(b.x * step, b.y * step, x1 - b.x * step, y1 - b.y * step);
  }

  // 4. Circle through the outline, without points on the image border (clipped fields).
  std::vector<cv::Point2d> pts;
  for (const cv::Point& p : contours[outline])
    if (p.x > 0 && p.y > 0 && p.x < small.cols - 1 && p.y < small.rows - 1) pts.emplace_back(p.x + 0.5, p.y + 0.5);
  Circle c = robust_circle(pts);
  double outline_error = 1;  // no circle at all: as bad as it gets
  if (c.ok && c.r < 2.0 * std::max(small.cols, small.rows)) {
    // How far the outline strays from the circle: the median ignores notches and tabs; a field strays
    // by about 1% of the radius, a page or a screen by about 10%.
    std::vector<double> resid;
    for (const cv::Point2d& p : pts) resid.push_back(std::abs(std::hypot(p.x - c.cx, p.y - c.cy) - c.r));
    std::nth_element(resid.begin(), resid.begin() + long(resid.size() / 2), resid.end());
    outline_error = resid[resid.size() / 2] / c.r;
  }
  if (outline_error > o.max_outline_error) {
    // Not a disc: a page, a screen, a gradient, or retina cropped so that no rim is left. Only the colour
    // can tell; a retina-coloured image is used whole rather than cut to a meaningless circle.
    if (!retina_coloured)
      return no_fov(full, outline_error < 1
                              ? strprintf("the bright region is not a disc, its outline strays %.0f%% of the radius "
                                          "from a circle, and its colours are not a retina's",
                                          100 * outline_error)
                              : "the bright region has no circular rim, and its colours are not a retina's");
    return whole("no disc-shaped field of view, using the whole image");
  }
  r.detail = field_detail(small, filled, c.r);
  if (featureless(r.detail, o)) return no_fov(full, featureless_note(r.detail, o));
  r.outline_error = outline_error;
  // Outline pixel centres lie half a pixel inside the edge.
  r.center = cv::Point2d(c.cx * sx, c.cy * sy);
  r.radius = (c.r + 0.5) * (sx + sy) / 2;
  return r;
}

}  // namespace fundus
