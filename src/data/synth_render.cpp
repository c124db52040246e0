// Procedural fundus rendering (see synth.h). Everything is drawn in the canonical LEFT-eye frame
// (disc on the left, temporal = +x, y down) into float coverage maps with analytic anti-aliasing,
// composed once per pixel, mirrored for right eyes, then passed through the "camera" (field of view,
// tint, blur, noise). Lengths are in output pixels; `u` = size / 512 converts sizes quoted at 512 px.
#include <algorithm>
#include <cmath>

#include <opencv2/imgproc.hpp>

#include "fundus/core/case.h"
#include "fundus/core/error.h"
#include "fundus/core/rng.h"
#include "fundus/data/synth.h"

namespace fundus {
namespace {

using Vec2 = cv::Point2d;
constexpr double kPi = 3.14159265358979323846;

double norm(Vec2 v) { return std::sqrt(v.dot(v)); }
double clamp01(double v) { return v < 0 ? 0 : (v > 1 ? 1 : v); }
int uniform_int(Rng& rng, int lo, int hi) { return lo + int(rng.below(uint64_t(hi - lo + 1))); }
Vec2 polar(double r, double angle) { return {r * std::cos(angle), r * std::sin(angle)}; }

// ---- rasterisers: max-composite anti-aliased shapes into a coverage map ---------------------

struct Box {
  int x0, y0, x1, y1;  // inclusive
};
// Pixels within `ext` of the rectangle [lo, hi], clipped to the map.
Box clip_box(const cv::Mat1f& m, Vec2 lo, Vec2 hi, double ext) {
  return {std::max(0, int(std::floor(lo.x - ext))), std::max(0, int(std::floor(lo.y - ext))),
          std::min(m.cols - 1, int(std::ceil(hi.x + ext))), std::min(m.rows - 1, int(std::ceil(hi.y + ext)))};
}

// Filled ellipse with semi-axes a, b rotated by `angle`; `soft` is the edge ramp width in pixels
// (1 = plain anti-aliasing, larger = feathered).
void fill_ellipse(cv::Mat1f& m, Vec2 c, double a, double b, double angle, double soft, float value = 1.f) {
  a = std::max(a, 0.5);
  b = std::max(b, 0.5);
  double ca = std::cos(angle), sa = std::sin(angle);
  Box bx = clip_box(m, c, c, std::max(a, b) + soft + 1);
  for (int y = bx.y0; y <= bx.y1; ++y) {
    float* row = m.ptr<float>(y);
    for (int x = bx.x0; x <= bx.x1; ++x) {
      double dx = x + 0.5 - c.x, dy = y + 0.5 - c.y;
      double pu = dx * ca + dy * sa, pv = -dx * sa + dy * ca;
      double rho = std::sqrt(pu * pu / (a * a) + pv * pv / (b * b));
      double g = std::sqrt(pu * pu / (a * a * a * a) + pv * pv / (b * b * b * b));
      // Signed distance to the boundary to first order: (rho - 1) / |grad rho|.
      double sd = g > 1e-12 ? (rho - 1) * rho / g : -std::min(a, b);
      float alpha = float(value * clamp01(0.5 - sd / soft));
      if (alpha > row[x]) row[x] = alpha;
    }
  }
}

// A segment of a stroke whose width goes from w0 to w1. The cross-section is darkest in the middle
// (`core` = relative opacity at the edge); `reflex` > 0 cuts a central light reflex (arteries).
void stroke_segment(cv::Mat1f& m, Vec2 p0, Vec2 p1, double w0, double w1, double core = 0.6, double reflex = 0) {
  Vec2 d = p1 - p0;
  double dd = std::max(d.dot(d), 1e-12);
  double ext = std::max(w0, w1) / 2 + 1.5;
  Box bx = clip_box(m, {std::min(p0.x, p1.x), std::min(p0.y, p1.y)}, {std::max(p0.x, p1.x), std::max(p0.y, p1.y)}, ext);
  for (int y = bx.y0; y <= bx.y1; ++y) {
    float* row = m.ptr<float>(y);
    for (int x = bx.x0; x <= bx.x1; ++x) {
      Vec2 q(x + 0.5, y + 0.5);
      double t = std::clamp((q - p0).dot(d) / dd, 0.0, 1.0);
      double r = std::max(0.5 * (w0 + t * (w1 - w0)), 0.3);
      double dist = norm(q - (p0 + t * d));
      double cover = clamp01(r + 0.5 - dist);
      if (cover <= 0) continue;
      if (r < 0.5) cover *= 2 * r;  // sub-pixel lines fade instead of staying one pixel dark
      double s = std::min(dist / (r + 0.5), 1.0);
      double profile = core + (1 - core) * std::sqrt(1 - s * s);
      if (reflex > 0) profile *= 1 - reflex * std::exp(-(dist * dist) / (0.03 * r * r + 0.1));
      float alpha = float(cover * profile);
      if (alpha > row[x]) row[x] = alpha;
    }
  }
}

void stroke_polyline(cv::Mat1f& m, const std::vector<Vec2>& pts, const std::vector<double>& widths, double core = 0.6,
                     double reflex = 0) {
  for (size_t i = 1; i < pts.size(); ++i) stroke_segment(m, pts[i - 1], pts[i], widths[i - 1], widths[i], core, reflex);
}

// Smooth random field with zero mean and unit-ish amplitude: a grid x grid Gaussian lattice upsampled
// bicubically (per-pixel arithmetic, so independent of OpenCV's thread partitioning).
cv::Mat1f smooth_noise(Rng& rng, int grid, int size) {
  cv::Mat1f g(grid, grid);
  for (int i = 0; i < grid * grid; ++i) g(i) = float(rng.normal());
  cv::Mat1f out;
  cv::resize(g, out, cv::Size(size, size), 0, 0, cv::INTER_CUBIC);
  return out;
}

// ---- anatomy (per patient, canonical left eye) -------------------------------------------

struct Vessel {
  std::vector<Vec2> pts;
  std::vector<double> widths;
  bool artery = false;
  int depth = 0;  // 0 = trunk from the disc
};

struct Anatomy {
  int size = 0;
  double u = 1;  // pixels per pixel-at-512
  Vec2 fov_c;
  double fov_r = 0;
  Vec2 disc_c;
  double disc_r = 0, disc_aspect = 1, disc_angle = 0;
  Vec2 cup_c;
  double cup_r = 0;
  Vec2 macula_c;
  cv::Vec3d retina;  // base RGB in [0, 1]
  cv::Vec3d disc_rgb, cup_rgb;
  double vignette = 0, vignette_power = 3, illum_gradient = 0, illum_angle = 0;
  double macula_dark = 0, sheen = 0;
  bool foveal_reflex = false, notch = false;
  double notch_angle = 0;
  std::vector<Vessel> vessels;
};

struct Growth {
  double heading, target, pull;  // pull: rate (per FOV radius of length) of turning towards target
  double noise;                  // heading random walk, radians per sqrt(FOV radius)
  double width, taper;           // width in pixels; e-folding length of the taper in FOV radii
  double branch_rate;            // branches per FOV radius
  double max_len;                // in FOV radii
  int depth;
};

void grow_vessel(const Anatomy& a, Rng& rng, Vec2 start, const Growth& g, bool artery, std::vector<Vessel>& out) {
  const double R = a.fov_r, step = 0.008 * R, min_w = 0.65 * a.u;
  Vessel v;
  v.artery = artery;
  v.depth = g.depth;
  double theta = g.heading, len = 0, w_scale = 1;
  Vec2 pos = start;
  v.pts.push_back(pos);
  v.widths.push_back(g.width);
  struct Branch {
    Vec2 pos;
    double theta, width;
  };
  std::vector<Branch> branches;
  while (len < g.max_len * R) {
    theta += g.pull * (g.target - theta) * step / R + g.noise * rng.normal() * std::sqrt(step / R);
    pos += polar(step, theta);
    len += step;
    double w = g.width * w_scale * std::exp(-len / (g.taper * R));
    if (w < min_w || norm(pos - a.fov_c) > 1.03 * R) break;
    if (g.depth > 0 && norm(pos - a.macula_c) < 0.11 * R) break;  // foveal avascular zone
    v.pts.push_back(pos);
    v.widths.push_back(w);
    if (g.depth < 3 && len > 0.06 * R && rng.uniform() < g.branch_rate * step / R) {
      branches.push_back({pos, theta, w});
      w_scale *= 0.9;  // the parent narrows after giving off a branch
    }
  }
  if (v.pts.size() > 1) out.push_back(std::move(v));
  for (const Branch& b : branches) {
    double side = rng.bernoulli(0.5) ? 1 : -1;
    double heading = b.theta + side * rng.uniform(0.45, 1.1);
    Growth child{heading,
                 heading + side * rng.uniform(-0.3, 0.3),
                 1.5,
                 g.noise * 1.2,
                 b.width * rng.uniform(0.5, 0.75),
                 0.5 + 0.3 * rng.uniform(),
                 g.branch_rate * 0.8,
                 rng.uniform(0.2, 0.65),
                 g.depth + 1};
    grow_vessel(a, rng, b.pos, child, artery, out);
  }
}

void grow_vessel_tree(Anatomy& a, Rng& rng) {
  const double u = a.u;
  // An artery and a vein for each of the four arcades; sign +1 = superior (up = -y), -1 = inferior.
  for (double sup : {1.0, -1.0}) {
    for (bool artery : {false, true}) {
      double w = (artery ? 5.0 : 6.5) * u * rng.uniform(0.9, 1.1);
      double sx = rng.uniform(-0.2, 0.15), sy = rng.uniform(0.0, 0.25);  // (separate: argument order is unspecified)
      Vec2 start = a.disc_c + Vec2(a.disc_r * sx, -sup * a.disc_r * sy);
      // Temporal arcade: leaves the disc vertically and curves around the macula.
      double h0 = -sup * rng.uniform(1.6, 1.9) + (artery ? 0.08 : -0.08) * sup;
      Growth temporal{h0, sup * rng.uniform(0.0, 0.3), rng.uniform(1.4, 2.0), 0.45, w, 1.6, 5.0, 1.7, 0};
      grow_vessel(a, rng, start, temporal, artery, a.vessels);
      // Nasal arcade: thinner, towards the nasal edge.
      double hn = -sup * rng.uniform(1.9, 2.3);
      Growth nasal{hn, -sup * rng.uniform(2.4, 2.9), 1.0, 0.5, w * 0.75, 0.8, 5.0, 1.2, 0};
      grow_vessel(a, rng, start, nasal, artery, a.vessels);
    }
  }
  // Small direct branches: nasal, and macular ones that stop short of the fovea.
  int n_nasal = uniform_int(rng, 1, 3), n_macular = uniform_int(rng, 1, 3);
  for (int i = 0; i < n_nasal + n_macular; ++i) {
    bool nasal = i < n_nasal;
    double h = nasal ? kPi + rng.uniform(-0.5, 0.5) : rng.uniform(-0.45, 0.45);
    Growth g{h, h, 0.5, 0.6, rng.uniform(2.0, 3.2) * u, 0.5, 3.0, nasal ? 0.9 : 0.5, 1};
    bool artery = rng.bernoulli(0.5);
    grow_vessel(a, rng, a.disc_c + polar(a.disc_r * 0.4, h), g, artery, a.vessels);
  }
}

Anatomy make_anatomy(int size, uint64_t layout_seed) {
  Rng rng(Rng::derive(layout_seed, 1));
  Anatomy a;
  a.size = size;
  a.u = size / 512.0;
  const double s = size;
  a.fov_r = s * rng.uniform(0.44, 0.48);
  double off = std::min(0.015 * s, 0.5 * s - a.fov_r);
  double fx = rng.uniform(-off, off), fy = rng.uniform(-off, off);
  a.fov_c = {s / 2 + fx, s / 2 + fy};
  const double R = a.fov_r;
  a.disc_r = R * rng.uniform(0.12, 0.15);
  double dx = rng.uniform(0.5, 0.62), dy = rng.uniform(-0.08, 0.08);
  a.disc_c = a.fov_c + Vec2(-dx * R, dy * R);
  a.disc_aspect = rng.uniform(1.0, 1.12);
  a.disc_angle = rng.uniform(-0.2, 0.2);
  a.cup_r = a.disc_r * rng.uniform(0.3, 0.5);
  double cx = rng.uniform(0.05, 0.2), cy = rng.uniform(-0.1, 0.1);
  a.cup_c = a.disc_c + Vec2(cx * a.disc_r, cy * a.disc_r);
  a.macula_c = a.disc_c + Vec2(5.0 * a.disc_r * rng.uniform(0.94, 1.06), 0);  // 2.5 disc diameters
  double red = rng.uniform(0.78, 0.92), green = rng.uniform(0.36, 0.5), blue = rng.uniform(0.08, 0.2);
  a.retina = {red, red * green, red * blue};
  a.disc_rgb = {1.0, rng.uniform(0.64, 0.78), rng.uniform(0.35, 0.5)};
  a.cup_rgb = {1.0, 0.9, rng.uniform(0.62, 0.78)};
  a.vignette = rng.uniform(0.3, 0.5);
  a.vignette_power = rng.uniform(2.2, 3.5);
  a.illum_gradient = rng.uniform(0.0, 0.15);
  a.illum_angle = rng.uniform(0, 2 * kPi);
  a.macula_dark = rng.uniform(0.2, 0.38);
  a.foveal_reflex = rng.bernoulli(0.6);
  a.sheen = rng.bernoulli(0.5) ? rng.uniform(0.04, 0.12) : 0.0;
  a.notch = rng.bernoulli(0.5);
  a.notch_angle = -kPi / 2 * double(rng.below(4)) + rng.uniform(-0.1, 0.1);
  Rng vessel_rng(Rng::derive(layout_seed, 2));
  grow_vessel_tree(a, vessel_rng);
  return a;
}

// ---- lesions (per eye, canonical frame) ------------------------------------------------------

struct LesionMaps {
  cv::Mat1f ma, hem, exudate, nv, dust;
  SynthLesionCounts counts;
};

// A lesion site in the posterior pole: concentrated around the macula, never on the disc.
Vec2 sample_site(const Anatomy& a, Rng& rng, double sigma) {
  const double R = a.fov_r;
  for (int attempt = 0; attempt < 200; ++attempt) {
    Vec2 p;
    if (rng.bernoulli(0.6)) {
      double nx = rng.normal(), ny = rng.normal();
      p = a.macula_c + Vec2(nx * sigma * R, ny * sigma * R);
    } else {
      double r = 0.86 * R * std::sqrt(rng.uniform()), phi = rng.uniform(0, 2 * kPi);
      p = a.fov_c + polar(r, phi);
    }
    if (norm(p - a.fov_c) < 0.86 * R && norm(p - a.disc_c) > 1.5 * a.disc_r) return p;
  }
  return a.macula_c;
}

struct VesselPoint {
  Vec2 pos;
  double angle, width;
};
// Points on visible vessels of at least `min_width` px, away from the disc and the FOV edge.
std::vector<VesselPoint> vessel_points(const Anatomy& a, double min_width, int max_depth) {
  std::vector<VesselPoint> out;
  for (const Vessel& v : a.vessels) {
    if (v.depth > max_depth) continue;
    for (size_t i = 1; i < v.pts.size(); i += 4) {
      Vec2 p = v.pts[i], d = v.pts[i] - v.pts[i - 1];
      if (v.widths[i] < min_width || norm(p - a.fov_c) > 0.82 * a.fov_r || norm(p - a.disc_c) < 1.8 * a.disc_r)
        continue;
      out.push_back({p, std::atan2(d.y, d.x), v.widths[i]});
    }
  }
  return out;
}

void draw_microaneurysm(const Anatomy& a, Rng& rng, LesionMaps& m) {
  Vec2 p = sample_site(a, rng, 0.3);
  double t = rng.uniform();
  double r = std::max(0.75, (1.0 + 2.0 * t * t) * a.u);  // 1-3 px at 512, mostly small
  fill_ellipse(m.ma, p, r, r, 0, 1.0);
  ++m.counts.microaneurysms;
}

void draw_dot_blot(const Anatomy& a, Rng& rng, LesionMaps& m, double max_radius) {
  Vec2 c = sample_site(a, rng, 0.35);
  double r = rng.uniform(3.0, max_radius) * a.u;
  int parts = uniform_int(rng, 1, 3);
  for (int i = 0; i < parts; ++i) {
    double ox = rng.normal(), oy = rng.normal();
    double ra = rng.uniform(0.6, 1.0), rb = rng.uniform(0.5, 0.9), angle = rng.uniform(0, kPi);
    Vec2 p = c + Vec2(ox * 0.4 * r, oy * 0.4 * r);
    fill_ellipse(m.hem, p, std::max(0.9, r * ra), std::max(0.9, r * rb), angle, 1.2);
  }
  ++m.counts.hemorrhages;
}

// Flame haemorrhage: elongated, feathered, along a vessel (nerve fibre direction) just beside it.
void draw_flame(const Anatomy& a, Rng& rng, const std::vector<VesselPoint>& sites, LesionMaps& m) {
  if (sites.empty()) return draw_dot_blot(a, rng, m, 8.0);
  const VesselPoint& v = sites[rng.below(sites.size())];
  double side = rng.bernoulli(0.5) ? 1 : -1;
  double gap = v.width / 2 + rng.uniform(1.0, 3.0) * a.u;
  double len = rng.uniform(7.0, 14.0) * a.u, wid = rng.uniform(2.0, 3.5) * a.u;
  double along = rng.uniform(-0.5, 0.5) * len;
  Vec2 c = v.pos + polar(along, v.angle) + polar(side * (gap + wid), v.angle + kPi / 2);
  fill_ellipse(m.hem, c, len, wid, v.angle, 1.6);
  ++m.counts.hemorrhages;
}

// Hard exudates: a cluster of small bright yellow spots, scattered or in a circinate ring.
void draw_exudate_cluster(const Anatomy& a, Rng& rng, LesionMaps& m) {
  Vec2 c = sample_site(a, rng, 0.25);
  int n = uniform_int(rng, 3, 12);
  bool ring = rng.bernoulli(0.35);
  double ring_r = rng.uniform(8.0, 20.0) * a.u, spread = rng.uniform(3.0, 9.0) * a.u;
  double arc0 = rng.uniform(0, 2 * kPi), arc = rng.uniform(kPi, 2 * kPi);
  for (int i = 0; i < n; ++i) {
    Vec2 p;
    if (ring) {
      double phi = arc0 + arc * (i + rng.uniform()) / n;
      double rr = ring_r * rng.uniform(0.85, 1.15);
      p = c + polar(rr, phi);
    } else {
      double nx = rng.normal(), ny = rng.normal();
      p = c + Vec2(nx * spread, ny * spread);
    }
    if (norm(p - a.fov_c) > 0.9 * a.fov_r) continue;
    double r = std::max(0.8, rng.uniform(1.0, 3.2) * a.u);
    fill_ellipse(m.exudate, p, r, r * rng.uniform(0.6, 1.0), rng.uniform(0, kPi), 0.8);
    if (rng.bernoulli(0.5)) {  // irregular outline
      double ox = rng.uniform(-1, 1), oy = rng.uniform(-1, 1);
      fill_ellipse(m.exudate, p + Vec2(ox * r, oy * r), 0.7 * r, 0.6 * r, 0, 0.8);
    }
    ++m.counts.exudates;
  }
}

// Neovascular tuft: fine tortuous loops fed from a point on the disc rim (NVD) or on an arcade (NVE).
void draw_neovascular_tuft(const Anatomy& a, Rng& rng, const std::vector<VesselPoint>& arcade, LesionMaps& m) {
  Vec2 base;
  double out_angle;
  if (arcade.empty() || rng.bernoulli(0.5)) {
    double phi = rng.uniform(0, 2 * kPi);
    base = a.disc_c + polar(a.disc_r * rng.uniform(0.7, 1.0), phi);
    out_angle = phi;
  } else {
    const VesselPoint& v = arcade[rng.below(arcade.size())];
    base = v.pos;
    out_angle = v.angle + (rng.bernoulli(0.5) ? 1 : -1) * kPi / 2;
  }
  double tuft_r = rng.uniform(12.0, 26.0) * a.u;
  double w = std::max(0.8, rng.uniform(1.0, 1.6) * a.u);
  int loops = uniform_int(rng, 8, 16);
  for (int i = 0; i < loops; ++i) {
    double ang = out_angle + rng.uniform(-1.2, 1.2), dist = tuft_r * std::sqrt(rng.uniform(0.1, 1.0));
    Vec2 c = base + polar(dist, ang);
    double lr = rng.uniform(3.0, 8.0) * a.u, p1 = rng.uniform(0, 2 * kPi), p2 = rng.uniform(0, 2 * kPi);
    double h1 = rng.uniform(0.1, 0.3), h2 = rng.uniform(0.05, 0.2);
    std::vector<Vec2> loop;
    for (int k = 0; k <= 24; ++k) {
      double t = 2 * kPi * k / 24;
      loop.push_back(c + polar(lr * (1 + h1 * std::sin(2 * t + p1) + h2 * std::sin(3 * t + p2)), t));
    }
    stroke_polyline(m.nv, loop, std::vector<double>(loop.size(), w), 0.8);
    // A wiggly feeder from the base to the loop.
    std::vector<Vec2> feeder{base};
    Vec2 d = c - base;
    Vec2 perp(-d.y, d.x);
    for (int k = 1; k <= 6; ++k) {
      double j = rng.uniform(-0.12, 0.12);
      feeder.push_back(base + d * (k / 6.0) + perp * (k < 6 ? j : 0.0));
    }
    stroke_polyline(m.nv, feeder, std::vector<double>(feeder.size(), w), 0.8);
  }
  ++m.counts.neovascular;
}

LesionMaps draw_lesions(const Anatomy& a, int grade, uint64_t eye_seed) {
  const int n = a.size;
  LesionMaps m{cv::Mat1f::zeros(n, n), cv::Mat1f::zeros(n, n), cv::Mat1f::zeros(n, n),
               cv::Mat1f::zeros(n, n), cv::Mat1f::zeros(n, n), {}};
  Rng rng(Rng::derive(eye_seed, 1));
  // Counts per grade: {microaneurysms, dot-blot, flame, exudate clusters, neovascular tufts} ranges.
  struct Range {
    int lo, hi;
  };
  static const Range table[kNumGrades][5] = {
      {{0, 0}, {0, 0}, {0, 0}, {0, 0}, {0, 0}},  {{4, 10}, {0, 1}, {0, 0}, {0, 0}, {0, 0}},
      {{6, 15}, {2, 5}, {1, 3}, {1, 3}, {0, 0}}, {{10, 22}, {7, 13}, {5, 11}, {3, 6}, {0, 0}},
      {{5, 14}, {2, 6}, {1, 3}, {0, 2}, {1, 3}},
  };
  const Range* r = table[grade];
  int n_ma = uniform_int(rng, r[0].lo, r[0].hi), n_dot = uniform_int(rng, r[1].lo, r[1].hi);
  int n_flame = uniform_int(rng, r[2].lo, r[2].hi), n_ex = uniform_int(rng, r[3].lo, r[3].hi);
  int n_nv = uniform_int(rng, r[4].lo, r[4].hi);
  std::vector<VesselPoint> flame_sites = vessel_points(a, 1.5 * a.u, 3);
  std::vector<VesselPoint> arcade_sites = vessel_points(a, 2.0 * a.u, 0);
  for (int i = 0; i < n_ma; ++i) draw_microaneurysm(a, rng, m);
  for (int i = 0; i < n_dot; ++i) draw_dot_blot(a, rng, m, grade == 4 && i == 0 ? 14.0 : 8.0);
  for (int i = 0; i < n_flame; ++i) draw_flame(a, rng, flame_sites, m);
  for (int i = 0; i < n_ex; ++i) draw_exudate_cluster(a, rng, m);
  for (int i = 0; i < n_nv; ++i) draw_neovascular_tuft(a, rng, arcade_sites, m);

  // Camera dust: faint grey blurry spots, any grade, not lesions (a distractor).
  Rng nuisance(Rng::derive(eye_seed, 2));
  int n_dust = nuisance.bernoulli(0.3) ? uniform_int(nuisance, 1, 3) : 0;
  for (int i = 0; i < n_dust; ++i) {
    double rr = 0.8 * a.fov_r * std::sqrt(nuisance.uniform()), phi = nuisance.uniform(0, 2 * kPi);
    double radius = nuisance.uniform(4.0, 10.0) * a.u, strength = nuisance.uniform(0.12, 0.25);
    fill_ellipse(m.dust, a.fov_c + polar(rr, phi), radius, radius, 0, radius * 0.8, float(strength));
  }
  return m;
}

// ---- composition ------------------------------------------------------------------------------

cv::Mat3f compose(const Anatomy& a, const LesionMaps& les, uint64_t layout_seed) {
  const int n = a.size;
  const double R = a.fov_r;
  Rng tex_rng(Rng::derive(layout_seed, 3));
  double low_amp = tex_rng.uniform(0.04, 0.08), mid_amp = tex_rng.uniform(0.01, 0.035), fine_amp = 0.015;
  cv::Mat1f low = smooth_noise(tex_rng, 5, n), mid = smooth_noise(tex_rng, 24, n);
  cv::Mat1f fine = smooth_noise(tex_rng, std::max(8, n / 4), n);

  cv::Mat1f disc = cv::Mat1f::zeros(n, n), cup = cv::Mat1f::zeros(n, n);
  fill_ellipse(disc, a.disc_c, a.disc_r, a.disc_r * a.disc_aspect, a.disc_angle, 0.1 * a.disc_r);
  fill_ellipse(cup, a.cup_c, a.cup_r, a.cup_r * a.disc_aspect, a.disc_angle, 0.35 * a.cup_r);
  cv::Mat1f veins = cv::Mat1f::zeros(n, n), arteries = cv::Mat1f::zeros(n, n), sheen = cv::Mat1f::zeros(n, n);
  for (const Vessel& v : a.vessels) {
    stroke_polyline(v.artery ? arteries : veins, v.pts, v.widths, 0.7, v.artery ? 0.35 : 0.0);
    if (a.sheen > 0 && v.depth == 0 && !v.artery) {
      std::vector<double> wide(v.widths.size());
      for (size_t i = 0; i < wide.size(); ++i) wide[i] = v.widths[i] * 5;
      stroke_polyline(sheen, v.pts, wide, 0.0);
    }
  }

  // Colour factors (multiplicative: a vessel or haemorrhage darkens whatever lies beneath it).
  const cv::Vec3d k_vein(0.55, 0.33, 0.33), k_artery(0.7, 0.48, 0.48), k_hem(0.55, 0.3, 0.3);
  const cv::Vec3d k_ma(0.55, 0.3, 0.3), k_nv(0.55, 0.3, 0.3), exudate_rgb(1.0, 0.85, 0.35);
  const Vec2 illum_dir = polar(1, a.illum_angle);
  const double sigma_m2 = 2 * std::pow(0.9 * a.disc_r, 2), fovea_r = 0.07 * a.disc_r;

  cv::Mat3f img(n, n);
  for (int y = 0; y < n; ++y) {
    cv::Vec3f* out = img.ptr<cv::Vec3f>(y);
    for (int x = 0; x < n; ++x) {
      Vec2 q(x + 0.5, y + 0.5), dq = q - a.fov_c;
      double rr = std::min(norm(dq) / R, 1.1);
      double light = (1 - a.vignette * std::pow(rr, a.vignette_power)) * (1 + a.illum_gradient * dq.dot(illum_dir) / R);
      double tex = (1 + low_amp * low(y, x)) * (1 + mid_amp * mid(y, x)) * (1 + fine_amp * fine(y, x));
      Vec2 dm = q - a.macula_c;
      double dm2 = dm.dot(dm);
      double mac = dm2 < 8 * sigma_m2 ? 1 - a.macula_dark * std::exp(-dm2 / sigma_m2) : 1.0;
      cv::Vec3d c = a.retina * (light * tex);
      c[0] *= mac;
      c[1] *= mac * mac;  // the macula is browner, not just darker
      c[2] *= mac * mac;
      if (a.foveal_reflex && dm2 < 9 * fovea_r * fovea_r)
        c += cv::Vec3d(1, 1, 1) * (0.12 * std::exp(-dm2 / (fovea_r * fovea_r)));
      double d = disc(y, x), cu = cup(y, x);
      double disc_light = std::sqrt(light) * (1 + 0.5 * (tex - 1));
      if (d > 0) c = c * (1 - d) + a.disc_rgb * (d * disc_light);
      if (cu > 0) c = c * (1 - cu) + a.cup_rgb * (cu * disc_light);
      if (sheen(y, x) > 0) c += cv::Vec3d(0.9, 0.9, 1.0) * (a.sheen * sheen(y, x) * light);
      auto darken = [&](double alpha, const cv::Vec3d& k) {
        if (alpha <= 0) return;
        for (int ch = 0; ch < 3; ++ch) c[ch] *= 1 - alpha * (1 - k[ch]);
      };
      darken(veins(y, x), k_vein);
      darken(arteries(y, x), k_artery);
      darken(les.ma(y, x), k_ma);
      darken(les.hem(y, x), k_hem);
      darken(les.nv(y, x), k_nv);
      double ex = les.exudate(y, x);
      if (ex > 0) c = c * (1 - 0.9 * ex) + exudate_rgb * (0.9 * ex * (0.55 + 0.45 * light));
      double dust = les.dust(y, x);
      if (dust > 0) c *= 1 - dust;
      out[x] = cv::Vec3f(float(c[0]), float(c[1]), float(c[2]));
    }
  }
  return img;
}

// Lesion label per pixel: coverage >= 0.5, later types win.
cv::Mat1b lesion_mask(const LesionMaps& les) {
  cv::Mat1b mask = cv::Mat1b::zeros(les.ma.size());
  const std::pair<const cv::Mat1f*, uint8_t> layers[] = {{&les.ma, kLesionMicroaneurysm},
                                                         {&les.hem, kLesionHemorrhage},
                                                         {&les.exudate, kLesionExudate},
                                                         {&les.nv, kLesionNeovascular}};
  for (auto& [map, label] : layers) mask.setTo(label, *map >= 0.5f);
  return mask;
}

// Field of view in the output frame: an anti-aliased disc, plus the camera's notch (a small tab).
cv::Mat1f fov_alpha(int n, Vec2 c, double r, bool notch, double notch_angle) {
  cv::Mat1f alpha = cv::Mat1f::zeros(n, n);
  fill_ellipse(alpha, c, r, r, 0, 1.0);
  if (notch) {
    Vec2 dir = polar(1, notch_angle), perp(-dir.y, dir.x);
    double half_w = 0.035 * r, depth = 0.03 * r;
    Vec2 tab = c + dir * (r + depth / 2);
    Box bx = clip_box(alpha, tab, tab, half_w + depth + 2);
    for (int y = bx.y0; y <= bx.y1; ++y)
      for (int x = bx.x0; x <= bx.x1; ++x) {
        Vec2 q = Vec2(x + 0.5, y + 0.5) - c;
        double radial = q.dot(dir), tangential = std::abs(q.dot(perp));
        if (radial < r - 2 * depth) continue;
        float v = float(clamp01(std::min(r + depth - radial, half_w - tangential) + 0.5));
        alpha(y, x) = std::max(alpha(y, x), v);
      }
  }
  return alpha;
}

}  // namespace

SynthCase render_synthetic_fundus(const SynthCaseSpec& spec) {
  FUNDUS_CHECK(spec.size >= 64 && spec.size <= 4096, "synthetic image size " << spec.size << " outside 64-4096");
  FUNDUS_CHECK(spec.grade >= 0 && spec.grade < kNumGrades, "synthetic grade " << spec.grade << " outside 0-4");
  const int n = spec.size;
  Anatomy a = make_anatomy(n, spec.layout_seed);
  LesionMaps les = draw_lesions(a, spec.grade, spec.eye_seed);
  cv::Mat3f img = compose(a, les, spec.layout_seed);
  cv::Mat1b mask = lesion_mask(les);

  SynthCase out;
  out.grade = spec.grade;
  out.right_eye = spec.right_eye;
  out.counts = les.counts;
  out.fov_center = a.fov_c;
  out.fov_radius = a.fov_r;
  out.disc_center = a.disc_c;
  out.disc_radius = a.disc_r;
  out.macula_center = a.macula_c;
  if (spec.right_eye) {  // mirror about the vertical centre line: x -> n - x
    cv::flip(img, img, 1);
    cv::flip(mask, mask, 1);
    for (Vec2* p : {&out.fov_center, &out.disc_center, &out.macula_center}) p->x = n - p->x;
  }

  // Camera: field of view (the notch belongs to the camera, so it is not mirrored), exposure, tint,
  // gamma, focus blur and sensor noise. None of it depends on the grade.
  Rng cam(Rng::derive(spec.eye_seed, 3));
  double brightness = cam.uniform(0.75, 1.15), gamma = cam.uniform(0.85, 1.15);
  double tr = cam.uniform(0.95, 1.05), tg = cam.uniform(0.9, 1.1), tb = cam.uniform(0.85, 1.15);
  double blur = cam.bernoulli(0.5) ? cam.uniform(0.3, 1.2) * a.u : 0.0;
  double noise = cam.uniform(0.003, 0.015);
  cv::Mat1f fov = fov_alpha(n, out.fov_center, out.fov_radius, a.notch, a.notch_angle);
  const cv::Vec3f gain(float(brightness * tr), float(brightness * tg), float(brightness * tb));
  for (int y = 0; y < n; ++y) {
    cv::Vec3f* row = img.ptr<cv::Vec3f>(y);
    const float* f = fov.ptr<float>(y);
    for (int x = 0; x < n; ++x) row[x] = row[x].mul(gain) * f[x];
  }
  mask.setTo(0, fov < 0.5f);
  if (blur > 0.2) cv::GaussianBlur(img, img, cv::Size(0, 0), blur);
  // Gamma through a 12-bit table, then sensor noise. The noise is Irwin-Hall (sum of four 16-bit
  // uniforms from one draw, variance 1): close enough to Gaussian and 5x cheaper than Box-Muller.
  std::vector<float> gamma_lut(4096);
  for (int i = 0; i < 4096; ++i) gamma_lut[size_t(i)] = float(255 * std::pow(i / 4095.0, gamma));
  const float noise_scale = float(255 * noise * std::sqrt(12.0 / 4) / 65536.0);
  out.image.create(n, n, CV_8UC3);
  for (int y = 0; y < n; ++y) {
    const cv::Vec3f* src = img.ptr<cv::Vec3f>(y);
    cv::Vec3b* dst = out.image.ptr<cv::Vec3b>(y);
    for (int x = 0; x < n; ++x)
      for (int ch = 0; ch < 3; ++ch) {
        uint64_t r = cam.next_u64();
        float sum = float((r & 0xffff) + ((r >> 16) & 0xffff) + ((r >> 32) & 0xffff) + (r >> 48)) - 2 * 65535.0f;
        float v = gamma_lut[size_t(std::clamp(src[x][ch], 0.f, 1.f) * 4095.f + 0.5f)] + noise_scale * sum;
        dst[x][ch] = uint8_t(std::clamp(v + 0.5f, 0.f, 255.f));
      }
  }
  out.mask = mask;
  return out;
}

}  // namespace fundus
