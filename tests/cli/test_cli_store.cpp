// `fundus store ...` and `fundus index ...` end to end through the real binary.
#include <gtest/gtest.h>

#include "fundus/core/csv.h"
#include "fundus/core/io.h"
#include "fundus/core/json.h"
#include "test_support.h"

namespace fundus {
namespace {

using test::shell_quote;

// A store with 8 synthetic cases (via `fundus synth` + `fundus store add`).
std::string make_store(const test::TempDir& dir) {
  auto r = test::run_cli("synth --out " + shell_quote(dir.file("syn")) + " --count 8 --size 64 --seed 1");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  std::string db = dir.file("s.db");
  r = test::run_cli("store add --store " + shell_quote(db) + " --data " + shell_quote(dir.file("syn/labels.csv")));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("added 8 cases, skipped 0 already in the store"), std::string::npos) << r.output;
  return db;
}

TEST(CliStore, AddStatsCheckRemoveExport) {
  test::TempDir dir;
  std::string db = make_store(dir);
  std::string s = " --store " + shell_quote(db);

  auto r = test::run_cli("store add" + s + " --data " + shell_quote(dir.file("syn/labels.csv")) + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  Json j = parse_json(r.output, "store add --json");
  EXPECT_EQ(j["added"], 0);
  EXPECT_EQ(j["skipped"], 8);

  r = test::run_cli("store stats" + s + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  j = parse_json(r.output, "store stats --json");
  EXPECT_EQ(j["cases"], 8);
  int64_t by_grade = 0;
  for (auto& [g, n] : j["grades"].items()) by_grade += n.get<int64_t>();
  EXPECT_EQ(by_grade, 8);
  r = test::run_cli("store stats" + s);
  EXPECT_NE(r.output.find(": 8 cases"), std::string::npos) << r.output;

  r = test::run_cli("store check --check" + s);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find(": ok"), std::string::npos) << r.output;

  r = test::run_cli("store export" + s + " --out " + shell_quote(dir.file("out")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  CsvTable cases = read_csv(dir.file("out/cases.csv"));
  ASSERT_EQ(cases.rows.size(), 8u);
  std::string first_external = cases.field(cases.rows[0], cases.require_column("external_id"));

  r = test::run_cli("store remove" + s + " 2 3");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("removed 2 cases; 6 left"), std::string::npos) << r.output;
  r = test::run_cli("store remove" + s + " --external " + shell_quote(first_external));
  EXPECT_NE(r.output.find("removed 1 case; 5 left"), std::string::npos) << r.output;
  // All or nothing: one unknown id removes nothing.
  r = test::run_cli("store remove" + s + " 4 99");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("no case with store id '99' (nothing was removed)"), std::string::npos) << r.output;
  r = test::run_cli("store remove" + s + " Patient1");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("use --external for case ids"), std::string::npos) << r.output;
  EXPECT_NE(test::run_cli("store stats" + s).output.find(": 5 cases"), std::string::npos);
}

TEST(CliStore, MissingAndForeignFilesAreClearErrors) {
  test::TempDir dir;
  auto r = test::run_cli("store stats --store " + shell_quote(dir.file("none.db")));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("none.db: no case store at this path"), std::string::npos) << r.output;
  EXPECT_FALSE(file_exists(dir.file("none.db")));
  write_file_atomic(dir.file("text.db"), std::string(3000, 'a'));
  r = test::run_cli("store check --store " + shell_quote(dir.file("text.db")));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("text.db: not a SQLite database or the file is corrupt"), std::string::npos) << r.output;
  r = test::run_cli("index info " + shell_quote(dir.file("text.db")));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("not a vector index file"), std::string::npos) << r.output;
}

TEST(CliStore, IndexBuildInfoAndEmbeddingExport) {
  FUNDUS_REQUIRE_PYTHON_ORACLE();
  test::TempDir dir;
  std::string db = make_store(dir);
  // Embeddings come from the embedder (another component); insert a model and 8 vectors directly.
  test::run_python(
      "import sqlite3, struct, sys\n"
      "db = sqlite3.connect(sys.argv[1])\n"
      "db.execute(\"INSERT INTO models(name, checkpoint_hash, descriptor_dim) VALUES ('m', 'h', 4)\")\n"
      "for cid in range(1, 9):\n"
      "    v = [1.0 if j == cid % 4 else 0.1 * cid for j in range(4)]\n"
      "    db.execute('INSERT INTO embeddings VALUES (?, 1, ?)', (cid, struct.pack('<4f', *v)))\n"
      "db.commit()\n",
      shell_quote(db));
  std::string s = " --store " + shell_quote(db);
  std::string idx = dir.file("m1.idx");
  auto r = test::run_cli("index build" + s + " --model 1 --type hnsw:M=8,efc=20 --out " + shell_quote(idx));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("built hnsw:M=8,ef=64,efc=20 over 8 vectors of model 1"), std::string::npos) << r.output;

  r = test::run_cli("index info " + shell_quote(idx) + s + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  Json j = parse_json(r.output, "index info --json");
  EXPECT_EQ(j["type"], "hnsw");
  EXPECT_EQ(j["count"], 8);
  EXPECT_EQ(j["dim"], 4);
  EXPECT_EQ(j["model_id"], 1);
  EXPECT_EQ(j["current"], true);
  r = test::run_cli("store remove" + s + " 5");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = test::run_cli("index info " + shell_quote(idx) + s);
  EXPECT_NE(r.output.find("current:            no (stale: embeddings changed since the build"), std::string::npos)
      << r.output;

  r = test::run_cli("store export" + s + " --model 1 --out " + shell_quote(dir.file("out")));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = test::run_python(
      "import sys, numpy as np, csv\n"
      "a = np.load(sys.argv[1] + '/embeddings_model1.npy')\n"
      "ids = [int(r['case_id']) for r in csv.DictReader(open(sys.argv[1] + '/embeddings_model1_ids.csv'))]\n"
      "print('shape', a.shape, 'ids', ids, 'row3', [round(float(x), 3) for x in a[3]])\n",
      shell_quote(dir.file("out")));
  EXPECT_NE(r.output.find("shape (7, 4) ids [1, 2, 3, 4, 6, 7, 8] row3 [1.0, 0.4, 0.4, 0.4]"), std::string::npos)
      << r.output;

  r = test::run_cli("index build" + s + " --model 7 --out " + shell_quote(idx));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("no model with id 7"), std::string::npos) << r.output;
}

TEST(CliStore, AddsTheRealTinyDataset) {
  FUNDUS_REQUIRE_SHARED_DATASET(tiny, "rahim-dr-tiny");
  test::TempDir dir;
  auto r = test::run_cli("store add --store " + shell_quote(dir.file("s.db")) + " --data " + shell_quote(tiny) +
                         " --threads 2 --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  Json j = parse_json(r.output, "store add --json");
  EXPECT_EQ(j["added"], 25);
  r = test::run_cli("store stats --json --store " + shell_quote(dir.file("s.db")));
  j = parse_json(r.output, "store stats --json");
  for (int g = 0; g < 5; ++g) EXPECT_EQ(j["grades"][std::to_string(g)], 5) << g;
}

}  // namespace
}  // namespace fundus
