#include "sqlite_db.h"

#include <sqlite3.h>

#include <cctype>
#include <filesystem>

#include "fundus/core/error.h"
#include "fundus/core/io.h"
#include "fundus/core/strings.h"

namespace fundus::sqlite {

void Database::fail(int rc, const std::string& what) const {
  int primary = rc & 0xff;
  const char* detail = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
  if (primary == SQLITE_NOTADB || primary == SQLITE_CORRUPT)
    FUNDUS_THROW(path_ << ": not a SQLite database or the file is corrupt (" << detail << ")");
  if (primary == SQLITE_READONLY)
    FUNDUS_THROW(
        path_ << ": cannot write to the case store (" << detail << ") during " << what
              << (read_only_ ? "; it was opened read-only" : "; check the permissions of the file and its folder"));
  if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED)
    FUNDUS_THROW(path_ << ": database is locked by another writer; gave up after the busy timeout during " << what);
  FUNDUS_THROW(path_ << ": " << what << " failed: " << detail);
}

namespace {

// "file:" URI of a path, for SQLite's URI parameters: everything but unreserved characters and '/'
// percent-encoded (a '?' or '#' in a file name would otherwise start the query part).
std::string file_uri(const std::string& path) {
  std::string uri = "file:";
  for (unsigned char c : path) {
    if (std::isalnum(c) || c == '/' || c == '.' || c == '-' || c == '_' || c == '~') uri += char(c);
    else uri += strprintf("%%%02X", c);
  }
  return uri;
}

}  // namespace

Database::Database(const std::string& path, bool create, bool read_only) : path_(path), read_only_(read_only) {
  if (read_only) create = false;
  if (!create) FUNDUS_CHECK(file_exists(path), path << ": no case store at this path");
  if (create && !parent_dir(path).empty()) make_dirs(parent_dir(path));  // `store add --store new/dir/cases.db`
  int flags = (read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE) | SQLITE_OPEN_NOMUTEX |
              (create ? SQLITE_OPEN_CREATE : 0);
  open(path, flags);
  if (!read_only) return;
  // A reader of a WAL database creates the shared-memory index <path>-shm; in a folder it may not
  // write to, that fails ("attempt to write a readonly database"). Nobody can then be writing (a
  // writer needs the -wal and -shm files there too), so the file is read as immutable, unless a
  // -wal file still holds changes the main file lacks.
  int rc = sqlite3_exec(db_, "PRAGMA schema_version", nullptr, nullptr, nullptr);
  if ((rc & 0xff) != SQLITE_READONLY && (rc & 0xff) != SQLITE_CANTOPEN) return;
  const std::string wal = path + "-wal";
  std::error_code ec;
  FUNDUS_CHECK(!file_exists(wal) || std::filesystem::file_size(wal, ec) == 0,
               path << ": cannot read the store read-only: its folder is not writable (SQLite needs " << path
                    << "-shm) and " << wal << " holds changes not yet in the main file; open it once with write "
                    << "access (any fundus store command) or copy the store");
  sqlite3_close(db_);
  db_ = nullptr;
  open(file_uri(path) + "?immutable=1", SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_URI);
}

void Database::open(const std::string& name, int flags) {
  int rc = sqlite3_open_v2(name.c_str(), &db_, flags, nullptr);
  if (rc != SQLITE_OK) {
    std::string detail = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
    sqlite3_close(db_);
    db_ = nullptr;
    FUNDUS_THROW(path_ << ": cannot open case store (" << detail << ")");
  }
  sqlite3_extended_result_codes(db_, 1);
}

Database::~Database() { sqlite3_close(db_); }

void Database::exec(const std::string& sql) {
  char* message = nullptr;
  int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &message);
  if (message) sqlite3_free(message);
  if (rc != SQLITE_OK) fail(rc, "'" + sql.substr(0, 60) + "'");
}

int64_t Database::query_int(const std::string& sql) {
  Statement st(*this, sql);
  return st.step() ? st.column_int(0) : 0;
}

int64_t Database::last_insert_rowid() const { return sqlite3_last_insert_rowid(db_); }
int64_t Database::changes() const { return sqlite3_changes(db_); }

Statement::Statement(Database& db, const std::string& sql) : db_(db), sql_(sql) {
  int rc = sqlite3_prepare_v2(db.handle(), sql.c_str(), int(sql.size()), &stmt_, nullptr);
  if (rc != SQLITE_OK) db.fail(rc, "preparing '" + sql.substr(0, 60) + "'");
}

Statement::~Statement() { sqlite3_finalize(stmt_); }

Statement& Statement::bind(int index, int64_t value) {
  int rc = sqlite3_bind_int64(stmt_, index, value);
  if (rc != SQLITE_OK) db_.fail(rc, "binding a parameter");
  return *this;
}

Statement& Statement::bind(int index, const std::string& text) {
  int rc = sqlite3_bind_text(stmt_, index, text.data(), int(text.size()), SQLITE_TRANSIENT);
  if (rc != SQLITE_OK) db_.fail(rc, "binding a parameter");
  return *this;
}

Statement& Statement::bind_blob(int index, const void* data, size_t size) {
  int rc = sqlite3_bind_blob64(stmt_, index, data, sqlite3_uint64(size), SQLITE_TRANSIENT);
  if (rc != SQLITE_OK) db_.fail(rc, "binding a parameter");
  return *this;
}

bool Statement::step() {
  int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  sqlite3_reset(stmt_);  // leave the statement reusable; the error is reported below
  db_.fail(rc, "'" + sql_.substr(0, 60) + "'");
}

void Statement::run() {
  while (step()) {}
}

void Statement::reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

int64_t Statement::column_int(int index) const { return sqlite3_column_int64(stmt_, index); }
bool Statement::column_is_integer(int index) const { return sqlite3_column_type(stmt_, index) == SQLITE_INTEGER; }

std::string Statement::column_text(int index) const {
  const unsigned char* text = sqlite3_column_text(stmt_, index);
  if (!text) return "";
  return std::string(reinterpret_cast<const char*>(text), size_t(sqlite3_column_bytes(stmt_, index)));
}

const void* Statement::column_blob(int index, size_t& size) const {
  const void* data = sqlite3_column_blob(stmt_, index);
  size = size_t(sqlite3_column_bytes(stmt_, index));
  return data;
}

Transaction::Transaction(Database& db) : db_(db) { db_.exec("BEGIN IMMEDIATE"); }

Transaction::~Transaction() {
  if (!done_) sqlite3_exec(db_.handle(), "ROLLBACK", nullptr, nullptr, nullptr);
}

void Transaction::commit() {
  db_.exec("COMMIT");
  done_ = true;
}

}  // namespace fundus::sqlite
