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

namespace {

// 1-based line and column of byte `offset`.
std::pair<size_t, size_t> line_column(const std::string& text, size_t offset) {
  size_t line = 1, start = 0;
  for (size_t i = 0; i < offset && i < text.size(); ++i)
    if (text[i] == '\n') {
      ++line;
      start = i + 1;
    }
  return {line, offset - start + 1};
}

// CSV text must be UTF-8: anything else imports silently and then breaks every JSON answer that
// quotes a field. Throws naming source:line with what the bytes look like and how to convert them.
void check_encoding(const std::string& text, const std::string& source) {
  auto starts = [&](const char* magic, size_t n) { return text.compare(0, n, magic, n) == 0; };
  const char* kind = starts("\xFF\xFE\0\0", 4)   ? "UTF-32 (little-endian byte order mark FF FE 00 00)"
                     : starts("\0\0\xFE\xFF", 4) ? "UTF-32 (big-endian byte order mark 00 00 FE FF)"
                     : starts("\xFF\xFE", 2)     ? "UTF-16 (little-endian byte order mark FF FE)"
                     : starts("\xFE\xFF", 2)     ? "UTF-16 (big-endian byte order mark FE FF)"
                                                 : nullptr;
  // Without a byte order mark, ASCII text in UTF-16 has a NUL beside every character.
  if (!kind && text.size() >= 4 && text[0] != '\0' && text[1] == '\0' && text[3] == '\0')
    kind = "UTF-16 (little-endian, no byte order mark: every other byte is NUL)";
  if (!kind && text.size() >= 4 && text[0] == '\0' && text[1] != '\0' && text[2] == '\0')
    kind = "UTF-16 (big-endian, no byte order mark: every other byte is NUL)";
  FUNDUS_CHECK(!kind, source << ": the file is " << kind
                             << ", not UTF-8; save it as UTF-8 (e.g. iconv -f UTF-16 -t UTF-8 IN.csv > OUT.csv)");
  size_t nul = text.find('\0');
  if (nul != std::string::npos) {
    auto [line, col] = line_column(text, nul);
    FUNDUS_THROW(source << ":" << line << ": NUL byte (0x00) at column " << col
                        << "; a CSV file is text and never contains NUL bytes (binary data, or a damaged file?)");
  }
  size_t bad = 0;
  if (!is_valid_utf8(text, &bad)) {
    auto [line, col] = line_column(text, bad);
    FUNDUS_THROW(source << ":" << line << ": byte " << strprintf("0x%02X", (unsigned char)text[bad]) << " at column "
                        << col << " is not valid UTF-8; the file is probably in Latin-1 or Windows-1252: convert it "
                        << "(e.g. iconv -f WINDOWS-1252 -t UTF-8 IN.csv > OUT.csv) and import it again");
  }
}

}  // namespace

CsvTable parse_csv(const std::string& text, const std::string& source, bool has_header) {
  CsvTable table;
  table.source = source;
  check_encoding(text, source);
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
    // A second column of the same name would silently lose to the first one.
    std::map<std::string, size_t> first;
    for (size_t c = 0; c < table.header.size(); ++c) {
      if (table.header[c].empty()) continue;  // unnamed columns (trailing commas) are never looked up
      auto [it, inserted] = first.emplace(table.header[c], c);
      FUNDUS_CHECK(inserted, source << ":1: duplicate column '" << table.header[c] << "' (columns " << it->second + 1
                                    << " and " << c + 1 << "); rename one of them");
    }
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
