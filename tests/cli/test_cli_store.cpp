// `fundus store ...` and `fundus index ...` end to end through the real binary.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fundus/core/csv.h"
#include "fundus/core/hash.h"
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

// ---- issue 10: damaged stores through the CLI ------------------------------------------------------

// Items 1 and 4: a negative user_version crashed every command (SIGSEGV); a 0-byte file passed
// `store check` and got a schema written into it by `stats`; a dropped store_info table, a grade of 7
// and a NaN vector passed `store check`.
TEST(CliStore, DamagedStoresAreClearErrorsNeverCrashesOrWrites) {
  test::TempDir dir;
  std::string db = make_store(dir);
  std::string s = " --store " + shell_quote(db);
  test::run_sql(db, "PRAGMA user_version = -100000");
  for (const std::string& command :
       std::vector<std::string>{"store stats", "store check", "store export --out " + shell_quote(dir.file("x")),
                                "store add --data " + shell_quote(dir.file("syn/labels.csv")), "store remove 1"}) {
    auto r = test::run_cli(command + s);
    EXPECT_EQ(r.exit_code, 1) << command << "\n" << r.output;
    EXPECT_NE(r.output.find(db + ": case store schema version -100000 is invalid"), std::string::npos)
        << command << "\n"
        << r.output;
  }
  test::run_sql(db, "PRAGMA user_version = 2; DROP TABLE store_info;");
  auto r = test::run_cli("store check" + s);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("table store_info is missing"), std::string::npos) << r.output;

  std::string zero = dir.file("zero.db");
  write_file_atomic(zero, "");
  for (const char* command : {"store stats", "store check"}) {
    r = test::run_cli(std::string(command) + " --store " + shell_quote(zero));
    EXPECT_EQ(r.exit_code, 1) << command << "\n" << r.output;
    EXPECT_NE(r.output.find(zero + ": empty file (0 bytes), not a case store"), std::string::npos) << r.output;
    EXPECT_EQ(read_file(zero), "") << command << " wrote into the file";
  }

  test::TempDir dir2;
  db = make_store(dir2);
  s = " --store " + shell_quote(db);
  test::run_sql(db,
                "PRAGMA ignore_check_constraints = 1; UPDATE cases SET grade = 7 WHERE id = 2;"
                "INSERT INTO models(name, checkpoint_hash, descriptor_dim) VALUES ('m', 'h', 2);"
                "INSERT INTO embeddings VALUES (3, 1, X'0000C07F0000803F');");
  r = test::run_cli("store check" + s);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("case id 2: grade 7 outside 0-4"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("embedding of case id 3 for model 1 has a non-finite value (nan) at dimension 0"),
            std::string::npos)
      << r.output;
  // Building an index from it names the case and the store instead of "vector 4 has a non-finite value".
  r = test::run_cli("index build" + s + " --model 1 --out " + shell_quote(dir2.file("i.idx")));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find(db + ": case id 3: its embedding for model 1 has a non-finite value"), std::string::npos)
      << r.output;
}

// Item 4: read commands failed on a write-protected store in a write-protected folder ("'PRAGMA
// user_version' failed: attempt to write a readonly database").
TEST(CliStore, ReadCommandsWorkOnAWriteProtectedStore) {
  test::TempDir dir;
  std::string db = make_store(dir);
  ASSERT_EQ(test::run_cli("store check --store " + shell_quote(db)).exit_code, 0);
  // root ignores file permissions: run the commands as nobody then.
  std::string as = "";
  if (geteuid() == 0) {
    if (test::run_command("setpriv --reuid=65534 --regid=65534 --clear-groups true").exit_code != 0)
      GTEST_SKIP() << "running as root without setpriv: cannot make a file read-only";
    as = "setpriv --reuid=65534 --regid=65534 --clear-groups ";
  }
  make_dirs(dir.file("out"));
  ASSERT_EQ(::chmod(dir.file("out").c_str(), 0777), 0);
  ASSERT_EQ(::chmod(db.c_str(), 0444), 0);
  const std::string before = sha256_file(db);
  std::string s = " --store " + shell_quote(db);
  // The folder read-only as well (SQLite cannot create its -shm file there), then writable.
  for (mode_t folder : {0755, 0777}) {
    ASSERT_EQ(::chmod(dir.path().c_str(), folder), 0);
    for (const std::string& command :
         std::vector<std::string>{"store stats" + s, "store stats --json" + s, "store check" + s,
                                  "store export --out " + shell_quote(dir.file("out")) + s}) {
      auto r = test::run_command(as + shell_quote(FUNDUS_CLI) + " " + command);
      EXPECT_EQ(r.exit_code, 0) << std::oct << folder << ": " << command << "\n" << r.output;
    }
  }
  EXPECT_TRUE(file_exists(dir.file("out/cases.csv")));
  auto r = test::run_command(as + shell_quote(FUNDUS_CLI) + " store remove 1" + s);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find(db + ": cannot write to the case store"), std::string::npos) << r.output;
  EXPECT_EQ(sha256_file(db), before);
}

// Item 10: CLI11 read "-k 0x10" as 16, "010" as 8 and "1e1" as 10.
TEST(CliStore, NumericOptionsAreDecimalOnly) {
  test::TempDir dir;
  for (const std::string& args :
       std::vector<std::string>{"query a.jpg --store " + shell_quote(dir.file("s.db")) + " --model m.ckpt -k 0x10",
                                "query a.jpg --store " + shell_quote(dir.file("s.db")) + " --model m.ckpt -k 1e1",
                                "store export --store " + shell_quote(dir.file("s.db")) + " --out o --model 0x1",
                                "store add --store " + shell_quote(dir.file("s.db")) + " --data d.csv --threads 0x2"}) {
    auto r = test::run_cli(args);
    EXPECT_NE(r.exit_code, 0) << args << "\n" << r.output;
    // (A range check on the same option may speak first: "Value 1e1 not in range 1 to 1000".)
    EXPECT_TRUE(r.output.find("is not a decimal integer") != std::string::npos ||
                r.output.find("not in range") != std::string::npos)
        << args << "\n"
        << r.output;
  }
  EXPECT_FALSE(file_exists(dir.file("s.db")));
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
