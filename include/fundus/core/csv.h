// RFC 4180 CSV in UTF-8: quoted fields, doubled quotes, CRLF or LF, UTF-8 BOM, embedded newlines in quotes.
// Every row remembers the line it started on so that errors can name "file:line".
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "fundus/core/strings.h"

namespace fundus {

struct CsvRow {
  int line = 0;  // 1-based line where the row starts (header is line 1)
  std::vector<std::string> fields;
};

struct CsvTable {
  std::string source;  // file name for messages
  std::vector<std::string> header;
  std::vector<CsvRow> rows;

  /// Index of a column by exact name (after trimming spaces), or nullopt.
  std::optional<size_t> column(const std::string& name) const;
  /// Like column() but throws "<source>: missing column 'name' (columns: a, b, c)".
  size_t require_column(const std::string& name) const;
  /// The field of `row` at `col`, or "" when the row is short.
  const std::string& field(const CsvRow& row, size_t col) const;
};

/// Parses CSV text. The text must be UTF-8 (an optional UTF-8 byte order mark is skipped). Throws
/// fundus::Error naming source:line for an unterminated quote, a NUL byte, bytes that are not UTF-8
/// (Latin-1 / Windows-1252 files: the message says how to convert), and naming the source for a
/// UTF-16 or UTF-32 file (byte order mark, or NULs between ASCII characters) and for two header
/// columns of the same name.
CsvTable parse_csv(const std::string& text, const std::string& source, bool has_header = true);
/// Reads and parses a file.
CsvTable read_csv(const std::string& path, bool has_header = true);

/// Quotes a field when it contains a comma, quote or newline.
std::string csv_escape(const std::string& field);
std::string csv_line(const std::vector<std::string>& fields);  // with trailing "\n"

}  // namespace fundus
