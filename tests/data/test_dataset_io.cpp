// Dataset readers: one test per format, auto-detection, image resolution, row problems, manifests,
// and the shared real datasets.
#include <algorithm>
#include <functional>
#include <map>
#include <set>

#include <gtest/gtest.h>

#include "dataset_fixtures.h"
#include "fundus/core/error.h"
#include "fundus/core/io.h"
#include "fundus/core/strings.h"
#include "fundus/data/dataset_io.h"
#include "test_support.h"

namespace fundus {
namespace {

using test::write_test_image;
using test::write_text;

const CaseRecord& by_id(const Dataset& d, const std::string& id) {
  auto it = std::find_if(d.records.begin(), d.records.end(), [&](const CaseRecord& r) { return r.id == id; });
  if (it == d.records.end()) throw std::runtime_error("no record " + id);
  return *it;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.message();
  }
  return "";
}

TEST(DatasetIo, GenericCsvWithAllColumns) {
  test::TempDir dir;
  write_test_image(dir.file("img/p1_l.jpg"));
  write_test_image(dir.file("img/p1_r.png"));
  write_test_image(dir.file("img/x.jpg"));
  write_text(dir.file("labels.csv"),
             "image,grade,patient,eye,split,id,notes\n"
             "img/p1_l.jpg,2,P1,left,train,,\"a, b\"\n"
             "img/p1_r.png,3,P1,R,Validation,right-one,\n"
             "img/x.jpg,0,,,test,,\n");
  LoadResult r = load_dataset(dir.file("labels.csv"));
  EXPECT_EQ(r.format, DatasetFormat::generic);
  EXPECT_TRUE(r.problems.empty()) << format_problems(r.problems);
  EXPECT_EQ(r.rows, 3u);
  ASSERT_EQ(r.dataset.size(), 3u);
  const CaseRecord& a = r.dataset.records[0];
  EXPECT_EQ(a.id, "p1_l");  // id defaults to the image stem
  EXPECT_EQ(a.image_path, dir.file("img/p1_l.jpg"));
  EXPECT_EQ(a.grade, 2);
  EXPECT_EQ(a.patient, "P1");
  EXPECT_EQ(a.eye, "L");
  EXPECT_EQ(a.split, "train");
  EXPECT_EQ(a.source_line, 2);
  const CaseRecord& b = r.dataset.records[1];
  EXPECT_EQ(b.id, "right-one");
  EXPECT_EQ(b.split, "val");
  EXPECT_EQ(b.eye, "R");
  const CaseRecord& c = r.dataset.records[2];
  EXPECT_EQ(c.patient, "");
  EXPECT_EQ(c.patient_key(), "x");
  EXPECT_EQ(c.source_line, 4);
}

TEST(DatasetIo, GenericCsvWithConfiguredColumnNames) {
  test::TempDir dir;
  write_test_image(dir.file("a.jpg"));
  write_test_image(dir.file("b.jpg"));
  write_text(dir.file("my.csv"), "file,dr,subject,side\na.jpg,4,S9,OD\nb.jpg,1,S9,OS\n");
  DatasetLoadOptions o;
  o.columns.image = "file";
  o.columns.grade = "dr";
  o.columns.patient = "subject";
  o.columns.eye = "side";
  LoadResult r = load_dataset(dir.file("my.csv"), o);
  ASSERT_TRUE(r.problems.empty()) << format_problems(r.problems);
  ASSERT_EQ(r.dataset.size(), 2u);
  EXPECT_EQ(r.dataset.records[0].grade, 4);
  EXPECT_EQ(r.dataset.records[0].eye, "R");
  EXPECT_EQ(r.dataset.records[1].eye, "L");
  EXPECT_EQ(r.dataset.records[1].patient, "S9");

  // Without the options the columns are not recognised; the error lists what is there.
  std::string e = error_of([&] { load_dataset(dir.file("my.csv")); });
  EXPECT_NE(e.find("my.csv:1: cannot tell the dataset format"), std::string::npos) << e;
  EXPECT_NE(e.find("'file', 'dr', 'subject', 'side'"), std::string::npos) << e;

  // An explicitly named optional column must exist.
  o.columns.eye = "laterality";
  e = error_of([&] { load_dataset(dir.file("my.csv"), o); });
  EXPECT_NE(e.find("missing column 'laterality'"), std::string::npos) << e;
  EXPECT_NE(e.find("(columns: 'file', 'dr', 'subject', 'side')"), std::string::npos) << e;
}

TEST(DatasetIo, ForcedFormatWithMissingColumnNamesTheColumns) {
  test::TempDir dir;
  write_text(dir.file("labels.csv"), "image,level\n10_left,0\n");
  DatasetLoadOptions o;
  o.format = DatasetFormat::aptos;
  std::string e = error_of([&] { load_dataset(dir.file("labels.csv"), o); });
  EXPECT_NE(e.find("labels.csv:1: missing column 'id_code' for format aptos (columns: 'image', 'level')"),
            std::string::npos)
      << e;
}

TEST(DatasetIo, EyepacsTrainLabels) {
  test::TempDir dir;
  write_test_image(dir.file("train/10_left.jpeg"));
  write_test_image(dir.file("train/10_right.jpeg"));
  write_test_image(dir.file("train/13_left.jpeg"));
  write_text(dir.file("trainLabels.csv"), "image,level\n10_left,0\n10_right,1\n13_left,4\n");
  LoadResult r = load_dataset(dir.file("trainLabels.csv"));
  EXPECT_EQ(r.format, DatasetFormat::eyepacs);
  ASSERT_TRUE(r.problems.empty()) << format_problems(r.problems);
  ASSERT_EQ(r.dataset.size(), 3u);
  const CaseRecord& a = by_id(r.dataset, "10_right");
  EXPECT_EQ(a.patient, "10");
  EXPECT_EQ(a.eye, "R");
  EXPECT_EQ(a.grade, 1);
  EXPECT_EQ(a.image_path, dir.file("train/10_right.jpeg"));
  EXPECT_EQ(by_id(r.dataset, "13_left").eye, "L");
  // The folder is accepted as well: it holds trainLabels.csv.
  EXPECT_EQ(load_dataset(dir.path()).dataset.size(), 3u);
}

TEST(DatasetIo, AptosWithImagesInTrainImages) {
  test::TempDir dir;
  write_test_image(dir.file("train_images/000c1434d8d7.png"));
  write_test_image(dir.file("train_images/001639a390f0.png"));
  write_text(dir.file("train.csv"), "id_code,diagnosis\n000c1434d8d7,2\n001639a390f0,4\n");
  LoadResult r = load_dataset(dir.file("train.csv"));
  EXPECT_EQ(r.format, DatasetFormat::aptos);
  ASSERT_TRUE(r.problems.empty()) << format_problems(r.problems);
  ASSERT_EQ(r.dataset.size(), 2u);
  EXPECT_EQ(r.dataset.records[0].id, "000c1434d8d7");
  EXPECT_EQ(r.dataset.records[0].image_path, dir.file("train_images/000c1434d8d7.png"));
  EXPECT_EQ(r.dataset.records[1].grade, 4);
  EXPECT_EQ(r.dataset.records[1].patient, "");
}

TEST(DatasetIo, IdridCsvWithTrailingSpacesAndSiblingImageFolders) {
  test::TempDir dir;
  // The IDRiD layout: training and testing sets reuse the names IDRiD_001...
  std::string root = dir.file("B. Disease Grading");
  write_test_image(root + "/1. Original Images/a. Training Set/IDRiD_001.jpg", 64, 48, 1);
  write_test_image(root + "/1. Original Images/a. Training Set/IDRiD_002.jpg", 64, 48, 2);
  write_test_image(root + "/1. Original Images/b. Testing Set/IDRiD_001.jpg", 64, 48, 3);
  std::string csv = root + "/2. Groundtruths/a. IDRiD_Disease Grading_Training Labels.csv";
  write_text(csv,
             "Image name,Retinopathy grade,Risk of macular edema ,,,\r\n"
             "IDRiD_001,3,2,,,\r\n"
             "IDRiD_002,0,0,,,\r\n"
             ",,,,,\r\n");
  LoadResult r = load_dataset(csv);
  EXPECT_EQ(r.format, DatasetFormat::idrid);
  ASSERT_TRUE(r.problems.empty()) << format_problems(r.problems);
  EXPECT_EQ(r.rows, 2u);  // the blank trailing row is not data
  ASSERT_EQ(r.dataset.size(), 2u);
  EXPECT_EQ(r.dataset.records[0].grade, 3);
  EXPECT_NE(r.dataset.records[0].image_path.find("a. Training Set/IDRiD_001.jpg"), std::string::npos)
      << r.dataset.records[0].image_path;
  EXPECT_TRUE(file_exists(r.dataset.records[1].image_path));

  // The testing labels pick the testing image of the same name.
  std::string test_csv = root + "/2. Groundtruths/b. IDRiD_Disease Grading_Testing Labels.csv";
  write_text(test_csv, "Image name,Retinopathy grade,Risk of macular edema \nIDRiD_001,1,0\n");
  LoadResult t = load_dataset(test_csv);
  ASSERT_TRUE(t.problems.empty()) << format_problems(t.problems);
  EXPECT_NE(t.dataset.records[0].image_path.find("b. Testing Set/IDRiD_001.jpg"), std::string::npos);
}

TEST(DatasetIo, FolderPerGrade) {
  test::TempDir dir;
  write_test_image(dir.file("root/0/Patient1_L.jpg"));
  write_test_image(dir.file("root/0/Patient1_R.jpg"));
  write_test_image(dir.file("root/2_moderate/77_left.png"));
  write_test_image(dir.file("root/4 - PDR/z.JPG"));
  write_text(dir.file("root/0/notes.txt"), "not an image");
  write_test_image(dir.file("root/masks/m.png"));                // not a grade folder: ignored
  write_test_image(dir.file("root/7_other/q.jpg"));              // grade 7: a problem
  write_test_image(dir.file("root/2_moderate/Patient1_L.jpg"));  // same id in two grade folders
  LoadResult r = load_dataset(dir.file("root"));
  EXPECT_EQ(r.format, DatasetFormat::folders);
  ASSERT_EQ(r.dataset.size(), 4u);
  EXPECT_EQ(r.rows, 5u);
  const CaseRecord& a = by_id(r.dataset, "Patient1_L");
  EXPECT_EQ(a.grade, 0);
  EXPECT_EQ(a.patient, "Patient1");
  EXPECT_EQ(a.eye, "L");
  EXPECT_EQ(by_id(r.dataset, "77_left").grade, 2);
  EXPECT_EQ(by_id(r.dataset, "77_left").patient, "77");
  EXPECT_EQ(by_id(r.dataset, "z").grade, 4);
  EXPECT_EQ(by_id(r.dataset, "z").eye, "");
  ASSERT_EQ(r.problems.size(), 2u) << format_problems(r.problems);
  EXPECT_EQ(r.problems[0].kind, ProblemKind::bad_grade);
  EXPECT_EQ(r.problems[0].to_string(),
            dir.file("root/7_other") + ": folder '7_other' names grade 7, outside 0-4 (its images are not read)");
  EXPECT_EQ(r.problems[1].kind, ProblemKind::duplicate_id);
  EXPECT_EQ(r.problems[1].source, dir.file("root/2_moderate/Patient1_L.jpg"));
  EXPECT_NE(r.problems[1].message.find("also " + dir.file("root/0/Patient1_L.jpg")), std::string::npos);

  EXPECT_NE(error_of([&] { load_dataset(dir.file("root/masks")); }).find("no grade folders"), std::string::npos);
}

TEST(DatasetIo, ManifestRoundTripWithRelativePaths) {
  test::TempDir dir;
  write_test_image(dir.file("data/images/a.jpg"));
  write_test_image(dir.file("data/images/b.png"));
  write_text(dir.file("data/labels.csv"), "image,grade,patient,eye\na.jpg,1,P,L\nb.png,2,P,R\n");
  LoadResult src = load_dataset(dir.file("data/labels.csv"));
  ASSERT_TRUE(src.problems.empty()) << format_problems(src.problems);
  src.dataset.records[0].split = "train";
  src.dataset.records[1].split = "test";
  write_manifest(dir.file("out/sub/manifest.csv"), src.dataset);

  std::string text = read_file(dir.file("out/sub/manifest.csv"));
  EXPECT_EQ(text,
            "id,image,grade,patient,eye,split\n"
            "a,../../data/images/a.jpg,1,P,L,train\n"
            "b,../../data/images/b.png,2,P,R,test\n");
  LoadResult back = load_dataset(dir.file("out/sub/manifest.csv"));
  EXPECT_EQ(back.format, DatasetFormat::manifest);
  ASSERT_TRUE(back.problems.empty()) << format_problems(back.problems);
  ASSERT_EQ(back.dataset.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    const CaseRecord &x = src.dataset.records[i], &y = back.dataset.records[i];
    EXPECT_EQ(x.id, y.id);
    EXPECT_EQ(x.grade, y.grade);
    EXPECT_EQ(x.patient, y.patient);
    EXPECT_EQ(x.eye, y.eye);
    EXPECT_EQ(x.split, y.split);
    EXPECT_EQ(read_file(x.image_path), read_file(y.image_path));
  }
}

TEST(DatasetIo, ExtensionGuessing) {
  test::TempDir dir;
  write_test_image(dir.file("a.jpg"));         // CSV says a.png
  write_test_image(dir.file("b.JPG"));         // CSV says b (no extension)
  write_test_image(dir.file("c.jpeg"));        // exact
  write_test_image(dir.file("d.png"));         // CSV says d.tif
  write_test_image(dir.file("images/e.jpg"));  // in images/, CSV says e.jpeg
  write_test_image(dir.file("cache/f.jpg"));   // another folder: must not stand in for the missing f.jpg
  write_text(dir.file("labels.csv"), "image,grade\na.png,0\nb,1\nc.jpeg,2\nd.tif,3\ne.jpeg,4\nf.jpg,0\n");
  LoadResult r = load_dataset(dir.file("labels.csv"));
  ASSERT_EQ(r.dataset.size(), 5u);
  EXPECT_EQ(r.dataset.records[0].image_path, dir.file("a.jpg"));
  EXPECT_EQ(r.dataset.records[1].image_path, dir.file("b.JPG"));
  EXPECT_EQ(r.dataset.records[2].image_path, dir.file("c.jpeg"));
  EXPECT_EQ(r.dataset.records[3].image_path, dir.file("d.png"));
  EXPECT_EQ(r.dataset.records[4].image_path, dir.file("images/e.jpg"));
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_EQ(r.problems[0].kind, ProblemKind::missing_image);
  EXPECT_EQ(r.problems[0].line, 7);
  EXPECT_NE(r.problems[0].to_string().find("labels.csv:7: image file 'f.jpg' not found"), std::string::npos)
      << r.problems[0].to_string();
}

TEST(DatasetIo, EveryRowProblemIsReportedWithItsLine) {
  test::TempDir dir;
  for (const char* name : {"a", "b", "c", "d", "e", "f", "g"}) write_test_image(dir.file(std::string(name) + ".jpg"));
  write_text(dir.file("labels.csv"),
             "image,grade,eye\n"
             "a.jpg,0,L\n"        // 2 ok
             "b.jpg,7,R\n"        // 3 grade outside 0-4
             "c.jpg,two,\n"       // 4 not a number
             "a.jpg,1,\n"         // 5 duplicate id 'a'
             "d.jpg,2.0,\n"       // 6 ok (integral float)
             "e.jpg,,\n"          // 7 empty grade
             ",3,\n"              // 8 empty image name
             "f.jpg,1,up\n"       // 9 bad eye
             "nothere.jpg,1,L\n"  // 10 missing image
             "g.jpg,-1,\n"        // 11 negative grade
             "g.jpg,1.5,\n");     // 12 not whole, and a duplicate of line 11's id
  LoadResult r = load_dataset(dir.file("labels.csv"));
  ASSERT_EQ(r.dataset.size(), 2u);
  EXPECT_EQ(r.dataset.records[1].grade, 2);
  EXPECT_EQ(r.rows, 11u);
  std::map<int, std::pair<ProblemKind, std::string>> at;
  for (const DatasetProblem& p : r.problems) at[p.line] = {p.kind, p.message};
  ASSERT_EQ(at.size(), 9u) << format_problems(r.problems);
  EXPECT_EQ(at[3].first, ProblemKind::bad_grade);
  EXPECT_EQ(at[3].second, "grade 7 outside 0-4 (column 'grade')");
  EXPECT_EQ(at[4].first, ProblemKind::bad_grade);
  EXPECT_EQ(at[4].second, "grade 'two' is not a whole number 0-4 (column 'grade')");
  EXPECT_EQ(at[5].first, ProblemKind::duplicate_id);
  EXPECT_EQ(at[5].second, "duplicate id 'a' (first on line 2)");
  EXPECT_EQ(at[7].first, ProblemKind::bad_grade);
  EXPECT_EQ(at[8].first, ProblemKind::bad_field);
  EXPECT_EQ(at[9].first, ProblemKind::bad_field);
  EXPECT_EQ(at[9].second, "eye 'up' is not L or R (column 'eye')");
  EXPECT_EQ(at[10].first, ProblemKind::missing_image);
  EXPECT_EQ(at[11].second, "grade -1 outside 0-4 (column 'grade')");
  // Line 12 has two problems; both are reported.
  EXPECT_EQ(std::count_if(r.problems.begin(), r.problems.end(), [](const DatasetProblem& p) { return p.line == 12; }),
            2);
  EXPECT_EQ(at[12].second, "duplicate id 'g' (first on line 11)");
  for (const DatasetProblem& p : r.problems) EXPECT_EQ(p.source, dir.file("labels.csv"));
  Json j = problems_to_json(r.problems);
  EXPECT_EQ(j.size(), 10u);
  EXPECT_EQ(j[0]["kind"], "bad_grade");
  EXPECT_EQ(j[0]["line"], 3);
  EXPECT_EQ(j[0]["id"], "b");
  EXPECT_EQ(count_problem_kinds(r.problems).at("bad_grade"), 5);
  EXPECT_EQ(r.problems[r.problems.size() - 2].message, "grade '1.5' is not a whole number 0-4 (column 'grade')");
}

// Issue 10 item 10: Latin-1 files imported silently (and broke every JSON answer later), "0x2" and
// "1e2" were grades, escape sequences in fields reached the terminal, duplicate columns went unnoticed.
TEST(DatasetIo, HostileTextIsRejectedWithFileAndLine) {
  test::TempDir dir;
  for (const char* name : {"a", "b", "c", "d", "e"}) write_test_image(dir.file(std::string(name) + ".jpg"));
  write_text(dir.file("latin1.csv"), "image,grade,patient\na.jpg,0,P1\nb.jpg,1,Jos\xE9\n");
  EXPECT_EQ(error_of([&] { load_dataset(dir.file("latin1.csv")); }),
            dir.file("latin1.csv") +
                ":3: byte 0xE9 at column 12 is not valid UTF-8; the file is probably in Latin-1 or "
                "Windows-1252: convert it (e.g. iconv -f WINDOWS-1252 -t UTF-8 IN.csv > OUT.csv) "
                "and import it again");
  write_text(dir.file("dup.csv"), "image,grade,grade\na.jpg,0,1\n");
  EXPECT_EQ(error_of([&] { load_dataset(dir.file("dup.csv")); }),
            dir.file("dup.csv") + ":1: duplicate column 'grade' (columns 2 and 3); rename one of them");
  write_text(dir.file("labels.csv"),
             "image,grade,patient,note\n"
             "a.jpg,0x2,P1,\n"                  // 2 hex is not a grade
             "b.jpg,1e0,P2,\n"                  // 3 nor is an exponent
             "c.jpg,\x1b[2J,P\x1b[31mX\x07,\n"  // 4 escape sequences and a bell
             "d.jpg,3,P4,\"two\nlines\"\n"      // 5 ok: free-text columns may hold newlines
             "e.jpg, 4 ,P5,\n");                // 7 ok
  LoadResult r = load_dataset(dir.file("labels.csv"));
  ASSERT_EQ(r.dataset.size(), 2u) << format_problems(r.problems);
  std::multimap<int, std::string> at;
  for (const DatasetProblem& p : r.problems) at.emplace(p.line, p.message);
  ASSERT_EQ(at.size(), 5u) << format_problems(r.problems);
  EXPECT_EQ(at.find(2)->second, "grade '0x2' is not a whole number 0-4 (column 'grade')");
  EXPECT_EQ(at.find(3)->second, "grade '1e0' is not a whole number 0-4 (column 'grade')");
  ASSERT_EQ(at.count(4), 3u);
  auto line4 = at.equal_range(4);
  std::vector<std::string> messages;
  for (auto it = line4.first; it != line4.second; ++it) messages.push_back(it->second);
  EXPECT_EQ(messages[0], "control character 0x1B (ESC) in column 'grade'");
  EXPECT_EQ(messages[1], "control character 0x1B (ESC) in column 'patient'");
  // Reports quote fields escaped: nothing printed can drive the terminal.
  std::string report = format_problems(r.problems);
  EXPECT_EQ(report.find('\x1b'), std::string::npos) << report;
  EXPECT_EQ(report.find('\x07'), std::string::npos) << report;
}

TEST(DatasetIo, EmptyFilesAndUnknownFormats) {
  test::TempDir dir;
  write_text(dir.file("zero.csv"), "");
  EXPECT_NE(error_of([&] { load_dataset(dir.file("zero.csv")); }).find("zero.csv: empty file"), std::string::npos);
  write_text(dir.file("header_only.csv"), "image,grade\n");
  LoadResult r = load_dataset(dir.file("header_only.csv"));
  EXPECT_EQ(r.rows, 0u);
  EXPECT_TRUE(r.dataset.records.empty());
  EXPECT_NE(error_of([&] { load_dataset(dir.file("absent.csv")); }).find("absent.csv: no such file"),
            std::string::npos);
  EXPECT_NE(error_of([&] { parse_dataset_format("kaggle"); }).find("unknown dataset format 'kaggle'"),
            std::string::npos);
  EXPECT_EQ(parse_dataset_format("IDRiD"), DatasetFormat::idrid);
  EXPECT_NE(error_of([&] { load_dataset(dir.path()); }).find("none of manifest.csv"), std::string::npos);
}

TEST(DatasetIo, DetectsEachFormat) {
  test::TempDir dir;
  auto detect = [&](const std::string& header) {
    write_text(dir.file("x.csv"), header + "\n");
    return detect_dataset_format(dir.file("x.csv"));
  };
  EXPECT_EQ(detect("image,grade"), DatasetFormat::generic);
  EXPECT_EQ(detect("image,grade,eye,patient,maculopathy,source_class"), DatasetFormat::generic);
  EXPECT_EQ(detect("id,image,grade,patient,eye,split"), DatasetFormat::manifest);
  EXPECT_EQ(detect("image,level"), DatasetFormat::eyepacs);
  EXPECT_EQ(detect("id_code,diagnosis"), DatasetFormat::aptos);
  EXPECT_EQ(detect("Image name,Retinopathy grade,Risk of macular edema "), DatasetFormat::idrid);
  write_test_image(dir.file("f/3/a.jpg"));
  EXPECT_EQ(detect_dataset_format(dir.file("f")), DatasetFormat::folders);
}

TEST(DatasetIo, PatientAndEyeFromNames) {
  std::string p = "keep", e = "keep";
  EXPECT_TRUE(parse_patient_eye("10_left", p, e));
  EXPECT_EQ(p, "10");
  EXPECT_EQ(e, "L");
  EXPECT_TRUE(parse_patient_eye("Patient002_R", p, e));
  EXPECT_EQ(p, "Patient002");
  EXPECT_EQ(e, "R");
  EXPECT_TRUE(parse_patient_eye("a_b-OS", p, e));
  EXPECT_EQ(p, "a_b");
  EXPECT_EQ(e, "L");
  p = e = "keep";
  EXPECT_FALSE(parse_patient_eye("IDRiD_001", p, e));
  EXPECT_FALSE(parse_patient_eye("_left", p, e));
  EXPECT_FALSE(parse_patient_eye("left", p, e));
  EXPECT_EQ(p, "keep");
}

void expect_rahim(const std::string& dir, size_t images, const std::array<int, kNumGrades>& grades, size_t patients) {
  LoadResult r = load_dataset(dir + "/labels.csv");
  EXPECT_EQ(r.format, DatasetFormat::generic);
  ASSERT_TRUE(r.problems.empty()) << format_problems(r.problems, 10);
  ASSERT_EQ(r.dataset.size(), images);
  std::array<int, kNumGrades> counts{};
  std::set<std::string> ps;
  for (const CaseRecord& c : r.dataset.records) {
    ++counts[size_t(c.grade)];
    ps.insert(c.patient);
    EXPECT_TRUE(c.eye == "L" || c.eye == "R");
    EXPECT_TRUE(file_exists(c.image_path)) << c.image_path;
    EXPECT_NE(c.image_path.find("/images/"), std::string::npos);
  }
  EXPECT_EQ(counts, grades);
  EXPECT_EQ(ps.size(), patients);
}

TEST(DatasetIo, RahimTinyLoadsAsGeneric) {
  FUNDUS_REQUIRE_SHARED_DATASET(dir, "rahim-dr-tiny");
  expect_rahim(dir, 25, {5, 5, 5, 5, 5}, 22);
}

TEST(DatasetIo, RahimLoadsAsGenericWithoutOptions) {
  FUNDUS_REQUIRE_SHARED_DATASET(dir, "rahim-dr");
  expect_rahim(dir, 356, {166, 60, 99, 17, 14}, 178);
  // The folder itself is accepted too (it holds labels.csv).
  EXPECT_EQ(load_dataset(dir).dataset.size(), 356u);
}

}  // namespace
}  // namespace fundus
