// Synthetic descriptors and recall for tests and benchmarks of the indexes.
// Clustered data (points around random centres), never i.i.d. Gaussian: in high dimension i.i.d.
// points are all nearly equidistant, graph indexes degrade badly there and the numbers mislead
// (docs/bench-index.md). Real descriptors are clustered by grade, patient and camera.
// Both generators give every row its own derived random stream, so rows [first, first + n) are the
// same whether generated at once or in chunks, on any number of threads.
#pragma once

#include <cstdint>
#include <vector>

#include "fundus/index/vector_index.h"

namespace fundus {

/// n unit vectors [n x dim] (rows first_row .. first_row + n - 1 of the sequence for `seed`):
/// point i = normalise(centre[c_i] + noise * g / sqrt(dim)) with `centres` random unit centres, c_i
/// uniform and g standard normal. With noise ~1 the neighbours of a point are nearly equidistant
/// cluster mates (local intrinsic dimension in the hundreds): the hard case for every index.
std::vector<float> clustered_vectors(int64_t n, int dim, int centres, float noise, uint64_t seed, int threads = 0,
                                     int64_t first_row = 0);

/// A model of real descriptors: points near a low-dimensional manifold inside a cone, with clusters.
/// point i = normalise(common * s * m + B (mu[c_i] + spread * u) .* decay + noise * s * g / sqrt(dim))
/// where B maps `latent` axes to random unit directions, axis j is scaled by j^-decay_power, mu are
/// `centres` standard normal latent centres, u and g standard normal, m a fixed unit direction shared
/// by all points and s the norm of the latent part. The defaults match what real descriptors show
/// (docs/bench-index.md): on 356 points, local intrinsic dimension 19 (a retrieval model's
/// descriptors of the Rahim DR photographs: 11.5), relative contrast 1.9 (1.6), cosine to the 1st/10th
/// neighbour 0.970/0.961 (0.976/0.964), mean cosine 0.86 (0.89), variance in the top 8/32/64 principal
/// components 0.81/0.92/0.96 (0.61/0.80/0.89).
struct ManifoldParams {
  int latent = 256;
  double decay_power = 0.6;
  int centres = 1000;
  double spread = 0.7;
  double noise = 0.03;
  double common = 2.0;
};
std::vector<float> manifold_vectors(int64_t n, int dim, const ManifoldParams& params, uint64_t seed, int threads = 0,
                                    int64_t first_row = 0);

/// Mean over queries of |approx row ∩ truth row| / (valid ids in the truth row): recall@k.
double recall_at_k(const SearchResult& truth, const SearchResult& approx);

}  // namespace fundus
