// Structured access log: one JSON object per line per HTTP request.
//   {"time":"2026-11-26T10:00:00.123Z","method":"POST","path":"/api/query","params":["size"],
//    "status":200,"bytes_in":48213,"bytes_out":2114,"duration_ms":61.2,"remote":"127.0.0.1"}
// Privacy: the path is logged without query-string values (only parameter names), request and
// response bodies never; the only identifiers are store ids in the path.
// Thread safety: write() may be called concurrently; each line is written whole and flushed.
#pragma once

#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>
#include <vector>

namespace fundus {

struct AccessEntry {
  std::string method;
  std::string path;                 // without the query string
  std::vector<std::string> params;  // query-string parameter names only
  int status = 0;
  uint64_t bytes_in = 0, bytes_out = 0;
  double duration_ms = 0;
  std::string remote;
};

/// The JSON line (no trailing newline) for `entry` at `unix_time_ms`.
std::string format_access_entry(const AccessEntry& entry, int64_t unix_time_ms);

class AccessLog {
 public:
  /// Appends to `path` (created if missing; throws naming it when it cannot be opened); "" = stderr.
  explicit AccessLog(const std::string& path);
  ~AccessLog();
  AccessLog(const AccessLog&) = delete;
  AccessLog& operator=(const AccessLog&) = delete;

  void write(const AccessEntry& entry);

 private:
  std::FILE* file_ = nullptr;
  bool owned_ = false;
  std::mutex mu_;
};

}  // namespace fundus
