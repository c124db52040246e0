// Synthetic descriptors and recall for tests and benchmarks of the indexes.
// Clustered data (points around random centres), never i.i.d. Gaussian: in high dimension i.i.d.
// points are all nearly equidistant, graph indexes degrade badly there and the numbers mislead
// (docs/bench-index.md). Real descriptors are clustered by grade, patient and camera.
#pragma once

#include <cstdint>
#include <vector>

#include "fundus/index/vector_index.h"

namespace fundus {

/// n unit vectors [n x dim]: point i = normalise(centre[c_i] + noise * g / sqrt(dim)) with
/// `centres` random unit centres, c_i uniform and g standard normal. Deterministic for a seed
/// (each row has its own derived stream, so the result does not depend on `threads`).
std::vector<float> clustered_vectors(int64_t n, int dim, int centres, float noise, uint64_t seed, int threads = 0);

/// Mean over queries of |approx row ∩ truth row| / (valid ids in the truth row): recall@k.
double recall_at_k(const SearchResult& truth, const SearchResult& approx);

}  // namespace fundus
