// On-disk cache of preprocessed images, so that each original photograph is decoded once across runs.
//
// Key: sha256(file bytes) + PreprocessOptions::cache_key(); a renamed or moved file still hits, an
// edited one misses. Entry: <dir>/<kk>/<key>.fpc, a framed file (core/io.h: magic "FNDPPC01", version,
// crc32) holding the options key, the content hash and the RGB pixels. Entries are written atomically
// (temp + rename), so several threads or processes may fill one cache at once: the worst case is the
// same entry computed twice. A corrupt, truncated or mismatching entry is detected, counted, recomputed
// and replaced. File hashes are memoised per path (size + mtime) inside one PreprocessCache.
//
// Thread-safe: one instance may be shared by all loader workers. Errors of the image itself
// (missing, corrupt) throw fundus::Error naming the file and are never cached; a cache directory that
// cannot be written is an error at construction.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include <opencv2/core.hpp>

#include "fundus/data/preprocess.h"

namespace fundus {

class PreprocessCache {
 public:
  PreprocessCache(std::string dir, PreprocessOptions options);

  /// The preprocessed image (RGB CV_8UC3, size x size) of the file at `image_path`: from the cache
  /// when present and sound, else computed with preprocess_fundus_bytes and stored.
  cv::Mat load(const std::string& image_path);

  struct Stats {
    int64_t hits = 0;
    int64_t misses = 0;   // computed (including the corrupt ones)
    int64_t corrupt = 0;  // entries that failed verification and were replaced
  };
  Stats stats() const;

  /// Where the entry for a file with this content hash lives (it may not exist).
  std::string entry_path(const std::string& content_sha256) const;
  const std::string& dir() const { return dir_; }
  const PreprocessOptions& options() const { return options_; }

 private:
  std::string content_hash(const std::string& path, std::string* bytes);

  std::string dir_;
  PreprocessOptions options_;
  std::string key_;
  struct Memo {
    int64_t size = -1;
    int64_t mtime_ns = 0;
    std::string sha;
  };
  std::map<std::string, Memo> memo_;
  std::mutex memo_mu_;
  std::atomic<int64_t> hits_{0}, misses_{0}, corrupt_{0};
};

}  // namespace fundus
