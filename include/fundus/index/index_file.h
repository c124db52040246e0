// Index files. An index is a derived artefact of the case store: its file records what it was built
// from so that a stale or damaged file is never trusted (see retrieval/store_index.h).
//
// Framed file (core/io.h: magic "FNDINDX1", version, crc32, atomic write) whose payload is
//   u64 header_size | header | native bytes of the implementation
// header (BinaryWriter): type, spec, dim, count, ids_sha256, store_id, model_id,
//   embeddings_version, embeddings_token, ids (ascending).
// Version 1 files (no embeddings_token) are refused: they cannot tell copies of a store apart.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fundus/core/json.h"
#include "fundus/index/vector_index.h"

namespace fundus {

/// Largest dimension an index file may declare (readers allocate count x dim floats). Equal to the
/// store's kMaxDescriptorDim, which the index does not see (retrieval/store_index.cpp asserts it).
constexpr int kMaxIndexDim = 65536;

/// Where the vectors came from: the store (CaseStore::store_id), the model, and the model's
/// embeddings_version and embeddings_token at build time. The token identifies the vectors
/// themselves: copies of one store share the store id and may reach the same version and ids with
/// different vectors, but never the same token. Defaults mean "not built from a store".
struct IndexProvenance {
  std::string store_id;
  int64_t model_id = -1;
  int64_t embeddings_version = -1;
  std::string embeddings_token;
};

struct IndexFileInfo {
  std::string type, spec;
  int dim = 0;
  int64_t count = 0;
  std::string ids_sha256;  // ids_checksum() of the ids
  IndexProvenance provenance;
  uint64_t file_bytes = 0;
};

struct LoadedIndex {
  std::unique_ptr<VectorIndex> index;
  IndexFileInfo info;
};

/// SHA-256 (hex) of the ids as little-endian int64, in the given order (callers pass them sorted).
std::string ids_checksum(const std::vector<int64_t>& ids);

/// Verifies the whole file (magic, version, length, checksum) and loads it. Throws fundus::Error
/// naming the path for a missing, truncated, corrupt or inconsistent file.
LoadedIndex load_index(const std::string& path);
/// Verifies the file and returns its header without building the index.
IndexFileInfo read_index_info(const std::string& path);

Json index_info_to_json(const IndexFileInfo& info);
/// Readable "key: value" lines.
std::string format_index_info(const IndexFileInfo& info);

}  // namespace fundus
