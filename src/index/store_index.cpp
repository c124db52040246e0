#include "fundus/index/store_index.h"

#include "fundus/core/error.h"
#include "fundus/core/io.h"
#include "fundus/core/log.h"
#include "fundus/index/index_factory.h"

namespace fundus {

IndexProvenance store_provenance(const CaseStore& store, int64_t model_id) {
  auto model = store.get_model(model_id);
  FUNDUS_CHECK(model, store.path() << ": no model with id " << model_id);
  return {store.store_id(), model_id, model->embeddings_version, store.embeddings_token(model_id)};
}

std::string index_staleness(const CaseStore& store, const IndexFileInfo& info) {
  const IndexProvenance& have = info.provenance;
  if (have.store_id != store.store_id()) return "built from another store (" + have.store_id + ")";
  auto model = store.get_model(have.model_id);
  if (!model) return "built for model " + std::to_string(have.model_id) + ", which is not in the store";
  if (info.dim != model->descriptor_dim)
    return "dimension " + std::to_string(info.dim) + " != model's " + std::to_string(model->descriptor_dim);
  if (have.embeddings_version != model->embeddings_version)
    return "stale: embeddings changed since the build (version " + std::to_string(have.embeddings_version) +
           " -> " + std::to_string(model->embeddings_version) + ")";
  if (have.embeddings_token != store.embeddings_token(have.model_id))
    return "stale: the vectors differ from the store's (written separately, e.g. in a copy of the store)";
  std::vector<int64_t> ids = store.embedding_ids(have.model_id);
  if (info.count != int64_t(ids.size()))
    return "stale: " + std::to_string(info.count) + " vectors in the file, " + std::to_string(ids.size()) +
           " in the store";
  if (info.ids_sha256 != ids_checksum(ids)) return "stale: the ids differ from the store's";
  return "";
}

std::unique_ptr<VectorIndex> build_index(const CaseStore& store, int64_t model_id, const std::string& spec,
                                         int threads) {
  EmbeddingMatrix m = store.get_embeddings(model_id);
  auto index = make_index(spec, m.dim);
  index->set_threads(threads);
  index->add(m.rows(), m.case_ids.data(), m.vectors.data());
  return index;
}

std::unique_ptr<VectorIndex> load_or_rebuild_index(const CaseStore& store, int64_t model_id, const std::string& path,
                                                   const std::string& spec_text, IndexLoadReport* report,
                                                   int threads) {
  IndexSpec spec = parse_index_spec(spec_text);
  store_provenance(store, model_id);  // unknown model: an error, not a rebuild
  std::string reason;
  const bool missing = !file_exists(path);
  if (missing) {
    reason = "index file not found";
  } else {
    try {
      LoadedIndex loaded = load_index(path);
      const IndexFileInfo& info = loaded.info;
      if (info.provenance.model_id != model_id)
        reason = "built for model " + std::to_string(info.provenance.model_id) + ", not " + std::to_string(model_id);
      if (reason.empty()) reason = index_staleness(store, info);
      if (reason.empty() && !same_index_build(parse_index_spec(info.spec), spec))
        reason = "built as '" + info.spec + "', asked for '" + canonical_index_spec(spec).str() + "'";
      if (reason.empty()) {
        loaded.index->set_search_params(spec);
        loaded.index->set_threads(threads);
        if (report) *report = {false, ""};
        return std::move(loaded.index);
      }
    } catch (const Error& e) {
      reason = e.message();
    }
  }
  // A first build is routine; a rejected file (stale, corrupt, other model) deserves a warning.
  if (missing)
    FUNDUS_INFO("building index " << path << " (" << canonical_index_spec(spec).str() << ", model " << model_id
                                  << "): no index file yet");
  else
    FUNDUS_WARN("index " << path << " not used (" << reason << "); rebuilding " << canonical_index_spec(spec).str()
                         << " for model " << model_id);
  // Provenance is read before the vectors: a concurrent write then makes the saved file look stale
  // (a needless rebuild later), never current with old data.
  IndexProvenance want = store_provenance(store, model_id);
  auto index = build_index(store, model_id, spec_text, threads);
  try {
    index->save(path, want);
  } catch (const Error& e) {
    FUNDUS_WARN("could not save the rebuilt index: " << e.message());
  }
  if (report) *report = {true, reason};
  return index;
}

}  // namespace fundus
