// Exact float32 vectors kept on disk beside a compressed index and memory-mapped, so that the
// index can re-score its candidates exactly while only the rows it touches occupy memory (the
// kernel's page cache, shared and reclaimable).
//
// Framed file (core/io.h: magic "FNDVECS1", version, crc32, atomic temp + rename) whose payload is
//   u64 header_size | header | zero padding to a 64-byte file offset | ids int64[count], ascending |
//   rows float32[count x dim] (row i is the vector of ids[i])
// header (BinaryWriter): dim, count, ids_sha256 (index_file.h ids_checksum), tag (the owner's
// description of what the vectors are, e.g. the index's provenance; compared on load).
//
// Thread safety: an open VectorFile is immutable; find()/row() may be called concurrently.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace fundus {

class VectorFile {
 public:
  /// Writes `ids` (ascending, unique) with the vector row(i) of ids[i] ([dim] floats) atomically.
  static void write(const std::string& path, int dim, const std::vector<int64_t>& ids,
                    const std::function<const float*(size_t i)>& row, const std::string& tag);
  /// Maps the file read-only. With `verify` (the default) first checks the whole file (magic,
  /// version, size, checksum); the header, alignment and id order are always checked. Throws
  /// fundus::Error naming the path for a missing, truncated, corrupt or inconsistent file.
  static std::unique_ptr<VectorFile> open(const std::string& path, bool verify = true);
  ~VectorFile();
  VectorFile(const VectorFile&) = delete;
  VectorFile& operator=(const VectorFile&) = delete;

  const std::string& path() const { return path_; }
  int dim() const { return dim_; }
  int64_t count() const { return count_; }
  const std::string& ids_sha256() const { return ids_sha256_; }
  const std::string& tag() const { return tag_; }
  /// The vector of `id`, or nullptr when the file has none (binary search over the mapped ids).
  const float* find(int64_t id) const;
  int64_t id(int64_t row) const { return ids_[row]; }
  const float* row(int64_t i) const { return rows_ + i * dim_; }

 private:
  VectorFile() = default;
  std::string path_, ids_sha256_, tag_;
  int dim_ = 0;
  int64_t count_ = 0;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  const int64_t* ids_ = nullptr;
  const float* rows_ = nullptr;
};

}  // namespace fundus
