// A problem found in one row (or image) of a dataset: what the reader and the validator report so
// that a user can fix every problem in one pass instead of one per run.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "fundus/core/json.h"

namespace fundus {

enum class ProblemKind {
  bad_field,         // empty image name, unknown eye or split value, a folder name that is not a grade
  bad_grade,         // grade not a number or outside 0-4
  missing_image,     // the image file does not exist (or several files match the name)
  corrupt_image,     // empty, truncated, not an image, undecodable, or above the pixel cap (image_io.h)
  no_field_of_view,  // decodes, but shows no fundus field of view: blank, uniform, a document (fov.h)
  duplicate_id,      // an id seen on an earlier row
  empty_dataset,     // no usable rows at all (never skippable)
};
const char* problem_kind_name(ProblemKind kind);  // "bad_grade", ...

struct DatasetProblem {
  std::string source;  // CSV file or image path the user must look at
  int line = 0;        // 1-based CSV line (the header is line 1); 0 for folder layouts and whole-dataset problems
  std::string id;      // case id when known
  ProblemKind kind = ProblemKind::bad_field;
  std::string message;  // what is wrong, without the location

  /// "labels.csv:3: grade 7 outside 0-4" (or "source: message" when line is 0).
  std::string to_string() const;
};

/// Counts per kind name, e.g. {"missing_image": 2}.
std::map<std::string, int> count_problem_kinds(const std::vector<DatasetProblem>& problems);
/// [{"source":..,"line":..,"id":..,"kind":..,"message":..}, ...]
Json problems_to_json(const std::vector<DatasetProblem>& problems);
/// One problem per line; after `max_lines` lines "... and N more problems". max_lines 0 = all.
std::string format_problems(const std::vector<DatasetProblem>& problems, size_t max_lines = 0);

}  // namespace fundus
