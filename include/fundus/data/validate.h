// Dataset validation: every problem of a dataset in one pass, with file and line.
//
// validate_dataset = load_dataset (row problems: grades, fields, missing files, duplicate ids) + an
// image check of every remaining record, in parallel: the image policy of image_io.h (structure, pixel
// cap from the header, a DCT-reduced decode that finds corrupt data), the same as every command that
// decodes, then field-of-view detection with the default FovOptions (fov.h) + an empty-dataset check.
// Bad images never crash the process: each becomes a `corrupt_image` problem (a directory or a
// missing file: `missing_image`), and an image with no field of view at all (blank, uniform, a
// document) a `no_field_of_view` problem.
//
// Thread safety: reentrant; check_images uses its own worker threads.
#pragma once

#include <string>
#include <vector>

#include "fundus/data/dataset_io.h"

namespace fundus {

struct ValidateOptions {
  bool check_images = true;  // false: only that files exist (load_dataset's check), no reading/decoding
  int threads = 0;           // 0 = all available cores
  bool progress = true;      // fundus::Progress bar while checking images
};

struct ValidationResult {
  Dataset dataset;  // the good records only, in source order
  DatasetFormat format = DatasetFormat::auto_detect;
  std::string file;                      // the CSV (or folder) read
  size_t rows = 0;                       // records seen, good and bad
  size_t images_checked = 0;             // images read and decoded
  std::vector<DatasetProblem> problems;  // every problem, by CSV line (folder layouts: scan order)
  bool ok() const { return problems.empty(); }
};

/// Problems of the image files of `dataset` (one per bad record, in dataset order), checked on
/// `threads` threads. Never throws for bad image content.
std::vector<DatasetProblem> check_images(const Dataset& dataset, const ValidateOptions& options = {});

/// Loads and checks. Throws only for file-level problems (see load_dataset).
ValidationResult validate_dataset(const std::string& path, const DatasetLoadOptions& load = {},
                                  const ValidateOptions& options = {});

/// The dataset to work on: with problems and !skip_bad, throws an Error whose message lists every
/// problem ("labels.csv:3: grade 7 outside 0-4", one per line) and a count per kind. With skip_bad,
/// bad rows are already left out. An empty dataset always throws.
const Dataset& require_valid(const ValidationResult& result, bool skip_bad);

/// "356 rows, 354 usable, 2 problems: missing_image 1, corrupt_image 1".
std::string validation_summary(const ValidationResult& result);
/// {"file", "format", "rows", "usable", "images_checked", "problem_counts": {...}, "problems": [...]}
Json validation_to_json(const ValidationResult& result);

}  // namespace fundus
