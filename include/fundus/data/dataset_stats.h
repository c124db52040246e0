// Dataset statistics: grades, patients, eyes, splits, image sizes and formats.
// Image sizes come from file headers (JPEG SOF / PNG IHDR, the first 64 KB), read in parallel; other
// formats are decoded. Thread safety: pure function (its own worker threads).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "fundus/core/case.h"
#include "fundus/core/json.h"
#include "fundus/data/dataset_io.h"

namespace fundus {

struct StatsOptions {
  bool image_sizes = true;  // read image headers (false: counts only)
  int threads = 0;          // 0 = all available cores
};

/// Min / median / max of one quantity over the readable images (the lower median for even counts).
struct SizeStats {
  int min = 0, median = 0, max = 0;
};

struct DatasetStats {
  int64_t images = 0;
  PerGrade<int64_t> grades{};
  int64_t patients = 0;  // distinct patient keys (an image without patient counts as one)
  int64_t images_without_patient = 0;
  int64_t patients_with_both_eyes = 0;
  int64_t left = 0, right = 0, eye_unknown = 0;
  std::map<std::string, int64_t> splits;  // split name ("" = none) -> images
  // Filled when StatsOptions::image_sizes:
  int64_t images_read = 0;
  int64_t unreadable = 0;  // header could not be read (validate to see why)
  SizeStats width, height;
  std::map<std::string, int64_t> formats;  // "jpeg" -> count
  // Rows of the file that are not in the counts above (an unknown split or eye, a bad grade, ...),
  // as `fundus dataset validate` reports them. Filled by the LoadResult overload.
  std::vector<DatasetProblem> left_out;
};

DatasetStats compute_dataset_stats(const Dataset& dataset, const StatsOptions& options = {});
/// Statistics of the usable rows of a loaded file, with its row problems in `left_out`.
DatasetStats compute_dataset_stats(const LoadResult& loaded, const StatsOptions& options = {});
Json stats_to_json(const DatasetStats& stats);
/// Readable tables: grades with names and percentages, patients/eyes, splits, sizes and formats,
/// then the rows left out (file:line: problem, as validate prints them).
std::string format_stats(const DatasetStats& stats);

}  // namespace fundus
