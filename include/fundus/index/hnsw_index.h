// Approximate search on a hierarchical navigable small-world graph (hnswlib 0.6.2, header-only).
// Distances use our SIMD dot kernel (AVX-512/AVX2 chosen at run time) instead of hnswlib's
// compile-time SSE path. Parameters: M (links per node; memory ~ (dim*4 + M*8) bytes per vector),
// ef_construction (build beam: quality vs build time), ef (search beam: recall vs latency).
// add() inserts in parallel on threads() threads: the graph, and so the results, depend on the
// insertion order, which is deterministic only with one thread. remove() marks vectors deleted
// (they stay in memory and in saved files until a rebuild; re-adding a removed id reuses its slot).
// The capacity grows by doubling (reserve() sets it before a large build).
// Filtered search: a beam search of the base layer through every node in which only the nodes the
// filter keeps enter the result; when the filter keeps few ids and can list them, an exact scan of
// their vectors instead (cheaper than a traversal that must pass ~ef / selectivity nodes).
#pragma once

#include <memory>

#include "fundus/index/vector_index.h"

namespace fundus {

struct HnswParams {
  int M = 32;
  int ef_construction = 200;
  int ef = 64;
};

class HnswIndex : public VectorIndex {
 public:
  HnswIndex(int dim, const HnswParams& params);
  ~HnswIndex() override;
  std::string type() const override { return "hnsw"; }
  std::string describe() const override;
  const HnswParams& params() const { return params_; }
  /// Whether a filtered search scans the `kept` listed vectors rather than traversing the graph.
  static bool prefer_scan(int64_t kept, int64_t size, int ef);
  static constexpr int kScanWork = 6;
  /// Slots taken by deleted vectors (memory not yet reclaimed).
  int64_t deleted_count() const;

 protected:
  void add_impl(int64_t n, const int64_t* ids, const float* vectors) override;
  void remove_impl(const std::vector<int64_t>& ids) override;
  void search_impl(int64_t nq, const float* queries, int k, const IdFilter* filter, int64_t* out_ids,
                   float* out_scores) const override;
  void reserve_impl(int64_t n) override;
  void set_search_params_impl(const IndexSpec& spec) override;
  void write_native(std::ostream& out) const override;
  void read_native(std::istream& in, uint64_t size, const std::string& source) override;
  int64_t native_count() const override;

 private:
  void filtered_search(int64_t nq, const float* queries, int k, const IdFilter& filter, int64_t* out_ids,
                       float* out_scores) const;
  struct Impl;  // keeps hnswlib (which defines non-inline functions) inside one translation unit
  HnswParams params_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace fundus
