// Descriptor health: is an embedding usable for retrieval at all, or has it collapsed?
//
// A model whose eval-mode descriptors all point the same way (stale BatchNorm statistics, a dead
// network, a training run that never left its initialisation) still returns ranked lists, grade
// estimates and similarities; they just mean nothing. These statistics catch it cheaply, from the
// descriptors alone, wherever descriptors are made (validation, embed, eval, query start-up):
//
//   mean_cosine   mean cosine over distinct pairs of rows, (|sum u_i|^2 - n) / (n (n - 1)) for unit
//                 rows u_i: O(n d). Healthy fundus models measured 0.36-0.51 (GeM outputs are
//                 non-negative, so cosines are positive); collapsed ones >= 0.999999.
//   dim_spread    mean over dimensions of the standard deviation of that dimension across rows.
//                 Healthy 0.012-0.018 for 2560-d unit vectors; collapsed < 1e-6. relative_spread =
//                 dim_spread * sqrt(d) makes it comparable across dimensions (a uniformly random unit
//                 vector gives ~1).
//   nn_similarity nearest-neighbour similarity of a sample of rows among all rows (self excluded):
//                 its 1st/5th/50th percentiles tell a query "how close is close" for this gallery
//                 ("no close match" warnings) and a share of (near-)duplicates.
//
// Verdicts (status): "collapsed" (mean_cosine >= 0.9999 or relative_spread < 1e-3: every row is
// the same vector up to float noise), "degenerate" (mean_cosine >= 0.98 or relative_spread < 0.05:
// rankings are driven by noise), "ok", or "too_few" (fewer than 3 rows: nothing can be said).
// Torch-free, pure functions (thread-safe).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fundus/core/json.h"

namespace fundus {

struct DescriptorHealth {
  int64_t rows = 0, dim = 0;
  double mean_cosine = 0;
  double dim_spread = 0;
  double relative_spread = 0;
  int64_t nn_sample = 0;                      // rows whose nearest neighbour was measured (0 = not measured)
  double nn_p01 = 0, nn_p05 = 0, nn_p50 = 0;  // percentiles of their nearest-neighbour similarity
  double nn_duplicate_share = 0;              // share of sampled rows with a neighbour at similarity >= 0.999999
  std::string status = "too_few";             // ok | degenerate | collapsed | too_few

  bool flagged() const { return status == "degenerate" || status == "collapsed"; }
  /// One line for logs: "mean cosine 0.43, spread 0.015 (relative 0.76): ok".
  std::string summary() const;
  /// A sentence for users when flagged ("" when not): what it means and what to do.
  std::string advice() const;
  Json to_json() const;
  static DescriptorHealth from_json(const Json& j);  // throws fundus::Error on missing fields
};

struct HealthOptions {
  int64_t nn_sample = 512;  // rows whose nearest neighbour is measured (evenly spaced); 0 = skip
  int threads = 0;          // 0 = all cores
};

/// `rows` row-major [n x dim]; rows need not be unit length (they are normalised here; all-zero rows
/// count as zero vectors). Throws fundus::Error for dim < 1 or a non-finite value (naming its row).
DescriptorHealth assess_descriptors(const float* rows, int64_t n, int64_t dim, const HealthOptions& options = {});

}  // namespace fundus
