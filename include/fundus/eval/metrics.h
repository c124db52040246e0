// Retrieval metrics of one ranked list, the k-NN grade estimate and Cohen's quadratic weighted kappa
// (method.md section 5). Torch-free, pure functions (thread-safe).
//
// For a query, rel_r in {0,1} is the relevance of the item at rank r = 1..n (n = eligible gallery
// items, the complete ranking), R = sum of rel over all n, hits_r = sum_{t<=r} rel_t:
//   P@k         = hits_k / k                      (the authors' mHR@k; divides by k even when k > n)
//   mAP@k       = (1/k) sum_{r<=k} rel_r hits_r / r   (the authors' "mAP@k"; also divides by k)
//   AP@k        = sum_{r<=k} rel_r (hits_r / r) / min(k, R)   (standard; 0 when R = 0)
//   Recall@k    = 1 if hits_k > 0 else 0           (metric-learning R@k: any relevant item in the top k)
//   NDCG@k      = DCG@k / IDCG@k, DCG@k = sum_{r<=k} gain_r / log2(r + 1), IDCG from the gallery's
//                 best ordering (gains sorted descending); 0 when IDCG = 0
//   MAP@R       = (1/R) sum_{r<=R} rel_r hits_r / r   (Musgrave et al. 2020; 0 when R = 0)
//   MRR         = 1 / (rank of the first relevant item), 0 when R = 0
// Ranks past n count as misses. Relevance: same grade (default) or referable-DR agreement (grade >= 2
// on both sides or < 2 on both); graded gain = 1 - |g_q - g_r| / 4 whatever the relevance rule.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fundus/core/grades.h"

namespace fundus {

enum class RelevanceRule { same_grade, referable };
RelevanceRule parse_relevance_rule(const std::string& name);  // "same_grade" | "referable"
const char* relevance_rule_name(RelevanceRule rule);
bool is_relevant(int query_grade, int item_grade, RelevanceRule rule);
double graded_gain(int query_grade, int item_grade);  // 1 - |g_q - g_r| / 4

/// What every ranking metric is computed from: the sums of one ranked list at a cut-off k (chance.h
/// fills in their expectations under a random ranking). The whole-list fields are the same at every k.
struct RankSums {
  double k = 0;                   // the cut-off
  double hits = 0;                // hits_k
  double any_hit = 0;             // 1 if hits_k > 0, else 0 (chance: the probability)
  double precision_sum = 0;       // sum_{r<=k} rel_r hits_r / r
  double dcg = 0, idcg = 0;       // DCG@k and the ideal IDCG@k
  double relevant = 0;            // R, over the whole list
  double precision_sum_at_r = 0;  // precision_sum at rank R (MAP@R)
  double reciprocal_rank = 0;     // 1 / rank of the first relevant item, 0 when none (chance: expected)
};

/// The ranking metrics in output order. Adding a metric is adding a row to this table (metrics.cpp):
/// names, layout, measured values, chance floors, aggregation and every report follow from it.
struct RankingMetric {
  const char* name;  // a family ("P" -> "P@5", "P@10", ...) when at_k, else the metric's name
  bool at_k;         // reported at every cut-off
  double (*value)(const RankSums& sums);
};
const std::vector<RankingMetric>& ranking_metric_table();

/// Layout of the value vectors: the table's rows in order, an at_k row expanded over the cut-offs ks
/// (ascending, >= 1): P@k, mAP@k, AP@k, Recall@k, NDCG@k (each over all ks), then MAP@R, MRR.
size_t num_ranking_metrics(size_t num_ks);
std::vector<std::string> ranking_metric_names(const std::vector<int>& ks);  // "P@5", "mAP@5", ..., "MRR"
/// Position of `name` ("P@10", "MRR") in that layout; throws when ks or the table has no such metric.
size_t ranking_metric_index(const std::string& name, const std::vector<int>& ks);
/// The values in that layout from the sums at each cut-off (sums[i] for ks[i]).
std::vector<double> ranking_values(const std::vector<RankSums>& sums);
/// Throws unless ks is non-empty, every k >= 1, strictly ascending.
void check_cutoffs(const std::vector<int>& ks);

/// All metrics of one complete ranked list: relevant[r] and gain[r] for rank r + 1 (same length).
std::vector<double> ranking_metrics(const std::vector<uint8_t>& relevant, const std::vector<double>& gain,
                                    const std::vector<int>& ks);

struct GradeVote {
  int grade = -1;           // -1 when there is no neighbour
  double confidence = 0.0;  // the winning grade's share of the total vote weight
};
/// Similarity-weighted vote of neighbours (best first): weight = max(score, 0) + 1e-6 (the epsilon
/// keeps all-negative neighbourhoods voting by count). Ties go to the lower grade.
GradeVote knn_vote(const std::vector<int>& grades, const std::vector<float>& scores);

/// counts[truth][predicted], K x K.
using ConfusionMatrix = std::vector<std::vector<int64_t>>;
ConfusionMatrix make_confusion(int classes);
/// Cohen's kappa with quadratic weights (i - j)^2 / (K - 1)^2, as sklearn's cohen_kappa_score(...,
/// weights="quadratic"): 1 - sum w O / sum w E, E = outer(row sums, column sums) / n. NaN when
/// undefined (no samples, or both raters constant on the same class).
double quadratic_weighted_kappa(const ConfusionMatrix& counts);

}  // namespace fundus
