// Reports and exports of a whole case store (what `fundus store stats|export` print and write).
#pragma once

#include <string>
#include <vector>

#include "fundus/core/json.h"
#include "fundus/store/case_store.h"

namespace fundus {

/// {"cases", "grades": {"0": n, ... "4": n}, "splits": {...}, "patients", "models": [{"id", "name",
///  "descriptor_dim", "checkpoint_hash", "embeddings", "embeddings_version"}]}
Json store_stats_to_json(const StoreStats& stats, const std::vector<ModelInfo>& models);
/// Readable tables of the same.
std::string format_store_stats(const StoreStats& stats, const std::vector<ModelInfo>& models);

/// Writes DIR/cases.csv and, for every model (or only `model_id` when >= 0),
/// DIR/embeddings_model<ID>.npy with DIR/embeddings_model<ID>_ids.csv. Creates DIR. Returns the
/// files written.
std::vector<std::string> export_store(const CaseStore& store, const std::string& dir, int64_t model_id = -1);

}  // namespace fundus
