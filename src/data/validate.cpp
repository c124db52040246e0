#include "fundus/data/validate.h"

#include <algorithm>
#include <atomic>
#include <climits>
#include <memory>
#include <optional>

#include <opencv2/core.hpp>

#include "fundus/core/concurrency.h"
#include "fundus/core/error.h"
#include "fundus/core/io.h"
#include "fundus/core/progress.h"
#include "fundus/core/strings.h"
#include "fundus/data/image_io.h"

namespace fundus {

namespace {

// What is wrong with one image file, or "" when it decodes.
std::string image_problem(const std::string& path) {
  try {
    std::string bytes = read_file(path);
    if (bytes.empty()) return "empty file (0 bytes)";
    std::string structure = image_structure_problem(bytes);
    if (!structure.empty()) return structure;
    // A sound structure can still hide a corrupt header or entropy data. JPEGs: libjpeg decodes the
    // whole scan at 1/8 scale and also reports the corrupt-data warnings OpenCV's decoder only
    // prints, so no second decode is needed. Other formats: decode.
    std::string data = jpeg_data_problem(bytes);
    if (!data.empty()) return data;
    ImageInfo info = image_info_from_bytes(bytes, path);
    if (info.format != ImageFormat::jpeg) decode_image_rgb_bytes(bytes, path, 1);
    return "";
  } catch (const Error& e) {
    // Messages of image_io start with the path; the problem already names it.
    const std::string& m = e.message();
    return starts_with(m, path + ": ") ? m.substr(path.size() + 2) : m;
  } catch (const cv::Exception& e) {
    return "cannot decode image (" + e.msg + ")";
  } catch (const std::exception& e) {
    return std::string("cannot read image (") + e.what() + ")";
  }
}

// Per record: what is wrong with its image, "" when it decodes.
std::vector<std::string> image_problems(const Dataset& dataset, const ValidateOptions& options) {
  const int64_t n = int64_t(dataset.records.size());
  std::vector<std::string> found(static_cast<size_t>(n));
  std::optional<Progress> progress;
  if (options.progress) progress.emplace("check images", n, "img");
  int threads = options.threads > 0 ? options.threads : available_cores();
  // Work is handed out one image at a time so that a slow folder does not leave threads idle.
  std::atomic<int64_t> next{0};
  parallel_for(threads, threads, [&](int64_t, int64_t) {
    for (int64_t i; (i = next.fetch_add(1)) < n;) {
      found[size_t(i)] = image_problem(dataset.records[size_t(i)].image_path);
      if (progress) progress->advance();
    }
  });
  if (progress) progress->finish();
  return found;
}

}  // namespace

std::vector<DatasetProblem> check_images(const Dataset& dataset, const ValidateOptions& options) {
  std::vector<std::string> found = image_problems(dataset, options);
  std::vector<DatasetProblem> problems;
  for (size_t i = 0; i < found.size(); ++i)
    if (!found[i].empty())
      problems.push_back({dataset.records[i].image_path, 0, dataset.records[i].id, ProblemKind::corrupt_image, found[i]});
  return problems;
}

ValidationResult validate_dataset(const std::string& path, const DatasetLoadOptions& load, const ValidateOptions& options) {
  LoadResult loaded = load_dataset(path, load);
  ValidationResult result;
  result.format = loaded.format;
  result.file = loaded.file;
  result.rows = loaded.rows;
  result.problems = std::move(loaded.problems);
  result.dataset = std::move(loaded.dataset);

  if (options.check_images) {
    std::vector<std::string> found = image_problems(result.dataset, options);
    result.images_checked = found.size();
    std::vector<CaseRecord> kept;
    for (size_t i = 0; i < found.size(); ++i) {
      CaseRecord& r = result.dataset.records[i];
      if (found[i].empty()) {
        kept.push_back(std::move(r));
      } else if (r.source_line > 0) {  // CSV row: point at the row, name the file in the message
        result.problems.push_back(
            {result.file, r.source_line, r.id, ProblemKind::corrupt_image, "image '" + r.image_path + "': " + found[i]});
      } else {  // folder layout: the image is the location
        result.problems.push_back({r.image_path, 0, r.id, ProblemKind::corrupt_image, found[i]});
      }
    }
    result.dataset.records = std::move(kept);
  }
  // File order: image problems join the row problems at their line; whole-dataset problems go last.
  std::stable_sort(result.problems.begin(), result.problems.end(), [](const DatasetProblem& a, const DatasetProblem& b) {
    return (a.line > 0 ? a.line : INT_MAX) < (b.line > 0 ? b.line : INT_MAX);
  });
  if (result.dataset.records.empty())
    result.problems.push_back({result.file, 0, "", ProblemKind::empty_dataset,
                               result.rows == 0 ? "no data rows" : "no usable rows (every row has a problem)"});
  return result;
}

const Dataset& require_valid(const ValidationResult& result, bool skip_bad) {
  bool empty = result.dataset.records.empty();
  if (result.ok() || (skip_bad && !empty)) return result.dataset;
  std::string counts;
  for (const auto& [kind, count] : count_problem_kinds(result.problems)) counts += strprintf(" %s %d,", kind.c_str(), count);
  counts.pop_back();
  FUNDUS_THROW(result.file << ": " << result.problems.size() << " problem" << (result.problems.size() == 1 ? "" : "s")
                           << " (" << trim(counts) << ")" << (empty ? "" : "; fix them or pass --skip-bad to leave those rows out")
                           << ":\n"
                           << format_problems(result.problems));
}

std::string validation_summary(const ValidationResult& result) {
  std::string s = strprintf("%s (%s): %zu rows, %zu usable, %zu problem%s", result.file.c_str(),
                            dataset_format_name(result.format), result.rows, result.dataset.records.size(),
                            result.problems.size(), result.problems.size() == 1 ? "" : "s");
  std::vector<std::string> parts;
  for (const auto& [kind, count] : count_problem_kinds(result.problems)) parts.push_back(kind + " " + std::to_string(count));
  if (!parts.empty()) s += ": " + join(parts, ", ");
  return s;
}

Json validation_to_json(const ValidationResult& result) {
  return {{"file", result.file},
          {"format", dataset_format_name(result.format)},
          {"rows", result.rows},
          {"usable", result.dataset.records.size()},
          {"images_checked", result.images_checked},
          {"problem_counts", count_problem_kinds(result.problems)},
          {"problems", problems_to_json(result.problems)}};
}

}  // namespace fundus
