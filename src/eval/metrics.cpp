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

const std::vector<RankingMetric>& ranking_metric_table() {
  // The formulas of metrics.h's header comment; chance.h's expectations go through the same rows.
  static const std::vector<RankingMetric> table = {
      {"P", true, [](const RankSums& s) { return s.hits / s.k; }},
      {"mAP", true, [](const RankSums& s) { return s.precision_sum / s.k; }},
      {"AP", true,
       [](const RankSums& s) { return s.relevant > 0 ? s.precision_sum / std::min(s.k, s.relevant) : 0.0; }},
      {"Recall", true, [](const RankSums& s) { return s.relevant > 0 ? s.any_hit : 0.0; }},
      {"NDCG", true, [](const RankSums& s) { return s.idcg > 0 ? s.dcg / s.idcg : 0.0; }},
      {"MAP@R", false, [](const RankSums& s) { return s.relevant > 0 ? s.precision_sum_at_r / s.relevant : 0.0; }},
      {"MRR", false, [](const RankSums& s) { return s.reciprocal_rank; }},
  };
  return table;
}

size_t num_ranking_metrics(size_t num_ks) {
  size_t n = 0;
  for (const RankingMetric& m : ranking_metric_table()) n += m.at_k ? num_ks : 1;
  return n;
}

std::vector<std::string> ranking_metric_names(const std::vector<int>& ks) {
  std::vector<std::string> names;
  for (const RankingMetric& m : ranking_metric_table()) {
    if (!m.at_k) names.push_back(m.name);
    for (size_t i = 0; m.at_k && i < ks.size(); ++i) names.push_back(std::string(m.name) + "@" + std::to_string(ks[i]));
  }
  return names;
}

size_t ranking_metric_index(const std::string& name, const std::vector<int>& ks) {
  const std::vector<std::string> names = ranking_metric_names(ks);
  auto it = std::find(names.begin(), names.end(), name);
  FUNDUS_CHECK(it != names.end(), "no ranking metric '" << name << "' at these cut-offs");
  return size_t(it - names.begin());
}

std::vector<double> ranking_values(const std::vector<RankSums>& sums) {
  FUNDUS_CHECK(!sums.empty(), "ranking_values: no cut-offs");
  std::vector<double> out;
  out.reserve(num_ranking_metrics(sums.size()));
  for (const RankingMetric& m : ranking_metric_table()) {
    if (!m.at_k) out.push_back(m.value(sums.back()));  // whole-list fields are the same at every k
    for (size_t i = 0; m.at_k && i < sums.size(); ++i) out.push_back(m.value(sums[i]));
  }
  return out;
}

void check_cutoffs(const std::vector<int>& ks) {
  FUNDUS_CHECK(!ks.empty(), "cut-offs k: the list is empty");
  for (size_t i = 0; i < ks.size(); ++i) {
    FUNDUS_CHECK(ks[i] >= 1, "cut-offs k: " << ks[i] << " must be >= 1");
    FUNDUS_CHECK(i == 0 || ks[i] > ks[i - 1],
                 "cut-offs k: must be strictly ascending (" << ks[i - 1] << ", " << ks[i] << ")");
  }
}

std::vector<double> ranking_metrics(const std::vector<uint8_t>& relevant, const std::vector<double>& gain,
                                    const std::vector<int>& ks) {
  FUNDUS_CHECK(relevant.size() == gain.size(),
               "ranking_metrics: " << relevant.size() << " relevance flags but " << gain.size() << " gains");
  const size_t n = relevant.size(), nk = ks.size();
  const int64_t R = std::count_if(relevant.begin(), relevant.end(), [](uint8_t r) { return r != 0; });
  const size_t k_max = size_t(ks.back());
  std::vector<RankSums> sums(nk);

  // Ideal gains: the k_max largest, descending.
  std::vector<double> ideal(gain);
  const size_t ideal_n = std::min(k_max, n);
  std::partial_sort(ideal.begin(), ideal.begin() + long(ideal_n), ideal.end(), std::greater<double>());

  // One pass over ranks 1..max(k_max, n) accumulating the prefix sums every metric needs (the first
  // hit, for MRR, may lie anywhere in the list).
  int64_t hits = 0;
  double precision_sum = 0, dcg = 0, idcg = 0, precision_sum_at_r = 0, reciprocal_rank = 0;
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
        if (hits == 1) reciprocal_rank = 1.0 / double(r);
      }
    }
    if (R > 0 && r == size_t(R)) precision_sum_at_r = precision_sum;
    for (; next_k < nk && size_t(ks[next_k]) == r; ++next_k) {
      RankSums& s = sums[next_k];
      s.k = double(r);
      s.hits = double(hits);
      s.any_hit = hits > 0 ? 1.0 : 0.0;
      s.precision_sum = precision_sum;
      s.dcg = dcg;
      s.idcg = idcg;
    }
  }
  for (RankSums& s : sums) {
    s.relevant = double(R);
    s.precision_sum_at_r = precision_sum_at_r;
    s.reciprocal_rank = reciprocal_rank;
  }
  return ranking_values(sums);
}

GradeVote knn_vote(const std::vector<int>& grades, const std::vector<float>& scores) {
  FUNDUS_CHECK(grades.size() == scores.size(),
               "knn_vote: " << grades.size() << " grades but " << scores.size() << " scores");
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
