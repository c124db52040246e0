#include "fundus/eval/metrics.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>

#include "fundus/core/error.h"

namespace fundus {

RelevanceRule parse_relevance_rule(const std::string& name) {
  if (name == "same_grade") return RelevanceRule::same_grade;
  if (name == "referable") return RelevanceRule::referable;
  FUNDUS_THROW("relevance '" << name << "' is not one of same_grade, referable");
}

const char* relevance_rule_name(RelevanceRule rule) {
  return rule == RelevanceRule::same_grade ? "same_grade" : "referable";
}

bool is_relevant(int query_grade, int item_grade, RelevanceRule rule) {
  if (rule == RelevanceRule::same_grade) return query_grade == item_grade;
  return (query_grade >= 2) == (item_grade >= 2);
}

double graded_gain(int query_grade, int item_grade) { return 1.0 - std::abs(query_grade - item_grade) / 4.0; }

std::vector<std::string> ranking_metric_names(const std::vector<int>& ks) {
  static const char* families[kFamiliesAtK] = {"P", "mAP", "AP", "Recall", "NDCG"};
  std::vector<std::string> names;
  for (const char* f : families)
    for (int k : ks) names.push_back(std::string(f) + "@" + std::to_string(k));
  names.push_back("MAP@R");
  names.push_back("MRR");
  return names;
}

void check_cutoffs(const std::vector<int>& ks) {
  FUNDUS_CHECK(!ks.empty(), "cut-offs k: the list is empty");
  for (size_t i = 0; i < ks.size(); ++i) {
    FUNDUS_CHECK(ks[i] >= 1, "cut-offs k: " << ks[i] << " must be >= 1");
    FUNDUS_CHECK(i == 0 || ks[i] > ks[i - 1], "cut-offs k: must be strictly ascending (" << ks[i - 1] << ", "
                                                                                       << ks[i] << ")");
  }
}

std::vector<double> ranking_metrics(const std::vector<uint8_t>& relevant, const std::vector<double>& gain,
                                    const std::vector<int>& ks) {
  FUNDUS_CHECK(relevant.size() == gain.size(),
               "ranking_metrics: " << relevant.size() << " relevance flags but " << gain.size() << " gains");
  const size_t n = relevant.size(), nk = ks.size();
  const int64_t R = std::count_if(relevant.begin(), relevant.end(), [](uint8_t r) { return r != 0; });
  const size_t k_max = size_t(ks.back());
  std::vector<double> out(num_ranking_metrics(nk), 0.0);

  // Ideal gains: the k_max largest, descending.
  std::vector<double> ideal(gain);
  const size_t ideal_n = std::min(k_max, n);
  std::partial_sort(ideal.begin(), ideal.begin() + long(ideal_n), ideal.end(), std::greater<double>());

  // One pass over ranks 1..max(k_max, n) accumulating the prefix sums every metric needs (the first
  // hit, for MRR, may lie anywhere in the list).
  int64_t hits = 0;
  double precision_sum = 0, dcg = 0, idcg = 0;  // precision_sum = sum rel_r * hits_r / r
  size_t next_k = 0;
  const size_t last = std::max(k_max, n);
  for (size_t r = 1; r <= last; ++r) {
    if (r <= n) {
      double discount = 1.0 / std::log2(double(r) + 1.0);
      dcg += gain[r - 1] * discount;
      if (r <= ideal_n) idcg += ideal[r - 1] * discount;
      if (relevant[r - 1]) {
        ++hits;
        precision_sum += double(hits) / double(r);
        if (hits == 1) out[mrr_slot(nk)] = 1.0 / double(r);
      }
    }
    if (R > 0 && r == size_t(R)) out[map_at_r_slot(nk)] = precision_sum / double(R);
    while (next_k < nk && size_t(ks[next_k]) == r) {
      const double k = double(r);
      out[metric_slot(AtK::precision, next_k, nk)] = double(hits) / k;
      out[metric_slot(AtK::authors_map, next_k, nk)] = precision_sum / k;
      out[metric_slot(AtK::ap, next_k, nk)] = R > 0 ? precision_sum / std::min(k, double(R)) : 0.0;
      out[metric_slot(AtK::recall, next_k, nk)] = hits > 0 ? 1.0 : 0.0;
      out[metric_slot(AtK::ndcg, next_k, nk)] = idcg > 0 ? dcg / idcg : 0.0;
      ++next_k;
    }
  }
  return out;
}

GradeVote knn_vote(const std::vector<int>& grades, const std::vector<float>& scores) {
  FUNDUS_CHECK(grades.size() == scores.size(), "knn_vote: " << grades.size() << " grades but " << scores.size()
                                                            << " scores");
  double weight[kNumGrades] = {0, 0, 0, 0, 0}, total = 0;
  for (size_t i = 0; i < grades.size(); ++i) {
    FUNDUS_CHECK(grades[i] >= 0 && grades[i] < kNumGrades, "knn_vote: grade " << grades[i] << " outside 0-4");
    double w = std::max(0.0, double(scores[i])) + 1e-6;
    weight[grades[i]] += w;
    total += w;
  }
  GradeVote vote;
  if (grades.empty()) return vote;
  vote.grade = int(std::max_element(weight, weight + kNumGrades) - weight);  // first maximum = lower grade
  vote.confidence = weight[vote.grade] / total;
  return vote;
}

ConfusionMatrix make_confusion(int classes) {
  return ConfusionMatrix(size_t(classes), std::vector<int64_t>(size_t(classes), 0));
}

double quadratic_weighted_kappa(const ConfusionMatrix& counts) {
  const size_t K = counts.size();
  FUNDUS_CHECK(K >= 2, "quadratic_weighted_kappa: need at least 2 classes");
  std::vector<double> rows(K, 0), cols(K, 0);
  double n = 0;
  for (size_t i = 0; i < K; ++i) {
    FUNDUS_CHECK(counts[i].size() == K, "quadratic_weighted_kappa: confusion matrix is not square");
    for (size_t j = 0; j < K; ++j) {
      rows[i] += double(counts[i][j]);
      cols[j] += double(counts[i][j]);
      n += double(counts[i][j]);
    }
  }
  double observed = 0, expected = 0;
  for (size_t i = 0; i < K; ++i)
    for (size_t j = 0; j < K; ++j) {
      double d = double(i) - double(j), w = d * d / (double(K - 1) * double(K - 1));
      observed += w * double(counts[i][j]);
      expected += n > 0 ? w * rows[i] * cols[j] / n : 0.0;
    }
  if (expected == 0) return std::numeric_limits<double>::quiet_NaN();
  return 1.0 - observed / expected;
}

}  // namespace fundus
