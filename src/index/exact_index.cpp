#include "fundus/index/exact_index.h"

#include <algorithm>
#include <istream>
#include <mutex>
#include <ostream>

#include "fundus/core/concurrency.h"
#include "fundus/core/error.h"
#include "fundus/index/simd.h"
#include "topk.h"

// Fortran BLAS (OpenBLAS when installed as the system libblas.so.3; FAISS links it already).
extern "C" void sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k,
                       const float* alpha, const float* a, const int* lda, const float* b, const int* ldb,
                       const float* beta, float* c, const int* ldc);

namespace fundus {

namespace {
// OpenBLAS parallelises each call itself; serialising our calls avoids oversubscribing the cores and
// does not rely on the BLAS build being safe for concurrent callers.
std::mutex g_blas_mutex;

constexpr int64_t kScanBlockRows = 64;  // rows reused by every query while in L1/L2
constexpr int64_t kGemmQueryBlock = 256;
constexpr int64_t kGemmRowBlock = 4096;  // 256 x 4096 scores = 4 MB scratch
}  // namespace

ExactIndex::ExactIndex(int dim) : VectorIndex(dim) {}

void ExactIndex::add_impl(int64_t n, const int64_t* ids, const float* vectors) {
  int64_t first = int64_t(row_ids_.size());
  data_.insert(data_.end(), vectors, vectors + n * dim());
  row_ids_.insert(row_ids_.end(), ids, ids + n);
  for (int64_t i = 0; i < n; ++i) row_of_[ids[i]] = first + i;
}

void ExactIndex::reserve_impl(int64_t n) {
  data_.reserve(size_t(n) * size_t(dim()));
  row_ids_.reserve(size_t(n));
}

void ExactIndex::remove_impl(const std::vector<int64_t>& ids) {
  const size_t d = size_t(dim());
  for (int64_t id : ids) {
    int64_t row = row_of_.at(id), last = int64_t(row_ids_.size()) - 1;
    if (row != last) {
      std::copy_n(data_.begin() + long(size_t(last) * d), d, data_.begin() + long(size_t(row) * d));
      row_ids_[size_t(row)] = row_ids_[size_t(last)];
      row_of_[row_ids_[size_t(row)]] = row;
    }
    row_ids_.pop_back();
    data_.resize(size_t(last) * d);
    row_of_.erase(id);
  }
}

void ExactIndex::search_impl(int64_t nq, const float* queries, int k, const IdFilter* filter, int64_t* out_ids,
                             float* out_scores) const {
  if (filter && nq < kGemmMinQueries) filtered_search(nq, queries, k, *filter, out_ids, out_scores);
  else if (nq < kGemmMinQueries) scan_search(nq, queries, k, out_ids, out_scores);
  else gemm_search(nq, queries, k, filter, out_ids, out_scores);
}

void ExactIndex::scan_search(int64_t nq, const float* queries, int k, int64_t* out_ids, float* out_scores) const {
  const int64_t rows = int64_t(row_ids_.size());
  const int d = dim();
  std::vector<TopK> best(static_cast<size_t>(nq), TopK(k));
  std::mutex merge_mutex;
  // At least ~4k rows per thread: thread start-up costs more than scanning a small gallery.
  int threads = int(std::min<int64_t>(this->threads(), std::max<int64_t>(1, rows / 4096)));
  parallel_for(rows, threads, [&](int64_t begin, int64_t end) {
    std::vector<TopK> local(static_cast<size_t>(nq), TopK(k));
    for (int64_t b = begin; b < end; b += kScanBlockRows) {
      int64_t e = std::min(end, b + kScanBlockRows);
      for (int64_t q = 0; q < nq; ++q) {
        const float* query = queries + q * d;
        TopK& heap = local[size_t(q)];
        for (int64_t r = b; r < e; ++r) {
          float s = dot_f32(query, data_.data() + r * d, d);
          if (s >= heap.floor()) heap.push(s, row_ids_[size_t(r)]);
        }
      }
    }
    std::lock_guard<std::mutex> lock(merge_mutex);
    for (int64_t q = 0; q < nq; ++q) best[size_t(q)].merge(local[size_t(q)]);
  });
  for (int64_t q = 0; q < nq; ++q) best[size_t(q)].write(out_ids + q * k, out_scores + q * k);
}

void ExactIndex::filtered_search(int64_t nq, const float* queries, int k, const IdFilter& filter, int64_t* out_ids,
                                 float* out_scores) const {
  const int d = dim();
  // Few kept ids that the filter can list: visit only their rows. Otherwise one pass over all rows
  // that computes a dot product only for the rows the filter keeps.
  std::vector<int64_t> listed, rows;
  const int64_t kept = filter.count(), all = int64_t(row_ids_.size());
  const bool subset = kept >= 0 && kept <= all / 4 && filter.list(listed);
  if (subset) {
    rows.reserve(listed.size());
    for (int64_t id : listed) {
      auto it = row_of_.find(id);
      if (it != row_of_.end()) rows.push_back(it->second);
    }
  }
  for (int64_t q = 0; q < nq; ++q) {
    const float* query = queries + q * d;
    if (subset)
      scan_topk(
          int64_t(rows.size()), threads(), k,
          [&](int64_t i, TopK& heap) {
            const int64_t r = rows[size_t(i)];
            heap.push(dot_f32(query, data_.data() + r * d, d), row_ids_[size_t(r)]);
          },
          out_ids + q * k, out_scores + q * k);
    else
      scan_topk(
          all, threads(), k,
          [&](int64_t r, TopK& heap) {
            if (filter.keep(row_ids_[size_t(r)]))
              heap.push(dot_f32(query, data_.data() + r * d, d), row_ids_[size_t(r)]);
          },
          out_ids + q * k, out_scores + q * k);
  }
}

void ExactIndex::gemm_search(int64_t nq, const float* queries, int k, const IdFilter* filter, int64_t* out_ids,
                             float* out_scores) const {
  const int64_t rows = int64_t(row_ids_.size());
  const int d = dim();
  std::vector<float> scores(size_t(kGemmQueryBlock * kGemmRowBlock));
  for (int64_t qb = 0; qb < nq; qb += kGemmQueryBlock) {
    const int64_t nqb = std::min(kGemmQueryBlock, nq - qb);
    std::vector<TopK> best(static_cast<size_t>(nqb), TopK(k));
    for (int64_t rb = 0; rb < rows; rb += kGemmRowBlock) {
      const int64_t nrb = std::min(kGemmRowBlock, rows - rb);
      {
        // Column-major view: scores^T [nrb x nqb] = rows_block [nrb x d] * queries_block^T [d x nqb],
        // i.e. row-major scores [nqb x nrb].
        const int m = int(nrb), n = int(nqb), kk = d;
        const float alpha = 1.f, beta = 0.f;
        std::lock_guard<std::mutex> lock(g_blas_mutex);
        sgemm_("T", "N", &m, &n, &kk, &alpha, data_.data() + rb * d, &kk, queries + qb * d, &kk, &beta, scores.data(),
               &m);
      }
      parallel_for(nqb, int(std::min<int64_t>(threads(), nqb)), [&](int64_t b, int64_t e) {
        for (int64_t q = b; q < e; ++q) {
          const float* row = scores.data() + q * nrb;
          TopK& heap = best[size_t(q)];
          for (int64_t r = 0; r < nrb; ++r)
            if (row[r] >= heap.floor() && (!filter || filter->keep(row_ids_[size_t(rb + r)])))
              heap.push(row[r], row_ids_[size_t(rb + r)]);
        }
      });
    }
    for (int64_t q = 0; q < nqb; ++q) best[size_t(q)].write(out_ids + (qb + q) * k, out_scores + (qb + q) * k);
  }
}

void ExactIndex::write_native(std::ostream& out) const {
  uint64_t rows = row_ids_.size();
  out.write(reinterpret_cast<const char*>(&rows), sizeof rows);
  out.write(reinterpret_cast<const char*>(row_ids_.data()), std::streamsize(rows * sizeof(int64_t)));
  out.write(reinterpret_cast<const char*>(data_.data()), std::streamsize(data_.size() * sizeof(float)));
}

void ExactIndex::read_native(std::istream& in, uint64_t size, const std::string& source) {
  uint64_t rows = 0;
  in.read(reinterpret_cast<char*>(&rows), sizeof rows);
  FUNDUS_CHECK(in && size == 8 + rows * (8 + uint64_t(dim()) * 4),
               source << ": exact index data has the wrong size for " << rows << " rows of dim " << dim());
  row_ids_.resize(rows);
  data_.resize(rows * size_t(dim()));
  in.read(reinterpret_cast<char*>(row_ids_.data()), std::streamsize(rows * sizeof(int64_t)));
  in.read(reinterpret_cast<char*>(data_.data()), std::streamsize(data_.size() * sizeof(float)));
  FUNDUS_CHECK(in, source << ": read error in exact index data");
  row_of_.clear();
  for (uint64_t r = 0; r < rows; ++r)
    FUNDUS_CHECK(row_of_.emplace(row_ids_[r], int64_t(r)).second, source << ": duplicate id " << row_ids_[r]);
}

}  // namespace fundus
