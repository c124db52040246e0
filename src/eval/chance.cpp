#include "fundus/eval/chance.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>

#include "fundus/core/error.h"
#include "fundus/core/rng.h"
#include "fundus/eval/metrics.h"

namespace fundus {

std::vector<double> chance_metrics(const std::vector<uint8_t>& relevant, const std::vector<double>& gain,
                                   const std::vector<int>& ks) {
  FUNDUS_CHECK(relevant.size() == gain.size(),
               "chance_metrics: " << relevant.size() << " relevance flags but " << gain.size() << " gains");
  const size_t nk = ks.size();
  const double n = double(relevant.size());
  const double R = double(std::count_if(relevant.begin(), relevant.end(), [](uint8_t r) { return r != 0; }));
  std::vector<RankSums> sums(nk);
  for (size_t i = 0; i < nk; ++i) sums[i].k = double(ks[i]);
  if (n == 0) return ranking_values(sums);

  const double p1 = R / n, p2 = n > 1 ? R * (R - 1) / (n * (n - 1)) : 0.0;
  auto expected_rel_hits = [&](double r) { return p1 + (r - 1) * p2; };  // E[rel_r hits_r]

  const size_t k_max = size_t(ks.back());
  const size_t ideal_n = std::min(k_max, relevant.size());
  std::vector<double> ideal(gain);
  std::partial_sort(ideal.begin(), ideal.begin() + long(ideal_n), ideal.end(), std::greater<double>());
  const double mean_gain = std::accumulate(gain.begin(), gain.end(), 0.0) / n;

  double precision_sum = 0, dcg = 0, idcg = 0, no_hit = 1;  // no_hit = P(no relevant item in the top r)
  double precision_sum_at_r = 0;
  size_t next_k = 0;
  const size_t last = std::max(k_max, size_t(R));
  for (size_t r = 1; r <= last; ++r) {
    if (double(r) <= n) {
      double discount = 1.0 / std::log2(double(r) + 1.0);
      precision_sum += expected_rel_hits(double(r)) / double(r);
      dcg += mean_gain * discount;
      if (r <= ideal_n) idcg += ideal[r - 1] * discount;
      no_hit *= (n - R - double(r - 1)) / (n - double(r - 1));
    }
    if (R > 0 && double(r) == R) precision_sum_at_r = precision_sum;
    for (; next_k < nk && size_t(ks[next_k]) == r; ++next_k) {
      RankSums& s = sums[next_k];
      s.hits = std::min(s.k, n) * p1;  // E[hits_k]
      s.any_hit = 1.0 - no_hit;
      s.precision_sum = precision_sum;
      s.dcg = dcg;
      s.idcg = idcg;
    }
  }
  // MRR: the first hit is at rank r with probability P(first > r-1) * R / (n - r + 1).
  double mrr = 0, survive = 1;
  for (double r = 1; R > 0 && r <= n - R + 1; ++r) {
    mrr += survive * R / (n - r + 1) / r;
    survive *= (n - R - (r - 1)) / (n - (r - 1));
  }
  for (RankSums& s : sums) {
    s.relevant = R;
    s.precision_sum_at_r = precision_sum_at_r;
    s.reciprocal_rank = mrr;
  }
  return ranking_values(sums);
}

std::vector<double> chance_metrics_monte_carlo(const std::vector<uint8_t>& relevant, const std::vector<double>& gain,
                                               const std::vector<int>& ks, int permutations, uint64_t seed) {
  FUNDUS_CHECK(permutations > 0, "chance_metrics_monte_carlo: permutations must be > 0");
  FUNDUS_CHECK(relevant.size() == gain.size(), "chance_metrics_monte_carlo: size mismatch");
  Rng rng(seed);
  std::vector<size_t> order(relevant.size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::vector<uint8_t> rel(relevant.size());
  std::vector<double> g(gain.size()), sum(num_ranking_metrics(ks.size()), 0.0);
  for (int p = 0; p < permutations; ++p) {
    rng.shuffle(order);
    for (size_t i = 0; i < order.size(); ++i) {
      rel[i] = relevant[order[i]];
      g[i] = gain[order[i]];
    }
    auto m = ranking_metrics(rel, g, ks);
    for (size_t i = 0; i < m.size(); ++i) sum[i] += m[i];
  }
  for (auto& v : sum) v /= permutations;
  return sum;
}

}  // namespace fundus
