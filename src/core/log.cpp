#include "fundus/core/log.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <mutex>
#include <string>

namespace fundus {

namespace {
std::atomic<int> g_level{-1};
std::mutex g_log_mutex;
}  // namespace

void set_log_level(LogLevel level) { g_level = int(level); }

LogLevel log_level() {
  if (g_level < 0) {
    const char* env = std::getenv("FUNDUS_LOG");
    std::string v = env ? env : "info";
    g_level = v == "debug" ? 0 : v == "warn" ? 2 : v == "error" ? 3 : 1;
  }
  return LogLevel(g_level.load());
}

void log_message(LogLevel level, const std::string& message) {
  static const char* names[] = {"debug", "info", "warn", "error"};
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  char ts[32];
  std::strftime(ts, sizeof ts, "%H:%M:%S", &tm);
  std::lock_guard<std::mutex> lock(g_log_mutex);
  std::fprintf(stderr, "[%s %s] %s\n", ts, names[int(level)], message.c_str());
}

}  // namespace fundus
