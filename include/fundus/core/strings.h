// Small string helpers and strict number parsing with errors that name the field.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace fundus {

std::string trim(const std::string& s);  // strips spaces, tabs, CR, LF at both ends
std::vector<std::string> split(const std::string& s, char sep);
std::string to_lower(std::string s);
bool starts_with(const std::string& s, const std::string& prefix);
bool ends_with(const std::string& s, const std::string& suffix);
std::string join(const std::vector<std::string>& parts, const std::string& sep);
/// The candidate a misspelt `word` most likely meant (fewest single-character edits, or a candidate
/// that starts with it or it starts with), or "" when none is close: for "did you mean" in errors.
std::string closest_match(const std::string& word, const std::vector<std::string>& candidates);

/// Strict parsing: the whole string (after trimming) must be a decimal number. `what` names the field
/// in the error, e.g. "labels.csv:12: column 'grade'". Integers: [+-]digits, or an integral decimal
/// such as "2.0"; never hex ("0x2"), exponents ("1e2"), octal readings or out-of-range values.
/// Doubles: [+-]digits[.digits][e[+-]digits] and finite (no "inf", "nan", hex floats).
int64_t parse_int(const std::string& text, const std::string& what);
double parse_double(const std::string& text, const std::string& what);
/// Non-throwing variants.
bool try_parse_int(const std::string& text, int64_t& out);
bool try_parse_double(const std::string& text, double& out);

/// Whether `s` is well-formed UTF-8 (no overlong forms, surrogates or code points above U+10FFFF).
/// On failure `bad_offset` (when given) receives the offset of the first offending byte.
bool is_valid_utf8(std::string_view s, size_t* bad_offset = nullptr);
/// Offset of the first control character (C0 including tab and newline, DEL, or a C1 control
/// U+0080-U+009F), or npos. For identifiers and single-line fields.
size_t find_control_char(std::string_view s);
/// `s` made safe for a terminal or a log line: control characters except newline and tab, and bytes
/// that are not valid UTF-8, become visible escapes ("\x1b"); valid UTF-8 text is kept as it is.
std::string escape_control(std::string_view s);
/// "0x1B (ESC)" for messages about one byte.
std::string describe_byte(unsigned char byte);

/// printf-style formatting into a std::string.
std::string strprintf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

}  // namespace fundus
