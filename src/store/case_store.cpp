#include "fundus/store/case_store.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>

#include "fundus/core/concurrency.h"
#include "fundus/core/csv.h"
#include "fundus/core/hash.h"
#include "fundus/core/io.h"
#include "fundus/core/json.h"
#include "fundus/core/npy.h"
#include "fundus/core/progress.h"
#include "fundus/core/strings.h"
#include "sqlite_db.h"

namespace fundus {

namespace {

// Ordered migrations: entry i upgrades user_version i to i+1. Never edit a released entry; append.
const char* const kMigrations[] = {
    // v1: cases, models, embeddings.
    R"sql(
CREATE TABLE cases (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  external_id TEXT NOT NULL UNIQUE,
  image_path TEXT NOT NULL,
  content_hash TEXT NOT NULL,
  grade INTEGER NOT NULL CHECK (grade BETWEEN 0 AND 4),
  patient TEXT NOT NULL DEFAULT '',
  eye TEXT NOT NULL DEFAULT '',
  split TEXT NOT NULL DEFAULT '',
  meta TEXT NOT NULL DEFAULT '{}',
  added_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')));
CREATE INDEX cases_split ON cases(split);
CREATE TABLE models (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL,
  config TEXT NOT NULL DEFAULT '{}',
  checkpoint_hash TEXT NOT NULL,
  preprocessing TEXT NOT NULL DEFAULT '{}',
  descriptor_dim INTEGER NOT NULL CHECK (descriptor_dim > 0),
  created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
  UNIQUE (checkpoint_hash, preprocessing));
CREATE TABLE embeddings (
  case_id INTEGER NOT NULL REFERENCES cases(id) ON DELETE CASCADE,
  model_id INTEGER NOT NULL REFERENCES models(id) ON DELETE CASCADE,
  vector BLOB NOT NULL,
  PRIMARY KEY (case_id, model_id));
CREATE INDEX embeddings_model ON embeddings(model_id, case_id);
)sql",
    // v2: what index files need to detect staleness without reading vectors.
    R"sql(
CREATE TABLE store_info (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO store_info(key, value) VALUES ('store_id', lower(hex(randomblob(16))));
ALTER TABLE models ADD COLUMN embeddings_version INTEGER NOT NULL DEFAULT 0;
)sql",
};
static_assert(sizeof(kMigrations) / sizeof(kMigrations[0]) == kStoreSchemaVersion, "one migration per version");

const char* const kCaseColumns =
    "id, external_id, image_path, content_hash, grade, patient, eye, split, meta, added_at";
const char* const kModelColumns =
    "id, name, config, checkpoint_hash, preprocessing, descriptor_dim, created_at, embeddings_version";

StoredCase read_case(const sqlite::Statement& st) {
  StoredCase c;
  c.id = st.column_int(0);
  c.external_id = st.column_text(1);
  c.image_path = st.column_text(2);
  c.content_hash = st.column_text(3);
  c.grade = int(st.column_int(4));
  c.patient = st.column_text(5);
  c.eye = st.column_text(6);
  c.split = st.column_text(7);
  c.meta = st.column_text(8);
  c.added_at = st.column_text(9);
  return c;
}

ModelInfo read_model(const sqlite::Statement& st) {
  ModelInfo m;
  m.id = st.column_int(0);
  m.name = st.column_text(1);
  m.config = st.column_text(2);
  m.checkpoint_hash = st.column_text(3);
  m.preprocessing = st.column_text(4);
  m.descriptor_dim = int(st.column_int(5));
  m.created_at = st.column_text(6);
  m.embeddings_version = st.column_int(7);
  return m;
}

std::vector<StoredCase> read_cases(sqlite::Statement& st) {
  std::vector<StoredCase> out;
  while (st.step()) out.push_back(read_case(st));
  return out;
}

/// JSON text in canonical form (sorted keys, no spaces), so equal JSON compares equal as text.
std::string canonical_json(const std::string& text, const std::string& what) {
  return parse_json(text.empty() ? "{}" : text, what).dump();
}

std::string absolute_path(const std::string& path) {
  return std::filesystem::absolute(path).lexically_normal().string();
}

// Inserts a case or matches an identical existing one (see add_cases). Caller holds a transaction.
struct CaseWriter {
  sqlite::Statement find, insert;
  explicit CaseWriter(sqlite::Database& db)
      : find(db, "SELECT id, content_hash, grade FROM cases WHERE external_id = ?"),
        insert(db,
               "INSERT INTO cases(external_id, image_path, content_hash, grade, patient, eye, split, meta) "
               "VALUES (?, ?, ?, ?, ?, ?, ?, ?)") {}

  // Returns {id, added}.
  std::pair<int64_t, bool> write(sqlite::Database& db, const CaseRecord& r, const std::string& hash,
                                 const std::string& meta, const std::string& where) {
    find.reset();
    find.bind(1, r.id);
    if (find.step()) {
      int64_t id = find.column_int(0);
      bool same = find.column_text(1) == hash && find.column_int(2) == r.grade;
      FUNDUS_CHECK(same, where << "case '" << r.id << "' is already in the store (id " << id
                               << ") with a different " << (find.column_text(1) != hash ? "image" : "grade")
                               << "; remove it first (fundus store remove) or give the new case another id");
      return {id, false};
    }
    insert.reset();
    insert.bind(1, r.id).bind(2, absolute_path(r.image_path)).bind(3, hash).bind(4, int64_t(r.grade));
    insert.bind(5, r.patient).bind(6, r.eye).bind(7, r.split).bind(8, meta);
    insert.run();
    return {db.last_insert_rowid(), true};
  }
};

std::string record_where(const std::string& source, const CaseRecord& r) {
  if (source.empty()) return "";
  return r.source_line > 0 ? source + ":" + std::to_string(r.source_line) + ": " : source + ": ";
}

void check_record(const CaseRecord& r, const std::string& where) {
  FUNDUS_CHECK(!r.id.empty(), where << "case without an id");
  FUNDUS_CHECK(r.grade >= 0 && r.grade < kNumGrades,
               where << "case '" << r.id << "': grade " << r.grade << " outside 0-" << kNumGrades - 1);
  FUNDUS_CHECK(!r.image_path.empty(), where << "case '" << r.id << "': no image path");
}

// Draws a new embeddings_token (CaseStore::embeddings_token) for the model(s) selected by `select`, a
// query returning model ids with one parameter. Caller holds a transaction.
constexpr const char* kRenewTokenSql =
    "INSERT OR REPLACE INTO store_info(key, value) SELECT 'embeddings_token.' || model_id, "
    "lower(hex(randomblob(16))) FROM (%s)";

std::string token_key(int64_t model_id) { return "embeddings_token." + std::to_string(model_id); }

}  // namespace

CaseRecord StoredCase::to_record() const {
  CaseRecord r;
  r.id = external_id;
  r.image_path = image_path;
  r.grade = grade;
  r.patient = patient;
  r.eye = eye;
  r.split = split;
  return r;
}

CaseStore::CaseStore(const std::string& path, const StoreOptions& options) : path_(path) {
  db_ = std::make_unique<sqlite::Database>(path, options.create);
  db_->exec("PRAGMA busy_timeout = " + std::to_string(std::max(0, options.busy_timeout_ms)));
  int64_t version = db_->query_int("PRAGMA user_version");  // first read: rejects non-SQLite files
  FUNDUS_CHECK(version <= kStoreSchemaVersion,
               path << ": case store schema version " << version << " is newer than this build supports ("
                    << kStoreSchemaVersion << "); use a newer fundus");
  if (version == 0) {
    int64_t tables = db_->query_int("SELECT COUNT(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'");
    FUNDUS_CHECK(tables == 0, path << ": a SQLite database but not a fundus case store (it has " << tables
                                   << " foreign tables and no schema version)");
    db_->exec("PRAGMA page_size = 16384");  // descriptor blobs are 4-10 KB: fewer overflow pages
  }
  db_->exec("PRAGMA journal_mode = WAL");
  db_->exec("PRAGMA synchronous = NORMAL");
  db_->exec("PRAGMA foreign_keys = ON");
  migrate();
  if (options.check) {
    StoreCheck c = check();
    FUNDUS_CHECK(c.ok(), path << ": store check failed: " << join(c.problems, "; "));
  }
}

CaseStore::~CaseStore() = default;

void CaseStore::migrate() {
  for (;;) {
    sqlite::Transaction tx(*db_);
    // Re-read inside the write lock: another process may have migrated meanwhile.
    int64_t version = db_->query_int("PRAGMA user_version");
    if (version >= kStoreSchemaVersion) return;
    db_->exec(kMigrations[version]);
    db_->exec("PRAGMA user_version = " + std::to_string(version + 1));
    tx.commit();
  }
}

std::string CaseStore::store_id() const {
  std::lock_guard<std::mutex> lock(mu_);
  sqlite::Statement st(*db_, "SELECT value FROM store_info WHERE key = 'store_id'");
  return st.step() ? st.column_text(0) : "";
}

int CaseStore::schema_version() const {
  std::lock_guard<std::mutex> lock(mu_);
  return int(db_->query_int("PRAGMA user_version"));
}

// ---- cases -------------------------------------------------------------------------------------

AddCasesResult CaseStore::add_cases(const Dataset& dataset, int threads) {
  const auto& records = dataset.records;
  std::set<std::string> seen;
  for (auto& r : records) {
    std::string where = record_where(dataset.source, r);
    check_record(r, where);
    FUNDUS_CHECK(seen.insert(r.id).second, where << "case id '" << r.id << "' occurs twice in the dataset");
  }
  // Hash outside the lock: reading images is the slow part and needs no database.
  std::vector<std::string> hashes(records.size());
  {
    Progress progress("hashing images", int64_t(records.size()), "img");
    parallel_for(int64_t(records.size()), threads > 0 ? threads : available_cores(), [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        auto& r = records[size_t(i)];
        try {
          hashes[size_t(i)] = sha256_file(r.image_path);
        } catch (const Error& err) {
          FUNDUS_THROW(record_where(dataset.source, r) << "case '" << r.id << "': " << err.message());
        }
        progress.advance();
      }
    });
  }
  std::lock_guard<std::mutex> lock(mu_);
  AddCasesResult result;
  sqlite::Transaction tx(*db_);
  CaseWriter writer(*db_);
  for (size_t i = 0; i < records.size(); ++i) {
    auto [id, added] = writer.write(*db_, records[i], hashes[i], "{}", record_where(dataset.source, records[i]));
    result.ids.push_back(id);
    (added ? result.added : result.skipped)++;
  }
  tx.commit();
  return result;
}

int64_t CaseStore::add_case(const CaseRecord& record, const std::string& meta, const std::string& content_hash) {
  check_record(record, "");
  std::string meta_text = canonical_json(meta, "meta of case '" + record.id + "'");
  std::string hash = content_hash.empty() ? sha256_file(record.image_path) : content_hash;
  std::lock_guard<std::mutex> lock(mu_);
  sqlite::Transaction tx(*db_);
  CaseWriter writer(*db_);
  int64_t id = writer.write(*db_, record, hash, meta_text, "").first;
  tx.commit();
  return id;
}

int64_t CaseStore::remove_cases(const std::vector<int64_t>& ids) {
  std::lock_guard<std::mutex> lock(mu_);
  sqlite::Transaction tx(*db_);
  // Index files must notice that these vectors are gone.
  sqlite::Statement bump(*db_,
                         "UPDATE models SET embeddings_version = embeddings_version + 1 "
                         "WHERE id IN (SELECT model_id FROM embeddings WHERE case_id = ?)");
  sqlite::Statement renew(*db_, strprintf(kRenewTokenSql, "SELECT model_id FROM embeddings WHERE case_id = ?"));
  sqlite::Statement del(*db_, "DELETE FROM cases WHERE id = ?");
  int64_t removed = 0;
  for (int64_t id : ids) {
    bump.reset();
    bump.bind(1, id).run();
    renew.reset();
    renew.bind(1, id).run();
    del.reset();
    del.bind(1, id).run();
    removed += db_->changes();
  }
  tx.commit();
  return removed;
}

std::optional<StoredCase> CaseStore::get_case(int64_t id) const {
  std::lock_guard<std::mutex> lock(mu_);
  sqlite::Statement st(*db_, std::string("SELECT ") + kCaseColumns + " FROM cases WHERE id = ?");
  st.bind(1, id);
  if (!st.step()) return std::nullopt;
  return read_case(st);
}

std::optional<StoredCase> CaseStore::find_by_external_id(const std::string& external_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  sqlite::Statement st(*db_, std::string("SELECT ") + kCaseColumns + " FROM cases WHERE external_id = ?");
  st.bind(1, external_id);
  if (!st.step()) return std::nullopt;
  return read_case(st);
}

std::vector<StoredCase> CaseStore::list_cases(const std::string& splits) const {
  std::vector<std::string> wanted;
  if (!trim(splits).empty())
    for (auto& s : split(splits, ',')) wanted.push_back(trim(s));
  std::string sql = std::string("SELECT ") + kCaseColumns + " FROM cases";
  if (!wanted.empty()) {
    sql += " WHERE split IN (?";
    for (size_t i = 1; i < wanted.size(); ++i) sql += ", ?";
    sql += ")";
  }
  sql += " ORDER BY id";
  std::lock_guard<std::mutex> lock(mu_);
  sqlite::Statement st(*db_, sql);
  for (size_t i = 0; i < wanted.size(); ++i) st.bind(int(i) + 1, wanted[i]);
  return read_cases(st);
}

StoreStats CaseStore::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  StoreStats s;
  sqlite::Statement grades(*db_, "SELECT grade, COUNT(*) FROM cases GROUP BY grade");
  while (grades.step()) {
    int64_t g = grades.column_int(0), n = grades.column_int(1);
    if (g >= 0 && g < kNumGrades) s.per_grade[g] = n;
    s.cases += n;
  }
  sqlite::Statement splits(*db_, "SELECT split, COUNT(*) FROM cases GROUP BY split");
  while (splits.step()) s.per_split[splits.column_text(0)] = splits.column_int(1);
  // Same rule as CaseRecord::patient_key: a case without a patient is its own patient.
  s.patients = db_->query_int(
      "SELECT COUNT(DISTINCT CASE WHEN patient = '' THEN 'case:' || external_id ELSE 'patient:' || patient END) "
      "FROM cases");
  sqlite::Statement models(*db_,
                           "SELECT m.id, (SELECT COUNT(*) FROM embeddings e WHERE e.model_id = m.id) FROM models m");
  while (models.step()) s.embeddings_per_model[models.column_int(0)] = models.column_int(1);
  s.models = int64_t(s.embeddings_per_model.size());
  return s;
}

std::vector<CaseGradePatient> CaseStore::grades_and_patients() const {
  std::lock_guard<std::mutex> lock(mu_);
  sqlite::Statement st(*db_, "SELECT id, grade, patient FROM cases ORDER BY id");
  std::vector<CaseGradePatient> out;
  while (st.step()) out.push_back({st.column_int(0), int(st.column_int(1)), st.column_text(2)});
  return out;
}

// ---- models ------------------------------------------------------------------------------------

int64_t CaseStore::register_model(const std::string& name, const std::string& config,
                                  const std::string& checkpoint_hash, const std::string& preprocessing,
                                  int descriptor_dim) {
  FUNDUS_CHECK(!checkpoint_hash.empty(), path_ << ": register_model '" << name << "': empty checkpoint hash");
  FUNDUS_CHECK(descriptor_dim > 0, path_ << ": register_model '" << name << "': descriptor_dim must be > 0");
  std::string config_text = canonical_json(config, "config of model '" + name + "'");
  std::string prep_text = canonical_json(preprocessing, "preprocessing of model '" + name + "'");
  std::lock_guard<std::mutex> lock(mu_);
  sqlite::Transaction tx(*db_);
  sqlite::Statement find(*db_, "SELECT id, descriptor_dim FROM models WHERE checkpoint_hash = ? AND preprocessing = ?");
  find.bind(1, checkpoint_hash).bind(2, prep_text);
  if (find.step()) {
    int64_t id = find.column_int(0);
    FUNDUS_CHECK(find.column_int(1) == descriptor_dim,
                 path_ << ": model " << id << " has the same checkpoint and preprocessing but descriptor_dim "
                       << find.column_int(1) << ", not " << descriptor_dim);
    return id;  // the transaction rolls back: nothing was written
  }
  sqlite::Statement insert(*db_,
                           "INSERT INTO models(name, config, checkpoint_hash, preprocessing, descriptor_dim) "
                           "VALUES (?, ?, ?, ?, ?)");
  insert.bind(1, name).bind(2, config_text).bind(3, checkpoint_hash).bind(4, prep_text).bind(5, int64_t(descriptor_dim));
  insert.run();
  int64_t id = db_->last_insert_rowid();
  tx.commit();
  return id;
}

std::optional<ModelInfo> CaseStore::get_model(int64_t id) const {
  std::lock_guard<std::mutex> lock(mu_);
  sqlite::Statement st(*db_, std::string("SELECT ") + kModelColumns + " FROM models WHERE id = ?");
  st.bind(1, id);
  if (!st.step()) return std::nullopt;
  return read_model(st);
}

std::vector<ModelInfo> CaseStore::list_models() const {
  std::lock_guard<std::mutex> lock(mu_);
  sqlite::Statement st(*db_, std::string("SELECT ") + kModelColumns + " FROM models ORDER BY id");
  std::vector<ModelInfo> out;
  while (st.step()) out.push_back(read_model(st));
  return out;
}

int64_t CaseStore::model_dim(int64_t model_id) const {
  sqlite::Statement st(*db_, "SELECT descriptor_dim FROM models WHERE id = ?");
  st.bind(1, model_id);
  FUNDUS_CHECK(st.step(), path_ << ": no model with id " << model_id);
  return st.column_int(0);
}

// ---- embeddings --------------------------------------------------------------------------------

void CaseStore::put_embeddings(int64_t model_id, const std::vector<int64_t>& case_ids, const float* vectors,
                               int dim) {
  for (size_t i = 0; i < case_ids.size() * size_t(dim); ++i)
    FUNDUS_CHECK(std::isfinite(vectors[i]), path_ << ": put_embeddings: non-finite value in the vector of case id "
                                                  << case_ids[i / size_t(dim)]);
  std::lock_guard<std::mutex> lock(mu_);
  int64_t expected = model_dim(model_id);
  FUNDUS_CHECK(dim == expected, path_ << ": put_embeddings: vectors have " << dim << " dimensions but model "
                                      << model_id << " has descriptor_dim " << expected);
  if (case_ids.empty()) return;
  sqlite::Transaction tx(*db_);
  sqlite::Statement exists(*db_, "SELECT 1 FROM cases WHERE id = ?");
  sqlite::Statement upsert(*db_,
                           "INSERT INTO embeddings(case_id, model_id, vector) VALUES (?, ?, ?) "
                           "ON CONFLICT(case_id, model_id) DO UPDATE SET vector = excluded.vector");
  for (size_t i = 0; i < case_ids.size(); ++i) {
    exists.reset();
    exists.bind(1, case_ids[i]);
    FUNDUS_CHECK(exists.step(), path_ << ": put_embeddings: no case with id " << case_ids[i]
                                      << " (nothing was written)");
    upsert.reset();
    upsert.bind(1, case_ids[i]).bind(2, model_id);
    upsert.bind_blob(3, vectors + i * size_t(dim), size_t(dim) * sizeof(float));
    upsert.run();
  }
  sqlite::Statement bump(*db_, "UPDATE models SET embeddings_version = embeddings_version + 1 WHERE id = ?");
  bump.bind(1, model_id).run();
  sqlite::Statement renew(*db_, strprintf(kRenewTokenSql, "SELECT ? AS model_id"));
  renew.bind(1, model_id).run();
  tx.commit();
}

EmbeddingMatrix CaseStore::get_embeddings(int64_t model_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  EmbeddingMatrix m;
  m.model_id = model_id;
  m.dim = int(model_dim(model_id));
  sqlite::Statement count(*db_, "SELECT COUNT(*) FROM embeddings WHERE model_id = ?");
  count.bind(1, model_id);
  count.step();
  size_t rows = size_t(count.column_int(0));
  m.case_ids.reserve(rows);
  m.vectors.reserve(rows * size_t(m.dim));
  sqlite::Statement st(*db_, "SELECT case_id, vector FROM embeddings WHERE model_id = ? ORDER BY case_id");
  st.bind(1, model_id);
  while (st.step()) {
    size_t bytes = 0;
    auto* data = static_cast<const float*>(st.column_blob(1, bytes));
    FUNDUS_CHECK(bytes == size_t(m.dim) * sizeof(float),
                 path_ << ": corrupt embedding of case id " << st.column_int(0) << " for model " << model_id << " ("
                       << bytes << " bytes, expected " << m.dim * 4 << "); run fundus store check");
    m.case_ids.push_back(st.column_int(0));
    m.vectors.insert(m.vectors.end(), data, data + m.dim);
  }
  return m;
}

void CaseStore::scan_embeddings(int64_t model_id, int64_t batch_rows,
                                const std::function<void(const EmbeddingMatrix&)>& fn) const {
  FUNDUS_CHECK(batch_rows > 0, path_ << ": scan_embeddings: batch_rows must be > 0");
  std::lock_guard<std::mutex> lock(mu_);
  EmbeddingMatrix m;
  m.model_id = model_id;
  m.dim = int(model_dim(model_id));
  const size_t bytes = size_t(m.dim) * sizeof(float);
  sqlite::Statement st(*db_, "SELECT case_id, vector FROM embeddings WHERE model_id = ? ORDER BY case_id");
  st.bind(1, model_id);
  auto flush = [&] {
    if (m.case_ids.empty()) return;
    fn(m);
    m.case_ids.clear();
    m.vectors.clear();
  };
  while (st.step()) {
    size_t got = 0;
    auto* data = static_cast<const float*>(st.column_blob(1, got));
    FUNDUS_CHECK(got == bytes, path_ << ": corrupt embedding of case id " << st.column_int(0) << " for model "
                                     << model_id << " (" << got << " bytes, expected " << bytes
                                     << "); run fundus store check");
    m.case_ids.push_back(st.column_int(0));
    m.vectors.insert(m.vectors.end(), data, data + m.dim);
    if (m.rows() >= batch_rows) flush();
  }
  flush();
}

std::optional<std::vector<float>> CaseStore::get_embedding(int64_t model_id, int64_t case_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  int64_t dim = model_dim(model_id);
  sqlite::Statement st(*db_, "SELECT vector FROM embeddings WHERE model_id = ? AND case_id = ?");
  st.bind(1, model_id).bind(2, case_id);
  if (!st.step()) return std::nullopt;
  size_t bytes = 0;
  auto* data = static_cast<const float*>(st.column_blob(0, bytes));
  FUNDUS_CHECK(bytes == size_t(dim) * sizeof(float),
               path_ << ": corrupt embedding of case id " << case_id << " for model " << model_id);
  return std::vector<float>(data, data + dim);
}

std::vector<int64_t> CaseStore::embedding_ids(int64_t model_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  sqlite::Statement st(*db_, "SELECT case_id FROM embeddings WHERE model_id = ? ORDER BY case_id");
  st.bind(1, model_id);
  std::vector<int64_t> ids;
  while (st.step()) ids.push_back(st.column_int(0));
  return ids;
}

std::string CaseStore::embeddings_token(int64_t model_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  sqlite::Statement st(*db_, "SELECT value FROM store_info WHERE key = ?");
  st.bind(1, token_key(model_id));
  return st.step() ? st.column_text(0) : "";
}

std::vector<StoredCase> CaseStore::cases_without_embedding(int64_t model_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  model_dim(model_id);  // unknown model -> error rather than "everything is missing"
  sqlite::Statement st(*db_, std::string("SELECT ") + kCaseColumns +
                                 " FROM cases c WHERE NOT EXISTS (SELECT 1 FROM embeddings e "
                                 "WHERE e.case_id = c.id AND e.model_id = ?) ORDER BY id");
  st.bind(1, model_id);
  return read_cases(st);
}

// ---- export / check ----------------------------------------------------------------------------

void CaseStore::export_cases_csv(const std::string& path) const {
  auto cases = list_cases();
  std::string text = csv_line({"id", "external_id", "image_path", "content_hash", "grade", "patient", "eye", "split",
                               "meta", "added_at"});
  for (auto& c : cases)
    text += csv_line({std::to_string(c.id), c.external_id, c.image_path, c.content_hash, std::to_string(c.grade),
                      c.patient, c.eye, c.split, c.meta, c.added_at});
  write_file_atomic(path, text);
}

void CaseStore::export_embeddings(int64_t model_id, const std::string& npy_path,
                                  const std::string& ids_csv_path) const {
  EmbeddingMatrix m = get_embeddings(model_id);
  std::map<int64_t, std::string> external;
  for (auto& c : list_cases()) external[c.id] = c.external_id;
  write_npy(npy_path, m.vectors.data(), {m.rows(), int64_t(m.dim)});
  std::string text = csv_line({"row", "case_id", "external_id"});
  for (int64_t i = 0; i < m.rows(); ++i)
    text += csv_line({std::to_string(i), std::to_string(m.case_ids[size_t(i)]), external[m.case_ids[size_t(i)]]});
  write_file_atomic(ids_csv_path, text);
}

StoreCheck CaseStore::check() const {
  std::lock_guard<std::mutex> lock(mu_);
  StoreCheck c;
  sqlite::Statement integrity(*db_, "PRAGMA integrity_check");
  while (integrity.step()) {
    std::string line = integrity.column_text(0);
    if (line != "ok") c.problems.push_back("integrity: " + line);
  }
  sqlite::Statement fk(*db_, "PRAGMA foreign_key_check");
  while (fk.step())
    c.problems.push_back("foreign key: row " + std::to_string(fk.column_int(1)) + " of table " + fk.column_text(0) +
                         " references a missing row of " + fk.column_text(2));
  sqlite::Statement dims(*db_,
                         "SELECT e.case_id, e.model_id, length(e.vector), m.descriptor_dim FROM embeddings e "
                         "JOIN models m ON m.id = e.model_id WHERE length(e.vector) != 4 * m.descriptor_dim "
                         "ORDER BY e.model_id, e.case_id LIMIT 100");
  while (dims.step())
    c.problems.push_back(strprintf("embedding of case id %lld for model %lld has %lld bytes, expected %lld",
                                   (long long)dims.column_int(0), (long long)dims.column_int(1),
                                   (long long)dims.column_int(2), (long long)dims.column_int(3) * 4));
  sqlite::Statement meta(*db_, "SELECT id FROM cases WHERE NOT json_valid(meta) ORDER BY id LIMIT 100");
  while (meta.step()) c.problems.push_back("case id " + std::to_string(meta.column_int(0)) + ": meta is not valid JSON");
  return c;
}

}  // namespace fundus
