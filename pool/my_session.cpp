#include "pool/my_session.h"

#include <array>
#include <cctype>

namespace sqlmux::pool {

namespace {
struct CharsetRow {
  uint16_t id;
  const char* charset;
  const char* collation;
};
// MariaDB 10.11's numbering (information_schema.COLLATIONS) of the
// collations clients send in their handshakes.
constexpr std::array<CharsetRow, 16> kCharsets{{
    {2, "latin2", "latin2_czech_cs"},
    {5, "latin1", "latin1_german1_ci"},
    {8, "latin1", "latin1_swedish_ci"},
    {11, "ascii", "ascii_general_ci"},
    {28, "gbk", "gbk_chinese_ci"},
    {33, "utf8mb3", "utf8mb3_general_ci"},
    {45, "utf8mb4", "utf8mb4_general_ci"},
    {46, "utf8mb4", "utf8mb4_bin"},
    {47, "latin1", "latin1_bin"},
    {48, "latin1", "latin1_general_ci"},
    {63, "binary", "binary"},
    {83, "utf8mb3", "utf8mb3_bin"},
    {192, "utf8mb3", "utf8mb3_unicode_ci"},
    {224, "utf8mb4", "utf8mb4_unicode_ci"},
    // MySQL 8's default (utf8mb4_0900_ai_ci) is unknown to MariaDB: the
    // closest it has.
    {255, "utf8mb4", "utf8mb4_general_ci"},
    {246, "utf8mb4", "utf8mb4_unicode_520_ci"},
}};

bool plain_name(std::string_view n) {
  if (n.empty()) return false;
  for (char c : n) {
    if (!(std::islower(static_cast<unsigned char>(c)) ||
          std::isdigit(static_cast<unsigned char>(c)) || c == '_')) {
      return false;
    }
  }
  return true;
}

bool is_number(std::string_view v) {
  size_t i = 0;
  if (i < v.size() && v[i] == '-') ++i;
  size_t digits = 0;
  while (i < v.size() && std::isdigit(static_cast<unsigned char>(v[i]))) ++i, ++digits;
  if (i < v.size() && v[i] == '.') {
    ++i;
    size_t frac = 0;
    while (i < v.size() && std::isdigit(static_cast<unsigned char>(v[i]))) ++i, ++frac;
    if (frac == 0) return false;
  }
  return digits > 0 && i == v.size();
}

// The order the server needs: the collation after the character set it
// belongs to (setting character_set_connection resets collation_connection).
constexpr std::array<std::string_view, 4> kCharsetOrder{
    "character_set_client", "character_set_connection", "character_set_results",
    "collation_connection"};
}  // namespace

std::optional<CharsetInfo> charset_by_id(uint16_t id) {
  for (const auto& r : kCharsets) {
    if (r.id == id) return CharsetInfo{r.charset, r.collation};
  }
  return std::nullopt;
}

void MySessionVars::set(std::string_view name, std::string_view value) {
  std::string n(name);
  for (char& c : n) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  values_[n] = std::string(value);
}

void MySessionVars::apply(const my::SessionState& st) {
  for (const auto& [name, value] : st.system_variables) {
    if (name.rfind("session_track_", 0) == 0) continue;
    set(name, value);
  }
}

void MySessionVars::set_charset(const CharsetInfo& cs) {
  set("character_set_client", cs.charset);
  set("character_set_connection", cs.charset);
  set("character_set_results", cs.charset);
  set("collation_connection", cs.collation);
}

std::string sql_literal(std::string_view value) {
  if (is_number(value)) return std::string(value);
  std::string out = "'";
  for (char c : value) {
    if (c == '\'' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('\'');
  return out;
}

std::string restore_statement(const MySessionVars& backend, const MySessionVars& client) {
  std::string sql;
  auto add = [&](std::string_view name, const std::string* value) {
    if (!plain_name(name)) return;
    sql += sql.empty() ? "SET SESSION " : ", ";
    sql += name;
    sql += '=';
    sql += value != nullptr ? sql_literal(*value) : std::string("DEFAULT");
  };
  auto differs = [&](std::string_view name) -> std::pair<bool, const std::string*> {
    auto c = client.values().find(name);
    auto b = backend.values().find(name);
    const std::string* cv = c == client.values().end() ? nullptr : &c->second;
    const std::string* bv = b == backend.values().end() ? nullptr : &b->second;
    if (cv == nullptr && bv == nullptr) return {false, nullptr};
    if (cv != nullptr && bv != nullptr && *cv == *bv) return {false, nullptr};
    return {true, cv};
  };
  // Character set variables first, and all four together when any differs.
  bool charset_differs = false;
  for (auto n : kCharsetOrder) charset_differs = charset_differs || differs(n).first;
  if (charset_differs) {
    for (auto n : kCharsetOrder) {
      auto c = client.values().find(n);
      add(n, c == client.values().end() ? nullptr : &c->second);
    }
  }
  auto is_charset = [](std::string_view n) {
    for (auto o : kCharsetOrder) {
      if (o == n) return true;
    }
    return false;
  };
  for (const auto& [name, value] : client.values()) {
    if (is_charset(name)) continue;
    if (auto [d, v] = differs(name); d) add(name, v);
  }
  for (const auto& [name, value] : backend.values()) {
    if (is_charset(name) || client.values().contains(name)) continue;
    add(name, nullptr);
  }
  return sql;
}

std::string_view to_string(MyPinReason r) {
  switch (r) {
    case MyPinReason::None:
      return "none";
    case MyPinReason::UserState:
      return "user_state";
    case MyPinReason::TransactionCharacteristics:
      return "transaction_characteristics";
    case MyPinReason::Cursor:
      return "cursor";
    case MyPinReason::PreparedStatement:
      return "prepared_statement";
  }
  return "unknown";
}

MyPinReason pin_reason(const my::OkPacket& ok) {
  if ((ok.status & my::status::kCursorExists) != 0) return MyPinReason::Cursor;
  if (!ok.has_session_state) return MyPinReason::None;
  const auto& st = ok.session_state;
  // Characteristics reported inside a transaction describe that one (BEGIN,
  // START TRANSACTION READ ONLY); outside, they wait for the next one.
  if (st.transaction_characteristics && !st.transaction_characteristics->empty() &&
      (ok.status & my::status::kInTrans) == 0) {
    return MyPinReason::TransactionCharacteristics;
  }
  if (st.state_changed.value_or(false) && st.system_variables.empty() && !st.schema &&
      !st.transaction_characteristics && !st.transaction_state) {
    return MyPinReason::UserState;
  }
  return MyPinReason::None;
}

}  // namespace sqlmux::pool
