#include "fundus/index/ivfpq_index.h"

#include <faiss/IndexFlat.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/impl/io.h>
#include <faiss/index_io.h>

#include <omp.h>

#include <istream>
#include <numeric>
#include <ostream>

#include "fundus/core/error.h"
#include "fundus/core/log.h"
#include "fundus/core/rng.h"
#include "fundus/core/strings.h"
#include "fundus/index/index_factory.h"
#include "topk.h"

namespace fundus {

namespace {
// FAISS parallelises with OpenMP using the calling thread's thread count: make it follow
// VectorIndex::threads() for the duration of one call.
class OmpThreads {
 public:
  explicit OmpThreads(int threads) : saved_(omp_get_max_threads()) { omp_set_num_threads(threads); }
  ~OmpThreads() { omp_set_num_threads(saved_); }

 private:
  int saved_;
};

std::unique_ptr<faiss::IndexIVFPQ> make_ivfpq(int dim, const IvfPqParams& p) {
  auto* quantizer = new faiss::IndexFlatIP(dim);
  auto index = std::make_unique<faiss::IndexIVFPQ>(quantizer, size_t(dim), size_t(p.nlist), size_t(p.m),
                                                   size_t(p.nbits), faiss::METRIC_INNER_PRODUCT);
  index->own_fields = true;
  index->nprobe = size_t(p.nprobe);
  // FAISS prints one warning per k-means (m + 1 of them) when a training set is small; train() warns once.
  index->cp.min_points_per_centroid = 1;
  index->pq.cp.min_points_per_centroid = 1;
  return index;
}
}  // namespace

IvfPqIndex::IvfPqIndex(int dim, const IvfPqParams& params) : VectorIndex(dim), params_(params) {
  FUNDUS_CHECK(params.nlist >= 1, "ivfpq: nlist must be >= 1");
  FUNDUS_CHECK(params.m >= 1 && dim % params.m == 0,
               "ivfpq: m (" << params.m << ") must divide the dimension (" << dim << ")");
  FUNDUS_CHECK(params.nbits >= 1 && params.nbits <= 16, "ivfpq: nbits must be in 1..16, got " << params.nbits);
  FUNDUS_CHECK(params.nprobe >= 1, "ivfpq: nprobe must be >= 1");
  FUNDUS_CHECK(params.train >= 1, "ivfpq: train must be >= 1");
  index_ = make_ivfpq(dim, params);
}

IvfPqIndex::~IvfPqIndex() = default;

std::string IvfPqIndex::describe() const {
  return strprintf("ivfpq:m=%d,nbits=%d,nlist=%d,nprobe=%d,seed=%lld,train=%lld", params_.m, params_.nbits,
                   params_.nlist, params_.nprobe, (long long)params_.seed, (long long)params_.train);
}

bool IvfPqIndex::is_trained() const { return index_->is_trained; }

int64_t IvfPqIndex::native_count() const { return int64_t(index_->ntotal); }

void IvfPqIndex::train(int64_t n, const float* vectors) {
  const int64_t needed = std::max<int64_t>(params_.nlist, int64_t(1) << params_.nbits);
  const int64_t take = std::min<int64_t>(n, params_.train);
  FUNDUS_CHECK(take >= needed, "ivfpq: training needs at least " << needed << " vectors (nlist=" << params_.nlist
                                   << ", 2^nbits=" << (1 << params_.nbits) << "), the first add has " << take
                                   << "; add more vectors at once, lower nlist/nbits, or use hnsw/exact");
  const int64_t advised = 39 * needed;  // FAISS's own rule of thumb for k-means
  if (take < advised)
    FUNDUS_WARN("ivfpq: training on " << take << " vectors; at least " << advised
                                      << " are advised for nlist=" << params_.nlist << ", nbits=" << params_.nbits);
  const float* sample = vectors;
  std::vector<float> buffer;
  if (take < n) {  // a deterministic random subset, so the same data and seed give the same index
    std::vector<int64_t> rows(static_cast<size_t>(n));
    std::iota(rows.begin(), rows.end(), 0);
    Rng rng(uint64_t(params_.seed));
    for (int64_t i = 0; i < take; ++i) std::swap(rows[size_t(i)], rows[size_t(i + int64_t(rng.below(uint64_t(n - i))))]);
    buffer.resize(size_t(take) * size_t(dim()));
    for (int64_t i = 0; i < take; ++i)
      std::copy_n(vectors + rows[size_t(i)] * dim(), dim(), buffer.data() + i * dim());
    sample = buffer.data();
  }
  index_->train(take, sample);
}

void IvfPqIndex::add_impl(int64_t n, const int64_t* ids, const float* vectors) {
  OmpThreads omp(threads());
  try {
    if (!index_->is_trained) train(n, vectors);
    index_->add_with_ids(n, vectors, ids);
  } catch (const faiss::FaissException& e) {
    FUNDUS_THROW("ivfpq add failed: " << e.what());
  }
}

void IvfPqIndex::remove_impl(const std::vector<int64_t>& ids) {
  OmpThreads omp(threads());
  faiss::IDSelectorBatch selector(ids.size(), ids.data());
  index_->remove_ids(selector);
}

void IvfPqIndex::search_impl(int64_t nq, const float* queries, int k, int64_t* out_ids, float* out_scores) const {
  if (!index_->is_trained) return;
  OmpThreads omp(threads());
  index_->search(nq, queries, k, out_scores, out_ids);
  for (int64_t q = 0; q < nq; ++q) {
    int n = 0;
    for (int i = 0; i < k; ++i) {
      if (out_ids[q * k + i] < 0) out_scores[q * k + i] = kMissingScore;
      else ++n;
    }
    sort_row(out_ids + q * k, out_scores + q * k, n);  // FAISS hits come first; fix the tie order
  }
}

void IvfPqIndex::set_search_params_impl(const IndexSpec& spec) {
  params_.nprobe = int(spec.get("nprobe", params_.nprobe));
  FUNDUS_CHECK(params_.nprobe >= 1, "ivfpq: nprobe must be >= 1");
  index_->nprobe = size_t(params_.nprobe);
}

void IvfPqIndex::write_native(std::ostream& out) const {
  faiss::VectorIOWriter writer;
  faiss::write_index(index_.get(), &writer);
  out.write(reinterpret_cast<const char*>(writer.data.data()), std::streamsize(writer.data.size()));
}

void IvfPqIndex::read_native(std::istream& in, uint64_t size, const std::string& source) {
  faiss::VectorIOReader reader;
  reader.data.resize(size);
  in.read(reinterpret_cast<char*>(reader.data.data()), std::streamsize(size));
  FUNDUS_CHECK(in, source << ": read error in ivfpq data");
  std::unique_ptr<faiss::Index> loaded;
  try {
    loaded.reset(faiss::read_index(&reader));
  } catch (const faiss::FaissException& e) {
    FUNDUS_THROW(source << ": corrupt ivfpq data (" << e.what() << ")");
  }
  auto* ivfpq = dynamic_cast<faiss::IndexIVFPQ*>(loaded.get());
  FUNDUS_CHECK(ivfpq && ivfpq->d == dim() && ivfpq->nlist == size_t(params_.nlist) &&
                   ivfpq->pq.M == size_t(params_.m) && ivfpq->pq.nbits == size_t(params_.nbits) &&
                   ivfpq->metric_type == faiss::METRIC_INNER_PRODUCT,
               source << ": ivfpq data does not match its header (" << describe() << ", dim " << dim() << ")");
  loaded.release();
  index_.reset(ivfpq);
  index_->nprobe = size_t(params_.nprobe);
}

}  // namespace fundus
