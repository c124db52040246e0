#include "fundus/index/synthetic.h"

#include <cmath>
#include <unordered_set>

#include "fundus/core/concurrency.h"
#include "fundus/core/error.h"
#include "fundus/core/rng.h"
#include "fundus/index/simd.h"

namespace fundus {

std::vector<float> clustered_vectors(int64_t n, int dim, int centres, float noise, uint64_t seed, int threads) {
  FUNDUS_CHECK(n >= 0 && dim > 0 && centres > 0, "clustered_vectors: bad sizes");
  std::vector<float> c(size_t(centres) * size_t(dim));
  Rng rng(Rng::derive(seed, 0));
  for (auto& x : c) x = float(rng.normal());
  l2_normalize_rows(c.data(), centres, dim);
  std::vector<float> out(size_t(n) * size_t(dim));
  const float sigma = noise / std::sqrt(float(dim));
  parallel_for(n, threads > 0 ? threads : available_cores(), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      Rng r(Rng::derive(seed, uint64_t(i) + 1));
      const float* centre = c.data() + r.below(uint64_t(centres)) * size_t(dim);
      float* v = out.data() + i * dim;
      for (int j = 0; j < dim; ++j) v[j] = centre[j] + sigma * float(r.normal());
      l2_normalize_rows(v, 1, dim);
    }
  });
  return out;
}

double recall_at_k(const SearchResult& truth, const SearchResult& approx) {
  FUNDUS_CHECK(truth.nq == approx.nq, "recall_at_k: " << truth.nq << " vs " << approx.nq << " queries");
  if (truth.nq == 0) return 1.0;
  double sum = 0;
  for (int64_t q = 0; q < truth.nq; ++q) {
    std::unordered_set<int64_t> want;
    for (int i = 0; i < truth.k; ++i)
      if (truth.ids_row(q)[i] >= 0) want.insert(truth.ids_row(q)[i]);
    if (want.empty()) {
      sum += 1;
      continue;
    }
    int hit = 0;
    for (int i = 0; i < approx.k; ++i) hit += int(want.count(approx.ids_row(q)[i]));
    sum += double(hit) / double(want.size());
  }
  return sum / double(truth.nq);
}

}  // namespace fundus
