// File helpers and the framed on-disk format shared by every persisted artefact
// (checkpoints, index metadata, cache entries, configs are plain JSON).
//
// Framed file layout (little-endian):
//   magic[8] | u32 version | u32 reserved=0 | u64 payload_size | payload | u32 crc32(payload) | "FNDS-END"
// Readers reject a wrong magic, a newer version, a size that does not add up (truncation) and a
// checksum mismatch, each with a message naming the file. Writers are atomic: the bytes go to a
// temporary file in the same directory, are fsync'ed, and renamed over the target.
#pragma once

#include <cstdint>
#include <cstring>
#include <functional>
#include <iosfwd>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "fundus/core/error.h"

namespace fundus {

// ---- plain files ---------------------------------------------------------------------------
std::string read_file(const std::string& path);  // throws naming the path
bool file_exists(const std::string& path);       // regular file or directory
void make_dirs(const std::string& dir);          // mkdir -p; throws on failure
/// Atomically replaces `path` with `bytes` (temp file + fsync + rename + fsync of the directory).
void write_file_atomic(const std::string& path, std::string_view bytes);
/// Atomic write where the content is streamed by `write` into an ostream.
void write_file_atomic(const std::string& path, const std::function<void(std::ostream&)>& write);
/// A unique temporary path next to `path` (same filesystem, so rename is atomic).
std::string temp_path_for(const std::string& path);
std::string parent_dir(const std::string& path);  // "" for a bare file name
std::string join_path(const std::string& dir, const std::string& name);

// ---- framed files --------------------------------------------------------------------------
struct FramedInfo {
  uint32_t version = 0;
  uint64_t payload_offset = 0;
  uint64_t payload_size = 0;
};

/// `magic` must be exactly 8 characters, e.g. "FNDCKPT1". `what` names the kind of file in
/// error messages ("checkpoint", "index").
void write_framed_file(const std::string& path, std::string_view magic, uint32_t version, std::string_view payload);
void write_framed_file(const std::string& path, std::string_view magic, uint32_t version,
                       const std::function<void(std::ostream&)>& write_payload);
/// Checks magic, version <= max_version, length and checksum by streaming once over the file.
FramedInfo verify_framed_file(const std::string& path, std::string_view magic, uint32_t max_version,
                              const std::string& what);
/// verify_framed_file + read the payload into memory.
std::string read_framed_file(const std::string& path, std::string_view magic, uint32_t max_version,
                             const std::string& what, uint32_t* version = nullptr);

// ---- binary payload encoding -----------------------------------------------------------------
/// Appends little-endian scalars, length-prefixed strings and arrays to a byte string.
class BinaryWriter {
 public:
  template <typename T>
  void put(T value) {
    static_assert(std::is_arithmetic_v<T>, "put() takes scalars");
    bytes_.append(reinterpret_cast<const char*>(&value), sizeof(T));
  }
  void put_string(std::string_view s) {
    put<uint64_t>(s.size());
    bytes_.append(s.data(), s.size());
  }
  template <typename T>
  void put_array(const T* data, size_t count) {
    put<uint64_t>(count);
    bytes_.append(reinterpret_cast<const char*>(data), count * sizeof(T));
  }
  const std::string& bytes() const { return bytes_; }
  std::string take() { return std::move(bytes_); }

 private:
  std::string bytes_;
};

/// Reads what BinaryWriter wrote; every read is bounds-checked and throws naming `source`.
class BinaryReader {
 public:
  BinaryReader(std::string_view bytes, std::string source) : bytes_(bytes), source_(std::move(source)) {}
  template <typename T>
  T get() {
    static_assert(std::is_arithmetic_v<T>, "get() returns scalars");
    need(sizeof(T));
    T v;
    std::memcpy(&v, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string get_string() {
    auto n = get<uint64_t>();
    need(n);
    std::string s(bytes_.substr(pos_, n));
    pos_ += n;
    return s;
  }
  template <typename T>
  std::vector<T> get_array() {
    auto n = get<uint64_t>();
    FUNDUS_CHECK(n <= (bytes_.size() - pos_) / sizeof(T), source_ << ": corrupt array length " << n);
    std::vector<T> v(n);
    if (n) std::memcpy(v.data(), bytes_.data() + pos_, n * sizeof(T));
    pos_ += n * sizeof(T);
    return v;
  }
  bool at_end() const { return pos_ == bytes_.size(); }
  size_t position() const { return pos_; }

 private:
  void need(uint64_t n) const {
    FUNDUS_CHECK(n <= bytes_.size() - pos_, source_ << ": truncated or corrupt (need " << n << " bytes at offset "
                                                    << pos_ << ", " << bytes_.size() - pos_ << " left)");
  }
  std::string_view bytes_;
  std::string source_;
  size_t pos_ = 0;
};

}  // namespace fundus
