// A thin RAII layer over the SQLite C API (private to the store component).
// Every failure throws fundus::Error naming the database path and the operation; "not a database"
// and "corrupt" errors are worded for users ("<path>: not a SQLite database or corrupt ...").
// Not thread-safe by itself: CaseStore serialises access with its own mutex.
#pragma once

#include <cstdint>
#include <string>

struct sqlite3;
struct sqlite3_stmt;

namespace fundus::sqlite {

class Database;

class Statement {
 public:
  Statement(Database& db, const std::string& sql);
  ~Statement();
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  // Parameters are 1-based, as in SQLite.
  Statement& bind(int index, int64_t value);
  Statement& bind(int index, const std::string& text);
  Statement& bind_blob(int index, const void* data, size_t size);
  /// Executes one step: true when a row is available, false when done. Throws on errors.
  bool step();
  /// step() until done (for INSERT/UPDATE/DELETE).
  void run();
  /// Makes the statement reusable with new bindings.
  void reset();

  int64_t column_int(int index) const;
  bool column_is_integer(int index) const;   // the stored value's type, not its conversion
  std::string column_text(int index) const;  // "" for NULL
  const void* column_blob(int index, size_t& size) const;

 private:
  Database& db_;
  sqlite3_stmt* stmt_ = nullptr;
  std::string sql_;
};

class Database {
 public:
  /// Opens (and with create=true creates) the file. Does not touch the schema. read_only opens with
  /// SQLITE_OPEN_READONLY: nothing can be written through this connection; in a folder the process
  /// cannot write to, a WAL store is read as immutable (SQLite could not create its -shm file).
  Database(const std::string& path, bool create, bool read_only = false);
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  void exec(const std::string& sql);  // one or more statements, no results
  /// First column of the first row as integer (e.g. PRAGMA user_version).
  int64_t query_int(const std::string& sql);
  int64_t last_insert_rowid() const;
  int64_t changes() const;
  const std::string& path() const { return path_; }
  bool read_only() const { return read_only_; }
  sqlite3* handle() const { return db_; }

  /// Throws the user-facing error for SQLite result code `rc` during `what`.
  [[noreturn]] void fail(int rc, const std::string& what) const;

 private:
  void open(const std::string& name, int flags);

  sqlite3* db_ = nullptr;
  std::string path_;
  bool read_only_ = false;
};

/// BEGIN IMMEDIATE ... COMMIT; rolls back in the destructor unless commit() ran. IMMEDIATE takes the
/// write lock up front, so two writers wait on the busy timeout instead of deadlocking on an upgrade.
class Transaction {
 public:
  explicit Transaction(Database& db);
  ~Transaction();
  void commit();

 private:
  Database& db_;
  bool done_ = false;
};

}  // namespace fundus::sqlite
