// Index specs: a type plus integer parameters, written "type:key=value,key=value" or as JSON
// {"type": "hnsw", "M": 32, ...}. Unknown types or keys are errors; missing keys take defaults.
//   exact
//   hnsw:M=16,efc=200,ef=64              M links per node, efc = ef_construction, ef = search beam
//   ivfpq:nlist=1024,m=64,nbits=8,nprobe=16,train=65536,seed=1,vectors=1,rerank=500
//                                        nlist lists, m sub-quantizers (dim % m == 0), nbits per
//                                        code, nprobe lists searched, train = max training sample,
//                                        vectors = keep the exact vectors in a file beside the index
//                                        (0/1), rerank = candidates re-scored exactly with them
//                                        (default 100, or 0 with vectors=0)
// Search-time keys (ef, nprobe, rerank) can change on a built index (VectorIndex::set_search_params);
// the others are build-time: changing them requires a rebuild.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "fundus/core/json.h"
#include "fundus/index/vector_index.h"

namespace fundus {

struct IndexSpec {
  std::string type;
  std::map<std::string, int64_t> params;

  /// params[key] or `fallback`.
  int64_t get(const std::string& key, int64_t fallback) const;
  /// "type:k=v,..." with keys sorted.
  std::string str() const;
};

/// Parses "hnsw:M=32,efc=200" (errors name the spec and the bad part) and checks types and keys.
IndexSpec parse_index_spec(const std::string& text);
IndexSpec index_spec_from_json(const Json& value);
/// The spec with every default filled in (what describe() of the built index returns).
IndexSpec canonical_index_spec(const IndexSpec& spec);
/// Whether two specs build the same index (same type and build-time parameters).
bool same_index_build(const IndexSpec& a, const IndexSpec& b);

std::unique_ptr<VectorIndex> make_index(const IndexSpec& spec, int dim);
std::unique_ptr<VectorIndex> make_index(const std::string& spec, int dim);

}  // namespace fundus
