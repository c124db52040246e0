// Compressed approximate search for large galleries: FAISS IndexIVFPQ with inner product. Vectors
// are assigned to one of nlist coarse centroids and stored as m codes of nbits each (m * nbits / 8
// bytes per vector instead of dim * 4). The first add() trains the quantizers on its vectors (at
// most `train` of them, a deterministic sample drawn with `seed`); it needs at least
// max(nlist, 2^nbits) vectors. Scores are approximate inner products. nprobe = lists searched.
// FAISS runs its own OpenMP threads (omp_get_max_threads) for add and search.
#pragma once

#include <memory>

#include "fundus/index/vector_index.h"

namespace faiss {
struct IndexIVFPQ;
}

namespace fundus {

struct IvfPqParams {
  int nlist = 1024;
  int m = 64;
  int nbits = 8;
  int nprobe = 16;
  int64_t train = 65536;
  int64_t seed = 1;
};

class IvfPqIndex : public VectorIndex {
 public:
  IvfPqIndex(int dim, const IvfPqParams& params);
  ~IvfPqIndex() override;
  std::string type() const override { return "ivfpq"; }
  std::string describe() const override;
  const IvfPqParams& params() const { return params_; }
  bool is_trained() const;

 protected:
  void add_impl(int64_t n, const int64_t* ids, const float* vectors) override;
  void remove_impl(const std::vector<int64_t>& ids) override;
  void search_impl(int64_t nq, const float* queries, int k, int64_t* out_ids, float* out_scores) const override;
  void set_search_params_impl(const IndexSpec& spec) override;
  void write_native(std::ostream& out) const override;
  void read_native(std::istream& in, uint64_t size, const std::string& source) override;
  int64_t native_count() const override;

 private:
  void train(int64_t n, const float* vectors);
  IvfPqParams params_;
  std::unique_ptr<faiss::IndexIVFPQ> index_;
};

}  // namespace fundus
