// libFuzzer target: session parameters (pool/session_params.cpp).
//
// The input is a startup "options" value for parse_startup_options. The
// pairs it yields (also when it fails part way) fill two SessionParams, a
// client's desired values and a backend's, alternating reported and
// unreported entries and with some values changed; diff() and apply_sql()
// then run both ways. The raw input is also quoted directly, as a value and
// as a name, since a backend's ParameterStatus may carry any bytes.
//
// Invariants (a failure traps):
// - every apply_sql output has balanced single quotes (doubled quotes
//   inside a literal do not count), and more strictly it is exactly
//   "SELECT pg_catalog.set_config(<lit>, <lit>, false), ...;RESET <id>;..."
//   where each literal decodes (as PostgreSQL reads it, E'' or standard)
//   to the change's name and value: nothing can break out of a literal;
// - names apply_sql skips are exactly the ones that are not identifiers;
// - diff() lists only real differences, and applying them converges;
// - parse_startup_options yields non-empty names without '-' or '='.
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "pool/pg/session_params.h"

using namespace sqlmux::pool;

namespace {

void check(bool ok) {
  if (!ok) {
    __builtin_trap();
  }
}

// Whether a setting name can be written in SQL (mirrors
// quote_setting_name): every dotted part non-empty, at most 63 bytes
// (NAMEDATALEN - 1), without NUL.
bool settable_name(std::string_view s) {
  size_t start = 0;
  for (;;) {
    const size_t dot = s.find('.', start);
    const std::string_view part =
        s.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (part.empty() || part.size() > 63 || part.find('\0') != std::string_view::npos) {
      return false;
    }
    if (dot == std::string_view::npos) {
      return true;
    }
    start = dot + 1;
  }
}

// Single quotes outside doubled quotes ('') are balanced, and so are the
// double quotes of identifiers (which may hold single quotes) outside literals.
bool quotes_balanced(std::string_view sql) {
  bool in_literal = false;
  for (size_t i = 0; i < sql.size(); ++i) {
    if (!in_literal && sql[i] == '"') {  // a quoted identifier: "" inside is a quote
      for (++i; i < sql.size(); ++i) {
        if (sql[i] == '"' && !(i + 1 < sql.size() && sql[i + 1] == '"')) {
          break;
        }
        if (sql[i] == '"') {
          ++i;
        }
      }
      if (i >= sql.size()) {
        return false;  // unterminated identifier
      }
      continue;
    }
    if (sql[i] != '\'') {
      continue;
    }
    if (in_literal && i + 1 < sql.size() && sql[i + 1] == '\'') {
      ++i;  // doubled quote inside a literal
      continue;
    }
    in_literal = !in_literal;
  }
  return !in_literal;
}

// Reads the SQL the way PostgreSQL's lexer would, checking its exact shape.
class SqlReader {
 public:
  explicit SqlReader(std::string_view s) : s_(s) {}

  bool expect(std::string_view token) {
    if (s_.substr(pos_, token.size()) != token) {
      return false;
    }
    pos_ += token.size();
    return true;
  }

  // A string constant: '...' (standard_conforming_strings: backslash is an
  // ordinary character, but a plain literal must not contain one, so that
  // the meaning does not depend on that setting) or E'...' (backslash
  // escapes; quote_literal only ever writes \\). '' is a quote in both.
  bool literal(std::string& out) {
    out.clear();
    const bool escape = expect("E");
    if (!expect("'")) {
      return false;
    }
    while (pos_ < s_.size()) {
      const char c = s_[pos_++];
      if (c == '\'') {
        if (pos_ < s_.size() && s_[pos_] == '\'') {
          out += '\'';
          ++pos_;
          continue;
        }
        return true;
      }
      if (c == '\\') {
        if (!escape || pos_ >= s_.size() || s_[pos_] != '\\') {
          return false;
        }
        ++pos_;
      }
      out += c;
    }
    return false;  // unterminated
  }

  // "a"."b""c" -> a.b"c: dotted parts, each a quoted identifier.
  bool quoted_name(std::string& out) {
    out.clear();
    for (;;) {
      if (pos_ >= s_.size() || s_[pos_] != '"') {
        return false;
      }
      ++pos_;
      for (;;) {
        if (pos_ >= s_.size()) {
          return false;  // unterminated
        }
        const char c = s_[pos_++];
        if (c == '"') {
          if (pos_ < s_.size() && s_[pos_] == '"') {
            out += '"';
            ++pos_;
            continue;
          }
          break;
        }
        out += c;
      }
      if (pos_ < s_.size() && s_[pos_] == '.') {
        out += '.';
        ++pos_;
        continue;
      }
      return true;
    }
  }

  [[nodiscard]] bool at_end() const { return pos_ == s_.size(); }

 private:
  std::string_view s_;
  size_t pos_ = 0;
};

void check_apply_sql(const std::vector<ParamChange>& changes) {
  std::vector<std::string> skipped;
  const std::string sql = apply_sql(changes, &skipped);
  check(quotes_balanced(sql));

  std::vector<const ParamChange*> sets, resets;
  std::vector<std::string> not_identifiers;
  for (const ParamChange& ch : changes) {
    if (!settable_name(ch.name)) {
      not_identifiers.push_back(ch.name);
    } else {
      (ch.reset ? resets : sets).push_back(&ch);
    }
  }
  check(skipped == not_identifiers);
  if (sets.empty() && resets.empty()) {
    check(sql.empty());
    return;
  }

  SqlReader r(sql);
  std::string lit;
  if (!sets.empty()) {
    check(r.expect("SELECT "));
    for (size_t i = 0; i < sets.size(); ++i) {
      check(i == 0 || r.expect(", "));
      if (sets[i]->base) {  // the pool's value first, then the client's
        check(r.expect("pg_catalog.set_config("));
        check(r.literal(lit) && lit == sets[i]->name);
        check(r.expect(", "));
        check(r.literal(lit) && lit == *sets[i]->base);
        check(r.expect(", false), "));
      }
      check(r.expect("pg_catalog.set_config("));
      check(r.literal(lit) && lit == sets[i]->name);
      check(r.expect(", "));
      check(r.literal(lit) && lit == sets[i]->value);
      check(r.expect(", false)"));
    }
    check(r.expect(";"));
  }
  for (const ParamChange* ch : resets) {
    std::string name;
    check(r.expect("RESET ") && r.quoted_name(name) && name == ch->name && r.expect(";"));
  }
  check(r.at_end());
}

void check_diff(const SessionParams& desired, const SessionParams& backend) {
  const std::vector<ParamChange> changes = diff(desired, backend);
  SessionParams applied = backend;
  for (const ParamChange& ch : changes) {
    if (ch.reset) {
      const SessionParams::Entry* have = backend.find(ch.name);
      check(have != nullptr && !have->reported && desired.find(ch.name) == nullptr);
      check(ch.value.empty());
      applied.erase(ch.name);
    } else {
      const SessionParams::Entry* want = desired.find(ch.name);
      check(want != nullptr && want->value == ch.value);
      const SessionParams::Entry* have = backend.find(ch.name);
      check(have == nullptr || have->value != ch.value);
      applied.set(ch.name, ch.value, false);
    }
  }
  // Applying every change leaves nothing to do.
  check(diff(desired, applied).empty());
  check_apply_sql(changes);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  std::vector<std::pair<std::string, std::string>> pairs;
  const bool ok = parse_startup_options(input, pairs);
  if (ok) {
    for (const auto& [name, value] : pairs) {
      check(!name.empty() && name.find('-') == std::string::npos &&
            name.find('=') == std::string::npos);
    }
  }

  SessionParams desired, backend;
  for (size_t i = 0; i < pairs.size(); ++i) {
    const auto& [name, value] = pairs[i];
    const bool reported = i % 2 == 0;
    if (i % 3 != 2) {
      desired.set(name, value, reported);
    }
    if (i % 3 != 0) {
      backend.set(name, i % 4 == 1 ? value + "x" : value, reported);
    }
  }
  check_diff(desired, backend);
  check_diff(backend, desired);
  backend.clear_unreported();
  for (const auto& [key, e] : backend.entries()) {
    check(e.reported);
  }
  check_diff(desired, backend);

  // The raw bytes as a value and as a name, set and reset.
  check_apply_sql({{"search_path", std::string(input), false},
                   {std::string(input), "on", false},
                   {std::string(input), "", true}});
  const std::string q = quote_literal(input);
  SqlReader r(q);
  std::string lit;
  check(r.literal(lit) && lit == input && r.at_end());
  (void)is_connection_key(input);
  return 0;
}
