// The in-memory dataset: graded fundus images with patient/eye, as read from any supported format.
// Shared contract for every component that handles cases (loader, trainer, store, eval).
#pragma once

#include <string>
#include <vector>

namespace fundus {

/// DR grades follow the International Clinical DR scale: 0 No DR, 1 Mild, 2 Moderate, 3 Severe NPDR,
/// 4 PDR. kNumGrades is the number of classes.
constexpr int kNumGrades = 5;
const char* grade_name(int grade);  // "No DR", "Mild", "Moderate", "Severe", "PDR"

struct CaseRecord {
  std::string id;          // unique within a dataset (e.g. the image file stem "Patient002_L")
  std::string image_path;  // resolved path usable from the current directory
  int grade = -1;          // 0..4
  std::string patient;     // patient id as supplied ("" if unknown: then each image is its own patient)
  std::string eye;         // "L", "R" or ""
  std::string split;       // "train", "val", "test" or "" (manifests carry it)
  int source_line = 0;     // line in the source CSV (0 for folder layouts), for messages

  /// The patient key used for grouping: patient, or the id when the patient is unknown.
  const std::string& patient_key() const { return patient.empty() ? id : patient; }
};

struct Dataset {
  std::string source;  // where it was read from (CSV path or folder)
  std::vector<CaseRecord> records;

  /// Records whose split is one of `splits` (comma-separated, e.g. "train,val").
  Dataset subset(const std::string& splits) const;
  size_t size() const { return records.size(); }
};

}  // namespace fundus
