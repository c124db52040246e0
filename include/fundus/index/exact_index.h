// Brute-force inner-product search: the oracle the approximate indexes are measured against, and
// the right choice for galleries up to ~100k vectors. Vectors are kept row-major in one array.
// Search: fewer than kGemmMinQueries queries scan the rows with the SIMD dot kernel on threads()
// threads (each row block is reused by every query while it is in cache); larger batches use BLAS
// sgemm (query block x row block) and a per-query top-k heap. Memory: size() * dim * 4 bytes.
// Removal swaps the last row into the hole (O(dim)).
// Filtered search: one pass that skips the dot product of every row the filter drops, or, when the
// filter keeps at most a quarter of the rows and can list them, a visit of the listed rows only;
// batches of kGemmMinQueries or more use sgemm and drop filtered rows from the top-k.
#pragma once

#include <unordered_map>

#include "fundus/index/vector_index.h"

namespace fundus {

class ExactIndex : public VectorIndex {
 public:
  static constexpr int64_t kGemmMinQueries = 8;

  explicit ExactIndex(int dim);
  std::string type() const override { return "exact"; }
  std::string describe() const override { return "exact"; }

 protected:
  void add_impl(int64_t n, const int64_t* ids, const float* vectors) override;
  void remove_impl(const std::vector<int64_t>& ids) override;
  void reserve_impl(int64_t n) override;
  void search_impl(int64_t nq, const float* queries, int k, const IdFilter* filter, int64_t* out_ids,
                   float* out_scores) const override;
  void set_search_params_impl(const IndexSpec&) override {}
  void write_native(std::ostream& out) const override;
  void read_native(std::istream& in, uint64_t size, const std::string& source) override;
  int64_t native_count() const override { return int64_t(row_ids_.size()); }

 private:
  void scan_search(int64_t nq, const float* queries, int k, int64_t* out_ids, float* out_scores) const;
  void filtered_search(int64_t nq, const float* queries, int k, const IdFilter& filter, int64_t* out_ids,
                       float* out_scores) const;
  void gemm_search(int64_t nq, const float* queries, int k, const IdFilter* filter, int64_t* out_ids,
                   float* out_scores) const;

  std::vector<float> data_;       // [rows x dim]
  std::vector<int64_t> row_ids_;  // id of each row
  std::unordered_map<int64_t, int64_t> row_of_;
};

}  // namespace fundus
