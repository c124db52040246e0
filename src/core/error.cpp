#include "fundus/core/error.h"

#include "fundus/core/strings.h"

namespace fundus {

static std::string with_location(const std::string& message, const char* file, int line) {
  return message + " [" + file + ":" + std::to_string(line) + "]";
}

// Messages quote user input (CSV fields, file names, HTTP fields): escape control characters and
// invalid UTF-8 so that printing one cannot drive the terminal (ESC, BEL) or cut it short (NUL).
Error::Error(const std::string& message, const char* file, int line)
    : std::runtime_error(with_location(escape_control(message), file, line)), message_(escape_control(message)) {}

void throw_error(const char* file, int line, const std::string& message) { throw Error(message, file, line); }

}  // namespace fundus
