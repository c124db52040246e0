#include "fundus/eval/ranking.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "fundus/core/concurrency.h"
#include "fundus/core/error.h"

namespace fundus {

namespace {
// Prefixes keep ids and patient names in separate namespaces for the patient key.
std::string patient_key(const CaseKey& key) { return key.patient.empty() ? "id:" + key.id : "p:" + key.patient; }

void check_view(const VectorsView& v, size_t keys, const char* what) {
  FUNDUS_CHECK(v.rows >= 0 && v.dim > 0, what << ": dimension must be > 0 (got " << v.dim << ")");
  FUNDUS_CHECK(v.rows == 0 || v.data, what << ": no data");
  FUNDUS_CHECK(size_t(v.rows) == keys, what << ": " << v.rows << " vectors but " << keys << " case keys");
}

}  // namespace

void check_finite_rows(const VectorsView& vectors, const char* what) {
  for (int64_t i = 0; i < vectors.rows; ++i)
    for (int64_t j = 0; j < vectors.dim; ++j)
      FUNDUS_CHECK(std::isfinite(vectors.row(i)[j]), what << " row " << i << ": value " << vectors.row(i)[j]
                                                          << " at component " << j << " is not finite");
}

float dot_product(const float* a, const float* b, int64_t dim) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t j = 0;
  for (; j + 8 <= dim; j += 8)
    for (int t = 0; t < 8; ++t) acc[t] += a[j + t] * b[j + t];
  for (; j < dim; ++j) acc[j % 8] += a[j] * b[j];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

ExactRanker::ExactRanker(VectorsView gallery, const std::vector<CaseKey>& gallery_keys, bool exclude_same_patient)
    : gallery_(gallery), exclude_same_patient_(exclude_same_patient) {
  check_view(gallery, gallery_keys.size(), "gallery");
  check_finite_rows(gallery, "gallery");
  for (int64_t i = 0; i < gallery.rows; ++i) {
    const CaseKey& key = gallery_keys[size_t(i)];
    FUNDUS_CHECK(!key.id.empty(), "gallery row " << i << ": empty case id");
    by_id_[key.id].push_back(i);
    if (exclude_same_patient) by_patient_[patient_key(key)].push_back(i);
  }
}

std::vector<int64_t> ExactRanker::excluded(const CaseKey& key) const {
  std::vector<int64_t> out;
  auto add = [&](const std::unordered_map<std::string, std::vector<int64_t>>& map, const std::string& k) {
    auto it = map.find(k);
    if (it != map.end()) out.insert(out.end(), it->second.begin(), it->second.end());
  };
  add(by_id_, key.id);
  if (exclude_same_patient_) add(by_patient_, patient_key(key));
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

void ExactRanker::score_block(const float* queries, int64_t count, float* scores) const {
  for (int64_t i = 0; i < gallery_.rows; ++i) {
    const float* g = gallery_.row(i);
    for (int64_t q = 0; q < count; ++q)
      scores[q * gallery_.rows + i] = dot_product(queries + q * gallery_.dim, g, gallery_.dim);
  }
}

int64_t ExactRanker::rank(const float* query, const CaseKey& key, int64_t k, std::vector<ScoredItem>& out) const {
  check_finite_rows({query, 1, gallery_.dim}, "query");  // NaN would break the sort's ordering
  std::vector<float> scores(size_t(gallery_.rows));
  score_block(query, 1, scores.data());
  return rank_scores(scores.data(), key, k, out);
}

int64_t ExactRanker::rank_scores(const float* scores, const CaseKey& key, int64_t k,
                                 std::vector<ScoredItem>& out) const {
  auto skip = excluded(key);
  out.clear();
  out.reserve(size_t(gallery_.rows));
  size_t next_skip = 0;
  for (int64_t i = 0; i < gallery_.rows; ++i) {
    if (next_skip < skip.size() && skip[next_skip] == i) {
      ++next_skip;
      continue;
    }
    out.push_back({scores[i], i});
  }
  const int64_t eligible = int64_t(out.size());
  if (k > 0 && k < eligible) {
    std::partial_sort(out.begin(), out.begin() + k, out.end(), ranks_before);
    out.resize(size_t(k));
  } else {
    std::sort(out.begin(), out.end(), ranks_before);
  }
  return eligible;
}

Ranking rank_queries(const VectorsView& queries, const std::vector<CaseKey>& query_keys, const VectorsView& gallery,
                     const std::vector<CaseKey>& gallery_keys, const RankingOptions& options) {
  check_view(queries, query_keys.size(), "queries");
  FUNDUS_CHECK(queries.dim == gallery.dim,
               "queries have dimension " << queries.dim << " but the gallery has " << gallery.dim);
  FUNDUS_CHECK(options.k_max >= 0, "k_max must be >= 0 (got " << options.k_max << ")");
  check_finite_rows(queries, "queries");
  ExactRanker ranker(gallery, gallery_keys, options.exclude_same_patient);
  Ranking result;
  result.k = options.k_max > 0 ? std::min(options.k_max, gallery.rows) : gallery.rows;
  const size_t k = size_t(result.k);
  result.index.assign(size_t(queries.rows) * k, -1);
  result.score.assign(size_t(queries.rows) * k, std::numeric_limits<float>::quiet_NaN());
  result.eligible.assign(size_t(queries.rows), 0);
  int threads = options.threads > 0 ? options.threads : available_cores();
  const int64_t blocks = (queries.rows + kQueryBlock - 1) / kQueryBlock;
  parallel_for(blocks, threads, [&](int64_t block_begin, int64_t block_end) {
    std::vector<ScoredItem> items;
    std::vector<float> scores(size_t(kQueryBlock * gallery.rows));
    for (int64_t b = block_begin; b < block_end; ++b) {
      const int64_t first = b * kQueryBlock, count = std::min(kQueryBlock, queries.rows - first);
      ranker.score_block(queries.row(first), count, scores.data());
      for (int64_t q = first; q < first + count; ++q) {
        const float* row_scores = scores.data() + (q - first) * gallery.rows;
        result.eligible[size_t(q)] = ranker.rank_scores(row_scores, query_keys[size_t(q)], result.k, items);
        for (size_t r = 0; r < std::min(k, items.size()); ++r) {
          result.index[size_t(q) * k + r] = items[r].index;
          result.score[size_t(q) * k + r] = items[r].score;
        }
      }
    }
  });
  return result;
}

}  // namespace fundus
