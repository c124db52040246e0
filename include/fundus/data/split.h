// Train/val/test splits.
//
// patient mode (default): patient-disjoint and stratified by grade. A patient's stratum is their
//   worst-eye grade; all images of a patient land in one split. Within each stratum the patients are
//   sorted by key, shuffled with fundus::Rng(seed), and each is given to the split furthest below its
//   target image count (fraction x images of the stratum), so every grade is split close to the
//   requested fractions even though patients bring one or two images.
// image mode: the authors' protocol (method.md section 4): images are split test_fraction (default
//   0.2, ceil) vs the rest with Rng(seed = 11), then the rest val_fraction (0.1, ceil) vs train with
//   Rng(seed2 = 22). Here val_fraction is a fraction of the rest, not of all images. Eyes of one patient
//   can land on both sides: SplitSummary::leakage counts it.
//
// Results depend only on the ids/patients/grades and the options, not on row order or the machine.
// Thread safety: pure functions.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "fundus/core/case.h"
#include "fundus/core/json.h"

namespace fundus {

enum class SplitMode { patient, image };
const char* split_mode_name(SplitMode mode);
SplitMode parse_split_mode(const std::string& name);  // "patient" | "image"; throws otherwise

struct SplitOptions {
  SplitMode mode = SplitMode::patient;
  double val_fraction = 0.1;   // patient mode: of all images; image mode: of the non-test images
  double test_fraction = 0.2;  // of all images
  uint64_t seed = 11;          // patient mode: the shuffle; image mode: the test split
  uint64_t seed2 = 22;         // image mode: the val split
};

/// How much of the test set can find the same patient on the gallery side. Patients are only known
/// when CaseRecord::patient is set (unknown patients cannot leak by construction of patient_key).
struct SplitLeakage {
  int64_t test_patients = 0;
  int64_t test_patients_in_train = 0;    // test patients with an image in train
  int64_t test_patients_in_gallery = 0;  // ... in train or val
  int64_t test_images = 0;
  int64_t test_images_patient_in_gallery = 0;  // test images whose patient has an image in train or val
};

struct SplitCounts {
  int64_t images = 0;
  int64_t patients = 0;
  PerGrade<int64_t> grades{};
};

struct SplitSummary {
  SplitOptions options;
  SplitCounts train, val, test;
  SplitLeakage leakage;
  int64_t images_without_patient = 0;  // each is its own patient: leakage through them is invisible
  std::string assignment_sha256;       // of the sorted "id,split" lines: the same value means the same split
};

/// Returns a copy of `dataset` with CaseRecord::split set on every record. Throws on fractions outside
/// [0, 1), val + test >= 1 in patient mode, or duplicate ids.
Dataset split_dataset(const Dataset& dataset, const SplitOptions& options);

/// Patient-disjoint, grade-stratified K-fold assignment for cross-validation: the fold (0..folds-1)
/// of every record, all images of a patient in one fold, each grade spread evenly over the folds
/// (the patient-mode rule above with equal fractions). Same dataset and seed, same folds on any
/// machine. Throws for folds < 2, more folds than patients, duplicate ids or grades outside 0-4.
std::vector<int> assign_folds(const Dataset& dataset, int folds, uint64_t seed);

/// Counts and leakage of an already split dataset (records with an empty split are ignored).
SplitSummary summarize_split(const Dataset& split, const SplitOptions& options = {});

/// Writes DIR/manifest.csv (every record), DIR/{train,val,test}.csv and DIR/split.json (options,
/// counts, leakage, assignment hash). Creates DIR. Every file is written atomically.
void write_split(const std::string& dir, const Dataset& split, const SplitSummary& summary);

Json split_summary_to_json(const SplitSummary& summary);
/// Readable table: images and patients per split, per grade with percentages, and the leakage line.
std::string format_split_summary(const SplitSummary& summary);

}  // namespace fundus
