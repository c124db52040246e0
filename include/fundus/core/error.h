// Errors: one exception type, thrown by checks that carry the source file and line.
//
//   FUNDUS_CHECK(grade >= 0 && grade <= 4, path << ":" << line << ": grade " << grade << " outside 0-4");
//   FUNDUS_THROW("cannot open " << path);
//
// The message is written for the user (name the file, line or field that is wrong); the source
// location is appended in brackets for developers: "labels.csv:7: grade 9 outside 0-4 [src/data/x.cpp:42]".
// User-facing front ends (CLI, server) print what(); nothing else is added. Control characters and
// invalid UTF-8 in the message (user input quoted in it) are escaped ("\x1b"), so printing an
// error can never drive a terminal or be cut short at a NUL byte.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace fundus {

class Error : public std::runtime_error {
 public:
  Error(const std::string& message, const char* file, int line);
  /// The message without the "[file:line]" suffix.
  const std::string& message() const { return message_; }

 private:
  std::string message_;
};

/// An Error caused by what a caller sent (an uploaded image, a request field, a duplicate id): the
/// message names that input, never a server file. Front ends answer it as the caller's problem (HTTP
/// 4xx); any other Error is the server's (HTTP 5xx, details only in the server's log).
class InputError : public Error {
 public:
  using Error::Error;
};

[[noreturn]] void throw_error(const char* file, int line, const std::string& message);

namespace detail {
struct MessageBuilder {
  std::ostringstream stream;
  template <typename T>
  MessageBuilder& operator<<(const T& value) {
    stream << value;
    return *this;
  }
  std::string str() const { return stream.str(); }
};
}  // namespace detail

}  // namespace fundus

#define FUNDUS_THROW(msg) ::fundus::throw_error(__FILE__, __LINE__, (::fundus::detail::MessageBuilder{} << msg).str())

#define FUNDUS_THROW_INPUT(msg) \
  throw ::fundus::InputError((::fundus::detail::MessageBuilder{} << msg).str(), __FILE__, __LINE__)

#define FUNDUS_CHECK_INPUT(cond, msg)     \
  do {                                    \
    if (!(cond)) FUNDUS_THROW_INPUT(msg); \
  } while (0)

#define FUNDUS_CHECK(cond, msg)     \
  do {                              \
    if (!(cond)) FUNDUS_THROW(msg); \
  } while (0)
