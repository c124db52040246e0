// The similar-case search engine: a trained model, a case store and its vector index, loaded once
// and shared by the CLI (`fundus query`) and the HTTP server.
//
//   EngineOptions o;
//   o.store_path = "cases.db";
//   o.checkpoint_path = "run/checkpoints/best.ckpt";
//   SearchEngine engine(o);
//   QueryOptions q;
//   q.k = 10;
//   QueryResult r = engine.query_file("new.jpg", q);
//   for (auto& hit : r.hits) ... hit.info.grade, hit.similarity ...
//
// Construction (embed_missing, the default) registers the model in the store (idempotent), embeds
// cases that have no vector for it yet, and loads the index file (or rebuilds it from the store when
// it is missing, stale or corrupt). With embed_missing=false nothing is written to the store: the
// model must already have vectors there (else an error says how to embed them), and cases without
// one are left out of the search with a warning. read_only opens the store file read-only (queries
// on a write-protected store; add_case/remove_case then throw).
//
// Errors: input problems (an image that does not decode, a bad grade or meta, a duplicate id) are
// fundus::InputError naming the input; a stored row that breaks an invariant (a grade outside 0-4,
// meta that is not JSON or nested too deep, a non-finite vector) is StoreCorruptError naming the case
// (fundus/store/case_store.h); anything else is a plain fundus::Error.
//
// Query: decode (the image policy of data/image_io.h; a refused image throws ImageError, whose
// problem() callers map) -> preprocess (FOV crop at the model's input size) -> embed -> index search
// (grade filters and patient exclusion applied inside the index, from the grade and patient of every
// case kept in memory beside it: k hits whenever k cases pass, and the store is read only for the
// hits) -> hits with case info -> similarity-weighted k-NN grade vote (eval/metrics.h knn_vote) ->
// trust warnings (retrieval/query_trust.h: a collapsed model or tied similarities withhold the
// estimate; a distant best match is noted). The gallery's descriptor health
// (eval/descriptor_health.h) is measured once at construction and logged. add_case with an empty
// record id derives the id from the content hash ("img-<16 hex>"); adding the same image and grade again then returns
// the existing case.
//
// Thread safety: every public method may be called concurrently. Queries run in parallel (up to
// `inference_replicas` model copies; further queries wait), adds and removes are serialised and
// visible to every query that starts after they return; the store is written before the index, so
// an acknowledged add survives a crash (the index is rebuilt from the store on the next start).
// Changes made to the store file by another process while an engine runs (e.g. `fundus store add`)
// are not seen by that engine until it is restarted.
// Torch-free header (the implementation holds the model).
#pragma once

#include <array>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <opencv2/core.hpp>

#include "fundus/core/case.h"
#include "fundus/core/json.h"
#include "fundus/data/preprocess.h"
#include "fundus/retrieval/query_trust.h"

namespace fundus {

struct StoredCase;

struct EngineOptions {
  std::string store_path;
  std::string checkpoint_path;
  std::string index_path;                             // "" = <store_path>.model<id>.index
  std::string index_spec = "exact";                   // "exact", "hnsw:M=32,efc=200,ef=64", "ivfpq:..."
  std::string image_dir;                              // where added images are kept; "" = <store dir>/images
  std::string cache_dir;                              // preprocessed-image cache for embedding, "" = none
  int threads = 0;                                    // compute threads, 0 = all cores
  std::string device = "cpu";                         // where the model runs: cpu | cuda | auto
  int inference_replicas = 1;                         // model copies for concurrent queries
  int64_t max_image_pixels = kDefaultMaxImagePixels;  // larger images are refused from the header (ImageError)
  bool embed_missing = true;                          // embed cases without a vector at start-up (writes the store)
  bool read_only = false;                             // open the store read-only (implies embed_missing = false)
  bool progress = true;
  bool create_store = true;  // false: a missing store file is an error
};

/// A stored case as callers see it (core/case.h explains the three case types): the StoredCase
/// fields with the invariants an answer relies on checked and meta parsed. Made by case_info() only.
struct CaseInfo {
  int64_t id = 0;  // store id
  std::string external_id;
  std::string image_path;
  int grade = -1;
  std::string patient, eye, split;
  Json meta = Json::object();
  std::string added_at;
};

/// The one StoredCase -> CaseInfo conversion. Throws StoreCorruptError naming `store_path` and the
/// case when the stored grade is outside 0-4 or meta is not valid JSON (the store's fault).
CaseInfo case_info(const StoredCase& stored, const std::string& store_path);

struct SearchHit {
  CaseInfo info;
  float similarity = 0;  // cosine, in [-1, 1]
  int rank = 0;          // 1-based
};

struct GradeEstimate {
  int grade = -1;            // similarity-weighted k-NN vote; -1 without hits or withheld
  double confidence = 0;     // winning share of the vote
  PerGrade<double> votes{};  // share per grade, sums to 1 (all 0 when withheld)
  bool withheld = false;     // the result does not support an estimate (query_trust.h)
  std::string withheld_reason;
};

struct QueryOptions {
  int k = 10;                   // 1..1000
  std::string exclude_patient;  // drop hits of this patient (fellow-eye leakage off)
  std::vector<int> grades;      // keep only hits of these grades; empty = all
  bool with_attention = false;  // fill QueryResult::attention_overlay
};

struct QueryResult {
  std::vector<SearchHit> hits;  // sorted by similarity, descending
  GradeEstimate estimate;
  std::vector<QueryWarning> warnings;  // what makes this result untrustworthy (retrieval/query_trust.h)
  cv::Mat preprocessed;                // RGB CV_8UC3, the network's input (FOV crop)
  cv::Mat attention_overlay;           // RGB heat-map overlay, empty unless with_attention
  Json timing_ms = Json::object();     // decode, embed, search, total
};

class SearchEngine {
 public:
  explicit SearchEngine(const EngineOptions& options);
  ~SearchEngine();
  SearchEngine(const SearchEngine&) = delete;
  SearchEngine& operator=(const SearchEngine&) = delete;

  /// Throws fundus::InputError naming `source` for undecodable, truncated or oversized images.
  QueryResult query_image_bytes(std::string_view bytes, const std::string& source, const QueryOptions& options);
  QueryResult query_file(const std::string& path, const QueryOptions& options);

  std::optional<CaseInfo> get_case(int64_t id) const;
  /// Adds a graded case: keeps a copy of the image in image_dir, stores, embeds and indexes it.
  /// `record.image_path` is ignored; record.id is the external id ("" = derived from the content hash).
  /// Throws InputError for a bad image, a grade outside 0-4, a duplicate external id, malformed meta
  /// or text fields that are not UTF-8 or hold control characters.
  CaseInfo add_case(std::string_view image_bytes, const std::string& source, const CaseRecord& record,
                    const Json& meta = Json::object());
  /// Removes from the store and the index; false for an unknown id. The image copy in image_dir is
  /// kept (content-addressed files may be shared by several cases).
  bool remove_case(int64_t id);

  /// Attention overlay (RGB) of a stored case's preprocessed image.
  cv::Mat case_attention_overlay(int64_t id);

  /// Writes the index file now (it is also written by the destructor after adds/removes; a stale or
  /// missing file is rebuilt from the store at the next start either way).
  void save_index();
  const std::string& index_path() const;
  /// The model's preprocessing (input size, FOV crop, ...): how QueryResult::preprocessed was made.
  const PreprocessOptions& preprocess_options() const;

  Json stats() const;  // store stats + index description + model
  /// {"status": "ok" | "degraded", "model_id", "indexed", "descriptors": DescriptorHealth of the
  /// gallery (measured at start-up)}; "degraded" when the model's descriptors are collapsed.
  Json health() const;
  int64_t model_id() const;
  int64_t size() const;  // indexed cases

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace fundus
