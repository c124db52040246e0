// Chance floors: the expected value of every ranking metric when a query's eligible gallery is ranked
// uniformly at random, i.e. what a model that learned nothing scores on this gallery's grade mix.
//
// All ranking metrics have exact closed forms. With n items of which R are relevant, a random
// permutation has E[rel_r] = R/n and E[rel_r rel_t] = R(R-1)/(n(n-1)) for r != t (hypergeometric), so
//   E[rel_r hits_r] = R/n + (r-1) R(R-1)/(n(n-1))
// and P@k, mAP@k, AP@k, MAP@R, which are linear in rel_r hits_r, follow by summation;
//   Recall@k = 1 - prod_{i<min(k,n)} (n-R-i)/(n-i)         (no relevant item in the top k)
//   MRR      = sum_r (1/r) P(first hit at r), P(first > r) = prod_{i<r} (n-R-i)/(n-i)
//   NDCG@k   = mean(gain) sum_{r<=min(k,n)} 1/log2(r+1) / IDCG@k   (IDCG is order-free)
// chance_metrics_monte_carlo estimates the same by shuffling (used to cross-check the closed forms).
#pragma once

#include <cstdint>
#include <vector>

namespace fundus {

/// Exact expected metrics (ranking_metrics layout) for the pool of eligible items, any order.
std::vector<double> chance_metrics(const std::vector<uint8_t>& relevant, const std::vector<double>& gain,
                                   const std::vector<int>& ks);

/// Mean of ranking_metrics over `permutations` seeded random shuffles of the pool.
std::vector<double> chance_metrics_monte_carlo(const std::vector<uint8_t>& relevant, const std::vector<double>& gain,
                                               const std::vector<int>& ks, int permutations, uint64_t seed);

}  // namespace fundus
