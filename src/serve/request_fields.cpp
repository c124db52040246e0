#include "request_fields.h"

#include <algorithm>

#include "fundus/core/case.h"
#include "fundus/core/strings.h"

namespace fundus::api {

void fail(int status, const char* code, const std::string& message) { throw HttpError(status, code, message); }

// A short, printable rendering of the client's file name for messages ("upload 'q.jpg'").
std::string upload_source(const httplib::MultipartFormData& part) {
  std::string name = part.filename.substr(part.filename.find_last_of("/\\") + 1);
  std::string clean;
  for (char c : name)
    if (c >= 0x20 && c < 0x7f && c != '\'' && c != '"' && clean.size() < 80) clean += c;
  return "upload '" + (clean.empty() ? std::string("image") : clean) + "'";
}

int parse_k(const std::optional<std::string>& text, int max_k) {
  if (!text || text->empty()) return std::min(10, max_k);
  int64_t k = 0;
  if (!try_parse_int(*text, k) || k < 1 || k > max_k)
    fail(400, "bad_k",
         strprintf("field 'k': expected an integer from 1 to %d, got '%s'", max_k, text->substr(0, 20).c_str()));
  return int(k);
}

int parse_grade(const std::string& text, const char* field) {
  int64_t g = -1;
  if (!try_parse_int(text, g) || g < 0 || g >= kNumGrades)
    fail(400, "bad_grade",
         std::string("field '") + field + "': expected a DR grade 0-4, got '" + text.substr(0, 20) + "'");
  return int(g);
}

std::vector<int> parse_grades(const std::optional<std::string>& text) {
  std::vector<int> grades;
  if (!text || text->empty()) return grades;
  for (const std::string& part : split(*text, ',')) {
    int g = parse_grade(trim(part), "grades");
    if (std::find(grades.begin(), grades.end(), g) == grades.end()) grades.push_back(g);
  }
  return grades;
}

bool parse_flag(const std::optional<std::string>& text, bool fallback, const char* field) {
  if (!text || text->empty()) return fallback;
  std::string t = to_lower(*text);
  if (t == "1" || t == "true" || t == "yes" || t == "on") return true;
  if (t == "0" || t == "false" || t == "no" || t == "off") return false;
  fail(400, "bad_field", std::string("field '") + field + "': expected true/false, got '" + text->substr(0, 20) + "'");
}

// Free-text identifiers (case id, patient): bounded, UTF-8 and printable, so they are safe in JSON,
// terminals and logs.
std::string parse_text(const std::optional<std::string>& text, const char* field) {
  if (!text) return "";
  if (text->size() > 200) fail(400, "bad_field", std::string("field '") + field + "': longer than 200 characters");
  if (!is_valid_utf8(*text)) fail(400, "bad_field", std::string("field '") + field + "': not valid UTF-8");
  if (find_control_char(*text) != std::string::npos)
    fail(400, "bad_field", std::string("field '") + field + "': contains control characters");
  return *text;
}

// The free JSON object stored with a case: bounded in size and depth before anything else sees it.
Json parse_meta(const std::optional<std::string>& text) {
  if (!text || text->empty()) return Json::object();
  if (text->size() > kMaxMetaBytes)
    fail(400, "bad_meta", "field 'meta': longer than " + std::to_string(kMaxMetaBytes) + " bytes");
  std::string problem;
  std::optional<Json> meta = try_parse_json(*text, problem);
  if (!meta) fail(400, "bad_meta", "field 'meta': " + problem);
  if (!meta->is_object()) fail(400, "bad_meta", "field 'meta': expected a JSON object");
  return std::move(*meta);
}

std::string parse_eye(const std::optional<std::string>& text) {
  std::string t = text ? to_lower(*text) : "";
  if (t.empty()) return "";
  if (t == "l" || t == "left") return "L";
  if (t == "r" || t == "right") return "R";
  fail(400, "bad_eye", "field 'eye': expected L or R, got '" + text->substr(0, 20) + "'");
}

}  // namespace fundus::api
