#include "fundus/retrieval/query_trust.h"

#include <algorithm>

#include "fundus/core/strings.h"

namespace fundus {

QueryTrust assess_query_trust(const DescriptorHealth& gallery, const std::vector<float>& similarities) {
  QueryTrust t;
  auto withhold = [&](const std::string& code, const std::string& message) {
    t.warnings.push_back({code, message});
    if (!t.withhold_estimate) t.withhold_reason = message;
    t.withhold_estimate = true;
  };
  if (gallery.flagged())
    withhold(gallery.status == "collapsed" ? "model_collapsed" : "model_degenerate",
             strprintf("this model's descriptors are %s (mean cosine %.4f between gallery cases): ",
                       gallery.status.c_str(), gallery.mean_cosine) +
                 gallery.advice());
  if (similarities.size() >= 2) {
    auto [lo, hi] = std::minmax_element(similarities.begin(), similarities.end());
    if (*hi - *lo <= 1e-6f)
      withhold("tied_similarities",
               strprintf("all %zu retrieved cases have the same similarity (%.6f): their order and the grade vote are "
                         "arbitrary",
                         similarities.size(), double(*hi)));
  }
  if (!similarities.empty() && gallery.nn_sample > 0 && !gallery.flagged() && similarities.front() < gallery.nn_p01)
    t.warnings.push_back(
        {"no_close_match",
         strprintf("no close match: the best similarity %.3f is below what 99%% of gallery cases reach to their own "
                   "nearest neighbour (%.3f); this image resembles nothing in the gallery (another camera, another "
                   "disease, not a fundus photograph?), so the estimate rests on distant cases",
                   double(similarities.front()), gallery.nn_p01)});
  return t;
}

Json warnings_to_json(const std::vector<QueryWarning>& warnings) {
  Json a = Json::array();
  for (const auto& w : warnings) a.push_back({{"code", w.code}, {"message", w.message}});
  return a;
}

}  // namespace fundus
