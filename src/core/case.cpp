#include "fundus/core/case.h"

#include <set>

#include "fundus/core/strings.h"

namespace fundus {

Dataset Dataset::subset(const std::string& splits) const {
  std::set<std::string> wanted;
  for (auto& s : split(splits, ',')) wanted.insert(trim(s));
  Dataset out;
  out.source = source + "[" + splits + "]";
  for (auto& r : records)
    if (wanted.count(r.split)) out.records.push_back(r);
  return out;
}

}  // namespace fundus
