#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <fstream>
#include <set>
#include <thread>

#include "fundus/core/csv.h"
#include "fundus/core/error.h"
#include "fundus/core/hash.h"
#include "fundus/core/io.h"
#include "fundus/core/json.h"
#include "fundus/core/npy.h"
#include "fundus/core/strings.h"
#include "fundus/store/case_store.h"
#include "fundus/store/store_report.h"
#include "test_support.h"

using namespace fundus;

namespace {

// A dataset of n cases whose "images" are small distinct files (the store only hashes bytes).
Dataset make_dataset(const test::TempDir& dir, int n, const std::string& prefix = "case") {
  Dataset ds;
  ds.source = dir.file(prefix + ".csv");
  for (int i = 0; i < n; ++i) {
    CaseRecord r;
    r.id = prefix + std::to_string(i);
    r.image_path = dir.file(r.id + ".jpg");
    std::ofstream(r.image_path) << "image bytes of " << r.id;  // no fsync: fast tests
    r.grade = i % kNumGrades;
    r.patient = i % 3 == 2 ? "" : "P" + std::to_string(i / 2);
    r.eye = i % 2 ? "R" : "L";
    r.split = i < n / 2 ? "train" : "test";
    r.source_line = i + 2;
    ds.records.push_back(r);
  }
  return ds;
}

// Runs raw SQL on a database file (to build old schemas or damage a store on purpose).
void raw_sql(const std::string& path, const std::string& sql) { test::run_sql(path, sql); }

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.message();
  }
  return "";
}

std::vector<float> vectors_for(const std::vector<int64_t>& ids, int dim, float salt = 0) {
  std::vector<float> v;
  for (int64_t id : ids)
    for (int j = 0; j < dim; ++j) v.push_back(float(id) + 0.25f * float(j) + salt);
  return v;
}

}  // namespace

TEST(CaseStore, AddCasesRoundTripAndStats) {
  test::TempDir dir;
  Dataset ds = make_dataset(dir, 10);
  CaseStore store(dir.file("s.db"));
  EXPECT_EQ(store.schema_version(), kStoreSchemaVersion);
  EXPECT_EQ(store.store_id().size(), 32u);
  AddCasesResult added = store.add_cases(ds, 2);
  ASSERT_EQ(added.ids.size(), 10u);
  EXPECT_EQ(added.added, 10);
  EXPECT_EQ(added.skipped, 0);
  EXPECT_EQ(std::set<int64_t>(added.ids.begin(), added.ids.end()).size(), 10u);

  auto c = store.get_case(added.ids[3]);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->external_id, "case3");
  EXPECT_EQ(c->image_path, ds.records[3].image_path);  // already absolute
  EXPECT_EQ(c->content_hash, sha256_file(ds.records[3].image_path));
  EXPECT_EQ(c->grade, 3);
  EXPECT_EQ(c->patient, "P1");
  EXPECT_EQ(c->eye, "R");
  EXPECT_EQ(c->split, "train");
  EXPECT_EQ(c->meta, "{}");
  EXPECT_EQ(c->added_at.size(), 20u);  // 2024-01-02T03:04:05Z
  EXPECT_EQ(c->to_record().id, "case3");

  auto found = store.find_by_external_id("case7");
  ASSERT_TRUE(found);
  EXPECT_EQ(found->id, added.ids[7]);
  EXPECT_FALSE(store.find_by_external_id("nope"));
  EXPECT_FALSE(store.get_case(999));

  EXPECT_EQ(store.list_cases().size(), 10u);
  EXPECT_EQ(store.list_cases("train").size(), 5u);
  EXPECT_EQ(store.list_cases("train, test").size(), 10u);
  EXPECT_EQ(store.list_cases("val").size(), 0u);

  StoreStats s = store.stats();
  EXPECT_EQ(s.cases, 10);
  for (int g = 0; g < kNumGrades; ++g) EXPECT_EQ(s.per_grade[g], 2) << g;
  EXPECT_EQ(s.per_split.at("train"), 5);
  EXPECT_EQ(s.per_split.at("test"), 5);
  // Patients: cases 0,1 -> P0; 3 -> P1; 4 -> P2; 6,7 -> P3; 9 -> P4; 2,5,8 have none (own patient each).
  EXPECT_EQ(s.patients, 8);
  EXPECT_EQ(s.models, 0);

  // The text report names the grades (the store reads the grade scale from core/grades.h).
  std::string text = format_store_stats(s, store.list_models());
  EXPECT_NE(text.find("2 Moderate        2   20.0%"), std::string::npos) << text;
  EXPECT_NE(text.find("4 PDR             2   20.0%"), std::string::npos) << text;
}

TEST(CaseStore, DuplicatesAreSkippedWhenIdenticalAndRejectedWhenConflicting) {
  test::TempDir dir;
  Dataset ds = make_dataset(dir, 6);
  CaseStore store(dir.file("s.db"));
  auto first = store.add_cases(ds);
  auto again = store.add_cases(ds);  // re-running an import is a no-op
  EXPECT_EQ(again.ids, first.ids);
  EXPECT_EQ(again.added, 0);
  EXPECT_EQ(again.skipped, 6);

  // A batch with one new case and one conflicting case (same id, other image bytes) writes nothing.
  Dataset more = make_dataset(dir, 1, "new");
  CaseRecord conflict = ds.records[2];
  conflict.image_path = dir.file("other.jpg");
  write_file_atomic(conflict.image_path, "different bytes");
  more.records.push_back(conflict);
  std::string err = error_of([&] { store.add_cases(more); });
  EXPECT_NE(err.find("case '" + conflict.id + "' is already in the store"), std::string::npos) << err;
  EXPECT_NE(err.find("different image"), std::string::npos) << err;
  EXPECT_EQ(store.stats().cases, 6);
  EXPECT_FALSE(store.find_by_external_id("new0"));

  CaseRecord regraded = ds.records[2];
  regraded.grade = (regraded.grade + 1) % kNumGrades;
  EXPECT_NE(error_of([&] { store.add_case(regraded); }).find("different grade"), std::string::npos);
  // Identical single add returns the existing id.
  EXPECT_EQ(store.add_case(ds.records[2]), first.ids[2]);
}

TEST(CaseStore, FailedImportWritesNothing) {
  test::TempDir dir;
  CaseStore store(dir.file("s.db"));
  Dataset ds = make_dataset(dir, 5);
  ds.records[3].image_path = dir.file("missing.jpg");
  std::string err = error_of([&] { store.add_cases(ds); });
  EXPECT_NE(err.find(ds.source + ":5: case 'case3'"), std::string::npos) << err;
  EXPECT_EQ(store.stats().cases, 0);

  ds = make_dataset(dir, 5);
  ds.records[4].id = ds.records[1].id;
  err = error_of([&] { store.add_cases(ds); });
  EXPECT_NE(err.find("occurs twice"), std::string::npos) << err;
  ds = make_dataset(dir, 5);
  ds.records[0].grade = 7;
  err = error_of([&] { store.add_cases(ds); });
  EXPECT_NE(err.find(":2: case 'case0': grade 7 outside 0-4"), std::string::npos) << err;
  EXPECT_EQ(store.stats().cases, 0);

  // Invalid meta JSON is rejected.
  EXPECT_NE(error_of([&] { store.add_case(make_dataset(dir, 1, "m").records[0], "{not json"); }), "");
}

TEST(CaseStore, ModelsAreIdempotentByCheckpointAndPreprocessing) {
  test::TempDir dir;
  CaseStore store(dir.file("s.db"));
  int64_t a = store.register_model("mirror", R"({"backbone": "resnet18"})", "abc123", R"({"size": 224})", 1024);
  // Same checkpoint + same preprocessing (different JSON spacing/order) -> same id.
  EXPECT_EQ(store.register_model("again", R"({"backbone":"resnet18"})", "abc123", R"( {"size":224} )", 1024), a);
  int64_t b = store.register_model("mirror", "{}", "abc123", R"({"size": 512})", 1024);
  EXPECT_NE(a, b);
  EXPECT_NE(error_of([&] {
              store.register_model("x", "{}", "abc123", R"({"size": 224})", 512);
            }).find("descriptor_dim 1024, not 512"),
            std::string::npos);
  EXPECT_NE(error_of([&] { store.register_model("x", "{oops", "h", "{}", 8); }), "");
  EXPECT_NE(error_of([&] { store.register_model("x", "{}", "h", "{}", 0); }), "");
  auto m = store.get_model(a);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->name, "mirror");
  EXPECT_EQ(m->config, R"({"backbone":"resnet18"})");
  EXPECT_EQ(m->preprocessing, R"({"size":224})");
  EXPECT_EQ(m->descriptor_dim, 1024);
  EXPECT_EQ(m->embeddings_version, 0);
  EXPECT_EQ(store.list_models().size(), 2u);
  EXPECT_FALSE(store.get_model(42));
}

TEST(CaseStore, EmbeddingsRoundTripAndValidation) {
  test::TempDir dir;
  CaseStore store(dir.file("s.db"));
  auto ids = store.add_cases(make_dataset(dir, 8)).ids;
  const int dim = 6;
  int64_t model = store.register_model("m", "{}", "hash", "{}", dim);
  EXPECT_EQ(store.cases_without_embedding(model).size(), 8u);

  std::vector<int64_t> first(ids.begin(), ids.begin() + 5);
  auto v = vectors_for(first, dim);
  store.put_embeddings(model, first, v.data(), dim);
  EXPECT_EQ(store.get_model(model)->embeddings_version, 1);
  EmbeddingMatrix m = store.get_embeddings(model);
  EXPECT_EQ(m.dim, dim);
  EXPECT_EQ(m.case_ids, first);
  EXPECT_EQ(m.vectors, v);
  EXPECT_EQ(store.embedding_ids(model), first);
  auto missing = store.cases_without_embedding(model);
  ASSERT_EQ(missing.size(), 3u);
  EXPECT_EQ(missing[0].id, ids[5]);
  EXPECT_EQ(store.stats().embeddings_per_model.at(model), 5);

  // Replacing a vector.
  auto replaced = vectors_for({first[1]}, dim, 100);
  store.put_embeddings(model, {first[1]}, replaced.data(), dim);
  EXPECT_EQ(*store.get_embedding(model, first[1]), replaced);
  EXPECT_FALSE(store.get_embedding(model, ids[7]));
  EXPECT_EQ(store.get_model(model)->embeddings_version, 2);

  // Wrong dimension, unknown model, non-finite values, unknown case: errors, nothing written.
  EXPECT_NE(error_of([&] { store.put_embeddings(model, {ids[6]}, v.data(), dim - 1); }).find("descriptor_dim 6"),
            std::string::npos);
  EXPECT_NE(error_of([&] { store.put_embeddings(77, {ids[6]}, v.data(), dim); }).find("no model with id 77"),
            std::string::npos);
  auto bad = vectors_for({ids[6]}, dim);
  bad[2] = std::nanf("");
  EXPECT_NE(error_of([&] { store.put_embeddings(model, {ids[6]}, bad.data(), dim); }).find("non-finite"),
            std::string::npos);
  auto two = vectors_for({ids[6], 999}, dim);
  EXPECT_NE(error_of([&] {
              store.put_embeddings(model, {ids[6], 999}, two.data(), dim);
            }).find("no case with id 999"),
            std::string::npos);
  EXPECT_FALSE(store.get_embedding(model, ids[6]));  // the first row of the failed batch was rolled back
  EXPECT_EQ(store.get_model(model)->embeddings_version, 2);
}

TEST(CaseStore, RemoveCascadesToEmbeddingsAndIdsAreNotReused) {
  test::TempDir dir;
  CaseStore store(dir.file("s.db"));
  auto ids = store.add_cases(make_dataset(dir, 5)).ids;
  int64_t m1 = store.register_model("a", "{}", "h1", "{}", 3);
  int64_t m2 = store.register_model("b", "{}", "h2", "{}", 3);
  auto v = vectors_for(ids, 3);
  store.put_embeddings(m1, ids, v.data(), 3);
  std::vector<int64_t> some = {ids[0], ids[1]};
  store.put_embeddings(m2, some, v.data(), 3);
  int64_t v1 = store.get_model(m1)->embeddings_version, v2 = store.get_model(m2)->embeddings_version;

  EXPECT_EQ(store.remove_cases({ids[4], 12345}), 1);  // unknown ids are ignored
  EXPECT_EQ(store.get_embeddings(m1).rows(), 4);
  EXPECT_EQ(store.get_model(m1)->embeddings_version, v1 + 1);
  EXPECT_EQ(store.get_model(m2)->embeddings_version, v2);  // had no vector for that case
  EXPECT_EQ(store.remove_cases({ids[0]}), 1);
  EXPECT_EQ(store.get_embeddings(m2).case_ids, std::vector<int64_t>{ids[1]});
  EXPECT_FALSE(store.get_case(ids[0]));

  // The largest id was removed; a new case must not get it back.
  int64_t fresh = store.add_case(make_dataset(dir, 1, "fresh").records[0]);
  EXPECT_GT(fresh, ids[4]);
  EXPECT_TRUE(store.check().ok());
}

TEST(CaseStore, MigratesVersion1AndRefusesNewerSchemas) {
  test::TempDir dir;
  std::string path = dir.file("old.db");
  // The v1 schema as released (frozen copy), with data.
  raw_sql(path, R"sql(
CREATE TABLE cases (
  id INTEGER PRIMARY KEY AUTOINCREMENT, external_id TEXT NOT NULL UNIQUE, image_path TEXT NOT NULL,
  content_hash TEXT NOT NULL, grade INTEGER NOT NULL CHECK (grade BETWEEN 0 AND 4),
  patient TEXT NOT NULL DEFAULT '', eye TEXT NOT NULL DEFAULT '', split TEXT NOT NULL DEFAULT '',
  meta TEXT NOT NULL DEFAULT '{}', added_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')));
CREATE INDEX cases_split ON cases(split);
CREATE TABLE models (
  id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, config TEXT NOT NULL DEFAULT '{}',
  checkpoint_hash TEXT NOT NULL, preprocessing TEXT NOT NULL DEFAULT '{}',
  descriptor_dim INTEGER NOT NULL CHECK (descriptor_dim > 0),
  created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')), UNIQUE (checkpoint_hash, preprocessing));
CREATE TABLE embeddings (
  case_id INTEGER NOT NULL REFERENCES cases(id) ON DELETE CASCADE,
  model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
  vector BLOB NOT NULL, PRIMARY KEY (case_id, model_id));
CREATE INDEX embeddings_model ON embeddings(model_id, case_id);
INSERT INTO cases(external_id, image_path, content_hash, grade) VALUES ('old1', '/x.jpg', 'ab', 2);
INSERT INTO models(name, checkpoint_hash, descriptor_dim) VALUES ('m', 'h', 2);
INSERT INTO embeddings VALUES (1, 1, X'0000803F00000040');
PRAGMA user_version = 1;
)sql");
  {
    CaseStore store(path);
    EXPECT_EQ(store.schema_version(), 2);
    EXPECT_EQ(store.store_id().size(), 32u);
    ASSERT_TRUE(store.find_by_external_id("old1"));
    EXPECT_EQ(store.get_model(1)->embeddings_version, 0);
    EXPECT_EQ(*store.get_embedding(1, 1), (std::vector<float>{1.f, 2.f}));
    EXPECT_TRUE(store.check().ok());
  }
  std::string id1 = CaseStore(path).store_id();
  EXPECT_EQ(CaseStore(path).store_id(), id1);  // fixed once

  raw_sql(path, "PRAGMA user_version = 99");
  std::string err = error_of([&] { CaseStore s(path); });
  EXPECT_NE(err.find(path + ": case store schema version 99 is newer than this build supports (2)"), std::string::npos)
      << err;
}

TEST(CaseStore, RejectsMissingForeignAndCorruptFiles) {
  test::TempDir dir;
  StoreOptions no_create;
  no_create.create = false;
  std::string err = error_of([&] { CaseStore s(dir.file("missing.db"), no_create); });
  EXPECT_NE(err.find("missing.db: no case store at this path"), std::string::npos) << err;
  EXPECT_FALSE(file_exists(dir.file("missing.db")));

  write_file_atomic(dir.file("text.db"), std::string(5000, 'x'));
  err = error_of([&] { CaseStore s(dir.file("text.db")); });
  EXPECT_NE(err.find(dir.file("text.db") + ": not a SQLite database or the file is corrupt"), std::string::npos) << err;

  raw_sql(dir.file("other.db"), "CREATE TABLE t(x); CREATE TABLE u(y);");
  err = error_of([&] { CaseStore s(dir.file("other.db")); });
  EXPECT_NE(err.find("not a fundus case store"), std::string::npos) << err;

  // A store cut short (e.g. a partial copy): opening with check=true reports it, naming the path.
  std::string path = dir.file("cut.db");
  {
    CaseStore store(path);
    store.add_cases(make_dataset(dir, 200));
  }
  std::string bytes = read_file(path);
  ASSERT_GT(bytes.size(), 40000u);
  write_file_atomic(path, bytes.substr(0, 40000));
  StoreOptions check;
  check.check = true;
  err = error_of([&] {
    CaseStore s(path, check);
    s.list_cases();
  });
  EXPECT_NE(err.find(path + ": not a SQLite database or the file is corrupt"), std::string::npos) << err;
}

TEST(CaseStore, CheckFindsVectorsOfTheWrongSize) {
  test::TempDir dir;
  std::string path = dir.file("s.db");
  int64_t model = 0, id = 0;
  {
    CaseStore store(path);
    id = store.add_cases(make_dataset(dir, 2)).ids[0];
    model = store.register_model("m", "{}", "h", "{}", 4);
    auto v = vectors_for({id}, 4);
    store.put_embeddings(model, {id}, v.data(), 4);
    EXPECT_TRUE(store.check().ok());
  }
  raw_sql(path, "UPDATE embeddings SET vector = X'00000000' WHERE case_id = " + std::to_string(id));
  CaseStore store(path);
  StoreCheck c = store.check();
  ASSERT_EQ(c.problems.size(), 1u);
  EXPECT_NE(c.problems[0].find("has 4 bytes, expected 16"), std::string::npos) << c.problems[0];
  EXPECT_NE(error_of([&] { store.get_embeddings(model); }).find("corrupt embedding"), std::string::npos);
  StoreOptions check;
  check.check = true;
  EXPECT_NE(error_of([&] { CaseStore s(path, check); }).find("store check failed"), std::string::npos);
}

TEST(CaseStore, ConcurrentWritersAndReaders) {
  test::TempDir dir;
  std::string path = dir.file("s.db");
  CaseStore shared(path);
  int64_t model = shared.register_model("m", "{}", "h", "{}", 4);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      try {
        // Threads 0-2 share one CaseStore; thread 3 opens its own connection (like another process).
        std::unique_ptr<CaseStore> own = t == 3 ? std::make_unique<CaseStore>(path) : nullptr;
        CaseStore& store = own ? *own : shared;
        Dataset ds = make_dataset(dir, 25, "t" + std::to_string(t) + "_");
        for (auto& r : ds.records) {
          int64_t id = store.add_case(r);
          auto v = vectors_for({id}, 4);
          store.put_embeddings(model, {id}, v.data(), 4);
          if (store.get_case(id)->external_id != r.id) failures++;
          store.stats();
          store.list_cases("train");
        }
      } catch (const std::exception& e) {
        ADD_FAILURE() << e.what();
        failures++;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(shared.stats().cases, 100);
  EmbeddingMatrix m = shared.get_embeddings(model);
  EXPECT_EQ(m.rows(), 100);
  EXPECT_EQ(shared.get_model(model)->embeddings_version, 100);
  for (int64_t i = 0; i < m.rows(); ++i) EXPECT_EQ(m.row(i)[0], float(m.case_ids[size_t(i)]));
  EXPECT_TRUE(shared.check().ok());
}

TEST(CaseStore, ExportsReadableByNumpy) {
  test::TempDir dir;
  CaseStore store(dir.file("s.db"));
  auto ids = store.add_cases(make_dataset(dir, 4)).ids;
  int64_t model = store.register_model("m", "{}", "h", "{}", 3);
  std::vector<int64_t> some = {ids[1], ids[3]};
  auto v = vectors_for(some, 3);
  store.put_embeddings(model, some, v.data(), 3);

  store.export_cases_csv(dir.file("cases.csv"));
  CsvTable cases = read_csv(dir.file("cases.csv"));
  ASSERT_EQ(cases.rows.size(), 4u);
  EXPECT_EQ(cases.field(cases.rows[2], cases.require_column("external_id")), "case2");
  EXPECT_EQ(cases.field(cases.rows[2], cases.require_column("grade")), "2");

  store.export_embeddings(model, dir.file("v.npy"), dir.file("v_ids.csv"));
  NpyArray a = read_npy(dir.file("v.npy"));
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a.as_float(), v);
  CsvTable rows = read_csv(dir.file("v_ids.csv"));
  ASSERT_EQ(rows.rows.size(), 2u);
  EXPECT_EQ(rows.field(rows.rows[1], rows.require_column("external_id")), "case3");

  FUNDUS_REQUIRE_PYTHON_ORACLE();
  auto r = test::run_python(
      "import sys, numpy as np\n"
      "a = np.load(sys.argv[1])\n"
      "print(a.dtype, a.shape, float(a.sum()))\n",
      test::shell_quote(dir.file("v.npy")));
  double sum = 0;
  for (float x : v) sum += x;
  EXPECT_NE(r.output.find("float32 (2, 3) " + strprintf("%g", sum)), std::string::npos) << r.output;
}

// ---- issue 10: damaged and hostile stores ---------------------------------------------------------

namespace {

// A healthy store with 3 cases, a model of dimension 4 and a vector for every case.
void make_healthy_store(const test::TempDir& dir, const std::string& path) {
  CaseStore store(path);
  auto ids = store.add_cases(make_dataset(dir, 3)).ids;
  int64_t model = store.register_model("m", "{}", "h", "{}", 4);
  auto v = vectors_for(ids, 4);
  store.put_embeddings(model, ids, v.data(), 4);
  ASSERT_TRUE(store.check().ok());
}

}  // namespace

// Item 1: user_version -100000 crashed every command (the migration table was indexed with it),
// -1..-1000 ran memory before the table as SQL, 1 on a current schema failed in CREATE TABLE.
TEST(CaseStore, SchemaVersionsOutsideTheRangeOrNotMatchingTheTablesAreRefused) {
  test::TempDir dir;
  std::string path = dir.file("s.db");
  make_healthy_store(dir, path);
  for (int64_t version : {-100000LL, -1LL, -2LL, -1000LL, -2147483648LL}) {
    raw_sql(path, "PRAGMA user_version = " + std::to_string(version));
    for (bool read_only : {false, true}) {
      StoreOptions o;
      o.read_only = read_only;
      EXPECT_EQ(error_of([&] { CaseStore s(path, o); }),
                path + ": case store schema version " + std::to_string(version) +
                    " is invalid (versions are 0-2); the file is damaged or its user_version was edited");
    }
  }
  raw_sql(path, "PRAGMA user_version = 1");
  EXPECT_EQ(error_of([&] { CaseStore s(path); }),
            path +
                ": case store schema version 1 does not match the tables in the file (column "
                "models.embeddings_version (of schema version 2) is present; table store_info (of schema version 2) "
                "is present); they are "
                "the tables of schema version 2: if only the version number was changed, restore it with sqlite3 " +
                path + " 'PRAGMA user_version = 2'");
  raw_sql(path, "PRAGMA user_version = 0");
  EXPECT_NE(error_of([&] { CaseStore s(path); }).find("they are the tables of schema version 2"), std::string::npos);
  raw_sql(path, "PRAGMA user_version = 2");
  CaseStore ok(path);
  EXPECT_EQ(ok.stats().cases, 3);  // nothing was changed by the refused opens
}

// Item 4: states that passed `store check` and then failed: a dropped store_info table, a 0-byte
// file (into which stats/check wrote a schema).
TEST(CaseStore, MissingTablesAndEmptyFilesAreRefusedWithoutWriting) {
  test::TempDir dir;
  std::string path = dir.file("s.db");
  make_healthy_store(dir, path);
  raw_sql(path, "DROP TABLE store_info");
  EXPECT_EQ(error_of([&] { CaseStore s(path); }),
            path +
                ": case store schema version 2 does not match the tables in the file (table store_info is "
                "missing); the file is damaged: restore it from a copy");

  write_file_atomic(dir.file("zero.db"), "");
  StoreOptions read_only, existing;
  read_only.read_only = true;
  existing.create = false;
  for (const StoreOptions& o : {read_only, existing})
    EXPECT_EQ(error_of([&] { CaseStore s(dir.file("zero.db"), o); }),
              dir.file("zero.db") + ": empty file (0 bytes), not a case store");
  EXPECT_EQ(read_file(dir.file("zero.db")), "");
  // An empty SQLite database (tables never created) is not a store either, unless creating one.
  raw_sql(dir.file("empty.db"), "PRAGMA user_version = 0");
  std::string before = read_file(dir.file("empty.db"));
  EXPECT_NE(error_of([&] { CaseStore s(dir.file("empty.db"), read_only); }).find("not a case store"),
            std::string::npos);
  EXPECT_EQ(read_file(dir.file("empty.db")), before);
  EXPECT_EQ(CaseStore(dir.file("zero.db")).schema_version(), kStoreSchemaVersion);  // create=true initialises it
}

// Item 4: read commands must work on a write-protected store, which means never writing.
TEST(CaseStore, ReadOnlyOpenReadsEverythingAndWritesNothing) {
  test::TempDir dir;
  std::string path = dir.file("s.db");
  make_healthy_store(dir, path);
  const std::string bytes = read_file(path);
  StoreOptions ro;
  ro.read_only = true;
  ro.check = true;
  {
    CaseStore store(path, ro);
    EXPECT_EQ(store.stats().cases, 3);
    EXPECT_EQ(store.get_embeddings(1).rows(), 3);
    EXPECT_EQ(store.find_model("h", "{ }"), std::optional<int64_t>(1));
    EXPECT_EQ(store.find_model("other", "{}"), std::nullopt);
    EXPECT_NE(error_of([&] { store.register_model("n", "{}", "h2", "{}", 4); }).find("it was opened read-only"),
              std::string::npos);
    EXPECT_NE(error_of([&] { store.add_case(make_dataset(dir, 5, "x").records[4]); }).find("read-only"),
              std::string::npos);
  }
  EXPECT_EQ(read_file(path), bytes);
  // An old schema is not migrated by a reader: it says how to upgrade.
  raw_sql(
      dir.file("v1.db"),
      "CREATE TABLE cases (id INTEGER PRIMARY KEY AUTOINCREMENT, external_id TEXT NOT NULL UNIQUE, image_path TEXT, "
      "content_hash TEXT, grade INTEGER, patient TEXT, eye TEXT, split TEXT, meta TEXT, added_at TEXT);"
      "CREATE TABLE models (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, config TEXT, checkpoint_hash TEXT, "
      "preprocessing TEXT, descriptor_dim INTEGER, created_at TEXT);"
      "CREATE TABLE embeddings (case_id INTEGER, model_id INTEGER, vector BLOB, PRIMARY KEY (case_id, model_id));"
      "PRAGMA user_version = 1;");
  ro.check = false;
  EXPECT_EQ(error_of([&] { CaseStore s(dir.file("v1.db"), ro); }),
            dir.file("v1.db") +
                ": case store schema version 1 predates this build's 2; upgrade it once with `fundus "
                "store migrate --store " +
                dir.file("v1.db") + "` (read-only commands never write)");
  EXPECT_EQ(CaseStore(dir.file("v1.db")).schema_version(), 2);
}

// Items 2 and 4: rows that broke readers while `store check` said the store was fine.
TEST(CaseStore, CheckFindsEveryRowThatBreaksAReader) {
  test::TempDir dir;
  std::string path = dir.file("s.db");
  make_healthy_store(dir, path);
  raw_sql(
      path,
      "PRAGMA ignore_check_constraints = 1;"
      "UPDATE cases SET grade = 7 WHERE id = 1;"
      "UPDATE cases SET meta = '" +
          test::nested_json(1000) +
          "' WHERE id = 2;"  // valid JSON, too deep
          "UPDATE cases SET patient = CAST(X'4A6F73E9' AS TEXT), external_id = 'c' || char(27) || '[2J' WHERE id = 3;"
          "UPDATE embeddings SET vector = X'0000803F0000C07F0000803F0000803F' WHERE case_id = 2;"  // NaN
          "INSERT INTO models(name, checkpoint_hash, descriptor_dim) VALUES ('huge', 'h2', 1099511627776);");
  StoreCheck c = CaseStore(path).check();
  std::string all = join(c.problems, "\n");
  EXPECT_EQ(c.problems.size(), 7u) << all;
  for (const char* expected :
       {"integrity: CHECK constraint failed in cases", "case id 1: grade 7 outside 0-4",
        "case id 2: meta: JSON nested deeper than 64 levels",
        "case id 3: external_id contains the control character 0x1B (ESC)",
        "case id 3: patient is not valid UTF-8 (byte 0xE9)", "model 2: descriptor_dim '1099511627776' outside 1-65536",
        "embedding of case id 2 for model 1 has a non-finite value (nan) at dimension 1"})
    EXPECT_NE(all.find(expected), std::string::npos) << expected << "\n" << all;
  // Problems never print raw control bytes.
  EXPECT_EQ(all.find('\x1b'), std::string::npos);

  // The readers name the case and the store instead of failing later without either.
  CaseStore store(path);
  try {
    store.get_embeddings(1);
    ADD_FAILURE() << "no error for a NaN vector";
  } catch (const StoreCorruptError& e) {
    EXPECT_EQ(e.case_id(), 2);
    EXPECT_EQ(e.message(), path +
                               ": case id 2: its embedding for model 1 has a non-finite value (nan) at dimension 1; "
                               "the store is damaged or was edited outside fundus (run `fundus store check`)");
  }
  EXPECT_THROW(store.get_embedding(1, 2), StoreCorruptError);
  EXPECT_EQ(store.get_embedding(1, 1)->size(), 4u);
  EXPECT_NE(error_of([&] { store.get_embeddings(2); }).find("model 2 declares descriptor_dim '1099511627776'"),
            std::string::npos);
  EXPECT_EQ(store.get_case(1)->grade, 7);  // raw rows: the engine validates what it shows
  raw_sql(path, "PRAGMA ignore_check_constraints = 1; UPDATE cases SET grade = 4294967297 WHERE id = 1;");
  EXPECT_EQ(store.get_case(1)->grade, -1);  // would have wrapped to 1 as an int

  // Meta nested 60,000 levels (360 kB) is reported, not a stack overflow.
  {
    CaseStore deep(dir.file("deep2.db"));
    deep.add_cases(make_dataset(dir, 1, "d"));
  }
  raw_sql(dir.file("deep2.db"), "UPDATE cases SET meta = '" + test::nested_json(60000) + "'");
  StoreCheck d = CaseStore(dir.file("deep2.db")).check();
  ASSERT_EQ(d.problems.size(), 1u) << join(d.problems, "\n");
  EXPECT_EQ(d.problems[0], "case id 1: meta: JSON nested deeper than 64 levels");
}

// Items 2 and 10: what breaks readers never gets in through the writers.
TEST(CaseStore, WritersRefuseTextAndMetaThatWouldBreakReaders) {
  test::TempDir dir;
  CaseStore store(dir.file("s.db"));
  Dataset ds = make_dataset(dir, 4);
  ds.records[1].patient = "Jos\xE9";  // Latin-1
  EXPECT_EQ(error_of([&] { store.add_cases(ds); }),
            dir.file("case.csv") + ":3: case 'case1': patient is not valid UTF-8 (byte 0xE9)");
  ds.records[1].patient = "P\x1b[31m";
  EXPECT_EQ(error_of([&] { store.add_cases(ds); }),
            dir.file("case.csv") + ":3: case 'case1': patient contains the control character 0x1B (ESC)");
  EXPECT_EQ(store.stats().cases, 0);
  EXPECT_EQ(error_of([&] { store.add_case(ds.records[0], test::nested_json(60000)); }),
            "meta of case 'case0': JSON nested deeper than 64 levels");
  EXPECT_NE(error_of([&] { store.add_case(ds.records[0], "{\"a\": \"caf\xE9\"}"); }).find("invalid JSON"),
            std::string::npos);
  EXPECT_EQ(store.stats().cases, 0);
  EXPECT_GT(store.add_case(ds.records[0], test::nested_json(kMaxJsonDepth)), 0);
  EXPECT_TRUE(store.check().ok());
}
