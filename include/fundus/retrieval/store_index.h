// Vector indexes derived from the case store.
#pragma once

#include <memory>
#include <string>

#include "fundus/index/index_file.h"
#include "fundus/index/vector_index.h"
#include "fundus/store/case_store.h"

namespace fundus {

/// The store's current provenance for a model (store id, model id, embeddings_version and token).
/// Throws for an unknown model.
IndexProvenance store_provenance(const CaseStore& store, int64_t model_id);

/// Why the index file described by `info` does not match the store's current embeddings of the
/// model it was built for (store id, model, dimension, embeddings_version and token, number and
/// checksum of the ids); "" when it is current.
std::string index_staleness(const CaseStore& store, const IndexFileInfo& info);

/// Builds an index of type `spec` from all of the model's embeddings in the store (threads: see
/// VectorIndex::set_threads). Reads the store in steps of 16k vectors (memory: the index plus one
/// step); IVF-PQ first trains on a random sample of the whole store (a second pass).
std::unique_ptr<VectorIndex> build_index(const CaseStore& store, int64_t model_id, const std::string& spec,
                                         int threads = 0);

struct IndexLoadReport {
  bool rebuilt = false;
  std::string reason;  // why the file was not used ("" when loaded)
};

/// Loads the index at `path` when it is intact and matches the store exactly (store id, model id,
/// embeddings_version and token, dimension, number and checksum of the ids) and was built with the same
/// build-time parameters as `spec`; otherwise (missing, truncated, corrupt, stale, other spec) logs
/// why, rebuilds from the store and saves it to `path` (a failed save is logged, not thrown). The
/// search-time parameters of `spec` (ef, nprobe) are applied either way.
std::unique_ptr<VectorIndex> load_or_rebuild_index(const CaseStore& store, int64_t model_id, const std::string& path,
                                                   const std::string& spec, IndexLoadReport* report = nullptr,
                                                   int threads = 0);

}  // namespace fundus
