// Checksums and content hashes.
//  - crc32: corruption detection in our on-disk formats (zlib polynomial, same values as zlib/zip).
//  - Sha256: content identity (cache keys, case content hashes, checkpoint hashes).
// All functions are pure and thread-safe.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace fundus {

/// CRC-32 (IEEE 802.3, as zlib's crc32). Pass the previous value as `crc` to continue a stream.
uint32_t crc32(const void* data, size_t size, uint32_t crc = 0);
inline uint32_t crc32(std::string_view bytes, uint32_t crc = 0) { return crc32(bytes.data(), bytes.size(), crc); }

/// Incremental SHA-256.
class Sha256 {
 public:
  Sha256();
  Sha256& update(const void* data, size_t size);
  Sha256& update(std::string_view bytes) { return update(bytes.data(), bytes.size()); }
  std::array<uint8_t, 32> digest();  // finalises; the object must not be updated afterwards
  std::string hex_digest();          // 64 lowercase hex characters

 private:
  void compress(const uint8_t* block);
  uint32_t state_[8];
  uint64_t bit_count_ = 0;
  uint8_t buffer_[64];
  size_t buffered_ = 0;
};

std::string sha256_hex(std::string_view bytes);
/// SHA-256 of a file's bytes, streamed; throws fundus::Error naming the file when unreadable.
std::string sha256_file(const std::string& path);

/// 64-bit FNV-1a, for in-memory hashing only (never persisted as identity).
uint64_t fnv1a64(std::string_view bytes, uint64_t seed = 0xcbf29ce484222325ULL);

}  // namespace fundus
