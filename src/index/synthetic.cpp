#include "fundus/index/synthetic.h"

#include <cmath>
#include <unordered_set>

#include "fundus/core/concurrency.h"
#include "fundus/core/error.h"
#include "fundus/core/rng.h"
#include "fundus/index/simd.h"

namespace fundus {

std::vector<float> clustered_vectors(int64_t n, int dim, int centres, float noise, uint64_t seed, int threads,
                                     int64_t first_row) {
  FUNDUS_CHECK(n >= 0 && dim > 0 && centres > 0 && first_row >= 0, "clustered_vectors: bad sizes");
  std::vector<float> c(size_t(centres) * size_t(dim));
  Rng rng(Rng::derive(seed, 0));
  for (auto& x : c) x = float(rng.normal());
  l2_normalize_rows(c.data(), centres, dim);
  std::vector<float> out(size_t(n) * size_t(dim));
  const float sigma = noise / std::sqrt(float(dim));
  parallel_for(n, threads > 0 ? threads : available_cores(), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      Rng r(Rng::derive(seed, uint64_t(first_row + i) + 1));
      const float* centre = c.data() + r.below(uint64_t(centres)) * size_t(dim);
      float* v = out.data() + i * dim;
      for (int j = 0; j < dim; ++j) v[j] = centre[j] + sigma * float(r.normal());
      l2_normalize_rows(v, 1, dim);
    }
  });
  return out;
}

namespace {
// Fills x[0..n) with standard normals, two per Box-Muller draw (twice as fast as Rng::normal()).
void fill_normal(Rng& r, float* x, int n) {
  for (int i = 0; i < n; i += 2) {
    double u1 = r.uniform(), u2 = r.uniform();
    if (u1 < 1e-300) u1 = 1e-300;
    const double radius = std::sqrt(-2.0 * std::log(u1)), angle = 2.0 * M_PI * u2;
    x[i] = float(radius * std::cos(angle));
    if (i + 1 < n) x[i + 1] = float(radius * std::sin(angle));
  }
}
}  // namespace

std::vector<float> manifold_vectors(int64_t n, int dim, const ManifoldParams& p, uint64_t seed, int threads,
                                    int64_t first_row) {
  FUNDUS_CHECK(n >= 0 && dim > 0 && p.latent > 0 && p.centres > 0 && first_row >= 0, "manifold_vectors: bad sizes");
  const int L = p.latent;
  Rng rng(Rng::derive(seed, 0));
  std::vector<float> basis(size_t(L) * size_t(dim));  // row j: the direction of latent axis j
  for (auto& x : basis) x = float(rng.normal());
  l2_normalize_rows(basis.data(), L, dim);
  std::vector<float> basis_t(basis.size());  // [dim x L]: one dot product per output dimension
  for (int j = 0; j < L; ++j)
    for (int d = 0; d < dim; ++d)
      basis_t[size_t(d) * size_t(L) + size_t(j)] = basis[size_t(j) * size_t(dim) + size_t(d)];
  std::vector<float> common(static_cast<size_t>(dim));
  for (auto& x : common) x = float(rng.normal());
  l2_normalize_rows(common.data(), 1, dim);
  std::vector<float> mu(size_t(p.centres) * size_t(L));
  for (auto& x : mu) x = float(rng.normal());
  std::vector<float> scale(static_cast<size_t>(L));
  double latent_norm2 = 0;
  for (int j = 0; j < L; ++j) {
    scale[size_t(j)] = float(std::pow(double(j + 1), -p.decay_power));
    latent_norm2 += double(scale[size_t(j)]) * scale[size_t(j)];
  }
  const float s = float(std::sqrt(latent_norm2 * (1 + p.spread * p.spread)));
  const float sigma = float(p.noise) * s / std::sqrt(float(dim));
  std::vector<float> out(size_t(n) * size_t(dim));
  parallel_for(n, threads > 0 ? threads : available_cores(), [&](int64_t b, int64_t e) {
    std::vector<float> z(static_cast<size_t>(L)), g(static_cast<size_t>(dim));
    for (int64_t i = b; i < e; ++i) {
      Rng r(Rng::derive(seed, uint64_t(first_row + i) + 1));
      const float* centre = mu.data() + r.below(uint64_t(p.centres)) * size_t(L);
      fill_normal(r, z.data(), L);
      for (int j = 0; j < L; ++j) z[size_t(j)] = (centre[j] + float(p.spread) * z[size_t(j)]) * scale[size_t(j)];
      fill_normal(r, g.data(), dim);
      float* v = out.data() + i * dim;
      for (int d = 0; d < dim; ++d)
        v[d] = float(p.common) * s * common[size_t(d)] + sigma * g[size_t(d)] +
               dot_f32(z.data(), basis_t.data() + size_t(d) * size_t(L), L);
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
