// Synthetic fundus photographs with known lesions, for tests, the demo, training smoke tests and for
// measuring whether attention lands on lesions (every image comes with a pixel-exact lesion mask).
//
// Anatomy: black background, circular field of view (FOV), red-orange retina with vignetting and
// low-frequency texture, optic disc with cup, macula 2.5 disc diameters temporal to the disc on the
// horizontal line through it, a branching vessel tree (arcades, tapering, tortuous) from the disc.
// Eye convention (as in photographs of the patient viewed from the front, and in rahim-dr):
// LEFT eye: optic disc on the LEFT of the image, macula to its right; RIGHT eye: the mirror image.
// The two eyes of a synthetic patient share one anatomy (the right eye is the left layout mirrored
// horizontally about the image centre, x -> size - x) and differ in lesions and photo nuisance.
//
// Lesions by grade (International Clinical DR scale), counts rising with grade:
//   0: none; 1: microaneurysms, rare dot haemorrhage; 2: more of both + a few hard-exudate clusters;
//   3: many haemorrhages (dot-blot and flame) + more exudate clusters; 4: neovascular tufts at the
//   disc or along the arcades, plus microaneurysms, haemorrhages, sometimes exudates.
// Nuisance independent of grade: brightness, tint, gamma, blur, camera noise, JPEG quality, vessel
// layout, disc size/position, FOV size/off-centring, a camera notch, dust specks, nerve-fibre sheen.
//
// Determinism: everything is drawn from fundus::Rng seeded by the spec, so the same spec gives the
// same bytes on any machine and regardless of thread count. Torch-free; all functions are
// thread-safe (no shared state). Invalid options throw fundus::Error naming the option.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

#include "fundus/core/grades.h"

namespace fundus {

/// Lesion mask values (CV_8UC1; 0 = background). When lesions overlap the later type in this list wins.
enum SynthLesion : uint8_t {
  kLesionNone = 0,
  kLesionMicroaneurysm = 1,
  kLesionHemorrhage = 2,
  kLesionExudate = 3,
  kLesionNeovascular = 4,
};

struct SynthLesionCounts {
  int microaneurysms = 0;
  int hemorrhages = 0;
  int exudates = 0;     // individual hard-exudate spots (they come in clusters)
  int neovascular = 0;  // neovascular tufts
  int total() const { return microaneurysms + hemorrhages + exudates + neovascular; }
};

/// Everything that determines one synthetic photograph.
struct SynthCaseSpec {
  int size = 512;            // output is size x size pixels, 64..4096
  int grade = 0;             // 0..4
  bool right_eye = false;    // false: left eye (disc on the left)
  uint64_t layout_seed = 1;  // anatomy and camera: shared by both eyes of a patient
  uint64_t eye_seed = 2;     // lesions and per-photo nuisance
};

/// One rendered case. Geometry is in continuous pixel coordinates of the output image (pixel (i, j)
/// covers [i, i+1) x [j, j+1)), after mirroring for right eyes.
struct SynthCase {
  cv::Mat image;  // CV_8UC3, RGB order (like decode_image_rgb)
  cv::Mat mask;   // CV_8UC1, SynthLesion values, zero outside the FOV
  int grade = 0;
  bool right_eye = false;
  SynthLesionCounts counts;
  cv::Point2d fov_center;
  double fov_radius = 0;
  cv::Point2d disc_center;
  double disc_radius = 0;
  cv::Point2d macula_center;
};

/// Renders one case in memory (about 20-60 ms at 512 px on one core). Throws for a bad spec.
SynthCase render_synthetic_fundus(const SynthCaseSpec& spec);

struct SynthOptions {
  int count = 200;  // number of images
  int size = 512;
  uint64_t seed = 1;
  std::vector<double> grade_weights;  // empty: balanced; else kNumGrades non-negative weights
  bool both_eyes = true;              // patients have two eyes (grades equal or +-1); else one each
  int jpeg_quality_min = 80;          // per image, uniform in [min, max]
  int jpeg_quality_max = 95;
  std::string out_dir;
  int threads = 0;  // 0: all available cores; output does not depend on it
};

/// "balanced" -> {} ; "0.5,0.2,0.2,0.05,0.05" -> five weights. Throws naming `what` (e.g. "--grades").
std::vector<double> parse_grade_weights(const std::string& text, const std::string& what = "grades");

/// Exact number of images per grade for `count` images: largest-remainder rounding of the weights
/// (ties to the lower grade); balanced when `weights` is empty.
PerGrade<int> synth_grade_quota(int count, const std::vector<double>& weights);

/// One planned image: names, grade and the render spec.
struct SynthPlanEntry {
  std::string id;       // "synth0007_L"
  std::string patient;  // "synth0007"
  std::string eye;      // "L" or "R"
  int jpeg_quality = 90;
  SynthCaseSpec spec;
};

/// The dataset plan: exact grade quota, patients with two eyes (unless !both_eyes; an odd count leaves
/// one single-eye patient) whose grades differ by at most 1 (about a quarter differ, as in real data).
/// Deterministic in options.seed; independent of out_dir and threads. Throws for invalid options.
std::vector<SynthPlanEntry> plan_synthetic_dataset(const SynthOptions& options);

struct SynthDatasetRow {
  SynthPlanEntry entry;
  SynthLesionCounts counts;
};

struct SynthDatasetResult {
  std::string labels_csv;  // DIR/labels.csv
  std::vector<SynthDatasetRow> rows;
  PerGrade<int> grade_counts{};
  double seconds = 0;
};

/// Writes DIR/images/<id>.jpg, DIR/masks/<id>.png, DIR/labels.csv
/// (image,grade,eye,patient,ma,hemorrhages,exudates,neovascular; image is "images/<id>.jpg", relative
/// to DIR), DIR/synth.json (the options) and DIR/contact_sheet.jpg (synth_contact_sheet). Every file
/// is written atomically; existing files with the same names are replaced. Multi-threaded with a
/// progress bar; identical bytes for any thread count.
SynthDatasetResult generate_synthetic_dataset(const SynthOptions& options);

/// An overview for people: one column per grade (the first image of that grade in `rows`, read back
/// from `dir`), the photograph on top and below it the lesion mask overlaid in colour (microaneurysm
/// cyan, haemorrhage blue, exudate green, neovascularisation magenta; dilated to stay visible) with the
/// lesion counts. Tiles are `tile` pixels; RGB CV_8UC3. Grades absent from `rows` stay black.
cv::Mat synth_contact_sheet(const std::string& dir, const std::vector<SynthDatasetRow>& rows, int tile = 256);

/// A readable table: images and mean lesion counts per grade, totals, output location and time.
std::string format_synth_summary(const SynthDatasetResult& result);

}  // namespace fundus
