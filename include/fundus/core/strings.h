// Small string helpers and strict number parsing with errors that name the field.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace fundus {

std::string trim(const std::string& s);  // strips spaces, tabs, CR, LF at both ends
std::vector<std::string> split(const std::string& s, char sep);
std::string to_lower(std::string s);
bool starts_with(const std::string& s, const std::string& prefix);
bool ends_with(const std::string& s, const std::string& suffix);
std::string join(const std::vector<std::string>& parts, const std::string& sep);

/// Strict parsing: the whole string (after trimming) must be a number. `what` names the field in the
/// error, e.g. "labels.csv:12: column 'grade'".
int64_t parse_int(const std::string& text, const std::string& what);
double parse_double(const std::string& text, const std::string& what);
/// Non-throwing variants.
bool try_parse_int(const std::string& text, int64_t& out);
bool try_parse_double(const std::string& text, double& out);

/// printf-style formatting into a std::string.
std::string strprintf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

}  // namespace fundus
