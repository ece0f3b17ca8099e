#include "pool/pg/session_pins.h"

#include <array>

namespace sqlmux::pool {
namespace {

constexpr std::array<std::string_view, kPgPinKinds> kNames{
    "temp_table", "sql_prepare", "hold_cursor", "advisory_lock", "listen"};

char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

bool ident_char(char c) {
  const auto u = static_cast<unsigned char>(c);
  return (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || (u >= '0' && u <= '9') || u == '_' ||
         u == '$' || u >= 0x80;
}

// Whether `word` (lower case) occurs in s, in any case; with `whole`, only
// as a word of its own (not inside an identifier: "template", "threshold").
bool contains(std::string_view s, std::string_view word, bool whole) {
  if (s.size() < word.size()) return false;
  for (size_t i = 0; i + word.size() <= s.size(); ++i) {
    if (lower(s[i]) != word[0]) continue;
    size_t k = 1;
    while (k < word.size() && lower(s[i + k]) == word[k]) ++k;
    if (k != word.size()) continue;
    if (!whole) return true;
    const bool before = i > 0 && ident_char(s[i - 1]);
    const bool after = i + k < s.size() && ident_char(s[i + k]);
    if (!before && !after) return true;
  }
  return false;
}

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

}  // namespace

std::string_view to_string(PgPin p) {
  return kNames[static_cast<size_t>(pin_index(p))];
}

int pin_index(PgPin p) {
  int i = 0;
  for (auto v = static_cast<unsigned>(p); v > 1; v >>= 1) ++i;
  return i;
}

std::string pins_to_string(uint8_t pins) {
  std::string out;
  for (int i = 0; i < kPgPinKinds; ++i) {
    if ((pins & (1u << i)) == 0) continue;
    if (!out.empty()) out += ',';
    out += kNames[static_cast<size_t>(i)];
  }
  return out;
}

bool may_hold_state(std::string_view sql) {
  return contains(sql, "temp", true) || contains(sql, "temporary", true) ||
         contains(sql, "hold", true) || contains(sql, "advisory_", false);
}

bool tag_may_change_state(std::string_view tag) {
  static constexpr std::string_view kTags[] = {
      "PREPARE",    "DEALLOCATE", "DISCARD",       "CREATE TABLE", "CREATE VIEW", "CREATE SEQUENCE",
      "DROP TABLE", "DROP VIEW",  "DROP SEQUENCE", "CLOSE CURSOR", "DROP SCHEMA", "DROP OWNED"};
  for (std::string_view t : kTags) {
    if (starts_with(tag, t)) return true;
  }
  return false;
}

std::optional<uint8_t> pins_from_row(const std::vector<std::string>& row) {
  if (row.size() != 4) return std::nullopt;
  uint8_t pins = 0;
  for (size_t i = 0; i < row.size(); ++i) {
    if (row[i] == "t") {
      pins |= static_cast<uint8_t>(1u << i);
    } else if (row[i] != "f") {
      return std::nullopt;
    }
  }
  return pins;
}

}  // namespace sqlmux::pool
