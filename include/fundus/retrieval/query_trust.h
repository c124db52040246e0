// Whether a query's result deserves trust: the warnings a clinician must see beside the hits, and
// whether the grade estimate is withheld. A ranked list always exists; these say when it means little.
//
//   model_collapsed / model_degenerate   the gallery's descriptors (eval/descriptor_health.h) are
//                                        (nearly) all the same vector: every similarity and every
//                                        estimate is noise. The estimate is withheld.
//   tied_similarities                    every one of the top-k similarities is the same (within
//                                        1e-6): the order of the hits is arbitrary. Withheld.
//   no_close_match                       the best similarity is below what 99% of gallery cases reach
//                                        to their own nearest neighbour (health.nn_p01): the image
//                                        resembles nothing in the gallery (another camera, another
//                                        disease, not a fundus photograph?). The estimate is shown,
//                                        marked as resting on distant cases.
// Torch-free, pure functions.
#pragma once

#include <string>
#include <vector>

#include "fundus/core/json.h"
#include "fundus/eval/descriptor_health.h"

namespace fundus {

struct QueryWarning {
  std::string code;     // stable: model_collapsed, model_degenerate, tied_similarities, no_close_match
  std::string message;  // for people
};

struct QueryTrust {
  std::vector<QueryWarning> warnings;
  bool withhold_estimate = false;
  std::string withhold_reason;  // the first withholding warning's message
};

/// `similarities`: the hits' similarities, best first (may be empty).
QueryTrust assess_query_trust(const DescriptorHealth& gallery, const std::vector<float>& similarities);

Json warnings_to_json(const std::vector<QueryWarning>& warnings);  // [{"code":..., "message":...}]

}  // namespace fundus
