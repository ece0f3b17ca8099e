#include "pool/mysql/session.h"

#include <algorithm>
#include <array>

namespace sqlmux::pool {

namespace {

struct Collation {
  std::string_view charset;
  std::string_view collation;
  uint16_t id;
  bool is_default;
};

// MariaDB 10.11.19: SELECT ID, CHARACTER_SET_NAME, COLLATION_NAME, IS_DEFAULT
// FROM information_schema.COLLATIONS WHERE ID BETWEEN 1 AND 255 ORDER BY ID.
// Every charset's default collation is among them.
constexpr Collation kCollations[] = {
    {"big5", "big5_chinese_ci", 1, true},
    {"latin2", "latin2_czech_cs", 2, false},
    {"dec8", "dec8_swedish_ci", 3, true},
    {"cp850", "cp850_general_ci", 4, true},
    {"latin1", "latin1_german1_ci", 5, false},
    {"hp8", "hp8_english_ci", 6, true},
    {"koi8r", "koi8r_general_ci", 7, true},
    {"latin1", "latin1_swedish_ci", 8, true},
    {"latin2", "latin2_general_ci", 9, true},
    {"swe7", "swe7_swedish_ci", 10, true},
    {"ascii", "ascii_general_ci", 11, true},
    {"ujis", "ujis_japanese_ci", 12, true},
    {"sjis", "sjis_japanese_ci", 13, true},
    {"cp1251", "cp1251_bulgarian_ci", 14, false},
    {"latin1", "latin1_danish_ci", 15, false},
    {"hebrew", "hebrew_general_ci", 16, true},
    {"tis620", "tis620_thai_ci", 18, true},
    {"euckr", "euckr_korean_ci", 19, true},
    {"latin7", "latin7_estonian_cs", 20, false},
    {"latin2", "latin2_hungarian_ci", 21, false},
    {"koi8u", "koi8u_general_ci", 22, true},
    {"cp1251", "cp1251_ukrainian_ci", 23, false},
    {"gb2312", "gb2312_chinese_ci", 24, true},
    {"greek", "greek_general_ci", 25, true},
    {"cp1250", "cp1250_general_ci", 26, true},
    {"latin2", "latin2_croatian_ci", 27, false},
    {"gbk", "gbk_chinese_ci", 28, true},
    {"cp1257", "cp1257_lithuanian_ci", 29, false},
    {"latin5", "latin5_turkish_ci", 30, true},
    {"latin1", "latin1_german2_ci", 31, false},
    {"armscii8", "armscii8_general_ci", 32, true},
    {"utf8mb3", "utf8mb3_general_ci", 33, true},
    {"cp1250", "cp1250_czech_cs", 34, false},
    {"ucs2", "ucs2_general_ci", 35, true},
    {"cp866", "cp866_general_ci", 36, true},
    {"keybcs2", "keybcs2_general_ci", 37, true},
    {"macce", "macce_general_ci", 38, true},
    {"macroman", "macroman_general_ci", 39, true},
    {"cp852", "cp852_general_ci", 40, true},
    {"latin7", "latin7_general_ci", 41, true},
    {"latin7", "latin7_general_cs", 42, false},
    {"macce", "macce_bin", 43, false},
    {"cp1250", "cp1250_croatian_ci", 44, false},
    {"utf8mb4", "utf8mb4_general_ci", 45, true},
    {"utf8mb4", "utf8mb4_bin", 46, false},
    {"latin1", "latin1_bin", 47, false},
    {"latin1", "latin1_general_ci", 48, false},
    {"latin1", "latin1_general_cs", 49, false},
    {"cp1251", "cp1251_bin", 50, false},
    {"cp1251", "cp1251_general_ci", 51, true},
    {"cp1251", "cp1251_general_cs", 52, false},
    {"macroman", "macroman_bin", 53, false},
    {"utf16", "utf16_general_ci", 54, true},
    {"utf16", "utf16_bin", 55, false},
    {"utf16le", "utf16le_general_ci", 56, true},
    {"cp1256", "cp1256_general_ci", 57, true},
    {"cp1257", "cp1257_bin", 58, false},
    {"cp1257", "cp1257_general_ci", 59, true},
    {"utf32", "utf32_general_ci", 60, true},
    {"utf32", "utf32_bin", 61, false},
    {"utf16le", "utf16le_bin", 62, false},
    {"binary", "binary", 63, true},
    {"armscii8", "armscii8_bin", 64, false},
    {"ascii", "ascii_bin", 65, false},
    {"cp1250", "cp1250_bin", 66, false},
    {"cp1256", "cp1256_bin", 67, false},
    {"cp866", "cp866_bin", 68, false},
    {"dec8", "dec8_bin", 69, false},
    {"greek", "greek_bin", 70, false},
    {"hebrew", "hebrew_bin", 71, false},
    {"hp8", "hp8_bin", 72, false},
    {"keybcs2", "keybcs2_bin", 73, false},
    {"koi8r", "koi8r_bin", 74, false},
    {"koi8u", "koi8u_bin", 75, false},
    {"latin2", "latin2_bin", 77, false},
    {"latin5", "latin5_bin", 78, false},
    {"latin7", "latin7_bin", 79, false},
    {"cp850", "cp850_bin", 80, false},
    {"cp852", "cp852_bin", 81, false},
    {"swe7", "swe7_bin", 82, false},
    {"utf8mb3", "utf8mb3_bin", 83, false},
    {"big5", "big5_bin", 84, false},
    {"euckr", "euckr_bin", 85, false},
    {"gb2312", "gb2312_bin", 86, false},
    {"gbk", "gbk_bin", 87, false},
    {"sjis", "sjis_bin", 88, false},
    {"tis620", "tis620_bin", 89, false},
    {"ucs2", "ucs2_bin", 90, false},
    {"ujis", "ujis_bin", 91, false},
    {"geostd8", "geostd8_general_ci", 92, true},
    {"geostd8", "geostd8_bin", 93, false},
    {"latin1", "latin1_spanish_ci", 94, false},
    {"cp932", "cp932_japanese_ci", 95, true},
    {"cp932", "cp932_bin", 96, false},
    {"eucjpms", "eucjpms_japanese_ci", 97, true},
    {"eucjpms", "eucjpms_bin", 98, false},
    {"cp1250", "cp1250_polish_ci", 99, false},
    {"utf16", "utf16_unicode_ci", 101, false},
    {"utf16", "utf16_icelandic_ci", 102, false},
    {"utf16", "utf16_latvian_ci", 103, false},
    {"utf16", "utf16_romanian_ci", 104, false},
    {"utf16", "utf16_slovenian_ci", 105, false},
    {"utf16", "utf16_polish_ci", 106, false},
    {"utf16", "utf16_estonian_ci", 107, false},
    {"utf16", "utf16_spanish_ci", 108, false},
    {"utf16", "utf16_swedish_ci", 109, false},
    {"utf16", "utf16_turkish_ci", 110, false},
    {"utf16", "utf16_czech_ci", 111, false},
    {"utf16", "utf16_danish_ci", 112, false},
    {"utf16", "utf16_lithuanian_ci", 113, false},
    {"utf16", "utf16_slovak_ci", 114, false},
    {"utf16", "utf16_spanish2_ci", 115, false},
    {"utf16", "utf16_roman_ci", 116, false},
    {"utf16", "utf16_persian_ci", 117, false},
    {"utf16", "utf16_esperanto_ci", 118, false},
    {"utf16", "utf16_hungarian_ci", 119, false},
    {"utf16", "utf16_sinhala_ci", 120, false},
    {"utf16", "utf16_german2_ci", 121, false},
    {"utf16", "utf16_croatian_mysql561_ci", 122, false},
    {"utf16", "utf16_unicode_520_ci", 123, false},
    {"utf16", "utf16_vietnamese_ci", 124, false},
    {"ucs2", "ucs2_unicode_ci", 128, false},
    {"ucs2", "ucs2_icelandic_ci", 129, false},
    {"ucs2", "ucs2_latvian_ci", 130, false},
    {"ucs2", "ucs2_romanian_ci", 131, false},
    {"ucs2", "ucs2_slovenian_ci", 132, false},
    {"ucs2", "ucs2_polish_ci", 133, false},
    {"ucs2", "ucs2_estonian_ci", 134, false},
    {"ucs2", "ucs2_spanish_ci", 135, false},
    {"ucs2", "ucs2_swedish_ci", 136, false},
    {"ucs2", "ucs2_turkish_ci", 137, false},
    {"ucs2", "ucs2_czech_ci", 138, false},
    {"ucs2", "ucs2_danish_ci", 139, false},
    {"ucs2", "ucs2_lithuanian_ci", 140, false},
    {"ucs2", "ucs2_slovak_ci", 141, false},
    {"ucs2", "ucs2_spanish2_ci", 142, false},
    {"ucs2", "ucs2_roman_ci", 143, false},
    {"ucs2", "ucs2_persian_ci", 144, false},
    {"ucs2", "ucs2_esperanto_ci", 145, false},
    {"ucs2", "ucs2_hungarian_ci", 146, false},
    {"ucs2", "ucs2_sinhala_ci", 147, false},
    {"ucs2", "ucs2_german2_ci", 148, false},
    {"ucs2", "ucs2_croatian_mysql561_ci", 149, false},
    {"ucs2", "ucs2_unicode_520_ci", 150, false},
    {"ucs2", "ucs2_vietnamese_ci", 151, false},
    {"ucs2", "ucs2_general_mysql500_ci", 159, false},
    {"utf32", "utf32_unicode_ci", 160, false},
    {"utf32", "utf32_icelandic_ci", 161, false},
    {"utf32", "utf32_latvian_ci", 162, false},
    {"utf32", "utf32_romanian_ci", 163, false},
    {"utf32", "utf32_slovenian_ci", 164, false},
    {"utf32", "utf32_polish_ci", 165, false},
    {"utf32", "utf32_estonian_ci", 166, false},
    {"utf32", "utf32_spanish_ci", 167, false},
    {"utf32", "utf32_swedish_ci", 168, false},
    {"utf32", "utf32_turkish_ci", 169, false},
    {"utf32", "utf32_czech_ci", 170, false},
    {"utf32", "utf32_danish_ci", 171, false},
    {"utf32", "utf32_lithuanian_ci", 172, false},
    {"utf32", "utf32_slovak_ci", 173, false},
    {"utf32", "utf32_spanish2_ci", 174, false},
    {"utf32", "utf32_roman_ci", 175, false},
    {"utf32", "utf32_persian_ci", 176, false},
    {"utf32", "utf32_esperanto_ci", 177, false},
    {"utf32", "utf32_hungarian_ci", 178, false},
    {"utf32", "utf32_sinhala_ci", 179, false},
    {"utf32", "utf32_german2_ci", 180, false},
    {"utf32", "utf32_croatian_mysql561_ci", 181, false},
    {"utf32", "utf32_unicode_520_ci", 182, false},
    {"utf32", "utf32_vietnamese_ci", 183, false},
    {"utf8mb3", "utf8mb3_unicode_ci", 192, false},
    {"utf8mb3", "utf8mb3_icelandic_ci", 193, false},
    {"utf8mb3", "utf8mb3_latvian_ci", 194, false},
    {"utf8mb3", "utf8mb3_romanian_ci", 195, false},
    {"utf8mb3", "utf8mb3_slovenian_ci", 196, false},
    {"utf8mb3", "utf8mb3_polish_ci", 197, false},
    {"utf8mb3", "utf8mb3_estonian_ci", 198, false},
    {"utf8mb3", "utf8mb3_spanish_ci", 199, false},
    {"utf8mb3", "utf8mb3_swedish_ci", 200, false},
    {"utf8mb3", "utf8mb3_turkish_ci", 201, false},
    {"utf8mb3", "utf8mb3_czech_ci", 202, false},
    {"utf8mb3", "utf8mb3_danish_ci", 203, false},
    {"utf8mb3", "utf8mb3_lithuanian_ci", 204, false},
    {"utf8mb3", "utf8mb3_slovak_ci", 205, false},
    {"utf8mb3", "utf8mb3_spanish2_ci", 206, false},
    {"utf8mb3", "utf8mb3_roman_ci", 207, false},
    {"utf8mb3", "utf8mb3_persian_ci", 208, false},
    {"utf8mb3", "utf8mb3_esperanto_ci", 209, false},
    {"utf8mb3", "utf8mb3_hungarian_ci", 210, false},
    {"utf8mb3", "utf8mb3_sinhala_ci", 211, false},
    {"utf8mb3", "utf8mb3_german2_ci", 212, false},
    {"utf8mb3", "utf8mb3_croatian_mysql561_ci", 213, false},
    {"utf8mb3", "utf8mb3_unicode_520_ci", 214, false},
    {"utf8mb3", "utf8mb3_vietnamese_ci", 215, false},
    {"utf8mb3", "utf8mb3_general_mysql500_ci", 223, false},
    {"utf8mb4", "utf8mb4_unicode_ci", 224, false},
    {"utf8mb4", "utf8mb4_icelandic_ci", 225, false},
    {"utf8mb4", "utf8mb4_latvian_ci", 226, false},
    {"utf8mb4", "utf8mb4_romanian_ci", 227, false},
    {"utf8mb4", "utf8mb4_slovenian_ci", 228, false},
    {"utf8mb4", "utf8mb4_polish_ci", 229, false},
    {"utf8mb4", "utf8mb4_estonian_ci", 230, false},
    {"utf8mb4", "utf8mb4_spanish_ci", 231, false},
    {"utf8mb4", "utf8mb4_swedish_ci", 232, false},
    {"utf8mb4", "utf8mb4_turkish_ci", 233, false},
    {"utf8mb4", "utf8mb4_czech_ci", 234, false},
    {"utf8mb4", "utf8mb4_danish_ci", 235, false},
    {"utf8mb4", "utf8mb4_lithuanian_ci", 236, false},
    {"utf8mb4", "utf8mb4_slovak_ci", 237, false},
    {"utf8mb4", "utf8mb4_spanish2_ci", 238, false},
    {"utf8mb4", "utf8mb4_roman_ci", 239, false},
    {"utf8mb4", "utf8mb4_persian_ci", 240, false},
    {"utf8mb4", "utf8mb4_esperanto_ci", 241, false},
    {"utf8mb4", "utf8mb4_hungarian_ci", 242, false},
    {"utf8mb4", "utf8mb4_sinhala_ci", 243, false},
    {"utf8mb4", "utf8mb4_german2_ci", 244, false},
    {"utf8mb4", "utf8mb4_croatian_mysql561_ci", 245, false},
    {"utf8mb4", "utf8mb4_unicode_520_ci", 246, false},
    {"utf8mb4", "utf8mb4_vietnamese_ci", 247, false},
};

constexpr std::string_view kCharsetClient = "character_set_client";
constexpr std::string_view kCharsetConnection = "character_set_connection";
constexpr std::string_view kCharsetResults = "character_set_results";
constexpr std::string_view kCollationConnection = "collation_connection";

constexpr std::string_view kTrackPrefix = "session_track_";

bool is_tracking_var(std::string_view n) {
  return n.substr(0, kTrackPrefix.size()) == kTrackPrefix;
}

bool is_charset_var(std::string_view n) {
  return n == kCharsetClient || n == kCharsetConnection || n == kCharsetResults ||
         n == kCollationConnection;
}

char lower_ascii(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = lower_ascii(c);
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (lower_ascii(a[i]) != lower_ascii(b[i])) return false;
  }
  return true;
}

bool is_variable_name(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

// -?digits(.digits)?
bool is_number(std::string_view v) {
  size_t i = 0;
  if (i < v.size() && v[i] == '-') ++i;
  const size_t int_start = i;
  while (i < v.size() && v[i] >= '0' && v[i] <= '9') ++i;
  if (i == int_start) return false;
  if (i == v.size()) return true;
  if (v[i] != '.') return false;
  const size_t frac_start = ++i;
  while (i < v.size() && v[i] >= '0' && v[i] <= '9') ++i;
  return i > frac_start && i == v.size();
}

void append_value(std::string& out, std::string_view name, std::string_view value,
                  bool no_backslash_escapes) {
  if (value.empty() && name == kCharsetResults) {
    out += "NULL";  // the server reports character_set_results=NULL as ''
    return;
  }
  if (is_number(value)) {
    out += value;
    return;
  }
  out += '\'';
  for (char c : value) {
    if (c == '\'') out += '\'';
    if (c == '\\' && !no_backslash_escapes) out += '\\';
    out += c;
  }
  out += '\'';
}

bool same(const std::string* a, const std::string* b) {
  if (a == nullptr || b == nullptr) return a == b;
  return *a == *b;
}

bool is_ident_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '$' || static_cast<unsigned char>(c) >= 0x80;
}

// Skips spaces and comments from i; executable comments (/*! and /*M!, with
// an optional version) are entered, since their text is part of the query.
size_t skip_space(std::string_view q, size_t i) {
  while (i < q.size()) {
    const char c = q[i];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
      ++i;
    } else if (q.substr(i, 3) == "/*!" || q.substr(i, 4) == "/*M!") {
      i += q[i + 2] == '!' ? 3 : 4;
      while (i < q.size() && q[i] >= '0' && q[i] <= '9') ++i;
    } else if (q.substr(i, 2) == "/*") {
      const size_t end = q.find("*/", i + 2);
      if (end == std::string_view::npos) return q.size();
      i = end + 2;
    } else if (c == '#' || (q.substr(i, 2) == "--" && i + 2 < q.size() &&
                            (q[i + 2] == ' ' || q[i + 2] == '\t' || q[i + 2] == '\n'))) {
      const size_t end = q.find('\n', i);
      if (end == std::string_view::npos) return q.size();
      i = end + 1;
    } else {
      break;
    }
  }
  return i;
}

// The keyword at i (case-insensitive, not followed by an identifier
// character); the position after it, or npos.
size_t keyword(std::string_view q, size_t i, std::string_view kw) {
  if (q.size() - i < kw.size() || !iequals(q.substr(i, kw.size()), kw)) {
    return std::string_view::npos;
  }
  i += kw.size();
  if (i < q.size() && is_ident_char(q[i])) return std::string_view::npos;
  return i;
}

}  // namespace

std::optional<CharsetInfo> charset_by_id(uint16_t id) {
  const auto* it = std::lower_bound(std::begin(kCollations), std::end(kCollations), id,
                                    [](const Collation& c, uint16_t v) { return c.id < v; });
  if (it == std::end(kCollations) || it->id != id) return std::nullopt;
  return CharsetInfo{it->charset, it->collation, it->is_default};
}

std::optional<std::string_view> default_collation(std::string_view charset) {
  for (const auto& c : kCollations) {
    if (c.is_default && c.charset == charset) return c.collation;
  }
  return std::nullopt;
}

std::string_view charset_of_collation(std::string_view collation) {
  const size_t us = collation.find('_');
  return us == std::string_view::npos ? collation : collation.substr(0, us);
}

bool usable_as_client_charset(std::string_view charset) {
  return charset != "ucs2" && charset != "utf16" && charset != "utf16le" && charset != "utf32";
}

bool is_one_shot_variable(std::string_view name) {
  static constexpr std::array<std::string_view, 6> kOneShot = {
      "gtid_seq_no", "insert_id", "last_insert_id", "rand_seed1", "rand_seed2", "timestamp",
  };
  return std::any_of(kOneShot.begin(), kOneShot.end(),
                     [&](std::string_view n) { return iequals(n, name); });
}

bool is_set_statement(std::string_view query) {
  size_t i = skip_space(query, 0);
  i = keyword(query, i, "set");
  if (i == std::string_view::npos) return false;
  const size_t j = skip_space(query, i);
  if (j == i) return false;  // "SET" must be followed by a separator
  return keyword(query, j, "statement") != std::string_view::npos;
}

std::optional<std::string> set_names_collation(std::string_view query) {
  // A bare or quoted name at i; the position after it, or npos.
  auto name = [&](size_t i, std::string_view& out) -> size_t {
    if (i >= query.size()) return std::string_view::npos;
    const char q = query[i];
    if (q == '\'' || q == '"' || q == '`') {
      const size_t end = query.find(q, i + 1);
      if (end == std::string_view::npos) return std::string_view::npos;
      out = query.substr(i + 1, end - i - 1);
      return end + 1;
    }
    size_t j = i;
    while (j < query.size() && is_ident_char(query[j])) ++j;
    out = query.substr(i, j - i);
    return j;
  };
  std::string_view charset;
  std::string_view collation;
  size_t i = keyword(query, skip_space(query, 0), "set");
  if (i == std::string_view::npos) return std::nullopt;
  i = keyword(query, skip_space(query, i), "names");
  if (i == std::string_view::npos) return std::nullopt;
  i = name(skip_space(query, i), charset);
  if (i == std::string_view::npos || charset.empty()) return std::nullopt;
  i = keyword(query, skip_space(query, i), "collate");
  if (i == std::string_view::npos) return std::nullopt;
  i = name(skip_space(query, i), collation);
  if (i == std::string_view::npos || iequals(collation, "default")) return std::nullopt;
  std::string out = lower(collation);
  if (!is_variable_name(out)) return std::nullopt;
  return out;
}

void MySessionVars::set(std::string_view name, std::string_view value) {
  std::string key = lower(name);
  auto it = vars_.find(key);
  if (it == vars_.end()) {
    vars_.emplace(std::move(key), std::string(value));
  } else {
    it->second.assign(value);
  }
}

void MySessionVars::erase(std::string_view name) {
  auto it = vars_.find(lower(name));
  if (it != vars_.end()) vars_.erase(it);
}

const std::string* MySessionVars::find(std::string_view name) const {
  auto it = vars_.find(name);
  if (it == vars_.end()) {
    const bool has_upper =
        std::any_of(name.begin(), name.end(), [](char c) { return c >= 'A' && c <= 'Z'; });
    if (!has_upper) return nullptr;
    it = vars_.find(lower(name));
    if (it == vars_.end()) return nullptr;
  }
  return &it->second;
}

bool MySessionVars::erase_tracking_vars() {
  const auto first = vars_.lower_bound(kTrackPrefix);
  auto last = first;
  while (last != vars_.end() && is_tracking_var(last->first)) ++last;
  if (first == last) return false;
  vars_.erase(first, last);
  return true;
}

void MySessionVars::apply(const my::SessionState& s) {
  bool saw_connection = false;
  bool saw_collation = false;
  bool saw_results = false;
  for (const auto& [raw_name, value] : s.system_variables) {
    const std::string name = lower(raw_name);
    if (is_one_shot_variable(name)) continue;
    saw_connection = saw_connection || name == kCharsetConnection;
    saw_collation = saw_collation || name == kCollationConnection;
    saw_results = saw_results || name == kCharsetResults;
    set(name, value);
  }
  if (saw_results) {  // SET NAMES ... COLLATE: apply_report() sets it after
    const auto coll = default_collation(*find(kCharsetResults));
    results_collation = coll ? std::optional<std::string>(*coll) : std::nullopt;
  }
  // The server changes the other half of the connection charset without
  // reporting it.
  if (saw_connection && !saw_collation) {
    const auto coll = default_collation(*find(kCharsetConnection));
    if (coll) {
      set(kCollationConnection, *coll);
    } else {
      erase(kCollationConnection);
    }
  } else if (saw_collation && !saw_connection) {
    set(kCharsetConnection, charset_of_collation(*find(kCollationConnection)));
  }
  if (s.schema) {
    if (s.schema->empty()) {
      schema.reset();
    } else {
      schema = *s.schema;
    }
  }
}

void MySessionVars::set_charset(const CharsetInfo& cs) {
  set(kCharsetClient, cs.charset);
  set(kCharsetConnection, cs.charset);
  set(kCharsetResults, cs.charset);
  set(kCollationConnection, cs.collation);
  results_collation = std::string(cs.collation);
}

std::string restore_statement(const MySessionVars& backend, const MySessionVars& client,
                              std::vector<std::string>* skipped, bool no_backslash_escapes) {
  std::string out;
  auto emit = [&](std::string_view name, const std::string* value) {
    if (!is_variable_name(name)) {
      if (skipped != nullptr) skipped->emplace_back(name);
      return;
    }
    out += out.empty() ? "SET SESSION " : ", ";
    out += name;
    out += '=';
    if (value == nullptr) {
      out += "DEFAULT";
    } else {
      append_value(out, name, *value, no_backslash_escapes);
    }
  };
  // The results collation: only SET NAMES sets a non-default one. What it
  // leaves is what the other charset variables are compared with.
  MySessionVars after_names;
  const MySessionVars* base = &backend;
  const std::string* want_results = client.find(kCharsetResults);
  const auto& want_coll = client.results_collation;
  // character_set_results=cs gives cs's default collation: enough when
  // that is wanted and the charset differs.
  const bool plain_enough = want_results != nullptr && want_coll &&
                            default_collation(*want_results) == *want_coll &&
                            !same(backend.find(kCharsetResults), want_results);
  if (want_coll && want_coll != backend.results_collation && !plain_enough &&
      want_results != nullptr && *want_results == charset_of_collation(*want_coll) &&
      is_variable_name(*want_coll) && is_variable_name(*want_results)) {
    out = "SET NAMES '" + *want_results + "' COLLATE '" + *want_coll + "'";
    after_names = backend;
    after_names.set_charset(CharsetInfo{*want_results, *want_coll});
    base = &after_names;
  }
  auto differs = [&](std::string_view name) { return !same(base->find(name), client.find(name)); };

  // The charset variables, in the order the server needs them.
  if (differs(kCharsetClient)) emit(kCharsetClient, client.find(kCharsetClient));
  const std::string* want_connection = client.find(kCharsetConnection);
  const std::string* want_collation = client.find(kCollationConnection);
  bool emit_connection = false;
  bool emit_collation = false;
  if (differs(kCharsetConnection) || differs(kCollationConnection)) {
    if (want_collation != nullptr) {
      // Setting the charset resets the collation: the collation follows it.
      emit_connection = differs(kCharsetConnection);
      emit_collation = true;
    } else if (want_connection != nullptr) {
      emit_connection = true;  // the collation becomes the charset's default
    } else {
      emit_connection = true;
      emit_collation = true;
    }
  }
  if (emit_connection) emit(kCharsetConnection, want_connection);
  if (differs(kCharsetResults)) emit(kCharsetResults, client.find(kCharsetResults));
  if (emit_collation) emit(kCollationConnection, want_collation);

  for (const auto& [name, value] : client.vars()) {
    if (is_charset_var(name) || is_tracking_var(name)) continue;
    const std::string* have = backend.find(name);
    if (have == nullptr || *have != value) emit(name, &value);
  }
  for (const auto& [name, value] : backend.vars()) {
    if (is_charset_var(name) || is_tracking_var(name)) continue;
    if (client.find(name) == nullptr) emit(name, nullptr);
  }
  return out;
}

std::optional<std::string> schema_to_restore(const std::optional<std::string>& backend,
                                             const std::optional<std::string>& client) {
  if (!client || backend == client) return std::nullopt;
  return *client;
}

bool can_restore_schema(const std::optional<std::string>& backend,
                        const std::optional<std::string>& client) {
  return client.has_value() || !backend.has_value();
}

std::string_view to_string(PinReason r) {
  switch (r) {
    case PinReason::None:
      return "none";
    case PinReason::UserState:
      return "user_state";
    case PinReason::LockTables:
      return "lock_tables";
    case PinReason::TransactionCharacteristics:
      return "transaction_characteristics";
    case PinReason::Cursor:
      return "cursor";
  }
  return "unknown";
}

PinReason pin_reason(const my::OkPacket& ok) {
  const my::SessionState& s = ok.session_state;
  for (const auto& [name, value] : s.system_variables) {
    if (is_one_shot_variable(name)) return PinReason::UserState;
  }
  if (s.state_changed.value_or(false) && s.system_variables.empty() && !s.schema) {
    return PinReason::UserState;
  }
  if (s.transaction_state && s.transaction_state->find('L') != std::string::npos) {
    return PinReason::LockTables;
  }
  if (s.transaction_characteristics && !s.transaction_characteristics->empty() &&
      (ok.status & my::status::kInTrans) == 0) {
    return PinReason::TransactionCharacteristics;
  }
  if ((ok.status & my::status::kCursorExists) != 0) return PinReason::Cursor;
  return PinReason::None;
}

bool pin_released(PinReason r, const my::OkPacket& ok) {
  const my::SessionState& s = ok.session_state;
  switch (r) {
    case PinReason::LockTables:
      return s.transaction_state && s.transaction_state->find('L') == std::string::npos;
    case PinReason::TransactionCharacteristics:
      return (s.transaction_characteristics && s.transaction_characteristics->empty()) ||
             (ok.status & my::status::kInTrans) != 0;
    case PinReason::Cursor:
      return (ok.status & my::status::kLastRowSent) != 0;
    case PinReason::None:
    case PinReason::UserState:
      return false;
  }
  return false;
}

void apply_report(MySessionVars& vars, const my::OkPacket& ok, const SessionReport& how) {
  if (!ok.has_session_state) return;
  if (how.set_statement) {
    // Only the schema can change for the session.
    if (const auto& s = ok.session_state.schema) {
      if (s->empty()) {
        vars.schema.reset();
      } else {
        vars.schema = *s;
      }
    }
  } else {
    vars.apply(ok.session_state);
  }
  if (how.names_collation) {
    vars.set(kCollationConnection, *how.names_collation);
    vars.results_collation = *how.names_collation;
  }
}

ClientTracking client_tracking(const MySessionVars& vars) {
  ClientTracking t;
  const std::string* v = vars.find("session_track_system_variables");
  t.system_variables = v != nullptr ? *v
                                    : "autocommit,character_set_client,character_set_connection,"
                                      "character_set_results,time_zone";
  if ((v = vars.find("session_track_schema")) != nullptr) t.schema = iequals(*v, "ON");
  if ((v = vars.find("session_track_state_change")) != nullptr) t.state_change = iequals(*v, "ON");
  if ((v = vars.find("session_track_transaction_info")) != nullptr) {
    t.transaction_characteristics = iequals(*v, "CHARACTERISTICS");
    t.transaction_state = t.transaction_characteristics || iequals(*v, "STATE");
  }
  return t;
}

namespace {

bool tracks_variable(std::string_view list, std::string_view name) {
  while (!list.empty()) {
    const size_t comma = list.find(',');
    std::string_view item = list.substr(0, comma);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (item == "*" || iequals(item, name)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

template <typename T>
void drop_unless(std::optional<T>& entry, bool keep, bool& changed) {
  if (entry && !keep) {
    entry.reset();
    changed = true;
  }
}

}  // namespace

bool filter_for_client(my::OkPacket& ok, const ClientTracking& t) {
  if ((ok.status & my::status::kSessionStateChanged) == 0) return false;
  my::SessionState& s = ok.session_state;
  bool changed = false;
  auto& vars = s.system_variables;
  const auto kept_end = std::remove_if(vars.begin(), vars.end(), [&](const auto& v) {
    return !tracks_variable(t.system_variables, v.first);
  });
  if (kept_end != vars.end()) {
    vars.erase(kept_end, vars.end());
    changed = true;
  }
  drop_unless(s.schema, t.schema, changed);
  drop_unless(s.state_changed, t.state_change, changed);
  drop_unless(s.transaction_state, t.transaction_state, changed);
  drop_unless(s.transaction_characteristics, t.transaction_characteristics, changed);
  if (vars.empty() && !s.schema && !s.state_changed && !s.gtids && !s.transaction_state &&
      !s.transaction_characteristics) {
    ok.has_session_state = false;
    s = {};
    ok.status = static_cast<uint16_t>(ok.status & ~my::status::kSessionStateChanged);
    changed = true;
  }
  return changed;
}

bool keep_eof_state_flag(const ClientTracking& t) {
  return t.transaction_state;
}

}  // namespace sqlmux::pool
