// `fundus dataset validate|stats|split|import` end to end through the real binary.
#include <algorithm>

#include <gtest/gtest.h>

#include "fundus/core/csv.h"
#include "fundus/core/hash.h"
#include "fundus/core/io.h"
#include "fundus/core/json.h"
#include "test_support.h"

namespace fundus {
namespace {

using test::shell_quote;

// This suite links no OpenCV, so it writes its images as minimal PNGs: RGB, 8 bit, zlib "stored"
// (uncompressed) deflate blocks. Any PNG decoder reads them.
std::string png_image(int w, int h, int seed) {
  auto be32 = [](uint32_t v) { return std::string{char(v >> 24), char(v >> 16), char(v >> 8), char(v)}; };
  auto chunk = [&](const std::string& type, const std::string& data) {
    std::string body = type + data;
    return be32(uint32_t(data.size())) + body + be32(crc32(body));
  };
  std::string raw;
  for (int y = 0; y < h; ++y) {
    raw += '\0';  // filter: none
    // Red-dominant and textured in green, as a retina is: the image policy refuses what has no field
    // of view, and a field without vessel-scale structure (data/fov.h).
    for (int x = 0; x < w; ++x)
      raw += {char(150 + (x * 2 + seed * 7) % 60), char(60 + y + (x * 3 + y * 5 + seed) % 16),
              char(20 + ((x ^ y) + seed) % 20)};
  }
  std::string z = "\x78\x01";
  uint32_t a = 1, b = 0;
  for (unsigned char c : raw) {
    a = (a + c) % 65521;
    b = (b + a) % 65521;
  }
  for (size_t off = 0; off < raw.size() || off == 0; off += 65535) {
    size_t n = std::min<size_t>(65535, raw.size() - off);
    bool last = off + n >= raw.size();
    z += {char(last ? 1 : 0), char(n & 255), char(n >> 8), char(~n & 255), char((~n >> 8) & 255)};
    z += raw.substr(off, n);
    if (last) break;
  }
  z += be32((b << 16) | a);
  std::string ihdr = be32(uint32_t(w)) + be32(uint32_t(h)) + std::string{8, 2, 0, 0, 0};
  return std::string("\x89PNG\r\n\x1a\n", 8) + chunk("IHDR", ihdr) + chunk("IDAT", z) + chunk("IEND", "");
}

void write_text(const std::string& path, const std::string& text) {
  make_dirs(parent_dir(path));
  write_file_atomic(path, text);
}

// 10 patients x 2 eyes of real PNGs; `bad` adds a grade-7 row (line 2) and a truncated PNG (line 22).
std::string make_dataset(const test::TempDir& dir, bool bad) {
  std::string csv = "image,grade,patient,eye\n";
  if (bad) csv += "P00_L.png,7,P00,L\n";
  for (int p = 0; p < 10; ++p)
    for (const char* eye : {"L", "R"}) {
      std::string name = "P0" + std::to_string(p) + "_" + eye + ".png";
      write_text(dir.file("images/" + name), png_image(40, 30, p));
      if (bad && p == 0 && eye[0] == 'L') continue;
      csv += name + "," + std::to_string(p % 5) + ",P0" + std::to_string(p) + "," + eye + "\n";
    }
  if (bad) {
    std::string png = read_file(dir.file("images/P01_L.png"));
    write_text(dir.file("images/cut.png"), png.substr(0, png.size() / 3));
    csv += "cut.png,1,P99,L\n";
  }
  write_text(dir.file("labels.csv"), csv);
  return dir.file("labels.csv");
}

TEST(CliDataset, ValidateCleanAndBroken) {
  test::TempDir good;
  auto r = test::run_cli("dataset validate " + shell_quote(make_dataset(good, false)) + " --threads 2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("(generic): 20 rows, 20 usable, 0 problems"), std::string::npos) << r.output;

  test::TempDir bad;
  std::string csv = make_dataset(bad, true);
  r = test::run_cli("dataset validate " + shell_quote(csv));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("labels.csv:2: grade 7 outside 0-4 (column 'grade')"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("labels.csv:22: image '"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("truncated PNG"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("error: 2 problems in"), std::string::npos) << r.output;

  r = test::run_cli("dataset validate " + shell_quote(csv) + " --skip-bad");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("21 rows, 19 usable, 2 problems: bad_grade 1, corrupt_image 1"), std::string::npos)
      << r.output;

  r = test::run_cli("dataset validate " + shell_quote(csv) + " --json --skip-bad");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  Json j = parse_json(r.output, "validate --json");
  EXPECT_EQ(j["usable"], 19);
  EXPECT_EQ(j["problems"][0]["line"], 2);
  EXPECT_EQ(j["problems"][0]["kind"], "bad_grade");
}

TEST(CliDataset, ClearErrorsForBadInput) {
  test::TempDir dir;
  write_text(dir.file("labels.csv"), "file,score\na.jpg,1\n");
  auto r = test::run_cli("dataset validate " + shell_quote(dir.file("labels.csv")));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("error: "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("labels.csv:1: cannot tell the dataset format from the columns ('file', 'score')"),
            std::string::npos)
      << r.output;

  r = test::run_cli("dataset stats " + shell_quote(dir.file("labels.csv")) + " --format generic --grade-col score");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("missing column 'image' for format generic (columns: 'file', 'score')"), std::string::npos)
      << r.output;

  r = test::run_cli("dataset stats " + shell_quote(dir.file("labels.csv")) + " --format kaggle");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("unknown dataset format 'kaggle'"), std::string::npos) << r.output;

  r = test::run_cli("dataset validate " + shell_quote(dir.file("nothere.csv")));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("nothere.csv: no such file or directory"), std::string::npos) << r.output;
}

TEST(CliDataset, StatsTableAndJson) {
  test::TempDir dir;
  std::string csv = make_dataset(dir, false);
  auto r = test::run_cli("dataset stats " + shell_quote(csv));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("Moderate"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("patients: 10 (10 with both eyes"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("width 40 / 40 / 40"), std::string::npos) << r.output;

  r = test::run_cli("dataset stats " + shell_quote(csv) + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  Json j = parse_json(r.output, "stats --json");
  EXPECT_EQ(j["images"], 20);
  EXPECT_EQ(j["grades"][0]["images"], 4);
  EXPECT_EQ(j["format"], "generic");
}

TEST(CliDataset, SplitAndImport) {
  test::TempDir dir;
  std::string csv = make_dataset(dir, true);
  std::string out = dir.file("split");
  // Bad rows stop the split unless --skip-bad.
  auto r = test::run_cli("dataset split " + shell_quote(csv) + " --out " + shell_quote(out));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("labels.csv:2: grade 7"), std::string::npos) << r.output;
  EXPECT_FALSE(file_exists(out + "/manifest.csv"));

  r = test::run_cli("dataset split " + shell_quote(csv) + " --out " + shell_quote(out) + " --skip-bad --seed 5");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("skipped bad rows"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("leakage: 0 of"), std::string::npos) << r.output;
  for (const char* f : {"manifest.csv", "train.csv", "val.csv", "test.csv", "split.json"})
    EXPECT_TRUE(file_exists(out + "/" + f)) << f;
  CsvTable m = read_csv(out + "/manifest.csv");
  EXPECT_EQ(m.rows.size(), 19u);
  Json j = load_json_file(out + "/split.json");
  EXPECT_EQ(j["options"]["seed"], 5);

  // The split's manifest validates cleanly, and image mode reports its leakage.
  r = test::run_cli("dataset validate " + shell_quote(out + "/manifest.csv"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("(manifest): 19 rows, 19 usable"), std::string::npos) << r.output;
  r = test::run_cli("dataset split " + shell_quote(out + "/manifest.csv") + " --out " + shell_quote(dir.file("img")) +
                    " --mode image --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  Json s = parse_json(r.output, "split --json");
  EXPECT_EQ(s["splits"]["test"]["images"], 4);  // ceil(0.2 * 19)
  EXPECT_EQ(s["splits"]["val"]["images"], 2);   // ceil(0.1 * 15)

  r = test::run_cli("dataset import " + shell_quote(csv) + " --out " + shell_quote(dir.file("m/manifest.csv")) +
                    " --skip-bad --quick");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("(20 cases)"), std::string::npos) << r.output;  // --quick does not decode cut.png
  CsvTable imported = read_csv(dir.file("m/manifest.csv"));
  EXPECT_EQ(imported.header, (std::vector<std::string>{"id", "image", "grade", "patient", "eye", "split"}));
  EXPECT_EQ(imported.field(imported.rows[0], 1), "../images/P00_R.png");
}

TEST(CliDataset, RahimTinyImportAndStats) {
  FUNDUS_REQUIRE_SHARED_DATASET(data, "rahim-dr-tiny");
  test::TempDir dir;
  auto r = test::run_cli("dataset import " + shell_quote(data + "/labels.csv") + " --out " +
                         shell_quote(dir.file("manifest.csv")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("(25 cases)"), std::string::npos) << r.output;
  r = test::run_cli("dataset stats " + shell_quote(dir.file("manifest.csv")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("(manifest)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("patients: 22"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace fundus
