// The syntax of SCRAM messages (RFC 5802): attribute fields, the checks
// every message gets, iteration counts. Shared by the server side
// (scram_server.cpp) and the client side (scram_client.cpp); peer input is
// refused through the return value and an error string, never thrown.
#include <charconv>
#include <string>
#include <system_error>

#include "protocol/pg/auth_internal.h"

namespace sqlmux::pg::auth::detail {

bool is_scram_printable(std::string_view s) {
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (c < 0x21 || c > 0x7E || c == ',') return false;
  }
  return true;
}

namespace {
bool is_alpha(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}
}  // namespace

bool parse_attr(std::string_view field, char expected, char& name, std::string_view& value,
                std::string& error) {
  if (field.empty()) {
    error = expected != 0 ? std::string("malformed SCRAM message: expected attribute \"") +
                                expected + "\", found end of field"
                          : "malformed SCRAM message: attribute expected, found empty field";
    return false;
  }
  if (!is_alpha(field[0]) || field.size() < 2 || field[1] != '=') {
    error = "malformed SCRAM message: invalid attribute syntax";
    return false;
  }
  if (expected != 0 && field[0] != expected) {
    error = std::string("malformed SCRAM message: expected attribute \"") + expected +
            "\", found \"" + field[0] + "\"";
    return false;
  }
  name = field[0];
  value = field.substr(2);
  return true;
}

bool read_attr(Fields& f, char expected, std::string_view& value, std::string& error,
               const char* what) {
  std::string_view field;
  if (!f.next(field)) {
    error = std::string("malformed SCRAM message: ") + what + " ends before attribute \"" +
            expected + "\"";
    return false;
  }
  char name = 0;
  return parse_attr(field, expected, name, value, error);
}

bool check_message_basics(std::string_view msg, std::string& error, const char* what) {
  if (msg.empty()) {
    error = std::string("malformed SCRAM message: empty ") + what;
    return false;
  }
  if (msg.size() > kMaxScramMessage) {
    error = std::string("malformed SCRAM message: ") + what + " too long";
    return false;
  }
  if (msg.find('\0') != std::string_view::npos) {
    error = std::string("malformed SCRAM message: ") + what + " contains a NUL byte";
    return false;
  }
  return true;
}

bool parse_iterations(std::string_view s, int& out) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  int v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size() || v <= 0) return false;
  out = v;
  return true;
}

}  // namespace sqlmux::pg::auth::detail
