// Retrieval evaluation: ranks every query against the gallery (exact, ExactRanker), computes the
// ranking metrics of metrics.h and their chance floors (chance.h) per query, a k-NN grade estimate,
// and aggregates per query grade, micro (all queries) and macro (mean of the per-grade means, over
// grades that have queries).
//
// Queries with no eligible gallery item (everything excluded) are left out of every number and
// counted; queries with eligible items but no relevant one count with AP = MAP@R = MRR = 0 (counted).
// The k-NN accuracy chance floor is a seeded Monte Carlo estimate (equal-weight vote of knn_k random
// eligible neighbours, ties to the lower grade); the ranking-metric floors are exact.
//
// Torch-free. evaluate_retrieval is multi-threaded and deterministic; bad inputs throw fundus::Error.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fundus/core/json.h"
#include "fundus/eval/metrics.h"
#include "fundus/eval/ranking.h"

namespace fundus {

struct EvalOptions {
  std::vector<int> ks = {1, 5, 10, 20, 50};
  RelevanceRule relevance = RelevanceRule::same_grade;
  bool exclude_same_patient = false;
  int knn_k = 10;
  int chance_rounds = 200;  // Monte Carlo rounds for the k-NN chance floor
  uint64_t seed = 0x5eed;   // for that Monte Carlo estimate
  int threads = 0;          // 0 = available_cores()
  bool progress = true;     // fundus::Progress bar on stderr

  static EvalOptions from_json(const Json& eval, const std::string& context = "eval");
  Json to_json() const;
};

/// One side of the evaluation: vectors (row-major, L2-normalised) with one key and grade per row.
struct EvalSet {
  VectorsView vectors;
  std::vector<CaseKey> keys;
  std::vector<int> grades;  // 0..4
};

struct QueryOutcome {
  int64_t row = 0;  // query row
  int grade = 0;
  int64_t eligible = 0;        // gallery items after exclusion
  int64_t relevant = 0;        // R
  GradeVote vote;              // k-NN estimate
  std::vector<double> values;  // RetrievalReport::metrics layout (ranking metrics, then kNN-acc)
  std::vector<double> chance;
};

struct GroupSummary {
  std::string name;  // grade name, "micro" or "macro"
  int grade = -1;    // 0..4 for grade groups, -1 for the aggregates
  int64_t queries = 0;
  std::vector<double> values;  // NaN for a grade without queries
  std::vector<double> chance;
};

struct RetrievalReport {
  EvalOptions options;
  std::vector<std::string> metrics;  // ranking_metric_names(ks) + "kNN-acc"
  std::vector<GroupSummary> groups;  // 5 grades, then micro, then macro
  int64_t queries = 0, gallery = 0;
  int64_t queries_evaluated = 0;           // queries with at least one eligible gallery item
  int64_t queries_without_relevant = 0;    // evaluated, but R = 0
  int64_t queries_without_candidates = 0;  // left out: every gallery item was excluded
  ConfusionMatrix confusion;               // k-NN estimate, [truth][predicted]
  double knn_accuracy = 0, knn_qwk = 0;
  double chance_knn_accuracy = 0, chance_knn_qwk = 0;  // Monte Carlo
  std::vector<QueryOutcome> per_query;                 // one per query row (eligible = 0 when left out)

  const GroupSummary& group(const std::string& name) const;  // throws for an unknown name
  double value(const std::string& group, const std::string& metric) const;
  double chance(const std::string& group, const std::string& metric) const;

  Json to_json() const;        // everything but per_query
  std::string to_csv() const;  // group,grade,queries,metric,value,chance,chance_method
  std::string per_query_csv(const std::vector<CaseKey>& query_keys) const;
  std::string to_markdown() const;  // tables for people, chance beside each value
};

RetrievalReport evaluate_retrieval(const EvalSet& queries, const EvalSet& gallery, const EvalOptions& options = {});

}  // namespace fundus
