// Artefacts of recent queries (the preprocessed image and its attention overlay), kept in memory so
// that the page can fetch them by query id after the JSON answer. Bounded: holding `capacity`
// entries, a new one evicts the oldest. Ids are 128-bit random hex strings from the OS entropy
// source (std::random_device, not fundus::Rng: they must be unguessable, not reproducible), so one
// user cannot enumerate another's queries.
// Thread safety: all methods may be called concurrently.
#pragma once

#include <cstddef>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include <opencv2/core.hpp>

namespace fundus {

struct QueryArtefacts {
  cv::Mat preprocessed;       // RGB CV_8UC3
  cv::Mat attention_overlay;  // RGB CV_8UC3, empty when the query asked for none
};

class QueryCache {
 public:
  explicit QueryCache(size_t capacity);

  /// Stores the artefacts under a new random id and returns the id.
  std::string put(QueryArtefacts artefacts);
  /// nullptr when unknown or evicted.
  std::shared_ptr<const QueryArtefacts> get(const std::string& id) const;
  size_t size() const;

 private:
  size_t capacity_;
  std::map<std::string, std::shared_ptr<const QueryArtefacts>> entries_;
  std::deque<std::string> order_;  // oldest first
  mutable std::mutex mu_;
};

/// 32 lowercase hex characters from std::random_device.
std::string random_hex_id();

}  // namespace fundus
