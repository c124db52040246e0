#include "fundus/model/download.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>

#include "fundus/core/error.h"
#include "fundus/core/hash.h"
#include "fundus/core/io.h"
#include "fundus/core/progress.h"
#include "fundus/core/strings.h"

namespace fundus {

namespace {

void init_curl_once() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

int64_t file_size_of(int fd) {
  struct stat st {};
  return ::fstat(fd, &st) == 0 ? static_cast<int64_t>(st.st_size) : 0;
}

std::string mib(int64_t bytes) { return strprintf("%.1f MiB", double(bytes) / (1024.0 * 1024.0)); }

// State shared with libcurl's callbacks during one request.
struct Transfer {
  CURL* curl = nullptr;
  int fd = -1;
  int64_t offset = 0;         // bytes already in the partial file when the request was sent
  bool started = false;       // the first body byte (or the end of an empty body) was seen
  bool restarted = false;     // the server ignored the range: the partial file was emptied
  bool drop_partial = false;  // what is in the partial file must not be resumed
  int64_t range_start = -1;   // from the Content-Range header of the last response
  int64_t written = 0;
  std::string error;  // why a callback stopped the transfer
  std::string label;
  bool show_progress = true;
  std::unique_ptr<Progress> progress;
  int64_t kib_shown = 0;
};

size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::string line(data, size * n);
  if (starts_with(line, "HTTP/")) t->range_start = -1;  // a new response (e.g. after a redirect)
  std::string lower = to_lower(line);
  if (starts_with(lower, "content-range:")) {
    // "Content-Range: bytes 100-199/200"
    size_t p = lower.find("bytes");
    if (p != std::string::npos) {
      char* end = nullptr;
      long long start = std::strtoll(lower.c_str() + p + 5, &end, 10);
      if (end && *end == '-') t->range_start = start;
    }
  }
  return size * n;
}

// Called before the first body byte is stored: decides between appending and starting over.
bool start_body(Transfer* t) {
  t->started = true;
  long status = 0;
  curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &status);
  if (t->offset > 0) {
    if (status == 200) {  // the server ignored the range and sends the whole file
      if (::ftruncate(t->fd, 0) != 0) {
        t->error = std::string("cannot empty the partial file: ") + std::strerror(errno);
        return false;
      }
      t->restarted = true;
      t->offset = 0;
    } else if (status == 206 && t->range_start != t->offset) {
      t->error = strprintf("the server answered a range request for byte %lld from byte %lld", (long long)t->offset,
                           (long long)t->range_start);
      t->drop_partial = true;
      return false;
    }
  }
  if (::lseek(t->fd, 0, SEEK_END) < 0) {
    t->error = std::string("cannot seek in the partial file: ") + std::strerror(errno);
    return false;
  }
  if (t->show_progress) {
    curl_off_t remaining = -1;
    curl_easy_getinfo(t->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &remaining);
    std::string label = t->label + (t->offset > 0 ? " (resuming at " + mib(t->offset) + ")" : "");
    t->progress = std::make_unique<Progress>(label, remaining > 0 ? (int64_t(remaining) + 1023) / 1024 : 0, "KiB");
  }
  return true;
}

size_t on_body(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t bytes = size * n;
  if (!t->started && !start_body(t)) return 0;  // 0 makes libcurl stop with CURLE_WRITE_ERROR
  size_t done = 0;
  while (done < bytes) {
    ssize_t w = ::write(t->fd, data + done, bytes - done);
    if (w < 0) {
      if (errno == EINTR) continue;
      t->error = std::string("cannot write the partial file: ") + std::strerror(errno);
      return 0;
    }
    done += size_t(w);
  }
  t->written += int64_t(bytes);
  if (t->progress) {
    int64_t kib = t->written / 1024;
    t->progress->advance(kib - t->kib_shown);
    t->kib_shown = kib;
  }
  return bytes;
}

// One line saying why the request failed.
std::string describe_failure(CURLcode rc, long status, const std::string& detail) {
  switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
      return "host not found (offline?)";
    case CURLE_COULDNT_RESOLVE_PROXY:
      return "proxy host not found (check https_proxy / http_proxy)";
    case CURLE_COULDNT_CONNECT:
      return "cannot connect (connection refused or network unreachable)";
    case CURLE_OPERATION_TIMEDOUT:
      return "timed out (" + detail + ")";
    case CURLE_HTTP_RETURNED_ERROR:
      return "HTTP " + std::to_string(status) + (status == 404 ? " (not found)" : "");
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
      return "TLS certificate check failed (is the ca-certificates package installed?): " + detail;
    default:
      return detail.empty() ? std::string(curl_easy_strerror(rc)) : detail;
  }
}

void set_protocols(CURL* curl) {
#if LIBCURL_VERSION_NUM >= 0x075500  // 7.85: the string form; the bitmask form is deprecated there
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https,file");
  curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS, long(CURLPROTO_HTTP | CURLPROTO_HTTPS | CURLPROTO_FILE));
  curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS, long(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
}

struct Outcome {
  CURLcode rc = CURLE_OK;
  long status = 0;
  std::string message;  // "" on success
  bool drop_partial = false;
  bool restarted = false;  // the server ignored the range: the file was fetched from byte 0
};

Outcome request(const std::string& url, int fd, const std::string& label, const DownloadOptions& options) {
  init_curl_once();
  std::unique_ptr<CURL, void (*)(CURL*)> curl(curl_easy_init(), curl_easy_cleanup);
  FUNDUS_CHECK(curl, "cannot initialise libcurl");
  Transfer t;
  t.curl = curl.get();
  t.fd = fd;
  t.offset = file_size_of(fd);
  t.label = label;
  t.show_progress = options.progress;
  char errbuf[CURL_ERROR_SIZE] = {0};
  std::string range = std::to_string(t.offset) + "-";
  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  set_protocols(c);
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);  // 4xx/5xx bodies never reach the file
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, options.connect_timeout_s);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, options.stall_timeout_s);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "fundus-retrieval (libcurl)");
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
  // CURLOPT_RANGE rather than CURLOPT_RESUME_FROM: with the latter libcurl itself fails when a server
  // ignores ranges, where starting over is the useful answer.
  if (t.offset > 0) curl_easy_setopt(c, CURLOPT_RANGE, range.c_str());

  Outcome out;
  out.rc = curl_easy_perform(c);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out.status);
  if (out.rc == CURLE_OK && !t.started && !start_body(&t)) out.rc = CURLE_WRITE_ERROR;  // empty body
  if (t.progress) {
    if (out.rc == CURLE_OK) {
      t.progress->advance((t.written + 1023) / 1024 - t.kib_shown);  // the last partial KiB
      t.progress->finish();
    } else {
      t.progress.reset();  // its destructor draws the last state of the bar
    }
  }
  out.drop_partial = t.drop_partial;
  out.restarted = t.restarted;
  if (out.rc != CURLE_OK)
    out.message = !t.error.empty() ? t.error : describe_failure(out.rc, out.status, trim(std::string(errbuf)));
  return out;
}

}  // namespace

std::string partial_download_path(const std::string& dest) { return dest + ".partial"; }

DownloadResult download_file(const std::string& url, const std::string& dest, const DownloadOptions& options) {
  FUNDUS_CHECK(!dest.empty(), "download of " << url << ": no destination file given");
  if (!parent_dir(dest).empty()) make_dirs(parent_dir(dest));
  const std::string partial = partial_download_path(dest);
  FileDescriptor fd(::open(partial.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  FUNDUS_CHECK(fd.get() >= 0, partial << ": cannot create the download file: " << std::strerror(errno));
  FUNDUS_CHECK(::flock(fd.get(), LOCK_EX | LOCK_NB) == 0,
               partial << ": another download of this file is running (or its lock is held)");
  const std::string label = options.label.empty() ? dest.substr(dest.find_last_of('/') + 1) : options.label;
  const std::string& prefix = options.sha256_prefix;
  auto verified = [&](const std::string& sha) { return prefix.empty() || starts_with(sha, to_lower(prefix)); };

  DownloadResult result;
  result.path = dest;
  result.resumed_from = file_size_of(fd.get());
  std::string sha;
  for (int attempt = 0;; ++attempt) {
    const int64_t had = file_size_of(fd.get());
    Outcome o = request(url, fd.get(), label, options);
    if (o.restarted) result.resumed_from = 0;
    if (o.rc == CURLE_OK) break;
    // 416: the partial file is already as long as the file (a run stopped before the rename) or
    // longer than it (the file changed on the server): keep it if it verifies, else start over once.
    if (o.rc == CURLE_HTTP_RETURNED_ERROR && o.status == 416 && had > 0) {
      sha = sha256_file(partial);
      if (!prefix.empty() && verified(sha)) break;
      if (attempt == 0 && ::ftruncate(fd.get(), 0) == 0) {
        result.resumed_from = 0;
        sha.clear();
        continue;
      }
    }
    // What to keep: a cut-off transfer is resumable; an HTTP 4xx answer or a refused range is not.
    const int64_t have = file_size_of(fd.get());
    const bool client_error = o.rc == CURLE_HTTP_RETURNED_ERROR && o.status >= 400 && o.status < 500;
    const bool keep = have > 0 && !client_error && !o.drop_partial;
    if (!keep) ::unlink(partial.c_str());
    FUNDUS_THROW("download of " << url << " failed: " << o.message
                                << (keep ? "; " + mib(have) + " kept in " + partial + ": run again to resume" : ""));
  }
  result.resumed_from = std::min(result.resumed_from, file_size_of(fd.get()));
  if (::fsync(fd.get()) != 0) {
    ::unlink(partial.c_str());
    FUNDUS_THROW(partial << ": cannot flush the download to disk: " << std::strerror(errno));
  }
  if (sha.empty()) sha = sha256_file(partial);
  if (!verified(sha)) {
    ::unlink(partial.c_str());
    FUNDUS_THROW("download of " << url << " failed its checksum: SHA-256 " << sha.substr(0, 16)
                                << "... does not start with " << prefix
                                << " (damaged transfer or wrong file); nothing was kept");
  }
  FUNDUS_CHECK(::rename(partial.c_str(), dest.c_str()) == 0,
               dest << ": cannot move the finished download into place: " << std::strerror(errno));
  result.bytes = file_size_of(fd.get());
  result.sha256 = sha;
  return result;
}

}  // namespace fundus
