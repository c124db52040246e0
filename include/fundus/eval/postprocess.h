// Retrieval post-processing of descriptors, the standard steps of image-retrieval research code
// (Radenovic et al., "Fine-tuning CNN image retrieval with no human annotation", TPAMI 2019):
//
//   pcaw     learned PCA-whitening: centre on the gallery mean, project on the top principal
//            directions, divide by sqrt(eigenvalue + shrink * mean eigenvalue), L2-normalise.
//            Learned on the gallery only (never on queries). Options dims (0 = every direction the
//            gallery spans, at most rows - 1), shrink (default 0.1: damps the tiny directions a
//            small gallery cannot estimate).
//   dba      database-side augmentation: every gallery vector becomes the normalised sum of itself
//            and its n nearest gallery neighbours weighted by similarity^alpha (n=2, alpha=3).
//   aqe      alpha query expansion: the query becomes the normalised sum of itself and its n
//            nearest gallery items weighted by similarity^alpha (n=2, alpha=3).
// Spec: "none", or steps joined by '+' in this order, each with optional options, e.g.
//   "pcaw", "pcaw:dims=128,shrink=0.1", "dba:n=2", "pcaw+dba+aqe:n=3,alpha=2".
// Same-patient exclusion applies to the neighbours of aqe and dba (a query never expands with its
// fellow eye when evaluation excludes it). Negative similarities weigh 0.
// Torch-free; pure functions; bad specs throw fundus::Error naming the step and option.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fundus/eval/ranking.h"

namespace fundus {

struct PostprocessSpec {
  bool whiten = false;
  int whiten_dims = 0;  // 0 = all the gallery spans
  double whiten_shrink = 0.1;
  int dba_n = 0;  // 0 = off
  double dba_alpha = 3;
  int aqe_n = 0;  // 0 = off
  double aqe_alpha = 3;

  bool is_identity() const { return !whiten && dba_n == 0 && aqe_n == 0; }
  std::string to_string() const;  // canonical spec, "none" for the identity
};

PostprocessSpec parse_postprocess(const std::string& spec);

/// A learned PCA-whitening: y = normalise(P (x - mean)), P [out_dim x dim] row-major.
struct Whitening {
  int64_t dim = 0, out_dim = 0;
  std::vector<float> mean, projection;
  std::vector<float> apply(const VectorsView& rows) const;  // [rows x out_dim], unit rows
};
/// Learns from `gallery` (at least 2 rows). Throws for fewer rows or a non-finite value.
Whitening learn_whitening(const VectorsView& gallery, int dims = 0, double shrink = 0.1);

/// Applies `spec` to a query/gallery pair in place (vectors are replaced; dim may shrink with pcaw).
/// Rows are row-major [rows x dim]; keys as for ExactRanker.
void apply_postprocess(const PostprocessSpec& spec, std::vector<float>& queries, const std::vector<CaseKey>& query_keys,
                       std::vector<float>& gallery, const std::vector<CaseKey>& gallery_keys, int64_t& dim,
                       bool exclude_same_patient, int threads = 0);

}  // namespace fundus
