// `fundus synth` end to end through the real binary.
#include <set>

#include <gtest/gtest.h>

#include "fundus/core/csv.h"
#include "fundus/core/io.h"
#include "fundus/core/json.h"
#include "fundus/core/strings.h"
#include "test_support.h"

namespace fundus {
namespace {

TEST(CliSynth, WritesDatasetAndSummary) {
  test::TempDir dir;
  std::string out = dir.file("synth");
  auto r = test::run_cli("synth --out " + test::shell_quote(out) + " --count 7 --size 96 --seed 3 --threads 2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("Moderate"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("wrote 7 images"), std::string::npos) << r.output;

  CsvTable t = read_csv(join_path(out, "labels.csv"));
  ASSERT_EQ(t.rows.size(), 7u);
  std::set<std::string> patients;
  int grade_counts[5] = {};
  for (const CsvRow& row : t.rows) {
    EXPECT_TRUE(file_exists(join_path(out, t.field(row, t.require_column("image")))));
    patients.insert(t.field(row, t.require_column("patient")));
    ++grade_counts[parse_int(t.field(row, t.require_column("grade")), "grade")];
  }
  EXPECT_EQ(patients.size(), 4u);  // three with two eyes, one with one
  EXPECT_EQ(grade_counts[0], 2);
  EXPECT_EQ(grade_counts[1], 2);
  EXPECT_EQ(grade_counts[4], 1);
  Json meta = load_json_file(join_path(out, "synth.json"));
  EXPECT_EQ(meta["size"], 96);

  // Same seed, one thread, single call again: identical labels and images.
  std::string again = dir.file("again");
  ASSERT_EQ(
      test::run_cli("synth --out " + test::shell_quote(again) + " --count 7 --size 96 --seed 3 --threads 1").exit_code,
      0);
  EXPECT_EQ(read_file(join_path(out, "labels.csv")), read_file(join_path(again, "labels.csv")));
  std::string first_image = t.field(t.rows[0], 0);
  EXPECT_EQ(read_file(join_path(out, first_image)), read_file(join_path(again, first_image)));
}

TEST(CliSynth, SingleEyeAndExplicitWeights) {
  test::TempDir dir;
  auto r = test::run_cli("synth --out " + test::shell_quote(dir.path()) +
                         " --count 10 --size 64 --single-eye --grades 1,1,0,0,0 --jpeg-quality 90");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  CsvTable t = read_csv(dir.file("labels.csv"));
  std::set<std::string> patients;
  for (const CsvRow& row : t.rows) {
    patients.insert(t.field(row, t.require_column("patient")));
    EXPECT_LE(parse_int(t.field(row, t.require_column("grade")), "grade"), 1);
  }
  EXPECT_EQ(patients.size(), 10u);
  EXPECT_EQ(load_json_file(dir.file("synth.json"))["jpeg_quality"], Json({90, 90}));
}

TEST(CliSynth, BadOptionsAreClearErrors) {
  test::TempDir dir;
  auto r = test::run_cli("synth --out " + test::shell_quote(dir.path()) + " --grades 1,2,3");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("error: --grades"), std::string::npos) << r.output;
  r = test::run_cli("synth --out " + test::shell_quote(dir.path()) + " --size 10");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("--size"), std::string::npos) << r.output;
  r = test::run_cli("synth --count 5");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("--out"), std::string::npos) << r.output;
  EXPECT_FALSE(file_exists(dir.file("labels.csv")));
}

}  // namespace
}  // namespace fundus
