// Synthetic dataset planning (grades, patients, seeds) and writing (images, masks, labels.csv,
// synth.json, contact sheet). Rendering lives in synth_render.cpp.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "fundus/core/case.h"
#include "fundus/core/concurrency.h"
#include "fundus/core/csv.h"
#include "fundus/core/error.h"
#include "fundus/core/io.h"
#include "fundus/core/json.h"
#include "fundus/core/progress.h"
#include "fundus/core/rng.h"
#include "fundus/core/strings.h"
#include "fundus/data/image_io.h"
#include "fundus/data/synth.h"

namespace fundus {

std::vector<double> parse_grade_weights(const std::string& text, const std::string& what) {
  std::string t = trim(text);
  if (t.empty() || to_lower(t) == "balanced") return {};
  std::vector<std::string> parts = split(t, ',');
  FUNDUS_CHECK(int(parts.size()) == kNumGrades,
               what << ": expected 'balanced' or " << kNumGrades << " comma-separated weights, got '" << text << "'");
  std::vector<double> weights;
  double sum = 0;
  for (int g = 0; g < kNumGrades; ++g) {
    double w = parse_double(parts[g], what + " (weight of grade " + std::to_string(g) + ")");
    FUNDUS_CHECK(std::isfinite(w) && w >= 0, what << ": weight of grade " << g << " must be >= 0, got " << parts[g]);
    weights.push_back(w);
    sum += w;
  }
  FUNDUS_CHECK(sum > 0, what << ": the weights sum to zero");
  return weights;
}

PerGrade<int> synth_grade_quota(int count, const std::vector<double>& weights) {
  static_assert(kNumGrades == 5, "quota array size");
  FUNDUS_CHECK(count >= 0, "synthetic image count " << count << " is negative");
  FUNDUS_CHECK(weights.empty() || int(weights.size()) == kNumGrades,
               "grade weights: expected " << kNumGrades << " values, got " << weights.size());
  std::vector<double> w = weights.empty() ? std::vector<double>(kNumGrades, 1.0) : weights;
  double sum = 0;
  for (double v : w) {
    FUNDUS_CHECK(std::isfinite(v) && v >= 0, "grade weights must be finite and >= 0");
    sum += v;
  }
  FUNDUS_CHECK(sum > 0, "grade weights sum to zero");
  PerGrade<int> quota{};
  PerGrade<double> remainder{};
  int assigned = 0;
  for (int g = 0; g < kNumGrades; ++g) {
    double exact = count * w[g] / sum;
    quota[g] = int(std::floor(exact));
    remainder[g] = exact - quota[g];
    assigned += quota[g];
  }
  while (assigned < count) {  // largest remainder first; ties go to the lower grade
    int best = 0;
    for (int g = 1; g < kNumGrades; ++g)
      if (remainder[g] > remainder[best]) best = g;
    ++quota[best];
    remainder[best] = -1;
    ++assigned;
  }
  return quota;
}

namespace {

void validate(const SynthOptions& o) {
  FUNDUS_CHECK(o.count >= 1 && o.count <= 10000000, "--count must be 1 or more, got " << o.count);
  FUNDUS_CHECK(o.size >= 64 && o.size <= 4096, "--size must be within 64-4096, got " << o.size);
  FUNDUS_CHECK(o.jpeg_quality_min >= 1 && o.jpeg_quality_max <= 100 && o.jpeg_quality_min <= o.jpeg_quality_max,
               "JPEG quality range " << o.jpeg_quality_min << "-" << o.jpeg_quality_max
                                     << " is invalid (need 1 <= min <= max <= 100)");
  FUNDUS_CHECK(o.threads >= 0, "--threads must be >= 0, got " << o.threads);
  synth_grade_quota(0, o.grade_weights);  // validates the weights
}

// Pairs a sorted list of image grades into patients so that each pair differs by at most 1, then
// mixes pairs across adjacent grades until ~25% of patients have eyes of different grades (rahim-dr:
// 131 equal, 44 differ by 1, 3 by more).
std::vector<std::vector<int>> pair_eyes(std::vector<int> grades, Rng& rng) {
  std::vector<std::vector<int>> patients;
  if (grades.size() % 2 == 1) {  // one single-eye patient
    size_t i = rng.below(grades.size());
    patients.push_back({grades[i]});
    grades.erase(grades.begin() + long(i));
  }
  std::vector<std::array<int, 2>> pairs;
  for (size_t i = 0; i + 1 < grades.size(); i += 2) pairs.push_back({grades[i], grades[i + 1]});
  const size_t P = pairs.size();
  auto mixed = [](const std::array<int, 2>& p) { return p[0] != p[1] ? 1 : 0; };
  long n_mixed = 0;
  for (auto& p : pairs) n_mixed += mixed(p);
  const long target = std::lround(0.25 * double(P));
  for (size_t attempt = 0; P >= 2 && attempt < 50 * P && n_mixed < target; ++attempt) {
    size_t i = rng.below(P), j = rng.below(P);
    size_t ei = rng.below(2), ej = rng.below(2);
    if (i == j) continue;
    long before = mixed(pairs[i]) + mixed(pairs[j]);
    std::swap(pairs[i][ei], pairs[j][ej]);
    if (std::abs(pairs[i][0] - pairs[i][1]) > 1 || std::abs(pairs[j][0] - pairs[j][1]) > 1) {
      std::swap(pairs[i][ei], pairs[j][ej]);
      continue;
    }
    n_mixed += mixed(pairs[i]) + mixed(pairs[j]) - before;
  }
  for (auto& p : pairs) patients.push_back({p[0], p[1]});
  return patients;
}

}  // namespace

std::vector<SynthPlanEntry> plan_synthetic_dataset(const SynthOptions& o) {
  validate(o);
  PerGrade<int> quota = synth_grade_quota(o.count, o.grade_weights);
  std::vector<int> grades;  // ascending
  for (int g = 0; g < kNumGrades; ++g) grades.insert(grades.end(), size_t(quota[g]), g);

  Rng rng(Rng::derive(o.seed, 0));
  std::vector<std::vector<int>> patients;
  if (o.both_eyes) {
    patients = pair_eyes(grades, rng);
  } else {
    for (int g : grades) patients.push_back({g});
  }
  rng.shuffle(patients);

  const int digits = std::max(4, int(std::to_string(patients.size()).size()));
  std::vector<SynthPlanEntry> plan;
  plan.reserve(size_t(o.count));
  for (size_t p = 0; p < patients.size(); ++p) {
    const std::vector<int>& eye_grades = patients[p];
    std::string patient = strprintf("synth%0*zu", digits, p + 1);
    uint64_t layout_seed = Rng::derive(Rng::derive(o.seed, 1), p);
    bool first_right = rng.bernoulli(0.5);  // which eye gets eye_grades[0]
    for (size_t e = 0; e < eye_grades.size(); ++e) {
      bool right = (e == 0) == first_right;
      SynthPlanEntry entry;
      entry.patient = patient;
      entry.eye = right ? "R" : "L";
      entry.id = patient + "_" + entry.eye;
      entry.jpeg_quality = o.jpeg_quality_min + int(rng.below(uint64_t(o.jpeg_quality_max - o.jpeg_quality_min + 1)));
      entry.spec.size = o.size;
      entry.spec.grade = eye_grades[e];
      entry.spec.right_eye = right;
      entry.spec.layout_seed = layout_seed;
      entry.spec.eye_seed = Rng::derive(layout_seed, right ? 2 : 1);
      plan.push_back(entry);
    }
    // List the left eye first, as files sort.
    if (eye_grades.size() == 2 && plan[plan.size() - 2].eye == "R") std::swap(plan[plan.size() - 2], plan.back());
  }
  return plan;
}

SynthDatasetResult generate_synthetic_dataset(const SynthOptions& o) {
  FUNDUS_CHECK(!o.out_dir.empty(), "synth: no output directory given (--out)");
  auto start = std::chrono::steady_clock::now();
  std::vector<SynthPlanEntry> plan = plan_synthetic_dataset(o);
  const std::string images = join_path(o.out_dir, "images"), masks = join_path(o.out_dir, "masks");
  make_dirs(images);
  make_dirs(masks);

  SynthDatasetResult result;
  result.rows.resize(plan.size());
  Progress progress("synth", int64_t(plan.size()), "img");
  const int threads = o.threads > 0 ? o.threads : available_cores();
  // Each case depends only on its own spec, so any split over threads gives the same files.
  parallel_for(int64_t(plan.size()), threads, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const SynthPlanEntry& entry = plan[size_t(i)];
      SynthCase c = render_synthetic_fundus(entry.spec);
      write_image_rgb(join_path(images, entry.id + ".jpg"), c.image, entry.jpeg_quality);
      write_image_rgb(join_path(masks, entry.id + ".png"), c.mask);
      result.rows[size_t(i)] = {entry, c.counts};
      progress.advance();
    }
  });
  progress.finish();

  std::string csv = csv_line({"image", "grade", "eye", "patient", "ma", "hemorrhages", "exudates", "neovascular"});
  for (const SynthDatasetRow& r : result.rows) {
    const SynthLesionCounts& n = r.counts;
    csv += csv_line({"images/" + r.entry.id + ".jpg", std::to_string(r.entry.spec.grade), r.entry.eye, r.entry.patient,
                     std::to_string(n.microaneurysms), std::to_string(n.hemorrhages), std::to_string(n.exudates),
                     std::to_string(n.neovascular)});
    ++result.grade_counts[size_t(r.entry.spec.grade)];
  }
  result.labels_csv = join_path(o.out_dir, "labels.csv");
  write_file_atomic(result.labels_csv, csv);

  Json meta = {{"generator", "fundus synth"},
               {"format_version", 1},
               {"count", o.count},
               {"size", o.size},
               {"seed", o.seed},
               {"grades", o.grade_weights.empty() ? Json("balanced") : Json(o.grade_weights)},
               {"grade_counts", result.grade_counts},
               {"both_eyes", o.both_eyes},
               {"jpeg_quality", {o.jpeg_quality_min, o.jpeg_quality_max}},
               {"eye_convention", "L: optic disc on the left of the image; R: the mirror image"},
               {"mask_values",
                {{"0", "background"},
                 {"1", "microaneurysm"},
                 {"2", "haemorrhage"},
                 {"3", "hard exudate"},
                 {"4", "neovascularisation"}}}};
  save_json_file(join_path(o.out_dir, "synth.json"), meta);
  write_image_rgb(join_path(o.out_dir, "contact_sheet.jpg"), synth_contact_sheet(o.out_dir, result.rows), 90);
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

cv::Mat synth_contact_sheet(const std::string& dir, const std::vector<SynthDatasetRow>& rows, int tile) {
  FUNDUS_CHECK(tile >= 64, "contact sheet tile " << tile << " is smaller than 64 px");
  const cv::Vec3b colours[] = {{0, 0, 0}, {0, 255, 255}, {40, 90, 255}, {0, 255, 0}, {255, 0, 255}};
  cv::Mat sheet = cv::Mat::zeros(2 * tile, kNumGrades * tile, CV_8UC3);
  const double font = tile / 400.0;
  for (int g = 0; g < kNumGrades; ++g) {
    auto it = std::find_if(rows.begin(), rows.end(), [&](const SynthDatasetRow& r) { return r.entry.spec.grade == g; });
    if (it == rows.end()) continue;
    cv::Mat photo = decode_image_rgb(join_path(dir, "images/" + it->entry.id + ".jpg"));
    cv::Mat mask = cv::imread(join_path(dir, "masks/" + it->entry.id + ".png"), cv::IMREAD_UNCHANGED);
    FUNDUS_CHECK(mask.type() == CV_8UC1 && mask.size() == photo.size(),
                 dir << "/masks/" << it->entry.id << ".png: missing or not a lesion mask");
    // Dilate (max label) before shrinking so that a 1-pixel microaneurysm survives INTER_NEAREST.
    int grow = std::max(1, int(std::ceil(1.5 * photo.cols / double(tile))));
    cv::dilate(mask, mask, cv::getStructuringElement(cv::MORPH_ELLIPSE, cv::Size(2 * grow + 1, 2 * grow + 1)));
    cv::Mat top, bottom, small_mask;
    cv::resize(photo, top, cv::Size(tile, tile), 0, 0, cv::INTER_AREA);
    cv::resize(mask, small_mask, cv::Size(tile, tile), 0, 0, cv::INTER_NEAREST);
    bottom = top * 0.6;
    for (int y = 0; y < tile; ++y)
      for (int x = 0; x < tile; ++x)
        if (uint8_t v = small_mask.at<uint8_t>(y, x)) bottom.at<cv::Vec3b>(y, x) = colours[std::min<int>(v, 4)];
    const cv::Scalar white(255, 255, 255);
    cv::putText(top, std::to_string(g) + " " + grade_name(g), {6, int(22 * font / 0.64)}, cv::FONT_HERSHEY_SIMPLEX,
                font, white, 1, cv::LINE_AA);
    const SynthLesionCounts& n = it->counts;
    const std::pair<std::string, int> lines[] = {{"MA " + std::to_string(n.microaneurysms), 1},
                                                 {"haem " + std::to_string(n.hemorrhages), 2},
                                                 {"exud " + std::to_string(n.exudates), 3},
                                                 {"NV " + std::to_string(n.neovascular), 4}};
    for (int i = 0; i < 4; ++i) {
      cv::Vec3b c = colours[lines[i].second];
      cv::putText(bottom, lines[i].first, {6, int((22 + 20 * i) * font / 0.64)}, cv::FONT_HERSHEY_SIMPLEX, font * 0.8,
                  cv::Scalar(c[0], c[1], c[2]), 1, cv::LINE_AA);
    }
    top.copyTo(sheet(cv::Rect(g * tile, 0, tile, tile)));
    bottom.copyTo(sheet(cv::Rect(g * tile, tile, tile, tile)));
  }
  return sheet;
}

std::string format_synth_summary(const SynthDatasetResult& result) {
  std::string out =
      strprintf("%-10s %7s %9s %9s %9s %9s\n", "grade", "images", "MA/img", "haem/img", "exud/img", "NV/img");
  for (int g = 0; g < kNumGrades; ++g) {
    double sums[4] = {0, 0, 0, 0};
    int n = 0;
    for (const SynthDatasetRow& r : result.rows) {
      if (r.entry.spec.grade != g) continue;
      ++n;
      sums[0] += r.counts.microaneurysms;
      sums[1] += r.counts.hemorrhages;
      sums[2] += r.counts.exudates;
      sums[3] += r.counts.neovascular;
    }
    double d = std::max(n, 1);
    out += strprintf("%d %-8s %7d %9.1f %9.1f %9.1f %9.1f\n", g, grade_name(g), n, sums[0] / d, sums[1] / d,
                     sums[2] / d, sums[3] / d);
  }
  out += strprintf("wrote %zu images, masks and %s in %.1f s\n", result.rows.size(), result.labels_csv.c_str(),
                   result.seconds);
  return out;
}

}  // namespace fundus
