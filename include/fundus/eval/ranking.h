// Exact brute-force ranking of query descriptors against a gallery by inner product (= cosine for
// L2-normalised rows), the ground truth that evaluation and approximate indexes are measured against.
//
// Order: higher score first, ties by lower gallery row (deterministic on any thread count).
// Exclusion: a gallery item with the query's case id is never ranked for it (leave-one-out when the
// query set is the gallery); with exclude_same_patient, neither is any item of the query's patient
// (no fellow-eye / repeat-visit leakage). A case with an empty patient is its own patient.
//
// Thread safety: ExactRanker is immutable after construction; rank() may be called concurrently.
// Torch-free. Non-finite vectors, size mismatches and empty ids throw fundus::Error.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace fundus {

/// Non-owning view of a row-major float matrix [rows x dim]; the data must outlive its users.
struct VectorsView {
  const float* data = nullptr;
  int64_t rows = 0;
  int64_t dim = 0;
  const float* row(int64_t i) const { return data + i * dim; }
};

struct CaseKey {
  std::string id;       // case id, unique within its set
  std::string patient;  // "" = unknown (the case is then its own patient)
};

struct ScoredItem {
  float score;
  int64_t index;  // gallery row
};
/// The ranking order: higher score first, ties by lower gallery row.
inline bool ranks_before(const ScoredItem& a, const ScoredItem& b) {
  return a.score > b.score || (a.score == b.score && a.index < b.index);
}

class ExactRanker {
 public:
  /// Keeps the view (not a copy) of `gallery`; checks that every value is finite.
  ExactRanker(VectorsView gallery, const std::vector<CaseKey>& gallery_keys, bool exclude_same_patient);

  /// Eligible gallery items for `query` (dim floats) in ranking order; at most `k` (0 = all of them).
  /// `out` is overwritten (reused to avoid allocations). Returns the number of eligible items.
  int64_t rank(const float* query, const CaseKey& key, int64_t k, std::vector<ScoredItem>& out) const;
  /// The same from precomputed scores (one per gallery row, from score_block).
  int64_t rank_scores(const float* scores, const CaseKey& key, int64_t k, std::vector<ScoredItem>& out) const;
  /// scores[q * size() + i] = <queries row q, gallery row i> for `count` query rows. Blocks of queries
  /// share each gallery row while it is in cache (~8x less memory traffic than one query at a time);
  /// every score is the same dot_product as rank() computes.
  void score_block(const float* queries, int64_t count, float* scores) const;
  /// Sorted gallery rows excluded for this query.
  std::vector<int64_t> excluded(const CaseKey& key) const;

  int64_t size() const { return gallery_.rows; }
  int64_t dim() const { return gallery_.dim; }

 private:
  VectorsView gallery_;
  bool exclude_same_patient_;
  std::unordered_map<std::string, std::vector<int64_t>> by_id_, by_patient_;
};

struct RankingOptions {
  int64_t k_max = 0;  // keep the best k_max per query; 0 = the full ranking
  bool exclude_same_patient = false;
  int threads = 0;  // 0 = available_cores()
};

struct Ranking {
  int64_t k = 0;                  // columns per query
  std::vector<int64_t> index;     // [queries x k] gallery rows best first; -1 past the eligible items
  std::vector<float> score;       // [queries x k]; NaN where index is -1
  std::vector<int64_t> eligible;  // [queries] gallery items left after exclusion
  int64_t queries() const { return int64_t(eligible.size()); }
};

Ranking rank_queries(const VectorsView& queries, const std::vector<CaseKey>& query_keys, const VectorsView& gallery,
                     const std::vector<CaseKey>& gallery_keys, const RankingOptions& options = {});

/// Queries per score_block call in rank_queries / evaluate_retrieval.
constexpr int64_t kQueryBlock = 16;

/// Throws naming `what`, the row and the component when a value is not finite.
void check_finite_rows(const VectorsView& vectors, const char* what);

/// Inner product with a fixed summation order (8 interleaved partial sums): the same bits on any
/// machine and thread count.
float dot_product(const float* a, const float* b, int64_t dim);

}  // namespace fundus
