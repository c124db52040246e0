// What the HTTP server needs from the search engine. The production implementation forwards to a
// fundus::SearchEngine (engine_backend); the HTTP-layer tests use an in-memory fake instead, which
// keeps them fast and free of LibTorch. Torch-free header.
//
// Contract (same as SearchEngine): every method may be called concurrently from the server's worker
// threads; input problems (bad image, grade, meta) throw fundus::Error with a user-facing message.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <opencv2/core.hpp>

#include "fundus/core/case.h"
#include "fundus/core/json.h"
#include "fundus/retrieval/search_engine.h"

namespace fundus {

class SearchBackend {
 public:
  virtual ~SearchBackend() = default;

  virtual QueryResult query(std::string_view image_bytes, const std::string& source, const QueryOptions& options) = 0;
  virtual std::optional<CaseInfo> get_case(int64_t id) = 0;
  /// Stored, embedded and indexed when it returns (the next query can find it).
  virtual CaseInfo add_case(std::string_view image_bytes, const std::string& source, const CaseRecord& record,
                            const Json& meta) = 0;
  /// false for an unknown id.
  virtual bool remove_case(int64_t id) = 0;
  /// RGB CV_8UC3 overlay; throws for an unknown id.
  virtual cv::Mat case_attention_overlay(int64_t id) = 0;
  virtual Json stats() = 0;
  virtual Json health() = 0;
};

/// Forwards to `engine`, which must outlive the returned object.
std::unique_ptr<SearchBackend> engine_backend(SearchEngine& engine);

}  // namespace fundus
