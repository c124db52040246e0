#include "fundus/index/ivfpq_index.h"

#include <faiss/IndexFlat.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/impl/io.h>
#include <faiss/index_io.h>

#include <omp.h>

#include <cmath>
#include <cstring>
#include <istream>
#include <numeric>
#include <ostream>

#include "fundus/core/error.h"
#include "fundus/core/log.h"
#include "fundus/core/rng.h"
#include "fundus/core/strings.h"
#include "fundus/index/index_factory.h"
#include "fundus/index/index_file.h"
#include "fundus/index/simd.h"
#include "fundus/index/vector_file.h"
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

// FAISS asks for ids through an IDSelector while it scans the inverted lists.
struct KeepSelector : faiss::IDSelector {
  explicit KeepSelector(const IdFilter& f) : filter(f) {}
  bool is_member(idx_t id) const override { return filter.keep(int64_t(id)); }
  const IdFilter& filter;
};

// What the exact vectors of a saved index are: tying the vector file to the index header.
std::string vectors_tag(const IndexProvenance& p) {
  return "store=" + p.store_id + ";model=" + std::to_string(p.model_id) +
         ";version=" + std::to_string(p.embeddings_version) + ";token=" + p.embeddings_token;
}

std::string vectors_path(const std::string& index_path) { return index_path + ".vectors"; }

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

// FAISS's reader trusts the sizes it reads: a vector length in the file is allocated before the
// bytes behind it are read (up to 2^40 elements), and a failed read leaks the partly read index.
// fuzz/fuzz_index made a 5 kB file behind a valid index checksum allocate gigabytes. So the bytes
// are walked first, in the exact layout this build writes (faiss 1.7 write_index of an IndexIVFPQ
// over an IndexFlatIP, no direct map, ArrayInvertedLists), every size checked against the header's
// parameters and the bytes left; anything else is refused before FAISS sees it.
class IvfPqLayoutCheck {
 public:
  IvfPqLayoutCheck(const std::vector<uint8_t>& bytes, const std::string& source) : b_(bytes), source_(source) {}

  void run(int dim, const IvfPqParams& params) {
    const uint64_t nlist = uint64_t(params.nlist), ksub = uint64_t(1) << params.nbits;
    const uint64_t code_size = (uint64_t(params.m) * uint64_t(params.nbits) + 7) / 8;
    fourcc("IwPQ");
    const int64_t ntotal = index_header(dim);
    check(ntotal >= 0, "vector count");
    check(get<uint64_t>() == nlist, "nlist");
    (void)get<uint64_t>();  // nprobe: set from the spec after loading
    fourcc("IxFI");
    const int64_t centroids = index_header(dim);
    check(centroids == 0 || uint64_t(centroids) == nlist, "coarse centroid count");
    vector_of(sizeof(float), uint64_t(centroids) * uint64_t(dim), "coarse centroids");
    check(get<int8_t>() == 0, "direct map type");  // NoMap
    vector_of(sizeof(int64_t), 0, "direct map");
    check(get<uint8_t>() <= 1, "by_residual flag");
    check(get<uint64_t>() == code_size, "code size");
    check(get<uint64_t>() == uint64_t(dim) && get<uint64_t>() == uint64_t(params.m) &&
              get<uint64_t>() == uint64_t(params.nbits),
          "product quantizer shape");
    vector_of(sizeof(float), uint64_t(dim) * ksub, "product quantizer centroids");
    fourcc("ilar");
    check(get<uint64_t>() == nlist && get<uint64_t>() == code_size, "inverted lists shape");
    const uint32_t type = get<uint32_t>();
    const uint64_t n = get<uint64_t>();
    check(n <= left() / sizeof(uint64_t), "inverted list sizes");
    uint64_t total = 0;
    if (type == tag("full")) {
      check(n == nlist, "inverted list count");
      for (uint64_t i = 0; i < n; ++i) total = add(total, get<uint64_t>());
    } else {
      check(type == tag("sprs") && n % 2 == 0 && n / 2 <= nlist, "inverted list type");
      for (uint64_t i = 0; i < n; i += 2) {
        check(get<uint64_t>() < nlist, "inverted list number");
        total = add(total, get<uint64_t>());
      }
    }
    check(total == uint64_t(ntotal) && total <= left() / (code_size + sizeof(int64_t)) &&
              left() == total * (code_size + sizeof(int64_t)),
          "inverted list contents");
  }

 private:
  void check(bool ok, const char* what) const { FUNDUS_CHECK(ok, source_ << ": corrupt ivfpq data (" << what << ")"); }
  uint64_t left() const { return b_.size() - pos_; }
  template <typename T>
  T get() {
    check(sizeof(T) <= left(), "truncated");
    T v;
    std::memcpy(&v, b_.data() + pos_, sizeof v);
    pos_ += sizeof v;
    return v;
  }
  static uint32_t tag(const char* four) {
    uint32_t v;
    std::memcpy(&v, four, 4);
    return v;
  }
  void fourcc(const char* four) { check(get<uint32_t>() == tag(four), "unexpected index type"); }
  // faiss write_index_header: d, ntotal, two unused fields, is_trained, metric (inner product).
  int64_t index_header(int dim) {
    check(get<int32_t>() == dim, "dimension");
    const int64_t ntotal = get<int64_t>();
    (void)get<int64_t>(), (void)get<int64_t>();
    check(get<uint8_t>() <= 1, "is_trained flag");  // read into a C++ bool: any other byte is UB
    check(get<int32_t>() == 0, "metric");
    return ntotal;
  }
  void vector_of(size_t item, uint64_t expected, const char* what) {
    const uint64_t n = get<uint64_t>();
    check(n == expected && n <= left() / item, what);
    pos_ += n * item;
  }
  uint64_t add(uint64_t total, uint64_t n) const {
    check(n <= left() && total + n >= total, "inverted list sizes");
    return total + n;
  }

  const std::vector<uint8_t>& b_;
  const std::string& source_;
  uint64_t pos_ = 0;
};
}  // namespace

IvfPqIndex::IvfPqIndex(int dim, const IvfPqParams& params) : VectorIndex(dim), params_(params) {
  FUNDUS_CHECK(params.nlist >= 1, "ivfpq: nlist must be >= 1");
  FUNDUS_CHECK(params.m >= 1 && dim % params.m == 0,
               "ivfpq: m (" << params.m << ") must divide the dimension (" << dim << ")");
  FUNDUS_CHECK(params.nbits >= 1 && params.nbits <= 16, "ivfpq: nbits must be in 1..16, got " << params.nbits);
  // Both are allocated here, before any vector: bounded so that a spec (also one read from an
  // index file's header) cannot ask for gigabytes. Real indexes are far below (2048 x 2^8, 65536).
  FUNDUS_CHECK(params.nlist <= kMaxIvfLists, "ivfpq: nlist must be <= " << kMaxIvfLists << ", got " << params.nlist);
  FUNDUS_CHECK((int64_t(dim) << params.nbits) <= kMaxPqCodebookFloats,
               "ivfpq: a codebook of dim x 2^nbits = " << dim << " x " << (1 << params.nbits) << " floats exceeds "
                                                       << kMaxPqCodebookFloats << " (1 GiB); lower nbits");
  FUNDUS_CHECK(params.nprobe >= 1, "ivfpq: nprobe must be >= 1");
  FUNDUS_CHECK(params.train >= 1, "ivfpq: train must be >= 1");
  FUNDUS_CHECK(params.rerank >= 0 && params.rerank <= kMaxK, "ivfpq: rerank must be in 0.." << kMaxK);
  FUNDUS_CHECK(params.vectors || params.rerank == 0,
               "ivfpq: rerank=" << params.rerank << " needs the exact vectors (vectors=1), or set rerank=0");
  index_ = make_ivfpq(dim, params);
}

IvfPqIndex::~IvfPqIndex() = default;

std::string IvfPqIndex::describe() const {
  return strprintf("ivfpq:m=%d,nbits=%d,nlist=%d,nprobe=%d,rerank=%d,seed=%lld,train=%lld,vectors=%d", params_.m,
                   params_.nbits, params_.nlist, params_.nprobe, params_.rerank, (long long)params_.seed,
                   (long long)params_.train, params_.vectors ? 1 : 0);
}

bool IvfPqIndex::is_trained() const { return index_->is_trained; }

int64_t IvfPqIndex::native_count() const { return int64_t(index_->ntotal); }

void IvfPqIndex::train(int64_t n, const float* vectors) {
  FUNDUS_CHECK(!index_->is_trained, "ivfpq: already trained");
  OmpThreads omp(threads());
  try {
    train_locked(n, vectors);
  } catch (const faiss::FaissException& e) {
    FUNDUS_THROW("ivfpq training failed: " << e.what());
  }
}

int64_t IvfPqIndex::code_bytes() const {
  const int64_t codes = int64_t(index_->ntotal) * int64_t(index_->code_size + sizeof(int64_t));
  const int64_t centroids = int64_t(index_->nlist) * dim() * 4;
  const int64_t codebooks = int64_t(index_->pq.M) * int64_t(index_->pq.ksub) * int64_t(index_->pq.dsub) * 4;
  return codes + centroids + codebooks + int64_t(index_->precomputed_table.size()) * 4;
}

int64_t IvfPqIndex::pending_vectors() const { return int64_t(pending_row_.size()); }

const float* IvfPqIndex::exact_vector(int64_t id) const {
  auto it = pending_row_.find(id);
  if (it != pending_row_.end()) return pending_.data() + it->second * dim();
  return file_ ? file_->find(id) : nullptr;
}

void IvfPqIndex::train_locked(int64_t n, const float* vectors) {
  const int64_t needed = std::max<int64_t>(params_.nlist, int64_t(1) << params_.nbits);
  const int64_t take = std::min<int64_t>(n, params_.train);
  FUNDUS_CHECK(take >= needed, "ivfpq: training needs at least "
                                   << needed << " vectors (nlist=" << params_.nlist
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
    for (int64_t i = 0; i < take; ++i)
      std::swap(rows[size_t(i)], rows[size_t(i + int64_t(rng.below(uint64_t(n - i))))]);
    buffer.resize(size_t(take) * size_t(dim()));
    for (int64_t i = 0; i < take; ++i) std::copy_n(vectors + rows[size_t(i)] * dim(), dim(), buffer.data() + i * dim());
    sample = buffer.data();
  }
  index_->train(take, sample);
}

void IvfPqIndex::add_impl(int64_t n, const int64_t* ids, const float* vectors) {
  OmpThreads omp(threads());
  try {
    if (!index_->is_trained) train_locked(n, vectors);
    index_->add_with_ids(n, vectors, ids);
  } catch (const faiss::FaissException& e) {
    FUNDUS_THROW("ivfpq add failed: " << e.what());
  }
  if (!params_.vectors) return;
  const size_t bytes = size_t(dim()) * sizeof(float);
  for (int64_t i = 0; i < n; ++i) {
    const float* v = vectors + i * dim();
    const float* saved = file_ ? file_->find(ids[i]) : nullptr;
    if (saved && std::memcmp(saved, v, bytes) == 0) continue;  // e.g. a build from the mapped file itself
    pending_row_[ids[i]] = int64_t(pending_.size() / size_t(dim()));
    pending_.insert(pending_.end(), v, v + dim());
  }
}

void IvfPqIndex::remove_impl(const std::vector<int64_t>& ids) {
  OmpThreads omp(threads());
  faiss::IDSelectorBatch selector(ids.size(), ids.data());
  index_->remove_ids(selector);
  for (int64_t id : ids) pending_row_.erase(id);  // its row stays in pending_ until the next save
}

void IvfPqIndex::code_search(int64_t nq, const float* queries, int depth, const IdFilter* filter, int64_t* ids,
                             float* scores) const {
  OmpThreads omp(threads());
  const int64_t nlist = int64_t(index_->nlist);
  faiss::SearchParametersIVF sp;
  sp.nprobe = size_t(params_.nprobe);
  std::unique_ptr<KeepSelector> selector;
  if (filter) {
    selector = std::make_unique<KeepSelector>(*filter);
    sp.sel = selector.get();
    // A selective filter leaves ~kept/nlist candidates per list: probe enough lists to expect twice
    // the depth of kept candidates.
    const int64_t kept = filter->count();
    if (kept >= 0) {
      const double per_list = double(kept) / double(nlist);
      const double lists = per_list > 0 ? std::ceil(2.0 * depth / per_list) : double(nlist);
      sp.nprobe = size_t(std::clamp<double>(lists, params_.nprobe, double(nlist)));
    }
  }
  index_->search(nq, queries, depth, scores, ids, &sp);
  if (!filter || int64_t(sp.nprobe) >= nlist) return;
  // A query whose lists held fewer than `depth` kept candidates: repeat it over every list, which
  // considers every kept id.
  faiss::SearchParametersIVF all = sp;
  all.nprobe = size_t(nlist);
  for (int64_t q = 0; q < nq; ++q)
    if (ids[q * depth + depth - 1] < 0)
      index_->search(1, queries + q * dim(), depth, scores + q * depth, ids + q * depth, &all);
}

void IvfPqIndex::search_impl(int64_t nq, const float* queries, int k, const IdFilter* filter, int64_t* out_ids,
                             float* out_scores) const {
  if (!index_->is_trained) return;
  const bool rerank = params_.vectors && params_.rerank > 0;
  const int depth = rerank ? std::max(params_.rerank, k) : k;
  std::vector<int64_t> ids(size_t(nq) * size_t(depth));
  std::vector<float> scores(ids.size());
  code_search(nq, queries, depth, filter, ids.data(), scores.data());
  for (int64_t q = 0; q < nq; ++q) {
    const int64_t* cand = ids.data() + q * depth;
    TopK best(k);
    for (int i = 0; i < depth && cand[i] >= 0; ++i) {
      float score = scores[size_t(q * depth + i)];
      if (rerank) {
        const float* v = exact_vector(cand[i]);
        FUNDUS_CHECK(v, "ivfpq: no exact vector for id " << cand[i] << " (index and vectors out of step)");
        score = dot_f32(queries + q * dim(), v, dim());
      }
      best.push(score, cand[i]);
    }
    best.write(out_ids + q * k, out_scores + q * k);
  }
}

void IvfPqIndex::set_search_params_impl(const IndexSpec& spec) {
  const int nprobe = int(spec.get("nprobe", params_.nprobe)), rerank = int(spec.get("rerank", params_.rerank));
  FUNDUS_CHECK(nprobe >= 1, "ivfpq: nprobe must be >= 1");
  FUNDUS_CHECK(rerank >= 0 && rerank <= kMaxK, "ivfpq: rerank must be in 0.." << kMaxK);
  FUNDUS_CHECK(params_.vectors || rerank == 0, "ivfpq: rerank=" << rerank << " needs an index built with vectors=1");
  params_.nprobe = nprobe;
  params_.rerank = rerank;
  index_->nprobe = size_t(params_.nprobe);
}

void IvfPqIndex::save_companions(const std::string& path, const IndexFileInfo& info,
                                 const std::vector<int64_t>& ids) const {
  if (!params_.vectors) return;
  const std::string file = vectors_path(path);
  VectorFile::write(
      file, dim(), ids, [&](size_t i) { return exact_vector(ids[i]); }, vectors_tag(info.provenance));
  // From now on the file serves the exact vectors: the in-memory copies are released.
  file_ = VectorFile::open(file, /*verify=*/false);
  pending_.clear();
  pending_.shrink_to_fit();
  pending_row_.clear();
}

void IvfPqIndex::load_companions(const std::string& path, const IndexFileInfo& info) {
  if (!params_.vectors) return;
  auto file = VectorFile::open(vectors_path(path));
  FUNDUS_CHECK(file->dim() == dim() && file->count() == info.count && file->ids_sha256() == info.ids_sha256 &&
                   file->tag() == vectors_tag(info.provenance),
               file->path() << ": the exact vectors do not match the index " << path << " (written by another build "
                            << "or for another store state)");
  file_ = std::move(file);
  pending_.clear();
  pending_row_.clear();
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
  IvfPqLayoutCheck(reader.data, source).run(dim(), params_);
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
