#include "fundus/core/strings.h"

#include <cctype>
#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cmath>
#include <cstdlib>

#include "fundus/core/error.h"

namespace fundus {

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t' || s[b] == '\r' || s[b] == '\n')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t' || s[e - 1] == '\r' || s[e - 1] == '\n')) --e;
  return s.substr(b, e - b);
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == sep) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

std::string to_lower(std::string s) {
  for (auto& c : s) c = char(std::tolower((unsigned char)c));
  return s;
}

bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }
bool ends_with(const std::string& s, const std::string& x) {
  return s.size() >= x.size() && s.compare(s.size() - x.size(), x.size(), x) == 0;
}

std::string join(const std::vector<std::string>& parts, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) out += (i ? sep : "") + parts[i];
  return out;
}

std::string closest_match(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_distance = std::string::npos;
  for (const std::string& c : candidates) {
    // Levenshtein distance, one row at a time.
    std::vector<size_t> row(c.size() + 1);
    for (size_t j = 0; j <= c.size(); ++j) row[j] = j;
    for (size_t i = 1; i <= word.size(); ++i) {
      size_t diagonal = row[0];
      row[0] = i;
      for (size_t j = 1; j <= c.size(); ++j) {
        const size_t up = row[j];
        row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (word[i - 1] == c[j - 1] ? 0 : 1)});
        diagonal = up;
      }
    }
    // A truncated or extended name ("rotate" for "rotation_deg") is close whatever its length.
    const bool prefix = std::min(word.size(), c.size()) >= 3 && (starts_with(c, word) || starts_with(word, c));
    const size_t distance = prefix ? 0 : row[c.size()];
    if (distance < best_distance) best_distance = distance, best = c;
  }
  return best_distance <= std::max<size_t>(2, word.size() / 3) ? best : "";
}

namespace {

// Length of a run of ASCII digits starting at s[i].
size_t digits_at(const std::string& s, size_t i) {
  size_t n = 0;
  while (i + n < s.size() && s[i + n] >= '0' && s[i + n] <= '9') ++n;
  return n;
}

}  // namespace

bool try_parse_int(const std::string& text, int64_t& out) {
  // Decimal only: strtoll/strtod would also take "0x2", "1e2", "inf" or leading zeros as octal, and
  // none of those is a grade or a count anyone meant to write.
  std::string t = trim(text);
  size_t i = (!t.empty() && (t[0] == '+' || t[0] == '-')) ? 1 : 0;
  size_t n = digits_at(t, i);
  if (n == 0) return false;
  size_t end = i + n;
  if (end < t.size()) {
    // Integral decimals such as "2.0" (some exporters write grades that way).
    if (t[end] != '.') return false;
    for (size_t j = end + 1; j < t.size(); ++j)
      if (t[j] != '0') return false;
  }
  errno = 0;
  long long v = std::strtoll(t.substr(0, end).c_str(), nullptr, 10);
  if (errno != 0) return false;  // out of range
  out = v;
  return true;
}

bool try_parse_double(const std::string& text, double& out) {
  // [+-]digits[.digits][e[+-]digits], finite: no hex floats, inf or nan.
  std::string t = trim(text);
  size_t i = (!t.empty() && (t[0] == '+' || t[0] == '-')) ? 1 : 0;
  size_t whole = digits_at(t, i);
  i += whole;
  size_t frac = 0;
  if (i < t.size() && t[i] == '.') {
    frac = digits_at(t, i + 1);
    i += 1 + frac;
  }
  if (whole + frac == 0) return false;
  if (i < t.size() && (t[i] == 'e' || t[i] == 'E')) {
    size_t j = i + 1;
    if (j < t.size() && (t[j] == '+' || t[j] == '-')) ++j;
    size_t exp = digits_at(t, j);
    if (exp == 0) return false;
    i = j + exp;
  }
  if (i != t.size()) return false;
  errno = 0;
  double v = std::strtod(t.c_str(), nullptr);
  if (errno == ERANGE && std::isinf(v)) return false;
  out = v;
  return std::isfinite(v);
}

int64_t parse_int(const std::string& text, const std::string& what) {
  int64_t v;
  FUNDUS_CHECK(try_parse_int(text, v), what << ": '" << text << "' is not an integer");
  return v;
}

double parse_double(const std::string& text, const std::string& what) {
  double v;
  FUNDUS_CHECK(try_parse_double(text, v), what << ": '" << text << "' is not a number");
  return v;
}

namespace {

// Length of the valid UTF-8 sequence at s[i], or 0 when the bytes there are not one.
size_t utf8_length_at(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return (unsigned char)s[i + k]; };
  const auto cont = [&](size_t k) { return i + k < s.size() && (b(k) & 0xC0) == 0x80; };
  const unsigned char c = b(0);
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (!cont(1) || !cont(2)) return 0;
    if (c == 0xE0 && b(1) < 0xA0) return 0;  // overlong
    if (c == 0xED && b(1) > 0x9F) return 0;  // UTF-16 surrogates
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    if (c == 0xF0 && b(1) < 0x90) return 0;  // overlong
    if (c == 0xF4 && b(1) > 0x8F) return 0;  // above U+10FFFF
    return 4;
  }
  return 0;
}

}  // namespace

bool is_valid_utf8(std::string_view s, size_t* bad_offset) {
  for (size_t i = 0; i < s.size();) {
    size_t n = utf8_length_at(s, i);
    if (n == 0) {
      if (bad_offset) *bad_offset = i;
      return false;
    }
    i += n;
  }
  return true;
}

size_t find_control_char(std::string_view s) {
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c == 0x7F) return i;
    if (c == 0xC2 && i + 1 < s.size() && (unsigned char)s[i + 1] >= 0x80 && (unsigned char)s[i + 1] <= 0x9F) return i;
  }
  return std::string_view::npos;
}

std::string escape_control(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    unsigned char c = (unsigned char)s[i];
    size_t n = utf8_length_at(s, i);
    bool c1 = n == 2 && c == 0xC2 && (unsigned char)s[i + 1] <= 0x9F;
    if (n == 0 || c1 || ((c < 0x20 || c == 0x7F) && c != '\n' && c != '\t')) {
      for (size_t k = 0; k < std::max<size_t>(n, 1); ++k) out += strprintf("\\x%02x", (unsigned char)s[i + k]);
      i += std::max<size_t>(n, 1);
      continue;
    }
    out.append(s.substr(i, n));
    i += n;
  }
  return out;
}

std::string describe_byte(unsigned char byte) {
  static const char* const names[32] = {"NUL", "SOH", "STX", "ETX", "EOT", "ENQ", "ACK", "BEL", "BS",  "TAB", "LF",
                                        "VT",  "FF",  "CR",  "SO",  "SI",  "DLE", "DC1", "DC2", "DC3", "DC4", "NAK",
                                        "SYN", "ETB", "CAN", "EM",  "SUB", "ESC", "FS",  "GS",  "RS",  "US"};
  std::string text = strprintf("0x%02X", byte);
  if (byte < 32) text += std::string(" (") + names[byte] + ")";
  if (byte == 0x7F) text += " (DEL)";
  return text;
}

std::string strprintf(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  va_list ap2;
  va_copy(ap2, ap);
  int n = std::vsnprintf(nullptr, 0, fmt, ap);
  va_end(ap);
  std::string out(size_t(n > 0 ? n : 0), '\0');
  std::vsnprintf(out.data(), out.size() + 1, fmt, ap2);
  va_end(ap2);
  return out;
}

}  // namespace fundus
