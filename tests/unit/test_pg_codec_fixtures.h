// Shared byte fixtures and helpers for the pg_codec unit tests.
#pragma once

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/pg/codec.h"

namespace sqlmux::pg::testing {

// Bytes as a std::string, from a list of byte values (hand-written fixtures).
inline std::string bytes(std::initializer_list<int> v) {
  std::string s;
  s.reserve(v.size());
  for (int b : v) s.push_back(static_cast<char>(b));
  return s;
}

// A heap buffer of exactly n bytes, so that ASan reports any read past it
// (std::string and std::vector may have spare capacity after the data).
class ExactBuf {
 public:
  explicit ExactBuf(std::string_view s) : n_(s.size()), p_(new uint8_t[s.size()]) {
    if (n_ > 0) std::memcpy(p_.get(), s.data(), n_);
  }
  [[nodiscard]] const uint8_t* data() const { return p_.get(); }
  [[nodiscard]] size_t size() const { return n_; }

 private:
  size_t n_;
  std::unique_ptr<uint8_t[]> p_;
};

struct Fixture {
  std::string name;
  std::string wire;  // a whole typed message: type, length, body
};

// Records everything a StreamDecoder reports.
struct Recorder : MessageCallbacks {
  struct Got {
    char type;
    std::string body;
  };
  std::vector<Got> messages;
  std::vector<std::string> malformed;
  void on_message(const Message& m) override { messages.push_back({m.type, std::string(m.body)}); }
  void on_malformed(std::string_view reason) override { malformed.emplace_back(reason); }
};

inline std::string built(void (*fn)(std::string&)) {
  std::string s;
  fn(s);
  return s;
}

// Every typed message type the codec builds, plus hand-written frontend and
// backend messages that it only relays or parses.
inline std::vector<Fixture> typed_fixtures() {
  std::vector<Fixture> f;
  auto add = [&](std::string name, std::string wire) {
    f.push_back({std::move(name), std::move(wire)});
  };
  std::string s;
  add("AuthenticationOk", built(put_auth_ok));
  add("AuthenticationCleartextPassword", built(put_auth_cleartext));
  const uint8_t salt[4] = {0xde, 0xad, 0xbe, 0xef};
  s.clear();
  put_auth_md5(s, salt);
  add("AuthenticationMD5Password", s);
  s.clear();
  put_auth_sasl(s, {"SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"});
  add("AuthenticationSASL", s);
  s.clear();
  put_auth_sasl_continue(s, "r=abc,s=c2FsdA==,i=4096");
  add("AuthenticationSASLContinue", s);
  s.clear();
  put_auth_sasl_final(s, "v=c2lnbmF0dXJl");
  add("AuthenticationSASLFinal", s);
  s.clear();
  put_parameter_status(s, "server_version", "16.2");
  add("ParameterStatus", s);
  s.clear();
  put_backend_key_data(s, 4242, -123456789);
  add("BackendKeyData", s);
  s.clear();
  put_ready_for_query(s, 'T');
  add("ReadyForQuery", s);
  s.clear();
  put_error(s, {"FATAL", "28P01", "password authentication failed", "some detail", "a hint"});
  add("ErrorResponse", s);
  s.clear();
  put_notice(s, {"NOTICE", "00000", "hello", "", ""});
  add("NoticeResponse", s);
  s.clear();
  put_command_complete(s, "INSERT 0 1");
  add("CommandComplete", s);
  add("EmptyQueryResponse", built(put_empty_query));
  s.clear();
  put_query(s, "SELECT 1");
  add("Query", s);
  add("Sync", built(put_sync));
  add("Terminate", built(put_terminate));
  s.clear();
  put_password(s, "md5abcdef0123456789abcdef0123456789");
  add("PasswordMessage", s);
  s.clear();
  put_sasl_initial_response(s, "SCRAM-SHA-256", "n,,n=,r=rOprNGfwEbeRWgbNEkqO");
  add("SASLInitialResponse", s);
  s.clear();
  put_sasl_response(s, "c=biws,r=abc,p=proof");
  add("SASLResponse", s);
  // Hand-written (no builder): extended-query frontend messages.
  add("Parse", bytes({'P', 0,   0,   0,   23,  's', '1', 0, 'S', 'E', 'L', 'E',
                      'C', 'T', ' ', '$', '1', 0,   0,   1, 0,   0,   0,   23}));
  add("Bind", bytes({'B', 0, 0, 0, 20, 'p', 0, 's', '1', 0, 0, 0, 0, 1, 0, 0, 0, 1, '7', 0, 0}));
  add("DescribePortal", bytes({'D', 0, 0, 0, 7, 'P', 'p', 0}));
  add("CloseStatement", bytes({'C', 0, 0, 0, 8, 'S', 's', '1', 0}));
  add("Execute", bytes({'E', 0, 0, 0, 9, 0, 0, 0, 0, 0}));
  add("Flush", bytes({'H', 0, 0, 0, 4}));
  // Hand-written backend messages sqlmux relays.
  add("ParseComplete", bytes({'1', 0, 0, 0, 4}));
  add("DataRow", bytes({'D', 0, 0, 0, 11, 0, 1, 0, 0, 0, 1, '1'}));
  return f;
}

}  // namespace sqlmux::pg::testing
