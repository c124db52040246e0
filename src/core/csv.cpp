#include "fundus/core/csv.h"

#include "fundus/core/error.h"
#include "fundus/core/io.h"

namespace fundus {

std::optional<size_t> CsvTable::column(const std::string& name) const {
  for (size_t i = 0; i < header.size(); ++i)
    if (trim(header[i]) == name) return i;
  return std::nullopt;
}

size_t CsvTable::require_column(const std::string& name) const {
  auto c = column(name);
  if (!c) {
    std::string cols;
    for (auto& h : header) cols += (cols.empty() ? "" : ", ") + h;
    FUNDUS_THROW(source << ": missing column '" << name << "' (columns: " << cols << ")");
  }
  return *c;
}

const std::string& CsvTable::field(const CsvRow& row, size_t col) const {
  static const std::string empty;
  return col < row.fields.size() ? row.fields[col] : empty;
}

CsvTable parse_csv(const std::string& text, const std::string& source, bool has_header) {
  CsvTable table;
  table.source = source;
  size_t i = 0;
  if (text.compare(0, 3, "\xEF\xBB\xBF") == 0) i = 3;
  int line = 1;
  std::vector<CsvRow> rows;
  while (i < text.size()) {
    CsvRow row;
    row.line = line;
    std::string field;
    bool in_quotes = false, quoted = false;
    int quote_line = line;
    for (; i < text.size(); ++i) {
      char c = text[i];
      if (in_quotes) {
        if (c == '"') {
          if (i + 1 < text.size() && text[i + 1] == '"') {
            field += '"';
            ++i;
          } else {
            in_quotes = false;
          }
        } else {
          if (c == '\n') ++line;
          field += c;
        }
      } else if (c == '"' && trim(field).empty()) {
        in_quotes = quoted = true;
        quote_line = line;
        field.clear();
      } else if (c == ',') {
        row.fields.push_back(quoted ? field : trim(field));
        field.clear();
        quoted = false;
      } else if (c == '\n' || c == '\r') {
        if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
        ++i;
        ++line;
        break;
      } else {
        field += c;
      }
    }
    FUNDUS_CHECK(!in_quotes, source << ":" << quote_line << ": unterminated quoted field");
    row.fields.push_back(quoted ? field : trim(field));
    bool blank = row.fields.size() == 1 && row.fields[0].empty();
    if (!blank) rows.push_back(std::move(row));
  }
  if (has_header && !rows.empty()) {
    table.header = std::move(rows.front().fields);
    for (auto& h : table.header) h = trim(h);
    rows.erase(rows.begin());
  }
  table.rows = std::move(rows);
  return table;
}

CsvTable read_csv(const std::string& path, bool has_header) {
  FUNDUS_CHECK(file_exists(path), path << ": CSV file not found");
  return parse_csv(read_file(path), path, has_header);
}

std::string csv_escape(const std::string& f) {
  if (f.find_first_of(",\"\n\r") == std::string::npos) return f;
  std::string out = "\"";
  for (char c : f) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string csv_line(const std::vector<std::string>& fields) {
  std::string out;
  for (size_t i = 0; i < fields.size(); ++i) {
    if (i) out += ',';
    out += csv_escape(fields[i]);
  }
  return out + "\n";
}

}  // namespace fundus
