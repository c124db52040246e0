// Downloading one file over HTTP(S) with libcurl: resumable, verified, atomic.
//
// The bytes go to "<dest>.partial" (locked with flock while a download runs, so two processes never
// write the same partial file). An existing partial file is resumed with an HTTP Range request; a
// server that ignores the range (200 instead of 206) restarts it from byte 0. When the transfer is
// complete the partial file is checked against the expected SHA-256 prefix, flushed to disk and
// renamed to `dest`: `dest` is either absent or a complete, verified file.
//
// What is left behind on failure:
//   - transfer cut off after some bytes (network error, timeout, Ctrl-C): the partial file, so that
//     the same call resumes it;
//   - checksum mismatch, HTTP 4xx (404, 403, ...), nothing received at all: nothing.
// Errors are fundus::Error with ONE line naming the URL and the cause (host not found, connection
// refused, HTTP 404, checksum mismatch with both hashes, ...).
//
// Proxies: libcurl honours http_proxy / https_proxy / no_proxy. Progress: a fundus::Progress bar in
// KiB on stderr once the server answered (silent with FUNDUS_QUIET=1 or options.progress = false).
// Thread safety: reentrant; concurrent calls for the same dest fail fast on the lock.
#pragma once

#include <cstdint>
#include <string>

namespace fundus {

struct DownloadOptions {
  std::string sha256_prefix;  // lowercase hex the file's SHA-256 must start with; "" = no check
  std::string label;          // progress-bar label; "" = the file name of dest
  bool progress = true;
  long connect_timeout_s = 20;
  long stall_timeout_s = 60;  // abort when under 1 byte/s for this long
};

struct DownloadResult {
  std::string path;          // == dest
  int64_t bytes = 0;         // size of the finished file
  int64_t resumed_from = 0;  // bytes already in the partial file that were kept (0: from scratch)
  std::string sha256;        // of the finished file
};

/// Downloads `url` (http, https or file) to `dest` (its folder is created). Throws fundus::Error.
DownloadResult download_file(const std::string& url, const std::string& dest, const DownloadOptions& options = {});

/// "<dest>.partial": where download_file keeps the bytes of an unfinished download.
std::string partial_download_path(const std::string& dest);

}  // namespace fundus
