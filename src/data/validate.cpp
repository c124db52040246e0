#include "fundus/data/validate.h"

#include <algorithm>
#include <atomic>
#include <climits>
#include <memory>
#include <optional>

#include "fundus/core/concurrency.h"
#include "fundus/core/error.h"
#include "fundus/core/io.h"
#include "fundus/core/progress.h"
#include "fundus/core/strings.h"
#include "fundus/data/fov.h"
#include "fundus/data/image_io.h"

namespace fundus {

namespace {

// What is wrong with one image file (message without the path), or an empty message when it is usable.
struct ImageVerdict {
  ProblemKind kind = ProblemKind::corrupt_image;
  std::string message;
};

// The image policy of image_io.h, the same as every command that decodes: JPEGs are decoded
// DCT-reduced (all coefficients are still entropy-decoded, so corrupt data is found, and the shorter
// side stays >= 256 px for the field-of-view check).
ImageVerdict image_problem(const std::string& path) {
  ImageVerdict v;
  try {
    const std::string bytes = read_image_file(path);
    const ImageInfo info = check_image_bytes(bytes, path);
    const cv::Mat rgb = decode_image_rgb_bytes(
        bytes, path, info.format == ImageFormat::jpeg ? choose_reduce_factor(info.width, info.height, 128) : 1);
    const FovResult fov = detect_fov(rgb, FovOptions{}, false);
    if (fov.no_field_of_view) {  // preprocessing would refuse it (preprocess.h)
      v.kind = ProblemKind::no_field_of_view;
      v.message = fov.note + ": not a fundus photograph";
    }
  } catch (const ImageError& e) {
    // Messages of image_io start with the path; the problem already names it.
    const std::string& m = e.message();
    v.message = starts_with(m, path + ": ") ? m.substr(path.size() + 2) : m;
    if (e.problem() == ImageProblem::missing || e.problem() == ImageProblem::not_a_file)
      v.kind = ProblemKind::missing_image;
  } catch (const std::exception& e) {
    v.message = std::string("cannot read image (") + e.what() + ")";
  }
  return v;
}

// Per record: what is wrong with its image (empty message when it is usable).
std::vector<ImageVerdict> image_problems(const Dataset& dataset, const ValidateOptions& options) {
  const int64_t n = int64_t(dataset.records.size());
  std::vector<ImageVerdict> found(static_cast<size_t>(n));
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
  std::vector<ImageVerdict> found = image_problems(dataset, options);
  std::vector<DatasetProblem> problems;
  for (size_t i = 0; i < found.size(); ++i)
    if (!found[i].message.empty())
      problems.push_back({dataset.records[i].image_path, 0, dataset.records[i].id, found[i].kind, found[i].message});
  return problems;
}

ValidationResult validate_dataset(const std::string& path, const DatasetLoadOptions& load,
                                  const ValidateOptions& options) {
  LoadResult loaded = load_dataset(path, load);
  ValidationResult result;
  result.format = loaded.format;
  result.file = loaded.file;
  result.rows = loaded.rows;
  result.problems = std::move(loaded.problems);
  result.dataset = std::move(loaded.dataset);

  if (options.check_images) {
    std::vector<ImageVerdict> found = image_problems(result.dataset, options);
    result.images_checked = found.size();
    std::vector<CaseRecord> kept;
    for (size_t i = 0; i < found.size(); ++i) {
      CaseRecord& r = result.dataset.records[i];
      const ImageVerdict& v = found[i];
      if (v.message.empty()) {
        kept.push_back(std::move(r));
      } else if (r.source_line > 0) {  // CSV row: point at the row, name the file in the message
        result.problems.push_back(
            {result.file, r.source_line, r.id, v.kind, "image '" + r.image_path + "': " + v.message});
      } else {  // folder layout: the image is the location
        result.problems.push_back({r.image_path, 0, r.id, v.kind, v.message});
      }
    }
    result.dataset.records = std::move(kept);
  }
  // File order: image problems join the row problems at their line; whole-dataset problems go last.
  std::stable_sort(result.problems.begin(), result.problems.end(),
                   [](const DatasetProblem& a, const DatasetProblem& b) {
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
  for (const auto& [kind, count] : count_problem_kinds(result.problems))
    counts += strprintf(" %s %d,", kind.c_str(), count);
  counts.pop_back();
  FUNDUS_THROW(result.file << ": " << result.problems.size() << " problem" << (result.problems.size() == 1 ? "" : "s")
                           << " (" << trim(counts) << ")"
                           << (empty ? "" : "; fix them or pass --skip-bad to leave those rows out") << ":\n"
                           << format_problems(result.problems));
}

std::string validation_summary(const ValidationResult& result) {
  std::string s = strprintf("%s (%s): %zu rows, %zu usable, %zu problem%s", result.file.c_str(),
                            dataset_format_name(result.format), result.rows, result.dataset.records.size(),
                            result.problems.size(), result.problems.size() == 1 ? "" : "s");
  std::vector<std::string> parts;
  for (const auto& [kind, count] : count_problem_kinds(result.problems))
    parts.push_back(kind + " " + std::to_string(count));
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
