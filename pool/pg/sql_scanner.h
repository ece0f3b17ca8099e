// A small lexical scanner over one SQL statement's text, for the few
// commands sqlmux recognises (DEALLOCATE, SET, LISTEN, ...): keywords in any
// case, identifiers folded to lower case or "quoted", whitespace and
// comments skipped. Pure; reads only the view it is given.
#pragma once

#include <cctype>
#include <initializer_list>
#include <string>
#include <string_view>

namespace sqlmux::pool::sql {

// ASCII only, inline (std::toupper is a libc call that consults the
// locale; SQL keywords and PostgreSQL's whitespace are ASCII).
constexpr char ascii_upper(char c) {
  return c >= 'a' && c <= 'z' ? static_cast<char>(c - 32) : c;
}
constexpr bool sql_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

// Whether a statement that starts with a letter starts with a word other
// than those in `words` (upper case): the per-query fast exit of the
// recognisers below (SELECT ... is not SET). A statement that starts with
// whitespace or a comment is left to the full scan.
constexpr bool first_word_not(std::string_view sql, std::initializer_list<std::string_view> words) {
  size_t n = 0;
  // (c | 0x20) is a lower-case letter only for an ASCII letter.
  while (n < sql.size() && n <= 16 && static_cast<unsigned>((sql[n] | 0x20) - 'a') < 26u) ++n;
  if (n == 0) return false;
  if (n < sql.size() && (static_cast<unsigned char>(sql[n]) >= 0x80 || sql[n] == '_' ||
                         sql[n] == '$' || (sql[n] >= '0' && sql[n] <= '9'))) {
    return true;  // an identifier, not a keyword
  }
  for (std::string_view kw : words) {
    if (kw.size() != n) continue;
    size_t k = 0;
    while (k < n && ascii_upper(sql[k]) == kw[k]) ++k;
    if (k == n) return false;
  }
  return true;
}
constexpr bool first_word_not(std::string_view sql, std::string_view a, std::string_view b = {}) {
  return first_word_not(sql, {a, b});
}

struct Scanner {
  std::string_view s;
  size_t i = 0;
  void ws() {
    while (i < s.size()) {
      if (sql_space(s[i])) {
        ++i;
      } else if (s.compare(i, 2, "--") == 0) {
        while (i < s.size() && s[i] != '\n') ++i;
      } else if (s.compare(i, 2, "/*") == 0) {
        int depth = 1;  // PostgreSQL's block comments nest
        for (i += 2; i < s.size() && depth > 0; ++i) {
          if (s.compare(i, 2, "/*") == 0) {
            ++depth;
            ++i;
          } else if (s.compare(i, 2, "*/") == 0) {
            --depth;
            ++i;
          }
        }
      } else {
        break;
      }
    }
  }
  bool keyword(std::string_view kw) {
    size_t save = i;
    ws();
    if (s.size() - i < kw.size()) {
      i = save;
      return false;
    }
    for (size_t k = 0; k < kw.size(); ++k) {
      if (ascii_upper(s[i + k]) != kw[k]) {
        i = save;
        return false;
      }
    }
    size_t end = i + kw.size();
    // (Identifiers continue with letters, digits, '_', '$' and any byte
    // >= 0x80, as in PostgreSQL's lexer.)
    if (end < s.size() && (std::isalnum(static_cast<unsigned char>(s[end])) || s[end] == '_' ||
                           s[end] == '$' || static_cast<unsigned char>(s[end]) >= 0x80)) {
      i = save;
      return false;
    }
    i = end;
    return true;
  }
  // A name of dotted parts, each an identifier (folded to lower case) or a
  // "quoted identifier": SET "select".x = 1 names the setting select.x.
  bool name(std::string& out) {
    ws();
    out.clear();
    for (;;) {
      if (!part(out)) return false;
      if (i >= s.size() || s[i] != '.') return true;
      out += '.';
      ++i;
    }
  }
  bool part(std::string& out) {
    if (i < s.size() && s[i] == '"') {
      const size_t before = out.size();
      ++i;
      while (i < s.size()) {
        if (s[i] == '"') {
          if (i + 1 < s.size() && s[i + 1] == '"') {
            out += '"';
            i += 2;
            continue;
          }
          ++i;
          return out.size() > before;
        }
        out += s[i++];
      }
      return false;
    }
    const size_t start = i;
    while (i < s.size() && (std::isalnum(static_cast<unsigned char>(s[i])) || s[i] == '_' ||
                            s[i] == '$' || static_cast<unsigned char>(s[i]) >= 0x80)) {
      const auto c = static_cast<unsigned char>(s[i]);
      out += c < 0x80 ? static_cast<char>(std::tolower(c)) : s[i];
      ++i;
    }
    return i > start;
  }
  bool at_end() {
    ws();
    if (i < s.size() && s[i] == ';') ++i;
    ws();
    return i == s.size();
  }
};

}  // namespace sqlmux::pool::sql
