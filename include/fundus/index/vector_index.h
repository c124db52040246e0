// The vector index interface: nearest neighbours by inner product. Descriptors are L2-normalised
// by their producer, so scores are cosine similarities (higher = more similar); the index does not
// normalise. Implementations: ExactIndex (brute force, the oracle), HnswIndex (hnswlib graph),
// IvfPqIndex (FAISS inverted lists + product quantisation). Build one from a spec string with
// make_index() (index_factory.h); persist with save()/load_index() (index_file.h).
//
// Ids are int64 >= 0 chosen by the caller (the store's case ids); an id is in the index at most once.
// Replacing a vector = remove() then add().
//
// Filtered search (IdFilter): the filter is applied inside the index, during the search, so excluded
// ids are never candidates and a filtered search returns min(k, kept ids in the index) hits however
// few ids the filter keeps. ExactIndex returns exactly the best kept ids; the approximate indexes
// choose per query between a filtered traversal and an exact scan of the kept vectors (when the
// filter can list them and they are few), and fall back to an exhaustive filtered pass when the
// traversal found fewer than k.
//
// Thread safety: all methods may be called concurrently. search() calls share a reader lock and run
// in parallel; add()/remove()/set_search_params() take the writer lock: they wait for the running
// searches, and new searches wait for them (writers are never starved).
// Each call may itself use up to threads() worker threads.
//
// Errors (fundus::Error): wrong dimension, a duplicate id (in the batch or already indexed), a
// negative id, a non-finite value, k outside 1..kMaxK. Invalid input throws before anything changes.
#pragma once

#include <atomic>
#include <cstdint>
#include <iosfwd>
#include <limits>
#include <memory>
#include <shared_mutex>
#include <string>
#include <unordered_set>
#include <vector>

#include "fundus/index/rw_lock.h"

namespace fundus {

struct IndexSpec;
struct IndexProvenance;
struct IndexFileInfo;
struct LoadedIndex;

/// Result of search(): row-major [nq x k]; each row sorted by descending score, ties by ascending id.
/// Rows with fewer than k hits are padded with id -1 and score -infinity.
struct SearchResult {
  int64_t nq = 0;
  int k = 0;
  std::vector<int64_t> ids;
  std::vector<float> scores;
  const int64_t* ids_row(int64_t q) const { return ids.data() + q * k; }
  const float* scores_row(int64_t q) const { return scores.data() + q * k; }
};

constexpr float kMissingScore = -std::numeric_limits<float>::infinity();

/// Which ids a search may return (e.g. CaseFilter: grades, patient exclusion; case_filter.h).
/// keep() is called concurrently by search threads, once per candidate: it must be thread-safe and
/// cheap (an array lookup, not a database read).
class IdFilter {
 public:
  virtual ~IdFilter() = default;
  virtual bool keep(int64_t id) const = 0;
  /// Number of kept ids among those in the index, or -1 if unknown. Indexes use it only to choose a
  /// search strategy: a wrong value costs time, never results.
  virtual int64_t count() const { return -1; }
  /// Appends every kept id (ascending; ids not in the index are ignored by the caller) to `out` and
  /// returns true, when the filter can list them without a pass over the whole index; false if not.
  virtual bool list(std::vector<int64_t>& out) const {
    (void)out;
    return false;
  }
};
/// Largest k search() accepts (bounds the [nq x k] result allocation).
constexpr int kMaxK = 100000;

class VectorIndex {
 public:
  virtual ~VectorIndex();
  VectorIndex(const VectorIndex&) = delete;
  VectorIndex& operator=(const VectorIndex&) = delete;

  int dim() const { return dim_; }
  int64_t size() const;
  bool contains(int64_t id) const;
  /// All ids, ascending.
  std::vector<int64_t> ids() const;

  /// Adds n vectors (`vectors` row-major [n x dim]) under `ids`.
  void add(int64_t n, const int64_t* ids, const float* vectors);
  void add(const std::vector<int64_t>& ids, const std::vector<float>& vectors);
  /// Removes the ids that are present (others are ignored); returns how many were removed.
  int64_t remove(const std::vector<int64_t>& ids);
  /// The k best ids for each of the nq queries (`queries` row-major [nq x dim]), among the ids that
  /// `filter` keeps when one is given (see "Filtered search" above; the filter must outlive the call).
  SearchResult search(int64_t nq, const float* queries, int k, const IdFilter* filter = nullptr) const;
  SearchResult search(const std::vector<float>& queries, int k, const IdFilter* filter = nullptr) const;
  /// Prepares room for `n` vectors in all (HNSW: avoids regrowing the graph during a large build).
  void reserve(int64_t n);

  /// "exact", "hnsw" or "ivfpq".
  virtual std::string type() const = 0;
  /// The canonical spec with every parameter, e.g. "hnsw:M=32,efc=200,ef=64" (parse_index_spec reads it).
  virtual std::string describe() const = 0;
  /// Applies the search-time parameters of `spec` (hnsw: ef, ivfpq: nprobe); build parameters of
  /// the spec are ignored. Throws if the spec is for another index type.
  void set_search_params(const IndexSpec& spec);

  /// Worker threads per call (0 = all cores, the default).
  void set_threads(int threads);
  int threads() const;

  /// Writes the index atomically as a framed file (see index_file.h) recording `provenance`, plus
  /// the implementation's companion files (IVF-PQ: `<path>.vectors`). Takes the writer lock:
  /// searches wait for a save.
  void save(const std::string& path, const IndexProvenance& provenance) const;

 protected:
  explicit VectorIndex(int dim);

  // Called with the writer lock held and arguments validated (ids new and unique / all present).
  virtual void add_impl(int64_t n, const int64_t* ids, const float* vectors) = 0;
  virtual void remove_impl(const std::vector<int64_t>& ids) = 0;
  // Called with the reader lock held; k >= 1; fills [nq x k] (padding pre-filled by the caller);
  // `filter` may be null.
  virtual void search_impl(int64_t nq, const float* queries, int k, const IdFilter* filter, int64_t* out_ids,
                           float* out_scores) const = 0;
  virtual void reserve_impl(int64_t n) { (void)n; }
  virtual void set_search_params_impl(const IndexSpec& spec) = 0;
  // Persistence of the implementation's own structures (index_file.cpp frames them).
  virtual void write_native(std::ostream& out) const = 0;
  virtual void read_native(std::istream& in, uint64_t size, const std::string& source) = 0;
  /// Number of live vectors according to the native structure (checked against the file's ids).
  virtual int64_t native_count() const = 0;
  // Companion files beside the index file at `path` (written before it, verified against its
  // header `info` after it is read: a missing or mismatching companion fails the load). Called
  // with the writer lock held.
  virtual void save_companions(const std::string& path, const IndexFileInfo& info,
                               const std::vector<int64_t>& ids) const {
    (void)path;
    (void)info;
    (void)ids;
  }
  virtual void load_companions(const std::string& path, const IndexFileInfo& info) {
    (void)path;
    (void)info;
  }
  /// The number of ids (for implementations that size work by it; caller holds a lock).
  int64_t size_locked() const { return int64_t(ids_.size()); }

 private:
  friend LoadedIndex load_index(const std::string& path);

  int dim_;
  std::atomic<int> threads_{0};
  std::unordered_set<int64_t> ids_;
  mutable WriterPriorityMutex mu_;
};

}  // namespace fundus
