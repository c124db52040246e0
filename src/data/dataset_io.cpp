#include "fundus/data/dataset_io.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <filesystem>
#include <memory>
#include <optional>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "fundus/core/csv.h"
#include "fundus/core/error.h"
#include "fundus/core/io.h"
#include "fundus/core/strings.h"

namespace fs = std::filesystem;

namespace fundus {

// ---- names and small parsers -------------------------------------------------------------------

namespace {

const char* const kFormatNames[] = {"auto", "generic", "eyepacs", "aptos", "idrid", "folders", "manifest"};
const std::vector<std::string> kManifestColumns = {"id", "image", "grade", "patient", "eye", "split"};
// Extensions tried when the named file does not exist, in this order.
const char* const kGuessExtensions[] = {".jpeg", ".jpg", ".png", ".tif", ".tiff",
                                        ".JPEG", ".JPG", ".PNG", ".TIF", ".TIFF"};
// Subfolders of the CSV's folder where public datasets keep their images.
const char* const kImageSubdirs[] = {"images", "train_images", "train", "test_images", "test"};
// CSVs looked for when a directory without grade folders is given.
const char* const kKnownCsvs[] = {"manifest.csv", "labels.csv", "trainLabels.csv", "train.csv"};

std::string base_name(const std::string& path) {
  auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// Lower-case extension with the dot (".jpg"), or "" when the base name has none.
std::string extension_of(const std::string& path) {
  std::string name = base_name(path);
  auto dot = name.find_last_of('.');
  return dot == std::string::npos || dot == 0 ? "" : to_lower(name.substr(dot));
}

bool is_image_extension(const std::string& ext) {
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png" || ext == ".tif" || ext == ".tiff" || ext == ".bmp";
}

// The file name without an image extension: "a/b/x.jpg" -> "x"; "10_left" -> "10_left".
std::string image_stem(const std::string& path) {
  std::string name = base_name(path);
  std::string ext = extension_of(name);
  return is_image_extension(ext) ? name.substr(0, name.size() - ext.size()) : name;
}

bool is_directory(const std::string& path) {
  std::error_code ec;
  return fs::is_directory(path, ec);
}

// Grade from text: a decimal integer 0-4 (an integral decimal such as "2.0" from spreadsheet exports
// is fine; "0x2" or "1e0" are not). Returns "" on success, else what is wrong.
std::string parse_grade(const std::string& text, const std::string& column, int& grade) {
  std::string t = trim(text);
  if (t.empty()) return "empty grade (column '" + column + "')";
  int64_t g = 0;
  if (!try_parse_int(t, g)) return "grade '" + t + "' is not a whole number 0-4 (column '" + column + "')";
  if (g < 0 || g >= kNumGrades) return strprintf("grade %lld outside 0-4 (column '%s')", (long long)g, column.c_str());
  grade = int(g);
  return "";
}

bool normalize_split(const std::string& text, std::string& split) {
  std::string s = to_lower(trim(text));
  if (s == "train" || s == "training") split = "train";
  else if (s == "val" || s == "valid" || s == "validation") split = "val";
  else if (s == "test" || s == "testing") split = "test";
  else if (s.empty()) split = "";
  else return false;
  return true;
}

std::string columns_list(const std::vector<std::string>& header) {
  std::vector<std::string> quoted;
  for (const auto& h : header) quoted.push_back("'" + h + "'");
  return join(quoted, ", ");
}

}  // namespace

const char* dataset_format_name(DatasetFormat format) { return kFormatNames[int(format)]; }

DatasetFormat parse_dataset_format(const std::string& name) {
  std::string n = to_lower(trim(name));
  for (int i = 0; i < int(std::size(kFormatNames)); ++i)
    if (n == kFormatNames[i]) return DatasetFormat(i);
  FUNDUS_THROW("unknown dataset format '" << name
                                          << "' (use auto, generic, eyepacs, aptos, idrid, folders or manifest)");
}

bool normalize_eye(const std::string& text, std::string& eye) {
  std::string e = to_lower(trim(text));
  if (e == "l" || e == "left" || e == "os") eye = "L";
  else if (e == "r" || e == "right" || e == "od") eye = "R";
  else if (e.empty()) eye = "";
  else return false;
  return true;
}

bool parse_patient_eye(const std::string& stem, std::string& patient, std::string& eye) {
  auto sep = stem.find_last_of("_-");
  if (sep == std::string::npos || sep == 0 || sep + 1 == stem.size()) return false;
  std::string e;
  if (!normalize_eye(stem.substr(sep + 1), e) || e.empty()) return false;
  patient = stem.substr(0, sep);
  eye = e;
  return true;
}

// ---- image resolution --------------------------------------------------------------------------

namespace {

// Finds the image file a CSV row names (see the header for the search order). Directory listings are
// read once and cached, so resolving 100k rows costs a few directory reads, not 100k x 10 stat calls.
class ImageResolver {
 public:
  ImageResolver(std::string base_dir, bool search_subdirs, std::string index_root, std::string hint)
      : base_dir_(std::move(base_dir)), index_root_(std::move(index_root)), hint_(std::move(hint)) {
    dirs_.push_back(base_dir_);
    if (search_subdirs)
      for (const char* sub : kImageSubdirs)
        if (is_directory(join_path(base_dir_.empty() ? "." : base_dir_, sub)))
          dirs_.push_back(join_path(base_dir_, sub));
  }

  // The resolved path, or nullopt with `why` set.
  std::optional<std::string> resolve(const std::string& name, std::string& why) {
    std::vector<std::string> candidates = {name};
    std::string ext = extension_of(name);
    std::string without_ext = is_image_extension(ext) ? name.substr(0, name.size() - ext.size()) : name;
    for (const char* e : kGuessExtensions)
      if (without_ext + e != name) candidates.push_back(without_ext + e);

    const bool absolute = !name.empty() && name[0] == '/';
    for (const std::string& c : candidates)
      for (const std::string& dir : absolute ? std::vector<std::string>{""} : dirs_) {
        std::string path = join_path(dir, c);
        if (listed(path)) return path;
      }

    if (!absolute && !index_root_.empty()) {
      std::vector<std::string> found = find_by_stem(image_stem(name));
      if (found.size() == 1) return found[0];
      if (found.size() > 1) {
        why = "image '" + name + "' matches several files (" + join(found, ", ") + "); give its path in the CSV";
        return std::nullopt;
      }
    }
    for (const std::string& dir : absolute ? std::vector<std::string>{""} : dirs_)
      if (is_directory(join_path(dir, name))) {  // the listings hold regular files only
        why = "image '" + name + "' is a directory (" + join_path(dir, name) + "), not an image file";
        return std::nullopt;
      }
    std::vector<std::string> searched;
    for (const auto& d : absolute ? std::vector<std::string>{parent_dir(name)} : dirs_)
      searched.push_back(d.empty() ? "." : d);
    why = "image file '" + name + "' not found (searched " + join(searched, ", ") +
          (index_root_.empty() || absolute ? "" : " and below " + index_root_) +
          ", also with extensions .jpeg .jpg .png .tif .tiff)";
    return std::nullopt;
  }

 private:
  // Whether the regular file `path` exists, from the cached listing of its folder.
  bool listed(const std::string& path) {
    std::string dir = parent_dir(path);
    if (dir.empty()) dir = ".";
    auto it = listings_.find(dir);
    if (it == listings_.end()) {
      auto names = std::make_unique<std::unordered_set<std::string>>();
      std::error_code ec;
      for (fs::directory_iterator d(dir, ec), end; !ec && d != end; d.increment(ec)) {
        std::error_code fec;
        if (d->is_regular_file(fec)) names->insert(d->path().filename().string());
      }
      it = listings_.emplace(dir, std::move(names)).first;
    }
    return it->second->count(base_name(path)) > 0;
  }

  // Image files below index_root whose stem equals `stem` (case-insensitive). When several match and
  // the CSV's name says train/test (IDRiD's training and testing sets reuse names), prefer that side.
  std::vector<std::string> find_by_stem(const std::string& stem) {
    if (!indexed_) build_index();
    std::vector<std::string> found;
    auto range = by_stem_.equal_range(to_lower(stem));
    for (auto it = range.first; it != range.second; ++it) found.push_back(it->second);
    std::sort(found.begin(), found.end());
    if (found.size() > 1 && !hint_.empty()) {
      std::vector<std::string> preferred;
      for (const auto& f : found) {
        std::string below = starts_with(f, index_root_) ? f.substr(index_root_.size()) : f;
        if (to_lower(below).find(hint_) != std::string::npos) preferred.push_back(f);
      }
      if (!preferred.empty()) return preferred;
    }
    return found;
  }

  void build_index() {
    indexed_ = true;
    constexpr int kMaxDepth = 4;
    constexpr size_t kMaxFiles = 1000000;  // a bound on pathological trees, far above any DR dataset
    std::error_code ec;
    fs::recursive_directory_iterator it(index_root_, fs::directory_options::skip_permission_denied, ec);
    size_t seen = 0;
    for (fs::recursive_directory_iterator end; !ec && it != end && seen < kMaxFiles; it.increment(ec), ++seen) {
      if (it.depth() >= kMaxDepth) it.disable_recursion_pending();
      std::error_code fec;
      if (!it->is_regular_file(fec)) continue;
      std::string p = it->path().string();
      if (is_image_extension(extension_of(p))) by_stem_.emplace(to_lower(image_stem(p)), p);
    }
  }

  std::string base_dir_, index_root_, hint_;
  std::vector<std::string> dirs_;
  std::unordered_map<std::string, std::unique_ptr<std::unordered_set<std::string>>> listings_;
  std::unordered_multimap<std::string, std::string> by_stem_;
  bool indexed_ = false;
};

// ---- CSV formats -------------------------------------------------------------------------------

// Where each field of a CSV format lives.
struct CsvLayout {
  size_t image = 0, grade = 0;
  std::optional<size_t> patient, eye, split, id;
  std::string image_column, grade_column;
  bool names_carry_patient_eye = false;  // eyepacs: "10_left"
};

std::optional<DatasetFormat> format_from_header(const CsvTable& t, const ColumnNames& c) {
  if (t.header == kManifestColumns) return DatasetFormat::manifest;
  if (t.column("image") && t.column("level")) return DatasetFormat::eyepacs;
  if (t.column("id_code") && t.column("diagnosis")) return DatasetFormat::aptos;
  if (t.column("Image name") && t.column("Retinopathy grade")) return DatasetFormat::idrid;
  if (t.column(c.image) && t.column(c.grade)) return DatasetFormat::generic;
  return std::nullopt;
}

size_t require_column(const CsvTable& t, const std::string& name, DatasetFormat format) {
  auto c = t.column(name);
  FUNDUS_CHECK(c, t.source << ":1: missing column '" << name << "' for format " << dataset_format_name(format)
                           << " (columns: " << columns_list(t.header) << ")");
  return *c;
}

CsvLayout layout_for(const CsvTable& t, DatasetFormat format, const ColumnNames& c) {
  CsvLayout L;
  auto use = [&](const std::string& image, const std::string& grade) {
    L.image_column = image;
    L.grade_column = grade;
    L.image = require_column(t, image, format);
    L.grade = require_column(t, grade, format);
  };
  switch (format) {
    case DatasetFormat::eyepacs:
      use("image", "level");
      L.names_carry_patient_eye = true;
      break;
    case DatasetFormat::aptos:
      use("id_code", "diagnosis");
      break;
    case DatasetFormat::idrid:
      use("Image name", "Retinopathy grade");
      break;
    case DatasetFormat::manifest:
      for (const auto& name : kManifestColumns) require_column(t, name, format);
      use("image", "grade");
      L.patient = t.column("patient");
      L.eye = t.column("eye");
      L.split = t.column("split");
      L.id = t.column("id");
      break;
    default: {  // generic: optional columns may be absent unless the user named them explicitly
      use(c.image, c.grade);
      const ColumnNames defaults;
      auto optional = [&](const std::string& name, const std::string& default_name) {
        return name == default_name ? t.column(name) : std::optional<size_t>(require_column(t, name, format));
      };
      L.patient = optional(c.patient, defaults.patient);
      L.eye = optional(c.eye, defaults.eye);
      L.split = optional(c.split, defaults.split);
      L.id = optional(c.id, defaults.id);
    }
  }
  return L;
}

bool blank_row(const CsvRow& row) {
  return std::all_of(row.fields.begin(), row.fields.end(), [](const std::string& f) { return trim(f).empty(); });
}

void read_csv_rows(const CsvTable& t, const CsvLayout& L, ImageResolver& resolver, LoadResult& out) {
  std::unordered_map<std::string, int> first_line_of_id;
  for (const CsvRow& row : t.rows) {
    if (blank_row(row)) continue;
    ++out.rows;
    CaseRecord r;
    r.source_line = row.line;
    const std::string image = trim(t.field(row, L.image));
    r.id = L.id ? trim(t.field(row, *L.id)) : "";
    if (r.id.empty()) r.id = image_stem(image);
    size_t problems_before = out.problems.size();
    auto problem = [&](ProblemKind kind, const std::string& message) {
      out.problems.push_back({t.source, row.line, r.id, kind, message});
    };

    // Control characters (ESC, BEL, ...) are never part of a name or id, and would reach terminals
    // through every report that quotes the field. Other columns (free-text notes) are not read.
    for (std::optional<size_t> c :
         {std::optional<size_t>(L.image), std::optional<size_t>(L.grade), L.patient, L.eye, L.split, L.id}) {
      if (!c) continue;
      const std::string value = trim(t.field(row, *c));
      size_t at = find_control_char(value);
      if (at != std::string::npos)
        problem(ProblemKind::bad_field,
                "control character " + describe_byte((unsigned char)value[at]) + " in column '" + t.header[*c] + "'");
    }
    std::string why = parse_grade(t.field(row, L.grade), L.grade_column, r.grade);
    if (!why.empty()) problem(ProblemKind::bad_grade, why);
    if (L.patient) r.patient = trim(t.field(row, *L.patient));
    if (L.eye && !normalize_eye(t.field(row, *L.eye), r.eye))
      problem(ProblemKind::bad_field,
              "eye '" + trim(t.field(row, *L.eye)) + "' is not L or R (column '" + t.header[*L.eye] + "')");
    if (L.split && !normalize_split(t.field(row, *L.split), r.split))
      problem(ProblemKind::bad_field, "split '" + trim(t.field(row, *L.split)) +
                                          "' is not train, val or test (column '" + t.header[*L.split] + "')");
    if (L.names_carry_patient_eye) parse_patient_eye(image_stem(image), r.patient, r.eye);

    if (image.empty()) {
      problem(ProblemKind::bad_field, "empty image name (column '" + L.image_column + "')");
    } else if (auto path = resolver.resolve(image, why)) {
      r.image_path = *path;
    } else {
      problem(ProblemKind::missing_image, why);
    }
    if (!r.id.empty()) {
      auto [it, inserted] = first_line_of_id.emplace(r.id, row.line);
      if (!inserted)
        problem(ProblemKind::duplicate_id, strprintf("duplicate id '%s' (first on line %d)", r.id.c_str(), it->second));
    }
    if (out.problems.size() == problems_before) out.dataset.records.push_back(std::move(r));
  }
}

LoadResult load_csv(const std::string& path, DatasetFormat format, const ColumnNames& columns) {
  CsvTable t = read_csv(path);
  FUNDUS_CHECK(!t.header.empty() && !(t.header.size() == 1 && t.header[0].empty()),
               path << ": empty file (expected a header line with column names)");
  if (format == DatasetFormat::auto_detect) {
    auto detected = format_from_header(t, columns);
    FUNDUS_CHECK(detected, path << ":1: cannot tell the dataset format from the columns (" << columns_list(t.header)
                                << "); expected '" << columns.image << "' and '" << columns.grade
                                << "' (generic; see --image-col/--grade-col), image,level (eyepacs), "
                                   "id_code,diagnosis (aptos), 'Image name','Retinopathy grade' (idrid) or "
                                   "id,image,grade,patient,eye,split (manifest)");
    format = *detected;
  }
  CsvLayout layout = layout_for(t, format, columns);

  // IDRiD keeps its CSVs and images in sibling folders: a search by stem below the CSV's parent.
  const std::string dir = parent_dir(path);
  // Only there: elsewhere a same-stem file in another folder (a preprocessed copy) must not silently
  // stand in for a missing image.
  std::string index_root;
  if (format == DatasetFormat::idrid)
    index_root = fs::absolute(path).lexically_normal().parent_path().parent_path().string();
  std::string name = to_lower(base_name(path)), hint;
  if (name.find("test") != std::string::npos) hint = "test";
  else if (name.find("train") != std::string::npos) hint = "train";
  ImageResolver resolver(dir, format != DatasetFormat::manifest, index_root, hint);

  LoadResult out;
  out.format = format;
  out.file = path;
  out.dataset.source = path;
  read_csv_rows(t, layout, resolver, out);
  return out;
}

// ---- folder-per-grade ----------------------------------------------------------------------------

// Leading decimal number of a folder name ("2_moderate" -> 2), or -1 when it does not start with a digit.
int leading_number(const std::string& name) {
  size_t n = 0;
  while (n < name.size() && n < 6 && std::isdigit(static_cast<unsigned char>(name[n]))) ++n;
  return n == 0 ? -1 : std::stoi(name.substr(0, n));
}

std::vector<std::string> sorted_entries(const std::string& dir, bool directories) {
  std::vector<std::string> names;
  std::error_code ec;
  for (fs::directory_iterator d(dir, ec), end; !ec && d != end; d.increment(ec)) {
    std::error_code fec;
    if (directories ? d->is_directory(fec) : d->is_regular_file(fec)) names.push_back(d->path().filename().string());
  }
  FUNDUS_CHECK(!ec, dir << ": cannot list directory (" << ec.message() << ")");
  std::sort(names.begin(), names.end());
  return names;
}

bool has_grade_folders(const std::string& dir) {
  for (const auto& name : sorted_entries(dir, true))
    if (leading_number(name) >= 0) return true;
  return false;
}

LoadResult load_folders(const std::string& root) {
  LoadResult out;
  out.format = DatasetFormat::folders;
  out.file = root;
  out.dataset.source = root;
  std::vector<std::pair<int, std::string>> folders;  // (grade, name), sorted by grade then name
  for (const auto& name : sorted_entries(root, true)) {
    int grade = leading_number(name);
    if (grade < 0) continue;  // masks/, docs/ and the like
    if (grade >= kNumGrades) {
      out.problems.push_back(
          {join_path(root, name), 0, "", ProblemKind::bad_grade,
           strprintf("folder '%s' names grade %d, outside 0-4 (its images are not read)", name.c_str(), grade)});
      continue;
    }
    folders.emplace_back(grade, name);
  }
  FUNDUS_CHECK(!folders.empty() || !out.problems.empty(),
               root << ": no grade folders (expected subfolders named 0-4, e.g. '0' or '2_moderate')");
  std::stable_sort(folders.begin(), folders.end(), [](auto& a, auto& b) { return a.first < b.first; });

  std::unordered_map<std::string, std::string> first_path_of_id;
  for (const auto& [grade, name] : folders) {
    std::string dir = join_path(root, name);
    for (const auto& file : sorted_entries(dir, false)) {
      if (!is_image_extension(extension_of(file))) continue;
      ++out.rows;
      CaseRecord r;
      r.image_path = join_path(dir, file);
      r.id = image_stem(file);
      r.grade = grade;
      parse_patient_eye(r.id, r.patient, r.eye);
      auto [it, inserted] = first_path_of_id.emplace(r.id, r.image_path);
      if (!inserted) {
        out.problems.push_back({r.image_path, 0, r.id, ProblemKind::duplicate_id,
                                "duplicate id '" + r.id + "' (also " + it->second + ")"});
        continue;
      }
      out.dataset.records.push_back(std::move(r));
    }
  }
  return out;
}

}  // namespace

// ---- public entry points -----------------------------------------------------------------------

DatasetFormat detect_dataset_format(const std::string& path, const ColumnNames& columns, std::string* file) {
  FUNDUS_CHECK(file_exists(path), path << ": no such file or directory");
  if (file) *file = path;
  if (is_directory(path)) {
    if (has_grade_folders(path)) return DatasetFormat::folders;
    for (const char* name : kKnownCsvs) {
      std::string csv = join_path(path, name);
      if (file_exists(csv) && !is_directory(csv)) return detect_dataset_format(csv, columns, file);
    }
    FUNDUS_THROW(path << ": no grade folders (0-4) and none of manifest.csv, labels.csv, trainLabels.csv, train.csv");
  }
  CsvTable t = read_csv(path);
  auto detected = format_from_header(t, columns);
  FUNDUS_CHECK(detected,
               path << ":1: cannot tell the dataset format from the columns (" << columns_list(t.header) << ")");
  return *detected;
}

LoadResult load_dataset(const std::string& path, const DatasetLoadOptions& options) {
  FUNDUS_CHECK(file_exists(path), path << ": no such file or directory");
  std::string file = path;
  DatasetFormat format = options.format;
  if (is_directory(path)) {
    if (format == DatasetFormat::folders || (format == DatasetFormat::auto_detect && has_grade_folders(path)))
      return load_folders(path);
    bool found = false;
    for (const char* name : kKnownCsvs)
      if (!found && file_exists(join_path(path, name))) {
        file = join_path(path, name);
        found = true;
      }
    FUNDUS_CHECK(found,
                 path << ": no grade folders (0-4) and none of manifest.csv, labels.csv, trainLabels.csv, train.csv");
  }
  FUNDUS_CHECK(format != DatasetFormat::folders, path << ": format 'folders' needs a directory with grade subfolders");
  return load_csv(file, format, options.columns);
}

void write_manifest(const std::string& path, const Dataset& dataset) {
  const fs::path dir = fs::absolute(parent_dir(path).empty() ? "." : parent_dir(path)).lexically_normal();
  std::ostringstream out;
  out << csv_line(kManifestColumns);
  for (const CaseRecord& r : dataset.records) {
    fs::path image = fs::absolute(r.image_path).lexically_normal();
    // Relative when the manifest and the image share a top-level folder (they move together);
    // "../../../data/x.jpg" climbing to the root would only break when the manifest moves.
    bool share_top = std::next(image.begin()) != image.end() && std::next(dir.begin()) != dir.end() &&
                     *std::next(image.begin()) == *std::next(dir.begin());
    fs::path rel = share_top ? image.lexically_relative(dir) : fs::path();
    out << csv_line({r.id, rel.empty() ? image.string() : rel.generic_string(), std::to_string(r.grade), r.patient,
                     r.eye, r.split});
  }
  if (!parent_dir(path).empty()) make_dirs(parent_dir(path));
  write_file_atomic(path, out.str());
}

}  // namespace fundus
