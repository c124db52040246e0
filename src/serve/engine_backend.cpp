#include "fundus/serve/backend.h"

namespace fundus {

namespace {

class EngineBackend final : public SearchBackend {
 public:
  explicit EngineBackend(SearchEngine& engine) : engine_(engine) {}

  QueryResult query(std::string_view image_bytes, const std::string& source, const QueryOptions& options) override {
    return engine_.query_image_bytes(image_bytes, source, options);
  }
  std::optional<CaseInfo> get_case(int64_t id) override { return engine_.get_case(id); }
  CaseInfo add_case(std::string_view image_bytes, const std::string& source, const CaseRecord& record,
                    const Json& meta) override {
    return engine_.add_case(image_bytes, source, record, meta);
  }
  bool remove_case(int64_t id) override { return engine_.remove_case(id); }
  cv::Mat case_attention_overlay(int64_t id) override { return engine_.case_attention_overlay(id); }
  Json stats() override { return engine_.stats(); }
  Json health() override { return engine_.health(); }

 private:
  SearchEngine& engine_;
};

}  // namespace

std::unique_ptr<SearchBackend> engine_backend(SearchEngine& engine) { return std::make_unique<EngineBackend>(engine); }

}  // namespace fundus
