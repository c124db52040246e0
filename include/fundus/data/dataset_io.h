// Reading datasets in the common public layouts, and writing our manifest format.
//
// Formats (header columns are matched after trimming spaces; IDRiD headers carry trailing spaces):
//   generic   image,grade[,patient][,eye][,split][,id]   (column names configurable; extra columns ignored)
//   eyepacs   image,level                                 (Kaggle trainLabels.csv; "10_left" -> patient 10, eye L)
//   aptos     id_code,diagnosis                           (images <id_code>.png, usually in train_images/)
//   idrid     Image name,Retinopathy grade[,Risk of macular edema]  (IDRiD_001.jpg, often in a sibling folder)
//   folders   ROOT/<grade>/*.jpg, the folder name starting with the grade 0-4 ("0", "2_moderate")
//   manifest  id,image,grade,patient,eye,split           (ours; image paths relative to the manifest's folder)
// `auto` detects the format from the header (manifest, eyepacs, aptos, idrid, then generic) or, for a
// directory, uses grade folders when present and otherwise a known CSV inside it (manifest.csv,
// labels.csv, trainLabels.csv, train.csv).
//
// Image names resolve relative to the CSV's folder, then its images/, train_images/, train/,
// test_images/ and test/ subfolders (manifests: the manifest's folder only); idrid also searches by
// file stem up to 4 levels below the CSV's parent (preferring a "train"/"test" path like the CSV's
// name, since IDRiD's two sets reuse names). When the named file does not exist, the extensions
// .jpeg .jpg .png .tif .tiff (and upper case) are tried in place of the given one (or after a name
// without extension). The resolved path is stored in CaseRecord::image_path.
//
// Ids: the id column when present, else the image file stem. Patient/eye come from columns when
// present; eyepacs and folders parse them from names like "10_left", "Patient002_L", "x_OD".
//
// Thread safety: all functions are reentrant. Errors: file-level problems (unreadable file, unknown
// format, missing column) throw fundus::Error naming the file and listing the available columns;
// row-level problems never throw, they are returned in LoadResult::problems and the row is left out.
#pragma once

#include <string>
#include <vector>

#include "fundus/core/case.h"
#include "fundus/data/dataset_problem.h"

namespace fundus {

enum class DatasetFormat { auto_detect, generic, eyepacs, aptos, idrid, folders, manifest };
const char* dataset_format_name(DatasetFormat format);  // "auto", "generic", ...
/// Parses a format name; throws listing the valid names.
DatasetFormat parse_dataset_format(const std::string& name);

/// Column names of the generic CSV format.
struct ColumnNames {
  std::string image = "image";
  std::string grade = "grade";
  std::string patient = "patient";
  std::string eye = "eye";
  std::string split = "split";
  std::string id = "id";
};

struct DatasetLoadOptions {
  DatasetFormat format = DatasetFormat::auto_detect;
  ColumnNames columns;
};

struct LoadResult {
  Dataset dataset;                                    // the good rows, in file order (folders: sorted by grade, name)
  DatasetFormat format = DatasetFormat::auto_detect;  // the format actually read
  std::string file;                                   // the CSV read (the root folder for `folders`)
  size_t rows = 0;                                    // data rows seen (good + bad; blank rows not counted)
  std::vector<DatasetProblem> problems;               // row-level problems, in file order
};

/// The format `path` would be read as, and for a directory the CSV inside it (in `file`, else `path`).
DatasetFormat detect_dataset_format(const std::string& path, const ColumnNames& columns = {},
                                    std::string* file = nullptr);

LoadResult load_dataset(const std::string& path, const DatasetLoadOptions& options = {});

/// Writes `id,image,grade,patient,eye,split` atomically; image paths are written relative to the
/// manifest's folder so that the manifest and images can move together.
void write_manifest(const std::string& path, const Dataset& dataset);

/// "10_left" -> ("10", "L"); "Patient002_R" -> ("Patient002", "R"); suffixes left/right/l/r/od/os after
/// '_' or '-', any case. Returns false (outputs untouched) when the name has no such suffix.
bool parse_patient_eye(const std::string& stem, std::string& patient, std::string& eye);

/// "L"/"left"/"OS" -> "L", "R"/"right"/"OD" -> "R", "" -> ""; false for anything else.
bool normalize_eye(const std::string& text, std::string& eye);

}  // namespace fundus
