#include "fundus/store/case_store.h"

#include <algorithm>
#include <climits>
#include <cstring>
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

// The tables and columns each schema version has (what the migrations above create), to tell what
// is really in a file whatever its user_version says.
struct ColumnSpec {
  const char* name;
  int since;  // schema version that added it
};
struct TableSpec {
  const char* name;
  int since;
  std::vector<ColumnSpec> columns;
};
const std::vector<TableSpec>& schema_tables() {
  static const std::vector<TableSpec> tables = {
      {"cases",
       1,
       {{"id", 1},
        {"external_id", 1},
        {"image_path", 1},
        {"content_hash", 1},
        {"grade", 1},
        {"patient", 1},
        {"eye", 1},
        {"split", 1},
        {"meta", 1},
        {"added_at", 1}}},
      {"models",
       1,
       {{"id", 1},
        {"name", 1},
        {"config", 1},
        {"checkpoint_hash", 1},
        {"preprocessing", 1},
        {"descriptor_dim", 1},
        {"created_at", 1},
        {"embeddings_version", 2}}},
      {"embeddings", 1, {{"case_id", 1}, {"model_id", 1}, {"vector", 1}}},
      {"store_info", 2, {{"key", 2}, {"value", 2}}},
  };
  return tables;
}

// How the tables in the file differ from schema `version` ("table store_info is missing", ...).
std::vector<std::string> schema_differences(sqlite::Database& db, int64_t version) {
  std::vector<std::string> out;
  for (const TableSpec& t : schema_tables()) {
    std::set<std::string> columns;
    sqlite::Statement info(db, std::string("PRAGMA table_info(") + t.name + ")");
    while (info.step()) columns.insert(info.column_text(1));
    if (t.since > version) {
      if (!columns.empty()) out.push_back(strprintf("table %s (of schema version %d) is present", t.name, t.since));
      continue;
    }
    if (columns.empty()) {
      out.push_back(strprintf("table %s is missing", t.name));
      continue;
    }
    for (const ColumnSpec& c : t.columns) {
      if (c.since > version && columns.count(c.name))
        out.push_back(strprintf("column %s.%s (of schema version %d) is present", t.name, c.name, c.since));
      if (c.since <= version && !columns.count(c.name))
        out.push_back(strprintf("column %s.%s is missing", t.name, c.name));
    }
  }
  return out;
}

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
  // Not an integer, or one that would wrap when narrowed to int: -1, which no reader takes for a grade.
  const int64_t grade = st.column_int(4);
  c.grade = st.column_is_integer(4) && grade >= INT_MIN && grade <= INT_MAX ? int(grade) : -1;
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
      FUNDUS_CHECK(same, where << "case '" << r.id << "' is already in the store (id " << id << ") with a different "
                               << (find.column_text(1) != hash ? "image" : "grade")
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

// "" when `text` may be stored in a text column (printed to terminals, written into JSON), else why not.
std::string text_problem(const std::string& text) {
  size_t at = 0;
  if (!is_valid_utf8(text, &at)) return strprintf("is not valid UTF-8 (byte 0x%02X)", (unsigned char)text[at]);
  at = find_control_char(text);
  if (at != std::string::npos) return "contains the control character " + describe_byte((unsigned char)text[at]);
  return "";
}

void check_record(const CaseRecord& r, const std::string& where) {
  std::string problem = case_record_problem(r);
  FUNDUS_CHECK(problem.empty(), where << problem);
}

constexpr size_t kMaxProblemsPerKind = 100;

// Draws a new embeddings_token (CaseStore::embeddings_token) for the model(s) selected by `select`, a
// query returning model ids with one parameter. Caller holds a transaction.
constexpr const char* kRenewTokenSql =
    "INSERT OR REPLACE INTO store_info(key, value) SELECT 'embeddings_token.' || model_id, "
    "lower(hex(randomblob(16))) FROM (%s)";

std::string token_key(int64_t model_id) { return "embeddings_token." + std::to_string(model_id); }
std::string health_key(int64_t model_id) { return "health." + std::to_string(model_id); }

}  // namespace

std::string case_record_problem(const CaseRecord& r) {
  if (r.id.empty()) return "case without an id";
  for (auto [name, value] : {std::pair<const char*, const std::string*>{"id", &r.id},
                             {"image path", &r.image_path},
                             {"patient", &r.patient},
                             {"eye", &r.eye},
                             {"split", &r.split}}) {
    std::string why = text_problem(*value);
    if (!why.empty()) return "case '" + r.id + "': " + name + " " + why;
  }
  if (r.grade < 0 || r.grade >= kNumGrades)
    return "case '" + r.id + "': grade " + std::to_string(r.grade) + " outside 0-" + std::to_string(kNumGrades - 1);
  if (r.image_path.empty()) return "case '" + r.id + "': no image path";
  return "";
}

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

StoreCorruptError::StoreCorruptError(const std::string& path, int64_t case_id, const std::string& reason,
                                     const char* file, int line)
    : Error(path + ": " + (case_id > 0 ? "case id " + std::to_string(case_id) + ": " : std::string()) + reason +
                "; the store is damaged or was edited outside fundus (run `fundus store check`)",
            file, line),
      case_id_(case_id),
      reason_(reason) {}

#define FUNDUS_CORRUPT(case_id, reason) throw StoreCorruptError(path_, (case_id), (reason), __FILE__, __LINE__)

CaseStore::CaseStore(const std::string& path, const StoreOptions& options) : path_(path) {
  const bool create = options.create && !options.read_only;
  std::error_code ec;
  // A 0-byte file is an empty SQLite database to SQLite: only a command that may create a store
  // turns it into one.
  if (!create && std::filesystem::is_regular_file(path, ec) && std::filesystem::file_size(path, ec) == 0 && !ec)
    FUNDUS_THROW(path << ": empty file (0 bytes), not a case store");
  db_ = std::make_unique<sqlite::Database>(path, create, options.read_only);
  db_->exec("PRAGMA busy_timeout = " + std::to_string(std::max(0, options.busy_timeout_ms)));
  int64_t version = db_->query_int("PRAGMA user_version");  // first read: rejects non-SQLite files
  // The version indexes the migration table: anything outside 0..current must stop here.
  FUNDUS_CHECK(version >= 0, path << ": case store schema version " << version << " is invalid (versions are 0-"
                                  << kStoreSchemaVersion << "); the file is damaged or its user_version was edited");
  FUNDUS_CHECK(version <= kStoreSchemaVersion, path << ": case store schema version " << version
                                                    << " is newer than this build supports (" << kStoreSchemaVersion
                                                    << "); use a newer fundus");
  int64_t tables =
      db_->query_int("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'");
  if (version == 0 && tables == 0) {
    FUNDUS_CHECK(create, path << ": not a case store (an empty SQLite database); `fundus store add` creates one");
    db_->exec("PRAGMA page_size = 16384");  // descriptor blobs are 4-10 KB: fewer overflow pages
  } else {
    verify_schema(version);
  }
  if (options.read_only) {
    FUNDUS_CHECK(version == kStoreSchemaVersion, path << ": case store schema version " << version
                                                      << " predates this build's " << kStoreSchemaVersion
                                                      << "; upgrade it once with `fundus store migrate --store " << path
                                                      << "` (read-only commands never write)");
  } else {
    db_->exec("PRAGMA journal_mode = WAL");
    db_->exec("PRAGMA synchronous = NORMAL");
  }
  db_->exec("PRAGMA foreign_keys = ON");
  if (!options.read_only) migrate();
  if (options.check) {
    StoreCheck c = check();
    FUNDUS_CHECK(c.ok(), path << ": store check failed: " << join(c.problems, "; "));
  }
}

CaseStore::~CaseStore() = default;

void CaseStore::verify_schema(int64_t version) {
  // Version 0 is a file that has no store yet: with tables in it, it is someone else's database (or
  // ours with a reset version number).
  std::vector<std::string> differences = schema_differences(*db_, version);
  if (differences.empty() && version > 0) return;
  int64_t matches = 0;  // the version whose tables the file really has, if any
  for (int64_t v = 1; v <= kStoreSchemaVersion && !matches; ++v)
    if (schema_differences(*db_, v).empty()) matches = v;
  if (version == 0 && !matches) {
    int64_t tables =
        db_->query_int("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'");
    FUNDUS_THROW(path_ << ": a SQLite database but not a fundus case store (it has " << tables
                       << " foreign tables and no schema version)");
  }
  std::string message = path_ + ": case store schema version " + std::to_string(version) +
                        " does not match the tables in the file (" + join(differences, "; ") + ")";
  if (matches)
    message += "; they are the tables of schema version " + std::to_string(matches) +
               ": if only the version number was changed, restore it with sqlite3 " + path_ +
               " 'PRAGMA user_version = " + std::to_string(matches) + "'";
  else message += "; the file is damaged: restore it from a copy";
  FUNDUS_THROW(message);
}

void CaseStore::migrate() {
  for (;;) {
    sqlite::Transaction tx(*db_);
    // Re-read inside the write lock: another process may have migrated meanwhile.
    int64_t version = db_->query_int("PRAGMA user_version");
    FUNDUS_CHECK(version >= 0 && version <= kStoreSchemaVersion,
                 path_ << ": case store schema version changed to " << version << " while opening it");
    if (version == kStoreSchemaVersion) return;
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
  for (const auto& [id, n] : s.embeddings_per_model) {
    std::string health = model_health_locked(id);
    if (!health.empty()) s.health_per_model[id] = std::move(health);
  }
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
  insert.bind(1, name)
      .bind(2, config_text)
      .bind(3, checkpoint_hash)
      .bind(4, prep_text)
      .bind(5, int64_t(descriptor_dim));
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

std::optional<int64_t> CaseStore::find_model(const std::string& checkpoint_hash,
                                             const std::string& preprocessing) const {
  std::string prep_text = canonical_json(preprocessing, "preprocessing");
  std::lock_guard<std::mutex> lock(mu_);
  sqlite::Statement find(*db_, "SELECT id FROM models WHERE checkpoint_hash = ? AND preprocessing = ?");
  find.bind(1, checkpoint_hash).bind(2, prep_text);
  if (!find.step()) return std::nullopt;
  return find.column_int(0);
}

int64_t CaseStore::model_dim(int64_t model_id) const {
  sqlite::Statement st(*db_, "SELECT descriptor_dim FROM models WHERE id = ?");
  st.bind(1, model_id);
  FUNDUS_CHECK(st.step(), path_ << ": no model with id " << model_id);
  const int64_t dim = st.column_int(0);
  // Readers allocate rows x dim floats from this number.
  if (!st.column_is_integer(0) || dim < 1 || dim > kMaxDescriptorDim)
    FUNDUS_CORRUPT(0, "model " + std::to_string(model_id) + " declares descriptor_dim '" + st.column_text(0) +
                          "', outside 1-" + std::to_string(kMaxDescriptorDim));
  return dim;
}

// ---- embeddings --------------------------------------------------------------------------------

void CaseStore::put_embeddings(int64_t model_id, const std::vector<int64_t>& case_ids, const float* vectors, int dim) {
  for (size_t i = 0; i < case_ids.size() * size_t(dim); ++i)
    FUNDUS_CHECK(std::isfinite(vectors[i]),
                 path_ << ": put_embeddings: non-finite value in the vector of case id " << case_ids[i / size_t(dim)]);
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
    FUNDUS_CHECK(exists.step(),
                 path_ << ": put_embeddings: no case with id " << case_ids[i] << " (nothing was written)");
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
    const void* data = st.column_blob(1, bytes);
    m.vectors.resize(m.vectors.size() + size_t(m.dim));
    copy_vector(st.column_int(0), model_id, data, bytes, m.dim, m.vectors.data() + m.vectors.size() - size_t(m.dim));
    m.case_ids.push_back(st.column_int(0));
  }
  return m;
}

void CaseStore::copy_vector(int64_t case_id, int64_t model_id, const void* data, size_t bytes, int64_t dim,
                            float* out) const {
  if (bytes != size_t(dim) * sizeof(float))
    FUNDUS_CORRUPT(case_id, strprintf("corrupt embedding for model %lld (%zu bytes, expected %lld)",
                                      (long long)model_id, bytes, (long long)dim * 4));
  std::memcpy(out, data, bytes);  // BLOB memory may sit anywhere in a page: no float reads in place
  for (int64_t j = 0; j < dim; ++j)
    if (!std::isfinite(out[j]))
      FUNDUS_CORRUPT(case_id, strprintf("its embedding for model %lld has a non-finite value (%g) at dimension %lld",
                                        (long long)model_id, double(out[j]), (long long)j));
}

void CaseStore::scan_embeddings(int64_t model_id, int64_t batch_rows,
                                const std::function<void(const EmbeddingMatrix&)>& fn) const {
  FUNDUS_CHECK(batch_rows > 0, path_ << ": scan_embeddings: batch_rows must be > 0");
  std::lock_guard<std::mutex> lock(mu_);
  EmbeddingMatrix m;
  m.model_id = model_id;
  m.dim = int(model_dim(model_id));
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
    const void* data = st.column_blob(1, got);
    m.vectors.resize(m.vectors.size() + size_t(m.dim));
    copy_vector(st.column_int(0), model_id, data, got, m.dim, m.vectors.data() + m.vectors.size() - size_t(m.dim));
    m.case_ids.push_back(st.column_int(0));
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
  const void* data = st.column_blob(0, bytes);
  std::vector<float> v(static_cast<size_t>(dim));
  copy_vector(case_id, model_id, data, bytes, dim, v.data());
  return v;
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

std::string CaseStore::model_health(int64_t model_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  return model_health_locked(model_id);
}

std::string CaseStore::model_health_locked(int64_t model_id) const {
  sqlite::Statement st(*db_,
                       "SELECT h.value, t.value FROM store_info h JOIN store_info t ON t.key = ? "
                       "WHERE h.key = ?");
  st.bind(1, token_key(model_id)).bind(2, health_key(model_id));
  if (!st.step()) return "";
  const std::string record = st.column_text(0), token = st.column_text(1);
  const size_t newline = record.find('\n');  // "<token>\n<json>"
  if (newline == std::string::npos || token.empty() || record.compare(0, newline, token) != 0) return "";
  return record.substr(newline + 1);
}

void CaseStore::put_model_health(int64_t model_id, const std::string& token, const std::string& json) {
  std::lock_guard<std::mutex> lock(mu_);
  sqlite::Statement st(*db_, "INSERT OR REPLACE INTO store_info(key, value) VALUES (?, ?)");
  st.bind(1, health_key(model_id)).bind(2, token + "\n" + json);
  st.step();
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
  std::string text = csv_line(
      {"id", "external_id", "image_path", "content_hash", "grade", "patient", "eye", "split", "meta", "added_at"});
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
  std::map<std::string, size_t> seen;  // problems per kind: the first kMaxProblemsPerKind are listed
  auto report = [&](const std::string& kind, const std::string& text) {
    if (++seen[kind] <= kMaxProblemsPerKind) c.problems.push_back(text);
  };
  auto case_problem = [&](const std::string& kind, int64_t id, const std::string& text) {
    report(kind, "case id " + std::to_string(id) + ": " + text);
  };

  sqlite::Statement integrity(*db_, "PRAGMA integrity_check");
  while (integrity.step()) {
    std::string line = integrity.column_text(0);
    if (line != "ok") report("integrity", "integrity: " + line);
  }
  sqlite::Statement fk(*db_, "PRAGMA foreign_key_check");
  while (fk.step())
    report("foreign key", "foreign key: row " + std::to_string(fk.column_int(1)) + " of table " + fk.column_text(0) +
                              " references a missing row of " + fk.column_text(2));
  sqlite::Statement info(*db_, "SELECT value FROM store_info WHERE key = 'store_id'");
  if (!info.step() || info.column_text(0).empty()) report("store_info", "store_info: no store_id");

  sqlite::Statement cases(
      *db_,
      "SELECT id, external_id, image_path, patient, eye, split, typeof(grade), grade, content_hash, "
      "meta, typeof(external_id), typeof(image_path), typeof(meta) FROM cases ORDER BY id");
  while (cases.step()) {
    const int64_t id = cases.column_int(0);
    const char* const names[] = {"external_id", "image_path", "patient", "eye", "split"};
    for (int col = 1; col <= 5; ++col) {
      std::string why = text_problem(cases.column_text(col));
      if (!why.empty()) case_problem("text", id, std::string(names[col - 1]) + " " + why);
    }
    if (cases.column_text(10) != "text" || cases.column_text(1).empty())
      case_problem("external_id", id, "external_id is empty or not text");
    if (cases.column_text(11) != "text" || cases.column_text(2).empty())
      case_problem("image_path", id, "image_path is empty or not text");
    if (cases.column_text(6) != "integer")
      case_problem("grade", id, "grade '" + cases.column_text(7) + "' is not an integer");
    else if (cases.column_int(7) < 0 || cases.column_int(7) >= kNumGrades)
      case_problem("grade", id, "grade " + std::to_string(cases.column_int(7)) + " outside 0-4");
    if (cases.column_text(8).empty()) case_problem("content_hash", id, "empty content_hash");
    std::string why;
    if (cases.column_text(12) != "text") case_problem("meta", id, "meta is not text");
    else if (!try_parse_json(cases.column_text(9), why)) case_problem("meta", id, "meta: " + why);
  }

  sqlite::Statement models(*db_,
                           "SELECT id, typeof(descriptor_dim), descriptor_dim, config, preprocessing, checkpoint_hash, "
                           "typeof(embeddings_version) FROM models ORDER BY id");
  while (models.step()) {
    const std::string model = "model " + std::to_string(models.column_int(0)) + ": ";
    const int64_t dim = models.column_int(2);
    if (models.column_text(1) != "integer" || dim < 1 || dim > kMaxDescriptorDim)
      report("model",
             model + "descriptor_dim '" + models.column_text(2) + "' outside 1-" + std::to_string(kMaxDescriptorDim));
    std::string why;
    if (!try_parse_json(models.column_text(3), why)) report("model", model + "config: " + why);
    if (!try_parse_json(models.column_text(4), why)) report("model", model + "preprocessing: " + why);
    if (models.column_text(5).empty()) report("model", model + "empty checkpoint_hash");
    if (models.column_text(6) != "integer") report("model", model + "embeddings_version is not an integer");
  }

  sqlite::Statement vectors(
      *db_,
      "SELECT e.case_id, e.model_id, typeof(e.vector), e.vector, m.descriptor_dim FROM embeddings e "
      "JOIN models m ON m.id = e.model_id ORDER BY e.model_id, e.case_id");
  std::vector<float> v;
  while (vectors.step()) {
    const int64_t id = vectors.column_int(0), model = vectors.column_int(1), dim = vectors.column_int(4);
    size_t bytes = 0;
    const void* data = vectors.column_blob(3, bytes);
    if (vectors.column_text(2) != "blob" || dim < 1 || dim > kMaxDescriptorDim || bytes != size_t(dim) * 4) {
      report("vector size", strprintf("embedding of case id %lld for model %lld has %zu bytes, expected %lld",
                                      (long long)id, (long long)model, bytes, (long long)dim * 4));
      continue;
    }
    v.resize(size_t(dim));
    std::memcpy(v.data(), data, bytes);
    auto bad = std::find_if(v.begin(), v.end(), [](float x) { return !std::isfinite(x); });
    if (bad != v.end())
      report("vector value", strprintf("embedding of case id %lld for model %lld has a non-finite value (%g) at "
                                       "dimension %lld",
                                       (long long)id, (long long)model, double(*bad), (long long)(bad - v.begin())));
  }

  for (const auto& [kind, n] : seen)
    if (n > kMaxProblemsPerKind)
      c.problems.push_back(
          strprintf("... and %zu more problems of kind '%s' (%zu in all)", n - kMaxProblemsPerKind, kind.c_str(), n));
  return c;
}

}  // namespace fundus
