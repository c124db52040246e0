// Synthetic fundus generator: determinism, lesion masks, anatomy (mirror relation), plan and files.
#include <algorithm>
#include <cmath>
#include <map>
#include <set>

#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "fundus/core/csv.h"
#include "fundus/core/error.h"
#include "fundus/core/io.h"
#include "fundus/core/json.h"
#include "fundus/data/image_io.h"
#include "fundus/data/synth.h"
#include "test_support.h"

namespace fundus {
namespace {

SynthCaseSpec spec_of(int grade, uint64_t seed, int size = 256, bool right = false) {
  SynthCaseSpec s;
  s.size = size;
  s.grade = grade;
  s.right_eye = right;
  s.layout_seed = seed;
  s.eye_seed = seed * 7919 + (right ? 1 : 0);
  return s;
}

bool same_bytes(const cv::Mat& a, const cv::Mat& b) {
  return a.size() == b.size() && a.type() == b.type() && cv::countNonZero(a.reshape(1) != b.reshape(1)) == 0;
}

// Centre of the brightest 9x9-smoothed spot of the luma: the optic disc in these images.
cv::Point2d brightest_spot(const cv::Mat& rgb) {
  cv::Mat grey, smooth;
  cv::cvtColor(rgb, grey, cv::COLOR_RGB2GRAY);
  cv::blur(grey, smooth, cv::Size(9, 9));
  cv::Point at;
  cv::minMaxLoc(smooth, nullptr, nullptr, nullptr, &at);
  return {at.x + 0.5, at.y + 0.5};
}

TEST(SynthRender, SameSpecGivesIdenticalBytesAndDifferentSeedsDiffer) {
  SynthCase a = render_synthetic_fundus(spec_of(3, 11));
  SynthCase b = render_synthetic_fundus(spec_of(3, 11));
  ASSERT_EQ(a.image.type(), CV_8UC3);
  ASSERT_EQ(a.mask.type(), CV_8UC1);
  EXPECT_EQ(a.image.size(), cv::Size(256, 256));
  EXPECT_EQ(a.mask.size(), a.image.size());
  EXPECT_TRUE(same_bytes(a.image, b.image));
  EXPECT_TRUE(same_bytes(a.mask, b.mask));

  SynthCaseSpec other_eye = spec_of(3, 11);
  other_eye.eye_seed += 1;  // same anatomy, different lesions and photo
  SynthCase c = render_synthetic_fundus(other_eye);
  EXPECT_FALSE(same_bytes(a.image, c.image));
  EXPECT_FALSE(same_bytes(a.mask, c.mask));
  SynthCase d = render_synthetic_fundus(spec_of(3, 12));
  EXPECT_FALSE(same_bytes(a.image, d.image));
  EXPECT_NE(a.disc_center, d.disc_center);
}

TEST(SynthRender, GradeZeroHasNoLesionsAndLesionPixelsRiseWithGrade) {
  const int n = 8;
  double mean_pixels[5] = {};
  for (int g = 0; g < 5; ++g) {
    for (int i = 0; i < n; ++i) {
      SynthCase c = render_synthetic_fundus(spec_of(g, 100 + i));
      int pixels = cv::countNonZero(c.mask);
      mean_pixels[g] += double(pixels) / n;
      int nv = cv::countNonZero(c.mask == kLesionNeovascular), ex = cv::countNonZero(c.mask == kLesionExudate);
      SCOPED_TRACE("grade " + std::to_string(g) + " case " + std::to_string(i));
      if (g == 0) {
        EXPECT_EQ(pixels, 0);
        EXPECT_EQ(c.counts.total(), 0);
      } else {
        EXPECT_GT(c.counts.microaneurysms, 0);
        EXPECT_GT(cv::countNonZero(c.mask == kLesionMicroaneurysm), 0);
      }
      EXPECT_EQ(nv > 0, g == 4);  // neovascularisation defines grade 4 and only grade 4
      EXPECT_EQ(c.counts.neovascular > 0, g == 4);
      if (g <= 1) {
        EXPECT_EQ(ex, 0);
      } else if (g <= 3) {
        EXPECT_GT(ex, 0);
      }
      EXPECT_LE(*std::max_element(c.mask.begin<uint8_t>(), c.mask.end<uint8_t>()), kLesionNeovascular);
    }
  }
  EXPECT_EQ(mean_pixels[0], 0);
  EXPECT_LT(mean_pixels[0], mean_pixels[1]);
  EXPECT_LT(mean_pixels[1], mean_pixels[2]);
  EXPECT_LT(mean_pixels[2], mean_pixels[3]);
  EXPECT_GT(mean_pixels[4], mean_pixels[1]);
}

TEST(SynthRender, MaskMarksExactlyWhereTheLesionsChangeTheImage) {
  // Lesions and nuisance use separate random streams: with the same seeds, the grade-3 photo differs
  // from the grade-0 photo only where lesions were drawn (plus the blur's reach).
  for (uint64_t seed : {21, 22, 23}) {
    SynthCase healthy = render_synthetic_fundus(spec_of(0, seed, 384));
    SynthCase sick = render_synthetic_fundus(spec_of(3, seed, 384));
    cv::Mat diff, diff_max;
    cv::absdiff(healthy.image, sick.image, diff);
    cv::Mat channels[3];
    cv::split(diff, channels);
    diff_max = cv::max(cv::max(channels[0], channels[1]), channels[2]);
    cv::Mat near_lesion;
    cv::dilate(sick.mask > 0, near_lesion, cv::Mat::ones(7, 7, CV_8U));
    int changed = cv::countNonZero(diff_max > 25);
    int changed_outside = cv::countNonZero((diff_max > 25) & ~near_lesion);
    ASSERT_GT(changed, 100);
    EXPECT_EQ(changed_outside, 0) << "seed " << seed;
    EXPECT_GT(cv::mean(diff_max, sick.mask > 0)[0], 25.0) << "lesions must be visible where the mask says";
  }
}

TEST(SynthRender, MaskLiesInsideTheFieldOfView) {
  for (int g = 1; g < 5; ++g)
    for (bool right : {false, true}) {
      SynthCase c = render_synthetic_fundus(spec_of(g, 40 + g, 256, right));
      std::vector<cv::Point> pts;
      cv::findNonZero(c.mask, pts);
      ASSERT_FALSE(pts.empty());
      for (const cv::Point& p : pts) {
        double dx = p.x + 0.5 - c.fov_center.x, dy = p.y + 0.5 - c.fov_center.y;
        ASSERT_LE(std::sqrt(dx * dx + dy * dy), c.fov_radius + 1) << "grade " << g << " pixel " << p;
      }
    }
}

TEST(SynthRender, RightEyeIsTheMirroredLeftLayout) {
  const int size = 320;
  for (uint64_t seed : {5, 6, 7}) {
    SynthCaseSpec left = spec_of(0, seed, size, false), right = spec_of(0, seed, size, true);
    SynthCase l = render_synthetic_fundus(left), r = render_synthetic_fundus(right);
    // Geometry: x -> size - x, y unchanged.
    EXPECT_NEAR(r.disc_center.x, size - l.disc_center.x, 1e-9);
    EXPECT_NEAR(r.disc_center.y, l.disc_center.y, 1e-9);
    EXPECT_NEAR(r.macula_center.x, size - l.macula_center.x, 1e-9);
    EXPECT_NEAR(r.fov_center.x, size - l.fov_center.x, 1e-9);
    EXPECT_DOUBLE_EQ(r.disc_radius, l.disc_radius);
    // Convention: left eye disc on the left, macula 2.5 disc diameters temporal on the same row.
    EXPECT_LT(l.disc_center.x, size / 2.0);
    EXPECT_GT(r.disc_center.x, size / 2.0);
    EXPECT_NEAR(l.macula_center.x - l.disc_center.x, 5 * l.disc_radius, 0.07 * 5 * l.disc_radius);
    EXPECT_DOUBLE_EQ(l.macula_center.y, l.disc_center.y);
    // The pixels agree: the brightest spot is the disc, at mirrored positions.
    cv::Point2d bl = brightest_spot(l.image), br = brightest_spot(r.image);
    EXPECT_LT(std::hypot(bl.x - l.disc_center.x, bl.y - l.disc_center.y), l.disc_radius);
    EXPECT_NEAR(br.x, size - bl.x, 0.6 * l.disc_radius);
    EXPECT_NEAR(br.y, bl.y, 0.6 * l.disc_radius);
  }
}

TEST(SynthRender, DecodedJpegHasDarkBorderAndBrightCircularField) {
  test::TempDir dir;
  for (uint64_t seed : {1, 2, 3, 4}) {
    SynthCase c = render_synthetic_fundus(spec_of(int(seed % 5), seed, 256, seed % 2 == 1));
    std::string path = dir.file("case.jpg");
    write_image_rgb(path, c.image, 85);
    cv::Mat img = decode_image_rgb(path);
    ASSERT_EQ(img.size(), cv::Size(256, 256));
    cv::Mat inside = cv::Mat::zeros(img.size(), CV_8U), outside = cv::Mat::zeros(img.size(), CV_8U);
    cv::circle(inside, c.fov_center, int(c.fov_radius - 4), 255, cv::FILLED);
    outside.setTo(255);
    cv::circle(outside, c.fov_center, int(c.fov_radius * 1.06 + 4), 0, cv::FILLED);  // the notch sticks out <= 3%
    cv::Mat grey;
    cv::cvtColor(img, grey, cv::COLOR_RGB2GRAY);
    for (cv::Rect corner :
         {cv::Rect(0, 0, 12, 12), cv::Rect(244, 0, 12, 12), cv::Rect(0, 244, 12, 12), cv::Rect(244, 244, 12, 12)})
      EXPECT_LT(cv::mean(grey(corner))[0], 6.0);
    EXPECT_LT(cv::mean(grey, outside)[0], 6.0);
    EXPECT_GT(cv::mean(grey, inside)[0], 50.0);
    EXPECT_GT(double(cv::countNonZero((grey > 25) & inside)) / cv::countNonZero(inside), 0.97);
    cv::Scalar rgb = cv::mean(img, inside);
    EXPECT_GT(rgb[0], 1.4 * rgb[1]) << "fundus photographs are red-orange";
    EXPECT_GT(rgb[1], rgb[2]);
  }
}

TEST(SynthRender, RejectsInvalidSpecs) {
  SynthCaseSpec s = spec_of(0, 1);
  s.size = 32;
  EXPECT_THROW(render_synthetic_fundus(s), Error);
  s = spec_of(5, 1);
  EXPECT_THROW(render_synthetic_fundus(s), Error);
}

TEST(SynthPlan, GradeWeightsAndQuota) {
  EXPECT_TRUE(parse_grade_weights("balanced").empty());
  EXPECT_TRUE(parse_grade_weights(" Balanced ").empty());
  EXPECT_EQ(parse_grade_weights("0.5,0.2,0.2,0.05,0.05"), (std::vector<double>{0.5, 0.2, 0.2, 0.05, 0.05}));
  for (const char* bad : {"0.5,0.5", "1,1,1,1,x", "1,1,-1,1,1", "0,0,0,0,0"}) {
    try {
      parse_grade_weights(bad, "--grades");
      ADD_FAILURE() << "accepted " << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("--grades"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(synth_grade_quota(10, {}), (std::array<int, 5>{2, 2, 2, 2, 2}));
  EXPECT_EQ(synth_grade_quota(12, {}), (std::array<int, 5>{3, 3, 2, 2, 2}));
  EXPECT_EQ(synth_grade_quota(20, {0.5, 0.2, 0.2, 0.05, 0.05}), (std::array<int, 5>{10, 4, 4, 1, 1}));
  // 7 * (0.4, 0.3, 0.2, 0.1, 0) = 2.8, 2.1, 1.4, 0.7, 0 -> floors 2,2,1,0,0 + remainders .8 and .7.
  EXPECT_EQ(synth_grade_quota(7, {4, 3, 2, 1, 0}), (std::array<int, 5>{3, 2, 1, 1, 0}));
}

TEST(SynthPlan, PatientsHaveTwoEyesWithCloseGradesAndExactQuota) {
  SynthOptions o;
  o.count = 101;
  o.seed = 9;
  std::vector<SynthPlanEntry> plan = plan_synthetic_dataset(o);
  ASSERT_EQ(plan.size(), 101u);
  std::map<std::string, std::vector<const SynthPlanEntry*>> patients;
  std::array<int, 5> counts{};
  std::set<std::string> ids;
  for (const SynthPlanEntry& e : plan) {
    patients[e.patient].push_back(&e);
    ++counts[size_t(e.spec.grade)];
    EXPECT_TRUE(ids.insert(e.id).second) << "duplicate id " << e.id;
    EXPECT_EQ(e.id, e.patient + "_" + e.eye);
    EXPECT_EQ(e.spec.right_eye, e.eye == "R");
    EXPECT_GE(e.jpeg_quality, 80);
    EXPECT_LE(e.jpeg_quality, 95);
  }
  EXPECT_EQ(counts, synth_grade_quota(101, {}));
  EXPECT_EQ(patients.size(), 51u);
  int singles = 0, differ = 0;
  for (auto& [id, eyes] : patients) {
    if (eyes.size() == 1) {
      ++singles;
      continue;
    }
    ASSERT_EQ(eyes.size(), 2u);
    EXPECT_EQ(eyes[0]->eye, "L");
    EXPECT_EQ(eyes[1]->eye, "R");
    EXPECT_EQ(eyes[0]->spec.layout_seed, eyes[1]->spec.layout_seed) << "both eyes share one anatomy";
    EXPECT_NE(eyes[0]->spec.eye_seed, eyes[1]->spec.eye_seed);
    int d = std::abs(eyes[0]->spec.grade - eyes[1]->spec.grade);
    EXPECT_LE(d, 1) << id;
    differ += d;
  }
  EXPECT_EQ(singles, 1);
  EXPECT_GE(differ, 8);  // about a quarter of 50 pairs differ by one grade, like real data
  EXPECT_LE(differ, 20);

  o.both_eyes = false;
  o.grade_weights = {0.5, 0.2, 0.2, 0.05, 0.05};
  std::vector<SynthPlanEntry> single = plan_synthetic_dataset(o);
  std::set<std::string> single_patients;
  for (auto& e : single) single_patients.insert(e.patient);
  EXPECT_EQ(single_patients.size(), 101u);
  EXPECT_NE(plan_synthetic_dataset(o)[0].spec.eye_seed, [&] {
    SynthOptions other = o;
    other.seed = 10;
    return plan_synthetic_dataset(other)[0].spec.eye_seed;
  }());
}

TEST(SynthPlan, RejectsInvalidOptions) {
  auto expect_error = [](SynthOptions o, const std::string& needle) {
    try {
      plan_synthetic_dataset(o);
      ADD_FAILURE() << "accepted options, expected an error mentioning " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  SynthOptions o;
  o.count = 0;
  expect_error(o, "--count");
  o = SynthOptions();
  o.size = 32;
  expect_error(o, "--size");
  o = SynthOptions();
  o.jpeg_quality_min = 96;
  expect_error(o, "JPEG quality");
  o = SynthOptions();
  EXPECT_THROW(generate_synthetic_dataset(o), Error);  // no output directory
}

std::map<std::string, std::string> read_tree(const std::string& dir, const std::vector<SynthDatasetRow>& rows) {
  std::map<std::string, std::string> files;
  for (const char* f : {"labels.csv", "synth.json", "contact_sheet.jpg"}) files[f] = read_file(join_path(dir, f));
  for (const SynthDatasetRow& r : rows) {
    for (std::string f : {"images/" + r.entry.id + ".jpg", "masks/" + r.entry.id + ".png"})
      files[f] = read_file(join_path(dir, f));
  }
  return files;
}

TEST(SynthDataset, WritesLoadableFilesIdenticalForAnyThreadCount) {
  test::TempDir dir;
  SynthOptions o;
  o.count = 10;
  o.size = 128;
  o.seed = 4;
  o.out_dir = dir.file("one");
  o.threads = 1;
  SynthDatasetResult one = generate_synthetic_dataset(o);
  o.out_dir = dir.file("three");
  o.threads = 3;
  SynthDatasetResult three = generate_synthetic_dataset(o);
  EXPECT_EQ(one.grade_counts, (std::array<int, 5>{2, 2, 2, 2, 2}));
  auto a = read_tree(dir.file("one"), one.rows), b = read_tree(dir.file("three"), three.rows);
  ASSERT_EQ(a.size(), 23u);
  EXPECT_TRUE(a == b) << "output depends on the thread count";

  CsvTable t = read_csv(one.labels_csv);
  EXPECT_EQ(t.header, (std::vector<std::string>{"image", "grade", "eye", "patient", "ma", "hemorrhages", "exudates",
                                                "neovascular"}));
  ASSERT_EQ(t.rows.size(), 10u);
  std::array<int, 5> grades{};
  for (const CsvRow& row : t.rows) {
    int g = int(parse_int(t.field(row, t.require_column("grade")), "grade"));
    ASSERT_TRUE(g >= 0 && g < 5);
    ++grades[size_t(g)];
    std::string image = join_path(dir.file("one"), t.field(row, t.require_column("image")));
    std::string eye = t.field(row, t.require_column("eye"));
    EXPECT_TRUE(eye == "L" || eye == "R");
    cv::Mat img = decode_image_rgb(image);
    EXPECT_EQ(img.size(), cv::Size(128, 128));
    std::string stem = image.substr(image.rfind('/') + 1, image.size() - image.rfind('/') - 5);
    cv::Mat mask = cv::imread(join_path(dir.file("one"), "masks/" + stem + ".png"), cv::IMREAD_UNCHANGED);
    ASSERT_EQ(mask.type(), CV_8UC1);
    EXPECT_EQ(mask.size(), img.size());
    EXPECT_EQ(cv::countNonZero(mask) > 0, g > 0) << stem;
    int nv = int(parse_int(t.field(row, t.require_column("neovascular")), "neovascular"));
    EXPECT_EQ(nv > 0, g == 4);
  }
  EXPECT_EQ(grades, one.grade_counts);
  Json meta = load_json_file(join_path(dir.file("one"), "synth.json"));
  EXPECT_EQ(meta["count"], 10);
  EXPECT_EQ(meta["grades"], "balanced");
  EXPECT_EQ(meta["seed"], 4);

  o.seed = 5;
  o.out_dir = dir.file("other");
  SynthDatasetResult other = generate_synthetic_dataset(o);
  EXPECT_NE(read_file(join_path(dir.file("other"), "images/" + other.rows[0].entry.id + ".jpg")),
            a["images/" + one.rows[0].entry.id + ".jpg"]);
  cv::Mat sheet = decode_image_rgb(join_path(dir.file("one"), "contact_sheet.jpg"));
  EXPECT_EQ(sheet.size(), cv::Size(5 * 256, 2 * 256));
  EXPECT_EQ(synth_contact_sheet(dir.file("one"), one.rows, 64).size(), cv::Size(5 * 64, 2 * 64));
  std::string summary = format_synth_summary(one);
  EXPECT_NE(summary.find("Moderate"), std::string::npos);
  EXPECT_NE(summary.find("wrote 10 images"), std::string::npos);
}

}  // namespace
}  // namespace fundus
