#include "pool/my_session.h"

#include <algorithm>
#include <array>

namespace sqlmux::pool {

namespace {

struct Collation {
  uint16_t id;
  std::string_view charset;
  std::string_view collation;
  bool is_default;
};

// MariaDB 10.11.19: SELECT ID, CHARACTER_SET_NAME, COLLATION_NAME, IS_DEFAULT
// FROM information_schema.COLLATIONS WHERE ID BETWEEN 1 AND 255 ORDER BY ID.
// Every charset's default collation is among them.
constexpr Collation kCollations[] = {
    {1, "big5", "big5_chinese_ci", true},
    {2, "latin2", "latin2_czech_cs", false},
    {3, "dec8", "dec8_swedish_ci", true},
    {4, "cp850", "cp850_general_ci", true},
    {5, "latin1", "latin1_german1_ci", false},
    {6, "hp8", "hp8_english_ci", true},
    {7, "koi8r", "koi8r_general_ci", true},
    {8, "latin1", "latin1_swedish_ci", true},
    {9, "latin2", "latin2_general_ci", true},
    {10, "swe7", "swe7_swedish_ci", true},
    {11, "ascii", "ascii_general_ci", true},
    {12, "ujis", "ujis_japanese_ci", true},
    {13, "sjis", "sjis_japanese_ci", true},
    {14, "cp1251", "cp1251_bulgarian_ci", false},
    {15, "latin1", "latin1_danish_ci", false},
    {16, "hebrew", "hebrew_general_ci", true},
    {18, "tis620", "tis620_thai_ci", true},
    {19, "euckr", "euckr_korean_ci", true},
    {20, "latin7", "latin7_estonian_cs", false},
    {21, "latin2", "latin2_hungarian_ci", false},
    {22, "koi8u", "koi8u_general_ci", true},
    {23, "cp1251", "cp1251_ukrainian_ci", false},
    {24, "gb2312", "gb2312_chinese_ci", true},
    {25, "greek", "greek_general_ci", true},
    {26, "cp1250", "cp1250_general_ci", true},
    {27, "latin2", "latin2_croatian_ci", false},
    {28, "gbk", "gbk_chinese_ci", true},
    {29, "cp1257", "cp1257_lithuanian_ci", false},
    {30, "latin5", "latin5_turkish_ci", true},
    {31, "latin1", "latin1_german2_ci", false},
    {32, "armscii8", "armscii8_general_ci", true},
    {33, "utf8mb3", "utf8mb3_general_ci", true},
    {34, "cp1250", "cp1250_czech_cs", false},
    {35, "ucs2", "ucs2_general_ci", true},
    {36, "cp866", "cp866_general_ci", true},
    {37, "keybcs2", "keybcs2_general_ci", true},
    {38, "macce", "macce_general_ci", true},
    {39, "macroman", "macroman_general_ci", true},
    {40, "cp852", "cp852_general_ci", true},
    {41, "latin7", "latin7_general_ci", true},
    {42, "latin7", "latin7_general_cs", false},
    {43, "macce", "macce_bin", false},
    {44, "cp1250", "cp1250_croatian_ci", false},
    {45, "utf8mb4", "utf8mb4_general_ci", true},
    {46, "utf8mb4", "utf8mb4_bin", false},
    {47, "latin1", "latin1_bin", false},
    {48, "latin1", "latin1_general_ci", false},
    {49, "latin1", "latin1_general_cs", false},
    {50, "cp1251", "cp1251_bin", false},
    {51, "cp1251", "cp1251_general_ci", true},
    {52, "cp1251", "cp1251_general_cs", false},
    {53, "macroman", "macroman_bin", false},
    {54, "utf16", "utf16_general_ci", true},
    {55, "utf16", "utf16_bin", false},
    {56, "utf16le", "utf16le_general_ci", true},
    {57, "cp1256", "cp1256_general_ci", true},
    {58, "cp1257", "cp1257_bin", false},
    {59, "cp1257", "cp1257_general_ci", true},
    {60, "utf32", "utf32_general_ci", true},
    {61, "utf32", "utf32_bin", false},
    {62, "utf16le", "utf16le_bin", false},
    {63, "binary", "binary", true},
    {64, "armscii8", "armscii8_bin", false},
    {65, "ascii", "ascii_bin", false},
    {66, "cp1250", "cp1250_bin", false},
    {67, "cp1256", "cp1256_bin", false},
    {68, "cp866", "cp866_bin", false},
    {69, "dec8", "dec8_bin", false},
    {70, "greek", "greek_bin", false},
    {71, "hebrew", "hebrew_bin", false},
    {72, "hp8", "hp8_bin", false},
    {73, "keybcs2", "keybcs2_bin", false},
    {74, "koi8r", "koi8r_bin", false},
    {75, "koi8u", "koi8u_bin", false},
    {77, "latin2", "latin2_bin", false},
    {78, "latin5", "latin5_bin", false},
    {79, "latin7", "latin7_bin", false},
    {80, "cp850", "cp850_bin", false},
    {81, "cp852", "cp852_bin", false},
    {82, "swe7", "swe7_bin", false},
    {83, "utf8mb3", "utf8mb3_bin", false},
    {84, "big5", "big5_bin", false},
    {85, "euckr", "euckr_bin", false},
    {86, "gb2312", "gb2312_bin", false},
    {87, "gbk", "gbk_bin", false},
    {88, "sjis", "sjis_bin", false},
    {89, "tis620", "tis620_bin", false},
    {90, "ucs2", "ucs2_bin", false},
    {91, "ujis", "ujis_bin", false},
    {92, "geostd8", "geostd8_general_ci", true},
    {93, "geostd8", "geostd8_bin", false},
    {94, "latin1", "latin1_spanish_ci", false},
    {95, "cp932", "cp932_japanese_ci", true},
    {96, "cp932", "cp932_bin", false},
    {97, "eucjpms", "eucjpms_japanese_ci", true},
    {98, "eucjpms", "eucjpms_bin", false},
    {99, "cp1250", "cp1250_polish_ci", false},
    {101, "utf16", "utf16_unicode_ci", false},
    {102, "utf16", "utf16_icelandic_ci", false},
    {103, "utf16", "utf16_latvian_ci", false},
    {104, "utf16", "utf16_romanian_ci", false},
    {105, "utf16", "utf16_slovenian_ci", false},
    {106, "utf16", "utf16_polish_ci", false},
    {107, "utf16", "utf16_estonian_ci", false},
    {108, "utf16", "utf16_spanish_ci", false},
    {109, "utf16", "utf16_swedish_ci", false},
    {110, "utf16", "utf16_turkish_ci", false},
    {111, "utf16", "utf16_czech_ci", false},
    {112, "utf16", "utf16_danish_ci", false},
    {113, "utf16", "utf16_lithuanian_ci", false},
    {114, "utf16", "utf16_slovak_ci", false},
    {115, "utf16", "utf16_spanish2_ci", false},
    {116, "utf16", "utf16_roman_ci", false},
    {117, "utf16", "utf16_persian_ci", false},
    {118, "utf16", "utf16_esperanto_ci", false},
    {119, "utf16", "utf16_hungarian_ci", false},
    {120, "utf16", "utf16_sinhala_ci", false},
    {121, "utf16", "utf16_german2_ci", false},
    {122, "utf16", "utf16_croatian_mysql561_ci", false},
    {123, "utf16", "utf16_unicode_520_ci", false},
    {124, "utf16", "utf16_vietnamese_ci", false},
    {128, "ucs2", "ucs2_unicode_ci", false},
    {129, "ucs2", "ucs2_icelandic_ci", false},
    {130, "ucs2", "ucs2_latvian_ci", false},
    {131, "ucs2", "ucs2_romanian_ci", false},
    {132, "ucs2", "ucs2_slovenian_ci", false},
    {133, "ucs2", "ucs2_polish_ci", false},
    {134, "ucs2", "ucs2_estonian_ci", false},
    {135, "ucs2", "ucs2_spanish_ci", false},
    {136, "ucs2", "ucs2_swedish_ci", false},
    {137, "ucs2", "ucs2_turkish_ci", false},
    {138, "ucs2", "ucs2_czech_ci", false},
    {139, "ucs2", "ucs2_danish_ci", false},
    {140, "ucs2", "ucs2_lithuanian_ci", false},
    {141, "ucs2", "ucs2_slovak_ci", false},
    {142, "ucs2", "ucs2_spanish2_ci", false},
    {143, "ucs2", "ucs2_roman_ci", false},
    {144, "ucs2", "ucs2_persian_ci", false},
    {145, "ucs2", "ucs2_esperanto_ci", false},
    {146, "ucs2", "ucs2_hungarian_ci", false},
    {147, "ucs2", "ucs2_sinhala_ci", false},
    {148, "ucs2", "ucs2_german2_ci", false},
    {149, "ucs2", "ucs2_croatian_mysql561_ci", false},
    {150, "ucs2", "ucs2_unicode_520_ci", false},
    {151, "ucs2", "ucs2_vietnamese_ci", false},
    {159, "ucs2", "ucs2_general_mysql500_ci", false},
    {160, "utf32", "utf32_unicode_ci", false},
    {161, "utf32", "utf32_icelandic_ci", false},
    {162, "utf32", "utf32_latvian_ci", false},
    {163, "utf32", "utf32_romanian_ci", false},
    {164, "utf32", "utf32_slovenian_ci", false},
    {165, "utf32", "utf32_polish_ci", false},
    {166, "utf32", "utf32_estonian_ci", false},
    {167, "utf32", "utf32_spanish_ci", false},
    {168, "utf32", "utf32_swedish_ci", false},
    {169, "utf32", "utf32_turkish_ci", false},
    {170, "utf32", "utf32_czech_ci", false},
    {171, "utf32", "utf32_danish_ci", false},
    {172, "utf32", "utf32_lithuanian_ci", false},
    {173, "utf32", "utf32_slovak_ci", false},
    {174, "utf32", "utf32_spanish2_ci", false},
    {175, "utf32", "utf32_roman_ci", false},
    {176, "utf32", "utf32_persian_ci", false},
    {177, "utf32", "utf32_esperanto_ci", false},
    {178, "utf32", "utf32_hungarian_ci", false},
    {179, "utf32", "utf32_sinhala_ci", false},
    {180, "utf32", "utf32_german2_ci", false},
    {181, "utf32", "utf32_croatian_mysql561_ci", false},
    {182, "utf32", "utf32_unicode_520_ci", false},
    {183, "utf32", "utf32_vietnamese_ci", false},
    {192, "utf8mb3", "utf8mb3_unicode_ci", false},
    {193, "utf8mb3", "utf8mb3_icelandic_ci", false},
    {194, "utf8mb3", "utf8mb3_latvian_ci", false},
    {195, "utf8mb3", "utf8mb3_romanian_ci", false},
    {196, "utf8mb3", "utf8mb3_slovenian_ci", false},
    {197, "utf8mb3", "utf8mb3_polish_ci", false},
    {198, "utf8mb3", "utf8mb3_estonian_ci", false},
    {199, "utf8mb3", "utf8mb3_spanish_ci", false},
    {200, "utf8mb3", "utf8mb3_swedish_ci", false},
    {201, "utf8mb3", "utf8mb3_turkish_ci", false},
    {202, "utf8mb3", "utf8mb3_czech_ci", false},
    {203, "utf8mb3", "utf8mb3_danish_ci", false},
    {204, "utf8mb3", "utf8mb3_lithuanian_ci", false},
    {205, "utf8mb3", "utf8mb3_slovak_ci", false},
    {206, "utf8mb3", "utf8mb3_spanish2_ci", false},
    {207, "utf8mb3", "utf8mb3_roman_ci", false},
    {208, "utf8mb3", "utf8mb3_persian_ci", false},
    {209, "utf8mb3", "utf8mb3_esperanto_ci", false},
    {210, "utf8mb3", "utf8mb3_hungarian_ci", false},
    {211, "utf8mb3", "utf8mb3_sinhala_ci", false},
    {212, "utf8mb3", "utf8mb3_german2_ci", false},
    {213, "utf8mb3", "utf8mb3_croatian_mysql561_ci", false},
    {214, "utf8mb3", "utf8mb3_unicode_520_ci", false},
    {215, "utf8mb3", "utf8mb3_vietnamese_ci", false},
    {223, "utf8mb3", "utf8mb3_general_mysql500_ci", false},
    {224, "utf8mb4", "utf8mb4_unicode_ci", false},
    {225, "utf8mb4", "utf8mb4_icelandic_ci", false},
    {226, "utf8mb4", "utf8mb4_latvian_ci", false},
    {227, "utf8mb4", "utf8mb4_romanian_ci", false},
    {228, "utf8mb4", "utf8mb4_slovenian_ci", false},
    {229, "utf8mb4", "utf8mb4_polish_ci", false},
    {230, "utf8mb4", "utf8mb4_estonian_ci", false},
    {231, "utf8mb4", "utf8mb4_spanish_ci", false},
    {232, "utf8mb4", "utf8mb4_swedish_ci", false},
    {233, "utf8mb4", "utf8mb4_turkish_ci", false},
    {234, "utf8mb4", "utf8mb4_czech_ci", false},
    {235, "utf8mb4", "utf8mb4_danish_ci", false},
    {236, "utf8mb4", "utf8mb4_lithuanian_ci", false},
    {237, "utf8mb4", "utf8mb4_slovak_ci", false},
    {238, "utf8mb4", "utf8mb4_spanish2_ci", false},
    {239, "utf8mb4", "utf8mb4_roman_ci", false},
    {240, "utf8mb4", "utf8mb4_persian_ci", false},
    {241, "utf8mb4", "utf8mb4_esperanto_ci", false},
    {242, "utf8mb4", "utf8mb4_hungarian_ci", false},
    {243, "utf8mb4", "utf8mb4_sinhala_ci", false},
    {244, "utf8mb4", "utf8mb4_german2_ci", false},
    {245, "utf8mb4", "utf8mb4_croatian_mysql561_ci", false},
    {246, "utf8mb4", "utf8mb4_unicode_520_ci", false},
    {247, "utf8mb4", "utf8mb4_vietnamese_ci", false},
};

constexpr std::string_view kCharsetClient = "character_set_client";
constexpr std::string_view kCharsetConnection = "character_set_connection";
constexpr std::string_view kCharsetResults = "character_set_results";
constexpr std::string_view kCollationConnection = "collation_connection";

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

void MySessionVars::apply(const my::SessionState& s) {
  bool saw_connection = false;
  bool saw_collation = false;
  for (const auto& [raw_name, value] : s.system_variables) {
    const std::string name = lower(raw_name);
    if (name.rfind("session_track_", 0) == 0 || is_one_shot_variable(name)) continue;
    saw_connection = saw_connection || name == kCharsetConnection;
    saw_collation = saw_collation || name == kCollationConnection;
    set(name, value);
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
  auto differs = [&](std::string_view name) {
    return !same(backend.find(name), client.find(name));
  };

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
    if (is_charset_var(name)) continue;
    const std::string* have = backend.find(name);
    if (have == nullptr || *have != value) emit(name, &value);
  }
  for (const auto& [name, value] : backend.vars()) {
    if (is_charset_var(name)) continue;
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
  if (how.names_collation) vars.set("collation_connection", *how.names_collation);
}

}  // namespace sqlmux::pool
