// Parsing the fields of API requests (private to the serve component): the multipart form fields
// (k, grades, attention, id, patient, eye, meta) and the client's file name, each checked and
// bounded before the server uses it. Kept apart from server.cpp so that they are testable and
// fuzzable (fuzz/fuzz_api.cpp) without a socket.
//
// Every refusal throws HttpError: the HTTP status, a stable machine-readable code and a message
// that names the field and quotes at most 20 bytes of what was sent. Reentrant.
#pragma once

#include <httplib.h>

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "fundus/core/json.h"

namespace fundus::api {

// A request the server refuses: HTTP status, a stable machine-readable code, a message for people.
struct HttpError : std::runtime_error {
  HttpError(int status, std::string code, const std::string& message)
      : std::runtime_error(message), status(status), code(std::move(code)) {}
  int status;
  std::string code;
};

[[noreturn]] void fail(int status, const char* code, const std::string& message);

/// Largest accepted 'meta' field (JSON text).
constexpr size_t kMaxMetaBytes = 64 * 1024;

/// A short, printable rendering of the client's file name for messages ("upload 'q.jpg'").
std::string upload_source(const httplib::MultipartFormData& part);
/// 'k': absent or empty -> min(10, max_k); else an integer 1..max_k (400 bad_k).
int parse_k(const std::optional<std::string>& text, int max_k);
/// A DR grade 0-4 (400 bad_grade naming `field`).
int parse_grade(const std::string& text, const char* field);
/// 'grades': comma-separated grades, duplicates dropped, in first-seen order; absent -> {}.
std::vector<int> parse_grades(const std::optional<std::string>& text);
/// 1/true/yes/on or 0/false/no/off (any case); absent or empty -> fallback.
bool parse_flag(const std::optional<std::string>& text, bool fallback, const char* field);
/// Free-text identifiers (case id, patient): at most 200 bytes, UTF-8, no control characters.
std::string parse_text(const std::optional<std::string>& text, const char* field);
/// 'eye': L/left/R/right (any case) -> "L"/"R"; absent or empty -> "".
std::string parse_eye(const std::optional<std::string>& text);
/// 'meta': a JSON object of at most kMaxMetaBytes nested at most kMaxJsonDepth levels; absent -> {}.
Json parse_meta(const std::optional<std::string>& text);

}  // namespace fundus::api
