// CSV text and every dataset layout read from a CSV (core/csv.h, data/dataset_io.h): the bytes are
// parsed as CSV with and without a header, then written as labels.csv and loaded in each format.
// Some image names resolve (1.jpg ... 4.png exist beside the CSV), so rows reach the id, grade,
// patient and eye checks, not only "image not found".
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "fundus/core/csv.h"
#include "fundus/core/io.h"
#include "fundus/data/dataset_io.h"
#include "fuzz_support.h"

using namespace fundus;

namespace {
const std::string& csv_dir() {
  // Two levels below the temp folder: the idrid reader searches from the CSV's parent downwards.
  static const std::string dir = [] {
    std::string d = fuzz::temp_dir() + "/set/labels";
    make_dirs(d);
    for (const char* name : {"1.jpg", "2.jpeg", "3.png", "4.png", "10_left.jpeg", "IDRiD_001.jpg"})
      write_file_atomic(join_path(d, name), "x");
    return d;
  }();
  return dir;
}
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::quiet_logs();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  for (bool header : {true, false})
    fuzz::expect_only_fundus_errors([&] {
      CsvTable t = parse_csv(text, "fuzz.csv", header);
      for (const CsvRow& row : t.rows)
        for (size_t c = 0; c < t.header.size(); ++c) (void)t.field(row, c);
    });

  const std::string path = join_path(csv_dir(), "labels.csv");
  fuzz::write_bytes(path, data, size);
  for (DatasetFormat format : {DatasetFormat::auto_detect, DatasetFormat::generic, DatasetFormat::eyepacs,
                               DatasetFormat::aptos, DatasetFormat::idrid, DatasetFormat::manifest}) {
    fuzz::expect_only_fundus_errors([&] {
      DatasetLoadOptions options;
      options.format = format;
      LoadResult r = load_dataset(path, options);
      // Accepted rows must satisfy what every later step relies on.
      for (const CaseRecord& c : r.dataset.records)
        if (c.grade < 0 || c.grade >= kNumGrades || c.id.empty())
          fuzz::finding("accepted row with grade " + std::to_string(c.grade) + " id '" + c.id + "'");
    });
  }
  return 0;
}
