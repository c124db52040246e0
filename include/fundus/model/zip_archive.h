// The subset of the ZIP format that PyTorch's torch.save writes: every entry STORED (uncompressed),
// optionally Zip64, data aligned to 64 bytes through padding in the local header's extra field.
// Torch-free. ZipReader works on bytes held in memory; it never copies entry data.
//
// Reading checks: the end-of-central-directory record exists (else "truncated or not a zip"), every
// entry lies inside the file, and on read() that it is stored (compressed entries, which torch.save
// never writes, are rejected by name) and its CRC-32 matches. Errors name `source` (the file path)
// and the entry. A constructed reader is read-only and may be shared between threads.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace fundus {

class ZipReader {
 public:
  /// `bytes` must outlive the reader. Throws fundus::Error for anything that is not a valid zip.
  ZipReader(std::string_view bytes, std::string source);

  const std::vector<std::string>& names() const { return names_; }  // in central-directory order
  bool contains(const std::string& name) const;
  /// The entry's bytes (a view into the input); throws naming the entry when absent or corrupt.
  std::string_view read(const std::string& name) const;

 private:
  struct Entry {
    std::string name;
    uint64_t data_offset = 0;
    uint64_t size = 0;
    uint32_t crc = 0;
    uint16_t method = 0;  // 0 = stored; anything else cannot be read
  };
  const Entry* find(const std::string& name) const;

  std::string_view bytes_;
  std::string source_;
  std::vector<Entry> entries_;
  std::vector<std::string> names_;
};

/// Writes stored entries with data aligned to 64 bytes (as torch.save does, so readers may mmap).
/// Total size must stay below 4 GiB (no Zip64 writing); add() throws otherwise.
class ZipWriter {
 public:
  void add(const std::string& name, std::string_view data);
  /// Appends the central directory; the writer must not be used afterwards.
  std::string finish();

 private:
  struct Entry {
    std::string name;
    uint32_t offset = 0, size = 0, crc = 0;
  };
  std::string out_;
  std::vector<Entry> entries_;
};

}  // namespace fundus
