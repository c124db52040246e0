#include "fundus/index/vector_index.h"

#include <algorithm>
#include <cmath>
#include <mutex>

#include "fundus/core/concurrency.h"
#include "fundus/core/error.h"
#include "fundus/index/index_factory.h"

namespace fundus {

namespace {
void check_finite(const float* v, int64_t rows, int dim, const char* what) {
  for (int64_t i = 0; i < rows * dim; ++i)
    FUNDUS_CHECK(std::isfinite(v[i]), what << " " << i / dim << " has a non-finite value at dimension " << i % dim);
}
}  // namespace

VectorIndex::VectorIndex(int dim) : dim_(dim) { FUNDUS_CHECK(dim > 0, "index dimension must be > 0, got " << dim); }

VectorIndex::~VectorIndex() = default;

int64_t VectorIndex::size() const {
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  return int64_t(ids_.size());
}

bool VectorIndex::contains(int64_t id) const {
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  return ids_.count(id) > 0;
}

std::vector<int64_t> VectorIndex::ids() const {
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  std::vector<int64_t> out(ids_.begin(), ids_.end());
  std::sort(out.begin(), out.end());
  return out;
}

void VectorIndex::add(int64_t n, const int64_t* ids, const float* vectors) {
  FUNDUS_CHECK(n >= 0, "index add: negative count " << n);
  if (n == 0) return;
  check_finite(vectors, n, dim_, "index add: vector");
  std::unordered_set<int64_t> batch;
  for (int64_t i = 0; i < n; ++i) {
    FUNDUS_CHECK(ids[i] >= 0, "index add: negative id " << ids[i]);
    FUNDUS_CHECK(batch.insert(ids[i]).second, "index add: id " << ids[i] << " occurs twice in the batch");
  }
  std::unique_lock<WriterPriorityMutex> lock(mu_);
  for (int64_t i = 0; i < n; ++i)
    FUNDUS_CHECK(!ids_.count(ids[i]), "index add: id " << ids[i] << " is already in the index (remove it first)");
  add_impl(n, ids, vectors);
  ids_.insert(ids, ids + n);
}

void VectorIndex::add(const std::vector<int64_t>& ids, const std::vector<float>& vectors) {
  FUNDUS_CHECK(vectors.size() == ids.size() * size_t(dim_),
               "index add: " << ids.size() << " ids need " << ids.size() * size_t(dim_) << " floats (dim " << dim_
                             << "), got " << vectors.size());
  add(int64_t(ids.size()), ids.data(), vectors.data());
}

int64_t VectorIndex::remove(const std::vector<int64_t>& ids) {
  std::unique_lock<WriterPriorityMutex> lock(mu_);
  std::vector<int64_t> present;
  std::unordered_set<int64_t> seen;
  for (int64_t id : ids)
    if (ids_.count(id) && seen.insert(id).second) present.push_back(id);
  if (present.empty()) return 0;
  remove_impl(present);
  for (int64_t id : present) ids_.erase(id);
  return int64_t(present.size());
}

SearchResult VectorIndex::search(int64_t nq, const float* queries, int k, const IdFilter* filter) const {
  FUNDUS_CHECK(k >= 1 && k <= kMaxK, "index search: k must be in 1.." << kMaxK << ", got " << k);
  FUNDUS_CHECK(nq >= 0, "index search: negative query count " << nq);
  check_finite(queries, nq, dim_, "index search: query");
  SearchResult r;
  r.nq = nq;
  r.k = k;
  r.ids.assign(size_t(nq) * size_t(k), -1);
  r.scores.assign(size_t(nq) * size_t(k), kMissingScore);
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  if (nq > 0 && !ids_.empty()) search_impl(nq, queries, k, filter, r.ids.data(), r.scores.data());
  return r;
}

void VectorIndex::reserve(int64_t n) {
  FUNDUS_CHECK(n >= 0, "index reserve: negative count " << n);
  std::unique_lock<WriterPriorityMutex> lock(mu_);
  reserve_impl(n);
}

SearchResult VectorIndex::search(const std::vector<float>& queries, int k, const IdFilter* filter) const {
  FUNDUS_CHECK(queries.size() % size_t(dim_) == 0,
               "index search: " << queries.size() << " floats is not a whole number of " << dim_ << "-d queries");
  return search(int64_t(queries.size() / size_t(dim_)), queries.data(), k, filter);
}

void VectorIndex::set_search_params(const IndexSpec& spec) {
  FUNDUS_CHECK(spec.type == type(), "index spec '" << spec.str() << "' is for another index type than " << describe());
  std::unique_lock<WriterPriorityMutex> lock(mu_);
  set_search_params_impl(spec);
}

void VectorIndex::set_threads(int threads) { threads_ = std::max(0, threads); }

int VectorIndex::threads() const { return threads_ > 0 ? threads_.load() : available_cores(); }

}  // namespace fundus
