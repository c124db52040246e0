// JSON configuration helpers (nlohmann::json). Configs are JSON objects with presets: a preset is a
// complete object, user files and --set overrides are merged over it (RFC 7386 merge patch), unknown
// keys are errors (a typo must not silently fall back to a default), and the resolved config is saved
// beside every output.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <limits>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "fundus/core/error.h"

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

/// Throws "<context>: unknown key 'x' (did you mean 'y'? known: a, b, c)" for keys of `object` not in
/// `known` (the suggestion only when a known key is close to 'x'). Every error in this header is a
/// fundus::Error whose message names the source and field.
void check_known_keys(const Json& object, std::initializer_list<const char*> known, const std::string& context);

/// A JSON number as an integer in [lo, hi]. A fraction, a value out of range or a non-number throws
/// fundus::Error naming `field` and quoting the value as written ("model.input_size: 1e+30 is out
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
    FUNDUS_THROW(context << "." << key << ": " << e.what());
  }
}

/// An enum's spellings in configuration files and on the command line, so that a choice is parsed
/// once (at config load) and compared as an enum afterwards. Immutable after construction; safe to
/// share between threads.
template <typename E>
class Choices {
 public:
  Choices(std::initializer_list<std::pair<E, const char*>> items) : items_(items) {}
  /// The value spelled `name`; throws "<field>: 'x' is not one of a, b, c".
  E parse(const std::string& name, const std::string& field) const {
    for (const auto& [value, spelling] : items_)
      if (name == spelling) return value;
    FUNDUS_THROW(field << ": '" << name << "' is not one of " << list());
  }
  /// The spelling of `value` ("?" for a value outside the table, which a cast could produce).
  const char* name(E value) const {
    for (const auto& [v, spelling] : items_)
      if (v == value) return spelling;
    return "?";
  }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& item : items_) out.emplace_back(item.second);
    return out;
  }
  /// "a, b, c" for messages.
  std::string list() const {
    std::string out;
    for (const auto& item : items_) out += std::string(out.empty() ? "" : ", ") + item.second;
    return out;
  }

 private:
  std::vector<std::pair<E, const char*>> items_;
};

/// The one way configuration sections are read: a JSON object whose fields are all optional (a
/// missing or null field keeps the caller's default), typed, and named in errors as
/// "<context>.<key>". The constructor rejects a non-object and unknown keys (naming the closest known
/// key), so a typo never falls back silently to a default. Errors are fundus::Error.
///
///   JsonFields f(section, "run.json: train", {"epochs", "select"});
///   f.read("epochs", t.epochs, 0, 100000);   // integer, range-checked
///   f.read("select", t.select);               // any JSON-convertible type
///   f.read("pooling", c.pooling, pooling_choices());  // an enum through its Choices
class JsonFields {
 public:
  JsonFields(const Json& object, std::string context, std::initializer_list<const char*> known)
      : object_(object), context_(std::move(context)) {
    check_known_keys(object_, known, context_);
  }
  const std::string& context() const { return context_; }
  /// "<context>.<key>", for the caller's own checks.
  std::string field(const char* key) const { return context_ + "." + key; }
  /// Whether the field is present and not null.
  bool has(const char* key) const {
    auto it = object_.find(key);
    return it != object_.end() && !it->is_null();
  }
  template <typename T>
  void read(const char* key, T& value) const {
    value = json_value(object_, key, value, context_);
  }
  /// A number in [lo, hi]: "<context>.<key>: 5000 outside 0-1024".
  template <typename T, typename = std::enable_if_t<std::is_arithmetic_v<T> && !std::is_same_v<T, bool>>>
  void read(const char* key, T& value, std::common_type_t<T> lo, std::common_type_t<T> hi) const {
    read(key, value);
    FUNDUS_CHECK(value >= lo && value <= hi, field(key) << ": " << value << " outside " << lo << "-" << hi);
  }
  template <typename E>
  void read(const char* key, E& value, const Choices<E>& choices) const {
    if (has(key)) value = choices.parse(json_value<std::string>(object_, key, "", context_), field(key));
  }

 private:
  const Json& object_;
  std::string context_;
};

}  // namespace fundus
