#include "fundus/core/error.h"

namespace fundus {

static std::string with_location(const std::string& message, const char* file, int line) {
  return message + " [" + file + ":" + std::to_string(line) + "]";
}

Error::Error(const std::string& message, const char* file, int line)
    : std::runtime_error(with_location(message, file, line)), message_(message) {}

void throw_error(const char* file, int line, const std::string& message) {
  throw Error(message, file, line);
}

}  // namespace fundus
