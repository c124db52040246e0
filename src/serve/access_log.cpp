#include "fundus/serve/access_log.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <ctime>

#include "fundus/core/error.h"
#include "fundus/core/json.h"
#include "fundus/core/strings.h"

namespace fundus {

std::string format_access_entry(const AccessEntry& e, int64_t unix_time_ms) {
  std::time_t seconds = std::time_t(unix_time_ms / 1000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &utc);
  Json line = {{"time", strprintf("%s.%03dZ", stamp, int(unix_time_ms % 1000))},
               {"method", e.method},
               {"path", e.path},
               {"params", e.params},
               {"status", e.status},
               {"bytes_in", e.bytes_in},
               {"bytes_out", e.bytes_out},
               {"duration_ms", std::round(e.duration_ms * 10) / 10},
               {"remote", e.remote}};
  // Paths come from the network: replace invalid UTF-8 instead of throwing.
  return line.dump(-1, ' ', false, Json::error_handler_t::replace);
}

AccessLog::AccessLog(const std::string& path) {
  if (path.empty()) {
    file_ = stderr;
    return;
  }
  file_ = std::fopen(path.c_str(), "a");
  FUNDUS_CHECK(file_, "--access-log " << path << ": cannot open for appending (" << std::strerror(errno) << ")");
  owned_ = true;
}

AccessLog::~AccessLog() {
  if (owned_) std::fclose(file_);
}

void AccessLog::write(const AccessEntry& entry) {
  int64_t now_ms = int64_t(std::time(nullptr)) * 1000;
  timespec ts{};
  if (clock_gettime(CLOCK_REALTIME, &ts) == 0) now_ms = int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
  std::string line = format_access_entry(entry, now_ms);
  line += '\n';
  std::lock_guard<std::mutex> lock(mu_);
  std::fwrite(line.data(), 1, line.size(), file_);
  std::fflush(file_);
}

}  // namespace fundus
