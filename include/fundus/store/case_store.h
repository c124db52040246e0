// The case store: one SQLite database per collection holding the graded cases, the models that
// embedded them and their descriptor vectors. It is the source of truth; vector indexes are derived
// from it (fundus/retrieval/store_index.h).
//
// Schema (PRAGMA user_version, ordered migrations in case_store.cpp):
//   cases(id, external_id UNIQUE, image_path, content_hash, grade, patient, eye, split, meta, added_at)
//   models(id, name, config, checkpoint_hash, preprocessing, descriptor_dim, created_at,
//          embeddings_version)                       UNIQUE(checkpoint_hash, preprocessing)
//   embeddings(case_id, model_id, vector BLOB float32 little-endian)  PK(case_id, model_id),
//          both foreign keys ON DELETE CASCADE
//   store_info(key, value): 'store_id', a random id fixed at creation (tells index files which
//          store they were built from); 'embeddings_token.<model id>', a random value drawn anew by
//          every write that changes the model's embeddings (see embeddings_token())
// v1 = cases/models/embeddings; v2 = store_info + models.embeddings_version (index staleness).
// Opening checks that user_version is in 0..kStoreSchemaVersion (a newer one asks for a newer fundus,
// a negative one is damage) and that the tables and columns of that version are really there, and
// no table of a later version: a file whose version and tables disagree (a hand-edited
// user_version, a dropped store_info table) is refused naming the path and what was found.
//
// Invariants (what readers rely on; `check()` verifies every one of them):
//   - the schema matches user_version (above); store_info holds a non-empty 'store_id';
//   - cases: external_id non-empty and unique; external_id, image_path, patient, eye and split
//     valid UTF-8 without control characters (they are printed to terminals and written into
//     JSON); grade an integer 0-4; image_path and content_hash non-empty; meta a JSON text nested
//     at most kMaxJsonDepth levels (fundus/core/json.h);
//   - models: descriptor_dim an integer 1..kMaxDescriptorDim; config and preprocessing JSON text;
//   - embeddings: a BLOB of exactly 4 * descriptor_dim bytes of finite float32 values, whose case
//     and model exist (foreign keys), and SQLite's own integrity_check passes.
// Writers (add_cases, add_case, register_model, put_embeddings) refuse input that would break them.
// Readers that depend on one throw StoreCorruptError naming the path, the case id and the check
// that failed (get_embeddings: size and finiteness; model dimensions), so a damaged row is an
// error message, never a crash or a wrong answer; StoredCase itself carries the raw row (grade -1
// when the stored value is not an integer in range), for the caller to validate.
//
// Read-only use: StoreOptions::read_only opens the file with SQLITE_OPEN_READONLY. Nothing is
// written (no schema, no migration, no journal-mode switch), so stats/check/export/queries work on a
// write-protected file; an old schema then asks for `fundus store migrate`. In a folder the process
// cannot write to (where SQLite cannot create its -shm index), the file is read as immutable, unless
// a leftover -wal file holds changes, which is then an error saying so.
// A 0-byte file or an empty SQLite database is a case store only when create=true (it is then
// initialised like a new file); otherwise it is refused as "not a case store".
//
// Connection settings: WAL journal (readers never block the writer), synchronous=NORMAL (durable
// against process crashes; a power cut may lose the last commits but never corrupts), foreign keys
// on, busy timeout (default 10 s) so several processes can share one file.
//
// Thread safety: one CaseStore may be shared by several threads; every call takes an internal
// mutex around the single connection. Several processes (or several CaseStore objects) may open
// the same file; writers wait for each other up to the busy timeout, then fail with a clear error.
//
// Writes: every multi-row write is one transaction (all or nothing); a failure mid-way rolls back
// and throws fundus::Error. Errors name the database path and the offending case/model.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "fundus/core/case.h"
#include "fundus/core/error.h"

namespace fundus {

namespace sqlite {
class Database;
}

/// Schema version written by this build.
constexpr int kStoreSchemaVersion = 2;
/// Largest descriptor dimension a model row may declare (readers allocate rows x dim floats).
constexpr int kMaxDescriptorDim = 65536;

/// A row of the store breaks an invariant readers rely on (a file damaged or edited outside fundus).
/// what(): "<path>: case id 12: meta is not valid JSON (...); run `fundus store check`".
/// case_id() is 0 when the problem is not about one case; reason() is the check that failed,
/// without the path (for answers that must not reveal server files).
class StoreCorruptError : public Error {
 public:
  StoreCorruptError(const std::string& path, int64_t case_id, const std::string& reason, const char* file, int line);
  int64_t case_id() const { return case_id_; }
  const std::string& reason() const { return reason_; }

 private:
  int64_t case_id_;
  std::string reason_;
};

struct StoredCase {
  int64_t id = 0;            // store id (primary key, never reused after a removal)
  std::string external_id;   // the dataset's case id (CaseRecord::id), unique in the store
  std::string image_path;    // absolute path at import time
  std::string content_hash;  // sha256 hex of the image bytes
  int grade = -1;            // 0..4 (-1 when the stored value is not an integer in int range)
  std::string patient, eye, split;
  std::string meta = "{}";  // free JSON text
  std::string added_at;     // UTC, ISO 8601

  /// As a dataset record (id = external_id).
  CaseRecord to_record() const;
};

/// "" when `record` may be stored: an id, an image path, a grade 0-4, and id, image path, patient,
/// eye and split valid UTF-8 without control characters; else what is wrong, naming the case
/// ("case 'x': patient contains the control character 0x1B (ESC)"). add_cases/add_case apply it.
std::string case_record_problem(const CaseRecord& record);

struct ModelInfo {
  int64_t id = 0;
  std::string name;
  std::string config = "{}";         // JSON text
  std::string checkpoint_hash;       // sha256 of the checkpoint file
  std::string preprocessing = "{}";  // JSON text (input size, normalisation, ...)
  int descriptor_dim = 0;
  std::string created_at;
  int64_t embeddings_version = 0;  // bumped by every write that changes this model's embeddings
};

struct StoreStats {
  int64_t cases = 0;
  PerGrade<int64_t> per_grade{};
  std::map<std::string, int64_t> per_split;  // "" = no split
  int64_t patients = 0;                      // distinct patient keys (an unknown patient counts per case)
  int64_t models = 0;
  std::map<int64_t, int64_t> embeddings_per_model;  // model id -> vectors (models without any: 0)
  std::map<int64_t, std::string> health_per_model;  // model id -> current health record (JSON text)
};

/// Row-major [rows x dim] float32 descriptors with their case ids, ordered by case id.
struct EmbeddingMatrix {
  int64_t model_id = 0;
  int dim = 0;
  std::vector<int64_t> case_ids;
  std::vector<float> vectors;
  int64_t rows() const { return int64_t(case_ids.size()); }
  const float* row(int64_t i) const { return vectors.data() + i * dim; }
};

/// What search filters need of a case (SearchEngine keeps it in memory beside the index).
struct CaseGradePatient {
  int64_t id = 0;
  int grade = -1;
  std::string patient;
};

struct StoreCheck {
  std::vector<std::string> problems;  // empty when the store is healthy
  bool ok() const { return problems.empty(); }
};

struct AddCasesResult {
  std::vector<int64_t> ids;  // store id for each input record, in input order (existing id when skipped)
  int64_t added = 0;
  int64_t skipped = 0;  // identical duplicates already in the store
};

struct StoreOptions {
  bool create = true;      // create the file (and schema) when missing; false: error if missing
  bool read_only = false;  // never write (implies create = false); writing calls then throw
  bool check = false;      // run check() at open and throw listing the problems
  int busy_timeout_ms = 10000;
};

class CaseStore {
 public:
  /// Opens or creates the store at `path`, migrating an older schema (unless read_only). Throws
  /// naming `path` for a missing or empty file (create=false), a non-SQLite or corrupt file, a
  /// schema version outside 0..kStoreSchemaVersion, tables that do not match the version, or (read
  /// only) a schema that needs migrating.
  explicit CaseStore(const std::string& path, const StoreOptions& options = {});
  ~CaseStore();
  CaseStore(const CaseStore&) = delete;
  CaseStore& operator=(const CaseStore&) = delete;

  const std::string& path() const { return path_; }
  /// Random id fixed when the store was created (index files record it).
  std::string store_id() const;
  int schema_version() const;

  // ---- cases ---------------------------------------------------------------------------------
  /// Imports every record in one transaction, hashing the image files on `threads` threads
  /// (0 = all cores). Duplicates by external id: a record identical to the stored case (same
  /// content hash and grade) is skipped and reports the existing id, so re-running an import is a
  /// no-op; a conflicting one (different image bytes or grade) is rejected and nothing is written.
  /// Also throws (writing nothing) for an unreadable image, a grade outside 0-4 or an id that
  /// occurs twice in `dataset`; messages name the dataset source and line.
  AddCasesResult add_cases(const Dataset& dataset, int threads = 0);
  /// One case (server use), same duplicate rules; `meta` must be JSON text; `content_hash` is
  /// computed from the image file when empty. Returns the store id.
  int64_t add_case(const CaseRecord& record, const std::string& meta = "{}", const std::string& content_hash = "");
  /// Deletes cases and (cascading) their embeddings in one transaction; unknown ids are ignored.
  /// Returns how many cases were deleted. Store ids are never reused (AUTOINCREMENT).
  int64_t remove_cases(const std::vector<int64_t>& ids);
  std::optional<StoredCase> get_case(int64_t id) const;
  std::optional<StoredCase> find_by_external_id(const std::string& external_id) const;
  /// Cases ordered by id; `splits` is a comma-separated filter ("train,val"), "" = all.
  std::vector<StoredCase> list_cases(const std::string& splits = "") const;
  StoreStats stats() const;
  /// Id, grade and patient of every case, ordered by id (no other columns are read).
  std::vector<CaseGradePatient> grades_and_patients() const;

  // ---- models --------------------------------------------------------------------------------
  /// Registers a model; idempotent: the same checkpoint hash and preprocessing return the existing
  /// id (a different descriptor_dim for them is an error). config/preprocessing must be JSON text.
  int64_t register_model(const std::string& name, const std::string& config, const std::string& checkpoint_hash,
                         const std::string& preprocessing, int descriptor_dim);
  std::optional<ModelInfo> get_model(int64_t id) const;
  /// The model registered with this checkpoint hash and preprocessing JSON (compared canonically),
  /// without registering anything: for read-only users.
  std::optional<int64_t> find_model(const std::string& checkpoint_hash, const std::string& preprocessing) const;
  std::vector<ModelInfo> list_models() const;

  // ---- embeddings ----------------------------------------------------------------------------
  /// Inserts or replaces one vector per case id (`vectors` row-major [case_ids.size() x dim], dim
  /// must equal the model's descriptor_dim, values finite) in one transaction. Unknown model or case
  /// ids throw and nothing is written.
  void put_embeddings(int64_t model_id, const std::vector<int64_t>& case_ids, const float* vectors, int dim);
  /// Every vector of the model. Throws StoreCorruptError naming the case for a vector of the wrong
  /// size or with a non-finite value.
  EmbeddingMatrix get_embeddings(int64_t model_id) const;
  /// Streams the model's vectors in case id order, `batch_rows` at a time, to `fn` (which must not
  /// call back into the store): a whole store in bounded memory. All batches come from one
  /// consistent snapshot; other calls on this object wait until the scan ends.
  void scan_embeddings(int64_t model_id, int64_t batch_rows,
                       const std::function<void(const EmbeddingMatrix& batch)>& fn) const;
  /// One case's vector, or nullopt when it has none for this model.
  std::optional<std::vector<float>> get_embedding(int64_t model_id, int64_t case_id) const;
  /// Case ids that have a vector for the model, ascending (cheap: no vectors are read).
  std::vector<int64_t> embedding_ids(int64_t model_id) const;
  /// A random token drawn anew (in the same transaction) by every write through this class that
  /// changes the model's embeddings: put_embeddings, remove_cases of a case with a vector. Copies of
  /// one store share store_id, ids and embeddings_version counts, but two copies written separately
  /// never share a token, so an index built from one copy is never taken as current for the other.
  /// "" until the first such write.
  std::string embeddings_token(int64_t model_id) const;
  /// Cases with no vector for the model yet (resumable embedding), ordered by id.
  std::vector<StoredCase> cases_without_embedding(int64_t model_id) const;

  /// The descriptor-health record of `model_id`'s vectors (JSON text, eval/descriptor_health.h) when
  /// one was stored for the vectors as they are now; "" when none was, or when they changed since
  /// (every write of the model's embeddings draws a new embeddings_token, which voids the record).
  std::string model_health(int64_t model_id) const;
  /// Stores `json` as the health record of the vectors that embeddings_token() named `token` when
  /// they were read (a record for vectors changed in between is thus never taken as current).
  void put_model_health(int64_t model_id, const std::string& token, const std::string& json);

  // ---- export / check ------------------------------------------------------------------------
  /// CSV with header id,external_id,image_path,content_hash,grade,patient,eye,split,meta,added_at.
  void export_cases_csv(const std::string& path) const;
  /// NumPy .npy float32 [rows x dim] plus a CSV (row,case_id,external_id) naming each row.
  void export_embeddings(int64_t model_id, const std::string& npy_path, const std::string& ids_csv_path) const;
  /// Every invariant listed at the top of this header: PRAGMA integrity_check and
  /// foreign_key_check, store_info, each case's columns (types, grade range, UTF-8 and control
  /// characters, meta JSON and its depth), each model's dimension and JSON, each vector's size and
  /// finiteness. At most 100 problems per kind are listed, then a count of the rest. Reads only.
  StoreCheck check() const;

 private:
  void verify_schema(int64_t version);
  void migrate();
  int64_t model_dim(int64_t model_id) const;  // throws for an unknown model or a corrupt dim; caller holds mu_
  // Copies the BLOB into out[0..dim) when it is `dim` finite floats, else StoreCorruptError naming the case.
  std::string model_health_locked(int64_t model_id) const;  // caller holds mu_
  void copy_vector(int64_t case_id, int64_t model_id, const void* data, size_t bytes, int64_t dim, float* out) const;

  std::string path_;
  std::unique_ptr<sqlite::Database> db_;
  mutable std::mutex mu_;
};

}  // namespace fundus
