// Minimal leveled logging to stderr with a timestamp. Level from FUNDUS_LOG (debug|info|warn|error),
// default info. Never log image content or patient identifiers other than the ids the user supplied.
#pragma once

#include "fundus/core/error.h"  // detail::MessageBuilder

namespace fundus {

enum class LogLevel { debug = 0, info = 1, warn = 2, error = 3 };
void set_log_level(LogLevel level);
LogLevel log_level();
void log_message(LogLevel level, const std::string& message);

}  // namespace fundus

#define FUNDUS_LOG(level, msg)                                                                             \
  do {                                                                                                     \
    if (::fundus::LogLevel::level >= ::fundus::log_level())                                                \
      ::fundus::log_message(::fundus::LogLevel::level, (::fundus::detail::MessageBuilder{} << msg).str()); \
  } while (0)
#define FUNDUS_INFO(msg) FUNDUS_LOG(info, msg)
#define FUNDUS_WARN(msg) FUNDUS_LOG(warn, msg)
#define FUNDUS_DEBUG(msg) FUNDUS_LOG(debug, msg)
