#include "fundus/core/json.h"

#include <cmath>

#include "fundus/core/error.h"
#include "fundus/core/io.h"
#include "fundus/core/strings.h"

namespace fundus {

namespace {

struct TooDeep {};

// Byte offset -> "line:column" for humans.
std::string position(const std::string& text, size_t byte) {
  size_t line = 1, col = 1;
  for (size_t i = 0; i + 1 < byte && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return strprintf("%zu:%zu", line, col);
}

// The value, or nullopt with `where` ("line:column", or "" for a depth violation) and `what` set.
std::optional<Json> parse_bounded(const std::string& text, int max_depth, std::string& where, std::string& what) {
  // nlohmann's parser is iterative, but copying, comparing and dumping a value recurse once per
  // level: refuse depth while parsing, through the callback that reports it.
  const Json::parser_callback_t bound = [max_depth](int depth, Json::parse_event_t event, Json&) {
    if ((event == Json::parse_event_t::object_start || event == Json::parse_event_t::array_start) && depth >= max_depth)
      throw TooDeep{};
    return true;
  };
  try {
    return Json::parse(text, bound);
  } catch (const TooDeep&) {
    what = "JSON nested deeper than " + std::to_string(max_depth) + " levels";
  } catch (const nlohmann::json::parse_error& e) {
    where = position(text, e.byte);
    what = std::string("invalid JSON (") + e.what() + ")";
  } catch (const nlohmann::json::exception& e) {
    // Not a syntax error but still bad input: a number beyond double ("1e999", out_of_range.406).
    what = std::string("invalid JSON (") + e.what() + ")";
  }
  return std::nullopt;
}

}  // namespace

std::optional<Json> try_parse_json(const std::string& text, std::string& problem, int max_depth) {
  std::string where, what;
  std::optional<Json> value = parse_bounded(text, max_depth, where, what);
  if (!value) problem = where.empty() ? what : where + ": " + what;
  return value;
}

Json parse_json(const std::string& text, const std::string& source, int max_depth) {
  std::string where, what;
  std::optional<Json> value = parse_bounded(text, max_depth, where, what);
  FUNDUS_CHECK(value, source << (where.empty() ? "" : ":" + where) << ": " << what);
  return std::move(*value);
}

Json load_json_file(const std::string& path, int max_depth) {
  FUNDUS_CHECK(file_exists(path), path << ": JSON file not found");
  return parse_json(read_file(path), path, max_depth);
}

void save_json_file(const std::string& path, const Json& value) { write_file_atomic(path, value.dump(2) + "\n"); }

Json merge_json(Json base, const Json& patch) {
  base.merge_patch(patch);
  return base;
}

void apply_override(Json& config, const std::string& assignment) {
  auto eq = assignment.find('=');
  FUNDUS_CHECK(eq != std::string::npos && eq > 0, "override '" << assignment << "' must look like key.path=value");
  std::string path = assignment.substr(0, eq), text = assignment.substr(eq + 1);
  std::string ignored;
  std::optional<Json> parsed = try_parse_json(text, ignored);
  Json value = parsed ? std::move(*parsed) : Json(text);
  Json* node = &config;
  auto keys = split(path, '.');
  for (size_t i = 0; i + 1 < keys.size(); ++i) {
    FUNDUS_CHECK(node->is_object() && node->contains(keys[i]), "override '" << path << "': no key '" << keys[i] << "'");
    node = &(*node)[keys[i]];
  }
  FUNDUS_CHECK(node->is_object() && node->contains(keys.back()),
               "override '" << path << "': unknown key '" << keys.back() << "'");
  (*node)[keys.back()] = value;
}

void check_known_keys(const Json& object, std::initializer_list<const char*> known, const std::string& context) {
  FUNDUS_CHECK(object.is_object(), context << ": expected a JSON object");
  for (auto it = object.begin(); it != object.end(); ++it) {
    bool ok = false;
    for (const char* k : known) ok = ok || it.key() == k;
    if (!ok) {
      std::vector<std::string> names(known.begin(), known.end());
      const std::string guess = closest_match(it.key(), names);
      FUNDUS_THROW(context << ": unknown key '" << it.key() << "' ("
                           << (guess.empty() ? "" : "did you mean '" + guess + "'? ") << "known: " << join(names, ", ")
                           << ")");
    }
  }
}

int64_t json_integer(const Json& value, int64_t lo, int64_t hi, const std::string& field) {
  auto out_of_range = [&] {
    FUNDUS_THROW(field << ": " << value.dump() << " is out of range (expected an integer from " << lo << " to " << hi
                       << ")");
  };
  if (value.is_number_unsigned()) {
    const uint64_t u = value.get<uint64_t>();
    if (hi < 0 || u > uint64_t(hi)) out_of_range();
    return int64_t(u);
  }
  if (value.is_number_integer()) {
    const int64_t i = value.get<int64_t>();
    if (i < lo || i > hi) out_of_range();
    return i;
  }
  if (value.is_number_float()) {
    const double d = value.get<double>();
    FUNDUS_CHECK(std::isfinite(d) && d == std::floor(d), field << ": " << value.dump() << " is not an integer");
    // Compare in double without converting an out-of-range value (UB): 2^63 itself is out of int64.
    if (d < double(lo) || d > double(hi) || d >= 9223372036854775808.0) out_of_range();
    return int64_t(d);
  }
  FUNDUS_THROW(field << ": expected an integer, got " << value.dump());
}

}  // namespace fundus
