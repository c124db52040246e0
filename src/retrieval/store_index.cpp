#include "fundus/retrieval/store_index.h"

#include <algorithm>

#include "fundus/core/error.h"
#include "fundus/core/io.h"
#include "fundus/core/log.h"
#include "fundus/core/progress.h"
#include "fundus/core/rng.h"
#include "fundus/index/index_factory.h"
#include "fundus/index/ivfpq_index.h"

namespace fundus {

// Every descriptor the store accepts fits an index file, and the other way round.
static_assert(kMaxIndexDim == kMaxDescriptorDim, "index and store disagree on the largest descriptor dimension");

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
    return "stale: embeddings changed since the build (version " + std::to_string(have.embeddings_version) + " -> " +
           std::to_string(model->embeddings_version) + ")";
  if (have.embeddings_token != store.embeddings_token(have.model_id))
    return "stale: the vectors differ from the store's (written separately, e.g. in a copy of the store)";
  std::vector<int64_t> ids = store.embedding_ids(have.model_id);
  if (info.count != int64_t(ids.size()))
    return "stale: " + std::to_string(info.count) + " vectors in the file, " + std::to_string(ids.size()) +
           " in the store";
  if (info.ids_sha256 != ids_checksum(ids)) return "stale: the ids differ from the store's";
  return "";
}

namespace {
constexpr int64_t kBuildBatch = 16384;  // vectors read from the store per step (64 MB at 1024-d)

// IVF-PQ trains on its first add unless trained before: give it a sample of the whole store, since
// the store streams in case id order (import order, which may drift: cameras, sites, years).
void train_on_store_sample(IvfPqIndex& index, const CaseStore& store, int64_t model_id,
                           const std::vector<int64_t>& ids) {
  const int64_t n = int64_t(ids.size()), take = std::min<int64_t>(n, index.params().train);
  std::vector<int64_t> pick(ids);
  Rng rng(uint64_t(index.params().seed));
  for (int64_t i = 0; i < take; ++i) std::swap(pick[size_t(i)], pick[size_t(i + int64_t(rng.below(uint64_t(n - i))))]);
  pick.resize(size_t(take));
  std::sort(pick.begin(), pick.end());
  std::vector<float> sample;
  sample.reserve(size_t(take) * size_t(index.dim()));
  size_t next = 0;
  store.scan_embeddings(model_id, kBuildBatch, [&](const EmbeddingMatrix& b) {
    for (int64_t r = 0; r < b.rows(); ++r) {
      const int64_t id = b.case_ids[size_t(r)];
      while (next < pick.size() && pick[next] < id) ++next;
      if (next < pick.size() && pick[next] == id) sample.insert(sample.end(), b.row(r), b.row(r) + b.dim);
    }
  });
  const int64_t got = int64_t(sample.size() / size_t(index.dim()));
  if (got > 0) index.train(got, sample.data());
}
}  // namespace

std::unique_ptr<VectorIndex> build_index(const CaseStore& store, int64_t model_id, const std::string& spec,
                                         int threads) {
  auto model = store.get_model(model_id);
  FUNDUS_CHECK(model, store.path() << ": no model with id " << model_id);
  auto index = make_index(spec, model->descriptor_dim);
  index->set_threads(threads);
  const std::vector<int64_t> ids = store.embedding_ids(model_id);
  index->reserve(int64_t(ids.size()));
  if (auto* ivf = dynamic_cast<IvfPqIndex*>(index.get()); ivf && !ids.empty())
    train_on_store_sample(*ivf, store, model_id, ids);
  // In bounded steps: the store's vectors are never all in memory next to the index's copy.
  std::unique_ptr<Progress> progress;
  if (ids.size() >= size_t(kBuildBatch)) progress = std::make_unique<Progress>("indexing", int64_t(ids.size()), "vec");
  store.scan_embeddings(model_id, kBuildBatch, [&](const EmbeddingMatrix& b) {
    index->add(b.rows(), b.case_ids.data(), b.vectors.data());
    if (progress) progress->advance(b.rows());
  });
  return index;
}

std::unique_ptr<VectorIndex> load_or_rebuild_index(const CaseStore& store, int64_t model_id, const std::string& path,
                                                   const std::string& spec_text, IndexLoadReport* report, int threads) {
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
