// Compressed approximate search for large galleries: FAISS IndexIVFPQ with inner product. Vectors
// are assigned to one of nlist coarse centroids and stored as m codes of nbits each (m * nbits / 8
// bytes per vector instead of dim * 4). The first add() trains the quantizers on its vectors (at
// most `train` of them, a deterministic sample drawn with `seed`) unless train() was called; it
// needs at least max(nlist, 2^nbits) vectors. nprobe = lists searched.
//
// Exact re-ranking (vectors=1, the default): the exact float32 vectors are also kept in a
// memory-mapped file beside the index file (`<index>.vectors`, vector_file.h, written by save(),
// checked against the index header on load: a missing or mismatching file fails the load, so the
// index is rebuilt). A search then takes max(rerank, k) candidates from the codes and re-scores them
// exactly: scores are true inner products and recall is no longer capped by the quantisation.
// Vectors added since the last save are held in memory until the next save. vectors=0: codes only
// (rerank must be 0), scores are approximate inner products.
//
// Filtered search: FAISS's IDSelector (SearchParametersIVF::sel) skips the codes of dropped ids while
// the lists are scanned; with a selective filter more lists are probed (from the filter's count) so
// that enough kept candidates are found, and a query that still finds fewer than k is repeated over
// all lists.
// FAISS runs its own OpenMP threads (omp_get_max_threads) for add and search.
#pragma once

#include <memory>
#include <unordered_map>

#include "fundus/index/vector_index.h"

namespace faiss {
struct IndexIVFPQ;
}

namespace fundus {

class VectorFile;

/// Bounds on what the constructor allocates: inverted lists, and product-quantizer centroids
/// (dim x 2^nbits floats).
constexpr int kMaxIvfLists = 1 << 20;
constexpr int64_t kMaxPqCodebookFloats = int64_t(1) << 28;

struct IvfPqParams {
  int nlist = 1024;
  int m = 64;
  int nbits = 8;
  int nprobe = 16;
  int64_t train = 65536;
  int64_t seed = 1;
  bool vectors = true;  // keep exact vectors beside the index for re-ranking
  // Candidates re-scored exactly (0 = none; needs vectors). 500: recall@10 0.976 at 1M 1024-d
  // vectors for +0.4 ms per query, where 100 gives 0.745 (docs/scaling.md).
  int rerank = 500;
};

class IvfPqIndex : public VectorIndex {
 public:
  IvfPqIndex(int dim, const IvfPqParams& params);
  ~IvfPqIndex() override;
  std::string type() const override { return "ivfpq"; }
  std::string describe() const override;
  const IvfPqParams& params() const { return params_; }
  bool is_trained() const;
  /// Trains the quantizers on `n` vectors (at most `train` of them, sampled with `seed`) before the
  /// first add, e.g. on a sample drawn from a whole store that is then added in chunks.
  void train(int64_t n, const float* vectors);
  /// Bytes of the compressed structures in memory (codes, ids, centroids, codebooks), without the
  /// exact vectors.
  int64_t code_bytes() const;
  /// Exact vectors held in memory (added since the last save; the saved ones are mapped).
  int64_t pending_vectors() const;

 protected:
  void add_impl(int64_t n, const int64_t* ids, const float* vectors) override;
  void remove_impl(const std::vector<int64_t>& ids) override;
  void search_impl(int64_t nq, const float* queries, int k, const IdFilter* filter, int64_t* out_ids,
                   float* out_scores) const override;
  void set_search_params_impl(const IndexSpec& spec) override;
  void write_native(std::ostream& out) const override;
  void read_native(std::istream& in, uint64_t size, const std::string& source) override;
  int64_t native_count() const override;
  void save_companions(const std::string& path, const IndexFileInfo& info,
                       const std::vector<int64_t>& ids) const override;
  void load_companions(const std::string& path, const IndexFileInfo& info) override;

 private:
  void train_locked(int64_t n, const float* vectors);
  const float* exact_vector(int64_t id) const;
  // Candidates for nq queries from the codes: [nq x depth], padded with -1.
  void code_search(int64_t nq, const float* queries, int depth, const IdFilter* filter, int64_t* ids,
                   float* scores) const;
  IvfPqParams params_;
  std::unique_ptr<faiss::IndexIVFPQ> index_;
  // Exact vectors: the mapped file of the last save or load, plus those added since (in memory).
  // save() (writer lock held) moves the in-memory ones into a new file: hence mutable.
  mutable std::unique_ptr<VectorFile> file_;
  mutable std::vector<float> pending_;
  mutable std::unordered_map<int64_t, int64_t> pending_row_;
};

}  // namespace fundus
