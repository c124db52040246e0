// JSON configuration helpers (nlohmann::json). Configs are JSON objects with presets: a preset is a
// complete object, user files and --set overrides are merged over it (RFC 7386 merge patch), unknown
// keys are errors (a typo must not silently fall back to a default), and the resolved config is saved
// beside every output.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>

#include <nlohmann/json.hpp>

namespace fundus {

using Json = nlohmann::json;

/// Deepest nesting of arrays and objects accepted in a JSON document read from outside the process
/// (config files, checkpoint meta, HTTP fields, store rows). Real documents here nest a handful of
/// levels; a bound keeps hostile ones (60,000 nested objects in 360 kB) from exhausting the stack in
/// the recursive code that later copies, compares or prints them.
constexpr int kMaxJsonDepth = 64;

/// Parses a file; errors name the file and the line/column of the syntax error.
Json load_json_file(const std::string& path, int max_depth = kMaxJsonDepth);
/// Every JSON text from outside goes through here: syntax errors name source:line:column, documents
/// nested deeper than `max_depth` are rejected while parsing (before the deep value is built).
Json parse_json(const std::string& text, const std::string& source, int max_depth = kMaxJsonDepth);
/// Non-throwing form: the value, or nullopt with `problem` set ("line 1, column 5: ...").
std::optional<Json> try_parse_json(const std::string& text, std::string& problem, int max_depth = kMaxJsonDepth);
/// Pretty-printed, atomic write.
void save_json_file(const std::string& path, const Json& value);

/// Deep merge: objects merge key by key, anything else in `patch` replaces; null deletes.
Json merge_json(Json base, const Json& patch);
/// Applies "a.b.c=value" (value parsed as JSON, else taken as a string).
void apply_override(Json& config, const std::string& assignment);

/// Throws "<context>: unknown key 'x' (known: a, b, c)" for keys of `object` not in `known`.
void check_known_keys(const Json& object, std::initializer_list<const char*> known, const std::string& context);

/// A JSON number as an integer in [lo, hi]. A fraction, a value out of range or a non-number throws
/// std::runtime_error naming `field` and quoting the value as written ("model.input_size: 1e+30 is out
/// of range (expected an integer from -2147483648 to 2147483647)"): nlohmann's own conversion would
/// truncate 2.5 to 2 and turn 1e30 into INT_MIN.
int64_t json_integer(const Json& value, int64_t lo, int64_t hi, const std::string& field);

/// object[key] converted to T, or `fallback` when absent; a wrong type throws naming context.key.
/// Integers go through json_integer (T's range).
template <typename T>
T json_value(const Json& object, const char* key, const T& fallback, const std::string& context = "config") {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return fallback;
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    if (std::is_same_v<T, uint64_t> && it->is_number_unsigned()) return T(it->template get<uint64_t>());  // above int64
    constexpr int64_t hi = std::numeric_limits<T>::max() > uint64_t(std::numeric_limits<int64_t>::max())
                               ? std::numeric_limits<int64_t>::max()
                               : int64_t(std::numeric_limits<T>::max());
    return T(json_integer(*it, int64_t(std::numeric_limits<T>::min()), hi, context + "." + key));
  }
  try {
    return it->template get<T>();
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(context + "." + key + ": " + e.what());
  }
}

}  // namespace fundus
