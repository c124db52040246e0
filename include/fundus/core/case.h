// A graded case as a dataset supplies it, and the in-memory dataset: graded fundus images with
// patient/eye, as read from any supported format (data/dataset_io.h). Shared contract for every
// component that handles cases (data, loader, trainer, store, retrieval, serve). Torch-free.
//
// Three case types exist, each for a different stage of a case's life:
//   CaseRecord  (here)                      an input row: what a dataset or an upload says about an
//                                           image (resolved path, grade, patient, eye, split, CSV line);
//   StoredCase  (store/case_store.h)        a row of the store: adds the store id, the content hash,
//                                           meta as stored JSON text and the import time;
//                                           StoredCase::to_record() goes back to a CaseRecord;
//   CaseInfo    (retrieval/search_engine.h) what a caller is shown: a StoredCase whose invariants were
//                                           checked (grade 0-4) and whose meta is parsed JSON;
//                                           case_info() is the one conversion.
#pragma once

#include <string>
#include <vector>

#include "fundus/core/grades.h"

namespace fundus {

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
