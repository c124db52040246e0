// Store open, migration and check (store/case_store.h). The first byte picks the mode:
//   bit 0 = 0: the rest is the whole database file;
//   bit 0 = 1: the rest is SQL run on a healthy store (3 cases, 2 models, vectors) before it is
//              opened: hostile edits of a real store (user_version, dropped tables, grade 7, NaN
//              vectors, deep meta) reach the schema checks and every invariant, not only SQLite's
//              header check;
//   bit 1: open read-only (else read-write, which migrates).
// Then check() and every reader. The oracle of the store's contract: when check() reports no
// problem, no reader may throw (a store that passes `store check` and then fails is a bug).
#include <sqlite3.h>

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "fundus/core/io.h"
#include "fundus/store/case_store.h"
#include "fuzz_support.h"
#include "store_template.h"

using namespace fundus;

namespace {

std::string g_template;  // bytes of the healthy store

std::string store_path() { return fuzz::temp_dir() + "/store.db"; }

void remove_store() {
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) std::remove((store_path() + suffix).c_str());
}

// SQL that could reach outside the temporary store (other files, extensions) is not run.
bool sql_allowed(const std::string& sql) {
  std::string lower(sql);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  for (const char* word : {"vacuum", "attach", "detach", "load_extension", "temp_store_directory",
                           "data_store_directory", "readfile", "writefile"})
    if (lower.find(word) != std::string::npos) return false;
  return true;
}

int g_steps = 0;
int stop_long_sql(void*) { return ++g_steps > 2000; }  // recursive CTEs must not hang the run

void run_sql(const std::string& sql) {
  sqlite3* db = nullptr;
  if (sqlite3_open(store_path().c_str(), &db) == SQLITE_OK) {
    sqlite3_limit(db, SQLITE_LIMIT_LENGTH, 1 << 20);
    g_steps = 0;
    sqlite3_progress_handler(db, 1000, stop_long_sql, nullptr);
    sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr);
  }
  sqlite3_close(db);
}

// Every reader of the store's contract.
void read_everything(const CaseStore& store) {
  (void)store.store_id();
  (void)store.schema_version();
  (void)store.stats();
  for (const StoredCase& c : store.list_cases()) {
    (void)store.get_case(c.id);
    (void)store.find_by_external_id(c.external_id);
  }
  (void)store.list_cases("train,val");
  (void)store.grades_and_patients();
  for (const ModelInfo& m : store.list_models()) {
    (void)store.get_model(m.id);
    (void)store.find_model(m.checkpoint_hash, m.preprocessing);
    (void)store.get_embeddings(m.id);
    store.scan_embeddings(m.id, 2, [](const EmbeddingMatrix&) {});
    for (int64_t id : store.embedding_ids(m.id)) (void)store.get_embedding(m.id, id);
    (void)store.embeddings_token(m.id);
    (void)store.cases_without_embedding(m.id);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::quiet_logs();
  g_template = fuzz::make_store_template(store_path());
  remove_store();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  if ((data[0] & 1) && !sql_allowed(rest)) return 0;
  remove_store();
  if (data[0] & 1) {
    fuzz::write_bytes(store_path(), reinterpret_cast<const uint8_t*>(g_template.data()), g_template.size());
    run_sql(rest);
  } else {
    fuzz::write_bytes(store_path(), data + 1, size - 1);
  }
  StoreOptions options;
  options.create = false;
  options.read_only = (data[0] & 2) != 0;
  options.busy_timeout_ms = 0;
  fuzz::expect_only_fundus_errors([&] {
    CaseStore store(store_path(), options);
    StoreCheck check = store.check();
    if (!check.ok()) {
      fuzz::expect_only_fundus_errors([&] { read_everything(store); });
      return;
    }
    try {
      read_everything(store);
    } catch (const std::exception& e) {
      fuzz::finding(std::string("store passes check() but a reader fails: ") + e.what());
    }
  });
  return 0;
}
