// pg_codec: builders checked against hand-written bytes from the protocol
// documentation ("Message Formats"), builder -> parser round trips, and the
// body parsers on short or garbled input.
#include <catch2/catch.hpp>

#include <string>
#include <string_view>
#include <vector>

#include "protocol/pg/codec.h"
#include "tests/unit/test_pg_codec_fixtures.h"

using namespace sqlmux::pg;
using namespace std::string_view_literals;
using sqlmux::pg::testing::bytes;
using sqlmux::pg::testing::ExactBuf;

namespace {

// Decodes one whole typed message from an exact-size copy of `wire`.
Message decode_one(const std::string& wire, const ExactBuf& buf) {
  Message m;
  size_t consumed = 0;
  REQUIRE(decode_message(buf.data(), buf.size(), kMaxMessageLen, m, consumed) == Decode::Complete);
  REQUIRE(consumed == wire.size());
  return m;
}

}  // namespace

TEST_CASE("pg_codec: builders match the documented wire bytes", "[pg_codec]") {
  std::string out;
  SECTION("ReadyForQuery 'I'") {
    put_ready_for_query(out, 'I');
    CHECK(out == bytes({0x5A, 0, 0, 0, 5, 0x49}));
  }
  SECTION("AuthenticationOk") {
    put_auth_ok(out);
    CHECK(out == bytes({0x52, 0, 0, 0, 8, 0, 0, 0, 0}));
  }
  SECTION("AuthenticationCleartextPassword") {
    put_auth_cleartext(out);
    CHECK(out == bytes({0x52, 0, 0, 0, 8, 0, 0, 0, 3}));
  }
  SECTION("AuthenticationMD5Password") {
    const uint8_t salt[4] = {1, 2, 3, 4};
    put_auth_md5(out, salt);
    CHECK(out == bytes({0x52, 0, 0, 0, 12, 0, 0, 0, 5, 1, 2, 3, 4}));
  }
  SECTION("AuthenticationSASL") {
    put_auth_sasl(out, {"SCRAM-SHA-256"});
    CHECK(out == bytes({0x52, 0, 0, 0, 0x17, 0, 0, 0, 10}) + std::string("SCRAM-SHA-256\0\0"sv));
  }
  SECTION("AuthenticationSASLContinue") {
    put_auth_sasl_continue(out, "r=x");
    CHECK(out == bytes({0x52, 0, 0, 0, 11, 0, 0, 0, 11, 'r', '=', 'x'}));
  }
  SECTION("AuthenticationSASLFinal") {
    put_auth_sasl_final(out, "v=y");
    CHECK(out == bytes({0x52, 0, 0, 0, 11, 0, 0, 0, 12, 'v', '=', 'y'}));
  }
  SECTION("ParameterStatus") {
    put_parameter_status(out, "client_encoding", "UTF8");
    CHECK(out == bytes({0x53, 0, 0, 0, 0x19}) + std::string("client_encoding\0UTF8\0"sv));
  }
  SECTION("BackendKeyData") {
    put_backend_key_data(out, 0x01020304, 0x0A0B0C0D);
    CHECK(out == bytes({0x4B, 0, 0, 0, 12, 1, 2, 3, 4, 0x0A, 0x0B, 0x0C, 0x0D}));
  }
  SECTION("ErrorResponse without detail or hint") {
    put_error(out, {"ERROR", "42601", "syntax error", "", ""});
    CHECK(out == bytes({0x45, 0, 0, 0, 0x28}) + std::string("SERROR\0VERROR\0C"
                                                            "42601\0Msyntax error\0\0"sv));
  }
  SECTION("NoticeResponse with detail and hint") {
    put_notice(out, {"WARNING", "01000", "m", "d", "h"});
    const std::string body(
        "SWARNING\0VWARNING\0C"
        "01000\0Mm\0Dd\0Hh\0\0"sv);
    CHECK(out == bytes({0x4E, 0, 0, 0, static_cast<int>(4 + body.size())}) + body);
  }
  SECTION("CommandComplete") {
    put_command_complete(out, "SELECT 1");
    CHECK(out == bytes({0x43, 0, 0, 0, 13}) + std::string("SELECT 1\0"sv));
  }
  SECTION("NotificationResponse") {
    put_notification(out, 0x01020304, "ch", "hi");
    CHECK(out == bytes({0x41, 0, 0, 0, 14, 1, 2, 3, 4}) + std::string("ch\0hi\0"sv));
  }
  SECTION("EmptyQueryResponse") {
    put_empty_query(out);
    CHECK(out == bytes({0x49, 0, 0, 0, 4}));
  }
  SECTION("Query") {
    put_query(out, "SELECT 1");
    CHECK(out == bytes({0x51, 0, 0, 0, 13}) + std::string("SELECT 1\0"sv));
  }
  SECTION("Sync") {
    put_sync(out);
    CHECK(out == bytes({0x53, 0, 0, 0, 4}));
  }
  SECTION("Terminate") {
    put_terminate(out);
    CHECK(out == bytes({0x58, 0, 0, 0, 4}));
  }
  SECTION("StartupMessage") {
    put_startup(out, {{"user", "postgres"}, {"database", "db"}});
    CHECK(out ==
          bytes({0, 0, 0, 0x23, 0, 3, 0, 0}) + std::string("user\0postgres\0database\0db\0\0"sv));
  }
  SECTION("StartupMessage without parameters") {
    put_startup(out, {});
    CHECK(out == bytes({0, 0, 0, 9, 0, 3, 0, 0, 0}));
  }
  SECTION("SSLRequest") {
    put_ssl_request(out);
    CHECK(out == bytes({0, 0, 0, 8, 0x04, 0xD2, 0x16, 0x2F}));
  }
  SECTION("CancelRequest") {
    put_cancel_request(out, 1, -2);
    CHECK(out == bytes({0, 0, 0, 16, 0x04, 0xD2, 0x16, 0x2E, 0, 0, 0, 1, 0xFF, 0xFF, 0xFF, 0xFE}));
  }
  SECTION("PasswordMessage") {
    put_password(out, "secret");
    CHECK(out == bytes({0x70, 0, 0, 0, 11}) + std::string("secret\0"sv));
  }
  SECTION("SASLInitialResponse") {
    put_sasl_initial_response(out, "SCRAM-SHA-256", "n,,n=,r=x");
    CHECK(out == bytes({0x70, 0, 0, 0, 0x1F}) + std::string("SCRAM-SHA-256\0"sv) +
                     bytes({0, 0, 0, 9}) + "n,,n=,r=x");
  }
  SECTION("SASLInitialResponse with no data") {
    put_sasl_initial_response(out, "SCRAM-SHA-256", "");
    CHECK(out ==
          bytes({0x70, 0, 0, 0, 22}) + std::string("SCRAM-SHA-256\0"sv) + bytes({0, 0, 0, 0}));
  }
  SECTION("SASLResponse") {
    put_sasl_response(out, "c=biws");
    CHECK(out == bytes({0x70, 0, 0, 0, 10, 'c', '=', 'b', 'i', 'w', 's'}));
  }
}

TEST_CASE("pg_codec: builders append to existing output", "[pg_codec]") {
  std::string out = "xyz";
  put_sync(out);
  put_ready_for_query(out, 'E');
  CHECK(out == bytes({'x', 'y', 'z', 'S', 0, 0, 0, 4, 'Z', 0, 0, 0, 5, 'E'}));
}

TEST_CASE("pg_codec: builders round-trip through their parsers", "[pg_codec]") {
  std::string wire;
  SECTION("Authentication codes") {
    const uint8_t salt[4] = {0xff, 0, 0x80, 7};
    struct Case {
      std::string wire;
      int32_t code;
      std::string rest;
    };
    std::vector<Case> cases;
    std::string s;
    put_auth_ok(s);
    cases.push_back({s, 0, ""});
    s.clear();
    put_auth_cleartext(s);
    cases.push_back({s, 3, ""});
    s.clear();
    put_auth_md5(s, salt);
    cases.push_back({s, 5, bytes({0xff, 0, 0x80, 7})});
    s.clear();
    put_auth_sasl_continue(s, "server-first");
    cases.push_back({s, 11, "server-first"});
    s.clear();
    put_auth_sasl_final(s, "v=sig");
    cases.push_back({s, 12, "v=sig"});
    for (const auto& c : cases) {
      ExactBuf buf(c.wire);
      const Message m = decode_one(c.wire, buf);
      CHECK(m.type == 'R');
      int32_t code = -1;
      std::string_view rest;
      REQUIRE(parse_authentication(m.body, code, rest));
      CHECK(code == c.code);
      CHECK(rest == c.rest);
    }
  }
  SECTION("AuthenticationSASL mechanism list") {
    put_auth_sasl(wire, {"SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"});
    ExactBuf buf(wire);
    const Message m = decode_one(wire, buf);
    int32_t code = 0;
    std::string_view rest;
    REQUIRE(parse_authentication(m.body, code, rest));
    CHECK(code == 10);
    Reader r(rest);
    std::string_view a, b, end;
    REQUIRE(r.cstr(a));
    REQUIRE(r.cstr(b));
    REQUIRE(r.cstr(end));
    CHECK(a == "SCRAM-SHA-256");
    CHECK(b == "SCRAM-SHA-256-PLUS");
    CHECK(end.empty());
    CHECK(r.at_end());
  }
  SECTION("ParameterStatus") {
    put_parameter_status(wire, "TimeZone", "Europe/Berlin");
    ExactBuf buf(wire);
    const Message m = decode_one(wire, buf);
    std::string_view name, value;
    REQUIRE(parse_parameter_status(m.body, name, value));
    CHECK(name == "TimeZone");
    CHECK(value == "Europe/Berlin");
  }
  SECTION("ParameterStatus with empty value") {
    put_parameter_status(wire, "application_name", "");
    ExactBuf buf(wire);
    std::string_view name, value = "x";
    REQUIRE(parse_parameter_status(decode_one(wire, buf).body, name, value));
    CHECK(name == "application_name");
    CHECK(value.empty());
  }
  SECTION("BackendKeyData") {
    put_backend_key_data(wire, -1, INT32_MIN);
    ExactBuf buf(wire);
    int32_t pid = 0, key = 0;
    REQUIRE(parse_backend_key_data(decode_one(wire, buf).body, pid, key));
    CHECK(pid == -1);
    CHECK(key == INT32_MIN);
  }
  SECTION("ReadyForQuery") {
    for (char st : {'I', 'T', 'E'}) {
      wire.clear();
      put_ready_for_query(wire, st);
      ExactBuf buf(wire);
      char got = 0;
      REQUIRE(parse_ready_for_query(decode_one(wire, buf).body, got));
      CHECK(got == st);
    }
  }
  SECTION("ErrorResponse and NoticeResponse") {
    const ErrorFields in{"FATAL", "53300", "too many clients", "pool is full", "try later"};
    std::string n;
    put_error(wire, in);
    put_notice(n, in);
    for (const std::string* w : {&wire, &n}) {
      ExactBuf buf(*w);
      const Message m = decode_one(*w, buf);
      CHECK(m.type == (w == &wire ? 'E' : 'N'));
      ErrorFields got;
      REQUIRE(parse_error_fields(m.body, got));
      CHECK(got.severity == in.severity);
      CHECK(got.sqlstate == in.sqlstate);
      CHECK(got.message == in.message);
      CHECK(got.detail == in.detail);
      CHECK(got.hint == in.hint);
    }
  }
  SECTION("ErrorResponse with defaults and no optional fields") {
    ErrorFields in;
    in.message = "boom";
    put_error(wire, in);
    ExactBuf buf(wire);
    ErrorFields got;
    got.detail = "stale";
    REQUIRE(parse_error_fields(decode_one(wire, buf).body, got));
    CHECK(got.severity == "ERROR");
    CHECK(got.sqlstate == std::string(sqlstate::kInternalError));
    CHECK(got.message == "boom");
    CHECK(got.detail.empty());
    CHECK(got.hint.empty());
  }
  SECTION("CommandComplete") {
    put_command_complete(wire, "UPDATE 42");
    ExactBuf buf(wire);
    std::string_view tag;
    REQUIRE(parse_command_complete(decode_one(wire, buf).body, tag));
    CHECK(tag == "UPDATE 42");
  }
  SECTION("EmptyQueryResponse, Sync, Terminate have empty bodies") {
    for (auto fn : {put_empty_query, put_sync, put_terminate}) {
      wire.clear();
      fn(wire);
      ExactBuf buf(wire);
      CHECK(decode_one(wire, buf).body.empty());
    }
  }
  SECTION("Query") {
    put_query(wire, "SELECT 'x'; SELECT 2");
    ExactBuf buf(wire);
    std::string_view sql;
    REQUIRE(parse_query(decode_one(wire, buf).body, sql));
    CHECK(sql == "SELECT 'x'; SELECT 2");
  }
  SECTION("PasswordMessage") {
    put_password(wire, "hunter2");
    ExactBuf buf(wire);
    std::string_view pw;
    REQUIRE(parse_password(decode_one(wire, buf).body, pw));
    CHECK(pw == "hunter2");
  }
  SECTION("SASLInitialResponse") {
    const std::string data = std::string("n,,n=,r=\0\xff"sv);
    put_sasl_initial_response(wire, "SCRAM-SHA-256", data);
    ExactBuf buf(wire);
    std::string_view mech, got;
    REQUIRE(parse_sasl_initial_response(decode_one(wire, buf).body, mech, got));
    CHECK(mech == "SCRAM-SHA-256");
    CHECK(got == data);
  }
  SECTION("SASLInitialResponse with empty data") {
    put_sasl_initial_response(wire, "SCRAM-SHA-256", "");
    ExactBuf buf(wire);
    std::string_view mech, got = "x";
    REQUIRE(parse_sasl_initial_response(decode_one(wire, buf).body, mech, got));
    CHECK(mech == "SCRAM-SHA-256");
    CHECK(got.empty());
  }
  SECTION("SASLResponse carries raw bytes") {
    const std::string data = std::string("c=biws,\0p=\x01"sv);
    put_sasl_response(wire, data);
    ExactBuf buf(wire);
    CHECK(decode_one(wire, buf).body == data);
  }
}

TEST_CASE("pg_codec: hand-written extended-query messages parse", "[pg_codec]") {
  SECTION("Parse with one parameter type") {
    const std::string body = std::string("s1\0SELECT $1\0"sv) + bytes({0, 1, 0, 0, 0, 23});
    std::string_view name, query;
    std::vector<uint32_t> types{99, 98};
    REQUIRE(parse_parse(body, name, query, types));
    CHECK(name == "s1");
    CHECK(query == "SELECT $1");
    CHECK(types == std::vector<uint32_t>{23});
  }
  SECTION("Parse, unnamed, no types, large oid") {
    std::string_view name, query;
    std::vector<uint32_t> types;
    const std::string b1 = std::string("\0SELECT 1\0"sv) + bytes({0, 0});
    REQUIRE(parse_parse(b1, name, query, types));
    CHECK(name.empty());
    CHECK(query == "SELECT 1");
    CHECK(types.empty());
    const std::string b2 =
        std::string("\0q\0"sv) + bytes({0, 2, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0});
    REQUIRE(parse_parse(b2, name, query, types));
    CHECK(types == std::vector<uint32_t>{0xffffffffu, 0});
  }
  SECTION("Parse counts are unsigned 16-bit (boundaries 32767 / 32768 / 65535)") {
    for (const uint32_t count : {32767u, 32768u, 65535u}) {
      CAPTURE(count);
      std::vector<uint32_t> want(count);
      for (uint32_t i = 0; i < count; ++i) want[i] = i % 3 == 0 ? 23 : 0xffffffffu - i;
      std::string wire;
      put_parse(wire, "big", "INSERT", want);
      ExactBuf buf(wire);
      const Message m = decode_one(wire, buf);
      CHECK(m.body.substr(11, 2) ==
            bytes({static_cast<uint8_t>(count >> 8), static_cast<uint8_t>(count & 0xff)}));
      std::string_view name, query;
      std::vector<uint32_t> types;
      REQUIRE(parse_parse(m.body, name, query, types));
      CHECK(name == "big");
      CHECK(query == "INSERT");
      CHECK(types == want);
      // One oid short or one too many is still malformed.
      CHECK_FALSE(parse_parse(m.body.substr(0, m.body.size() - 4), name, query, types));
      CHECK_FALSE(parse_parse(std::string(m.body) + bytes({0, 0, 0, 0}), name, query, types));
    }
  }
  SECTION("Bind names") {
    const std::string body =
        std::string("portal\0stmt\0"sv) + bytes({0, 0, 0, 1, 0, 0, 0, 1, '7', 0, 0});
    std::string_view portal, stmt;
    REQUIRE(parse_bind_names(body, portal, stmt));
    CHECK(portal == "portal");
    CHECK(stmt == "stmt");
  }
  SECTION("Close / Describe") {
    char kind = 0;
    std::string_view name;
    const std::string s1("Ss1\0"sv), p0("P\0"sv);  // the views point into these
    REQUIRE(parse_close_or_describe(s1, kind, name));
    CHECK(kind == 'S');
    CHECK(name == "s1");
    REQUIRE(parse_close_or_describe(p0, kind, name));
    CHECK(kind == 'P');
    CHECK(name.empty());
  }
}

TEST_CASE("pg_codec: body parsers reject short or garbled bodies", "[pg_codec]") {
  ErrorFields ef;
  std::string_view a, b;
  char c = 0;
  int32_t i = 0, j = 0;
  std::vector<uint32_t> types;

  SECTION("ErrorResponse") {
    CHECK_FALSE(parse_error_fields("", ef));                            // no terminator
    CHECK_FALSE(parse_error_fields(std::string("SERROR\0"sv), ef));     // no terminator
    CHECK_FALSE(parse_error_fields(std::string("SERROR"sv), ef));       // unterminated field
    CHECK_FALSE(parse_error_fields(std::string("S"sv), ef));            // code, no value
    CHECK_FALSE(parse_error_fields(std::string("SERROR\0\0x"sv), ef));  // trailing bytes
    CHECK(parse_error_fields(std::string("\0"sv), ef));                 // no fields at all
    CHECK(ef.severity.empty());
    CHECK(ef.sqlstate.empty());
    CHECK(ef.message.empty());
  }
  SECTION("ErrorResponse: V preferred over S, other fields ignored") {
    REQUIRE(parse_error_fields(
        std::string("VFATAL\0SFATAL-localized\0Ppos\0Ffile.c\0L1\0Rfn\0Mm\0\0"sv), ef));
    CHECK(ef.severity == "FATAL");
    CHECK(ef.message == "m");
    REQUIRE(parse_error_fields(std::string("SFEHLER\0VERROR\0\0"sv), ef));
    CHECK(ef.severity == "ERROR");
    REQUIRE(parse_error_fields(std::string("SFEHLER\0\0"sv), ef));
    CHECK(ef.severity == "FEHLER");
  }
  SECTION("ErrorResponse: output untouched on failure") {
    ef.message = "keep";
    CHECK_FALSE(parse_error_fields(std::string("Mnew\0"sv), ef));
    CHECK(ef.message == "keep");
  }
  SECTION("ParameterStatus") {
    CHECK_FALSE(parse_parameter_status("", a, b));
    CHECK_FALSE(parse_parameter_status(std::string("name\0"sv), a, b));
    CHECK_FALSE(parse_parameter_status(std::string("name\0value"sv), a, b));
    CHECK_FALSE(parse_parameter_status(std::string("name\0value\0x"sv), a, b));
  }
  SECTION("ReadyForQuery") {
    CHECK_FALSE(parse_ready_for_query("", c));
    CHECK_FALSE(parse_ready_for_query("II", c));
    CHECK_FALSE(parse_ready_for_query("X", c));
    CHECK_FALSE(parse_ready_for_query(std::string("\0"sv), c));
  }
  SECTION("BackendKeyData") {
    CHECK_FALSE(parse_backend_key_data("", i, j));
    CHECK_FALSE(parse_backend_key_data("1234567", i, j));
    CHECK_FALSE(parse_backend_key_data("123456789", i, j));
  }
  SECTION("Query, PasswordMessage, CommandComplete") {
    for (auto fn : {parse_query, parse_password, parse_command_complete}) {
      CHECK_FALSE(fn("", a));
      CHECK_FALSE(fn("no terminator", a));
      CHECK_FALSE(fn(std::string("two\0strings\0"sv), a));
      const std::string empty("\0"sv);
      CHECK(fn(empty, a));
      CHECK(a.empty());
    }
  }
  SECTION("SASLInitialResponse") {
    const std::string mech("SCRAM-SHA-256\0"sv);
    CHECK_FALSE(parse_sasl_initial_response("", a, b));
    CHECK_FALSE(parse_sasl_initial_response("SCRAM", a, b));  // unterminated
    CHECK_FALSE(parse_sasl_initial_response(mech, a, b));     // no length
    CHECK_FALSE(parse_sasl_initial_response(mech + bytes({0, 0, 0}), a, b));
    CHECK_FALSE(parse_sasl_initial_response(mech + bytes({0, 0, 0, 5}) + "abcd", a, b));
    CHECK_FALSE(parse_sasl_initial_response(mech + bytes({0, 0, 0, 3}) + "abcd", a, b));
    CHECK_FALSE(parse_sasl_initial_response(mech + bytes({0x7f, 0xff, 0xff, 0xff}), a, b));
    CHECK_FALSE(parse_sasl_initial_response(mech + bytes({0xff, 0xff, 0xff, 0xfe}), a, b));
    CHECK_FALSE(parse_sasl_initial_response(mech + bytes({0x80, 0, 0, 0}), a, b));
    CHECK_FALSE(parse_sasl_initial_response(mech + bytes({0xff, 0xff, 0xff, 0xff, 'x'}), a, b));
    b = "stale";
    const std::string none = mech + bytes({0xff, 0xff, 0xff, 0xff});
    REQUIRE(parse_sasl_initial_response(none, a, b));
    CHECK(a == "SCRAM-SHA-256");
    CHECK(b.empty());
  }
  SECTION("Authentication") {
    CHECK_FALSE(parse_authentication("", i, a));
    CHECK_FALSE(parse_authentication(bytes({0, 0, 0}), i, a));
    REQUIRE(parse_authentication(bytes({0, 0, 0, 0}), i, a));
    CHECK(i == 0);
    CHECK(a.empty());
  }
  SECTION("Parse") {
    const std::string head("s\0q\0"sv);
    CHECK_FALSE(parse_parse("", a, b, types));
    CHECK_FALSE(parse_parse(std::string("s\0"sv), a, b, types));
    CHECK_FALSE(parse_parse(head, a, b, types));                                  // no count
    CHECK_FALSE(parse_parse(head + bytes({0}), a, b, types));                     // half a count
    CHECK_FALSE(parse_parse(head + bytes({0xff, 0xff}), a, b, types));            // 65535, no oids
    CHECK_FALSE(parse_parse(head + bytes({0x7f, 0xff}), a, b, types));            // 32767, no oids
    CHECK_FALSE(parse_parse(head + bytes({0, 1, 0, 0, 0}), a, b, types));         // short oid
    CHECK_FALSE(parse_parse(head + bytes({0, 1, 0, 0, 0, 23, 9}), a, b, types));  // trailing
    CHECK_FALSE(parse_parse(head + bytes({0, 0, 9}), a, b, types));               // trailing
  }
  SECTION("Bind") {
    CHECK_FALSE(parse_bind_names("", a, b));
    CHECK_FALSE(parse_bind_names(std::string("portal\0"sv), a, b));
    CHECK_FALSE(parse_bind_names(std::string("portal\0stmt"sv), a, b));
    CHECK(parse_bind_names(std::string("\0\0"sv), a, b));
  }
  SECTION("Close / Describe") {
    CHECK_FALSE(parse_close_or_describe("", c, a));
    CHECK_FALSE(parse_close_or_describe("S", c, a));
    CHECK_FALSE(parse_close_or_describe(std::string("Xname\0"sv), c, a));
    CHECK_FALSE(parse_close_or_describe(std::string("s\0"sv), c, a));
    CHECK_FALSE(parse_close_or_describe(std::string("Sname"sv), c, a));
    CHECK_FALSE(parse_close_or_describe(std::string("Sname\0x"sv), c, a));
  }
}

TEST_CASE("pg_codec: Reader is bounds-checked and sticky", "[pg_codec]") {
  const std::string data = bytes({0xff, 0xfe, 0x80, 0, 0, 1, 'a', 'b', 0, 'c'});
  ExactBuf buf(data);
  Reader r(buf.data(), buf.size());
  int16_t s = 0;
  int32_t i = 0;
  std::string_view v;
  REQUIRE(r.i16(s));
  CHECK(s == -2);
  REQUIRE(r.i32(i));
  CHECK(i == static_cast<int32_t>(0x80000001u));
  REQUIRE(r.cstr(v));
  CHECK(v == "ab");
  CHECK(r.remaining() == 1);
  CHECK_FALSE(r.cstr(v));  // 'c' has no NUL
  CHECK_FALSE(r.ok());
  uint8_t u = 0;
  CHECK_FALSE(r.u8(u));  // sticky, although one byte remains
  CHECK(r.remaining() == 1);

  Reader r2(buf.data(), 3);
  CHECK_FALSE(r2.i32(i));
  CHECK(r2.remaining() == 3);
  Reader r3(buf.data(), 2);
  CHECK_FALSE(r3.bytes(3, v));
  Reader r4(buf.data(), 2);
  REQUIRE(r4.bytes(2, v));
  CHECK(r4.at_end());
  CHECK_FALSE(r4.bytes(1, v));
  Reader r5(buf.data(), 0);
  CHECK_FALSE(r5.u8(u));
  CHECK_FALSE(r5.i16(s));

  // u16 reads the same bytes unsigned: 0xfffe is 65534, 0x8000 is 32768.
  Reader r6(buf.data(), 3);
  uint16_t c = 0;
  REQUIRE(r6.u16(c));
  CHECK(c == 65534);
  CHECK_FALSE(r6.u16(c));  // one byte left
  const std::string edges = bytes({0x7f, 0xff, 0x80, 0x00, 0xff, 0xff});
  ExactBuf ebuf(edges);
  Reader r7(ebuf.data(), ebuf.size());
  for (const uint16_t want : {32767, 32768, 65535}) {
    REQUIRE(r7.u16(c));
    CHECK(c == want);
  }
  CHECK(r7.at_end());
}

TEST_CASE("pg_codec: Writer patches lengths", "[pg_codec]") {
  std::string out;
  Writer w(out);
  w.begin('T');
  w.i16(-2);
  w.i32(-1);
  w.u8(7);
  w.cstr("ab");
  w.bytes(std::string("\0x"sv));
  w.end();
  CHECK(out ==
        bytes({'T', 0, 0, 0, 16, 0xff, 0xfe, 0xff, 0xff, 0xff, 0xff, 7, 'a', 'b', 0, 0, 'x'}));
  Writer w2(out);
  w2.begin_untyped();
  w2.i32(1);
  w2.end();
  CHECK(out.substr(17) == bytes({0, 0, 0, 8, 0, 0, 0, 1}));
  std::string counts;
  Writer w3(counts);
  w3.u16(32767);
  w3.u16(32768);
  w3.u16(65535);
  CHECK(counts == bytes({0x7f, 0xff, 0x80, 0x00, 0xff, 0xff}));
}

TEST_CASE("pg_codec: message names and to_string", "[pg_codec]") {
  CHECK(frontend_message_name('Q') == "Query");
  for (char t : std::string("BCdcfDEHFPQSX")) CHECK(is_session_message_type(t));
  for (char t : std::string_view("p\x01\0Zz", 5)) CHECK_FALSE(is_session_message_type(t));
  CHECK(frontend_message_name('P') == "Parse");
  CHECK(frontend_message_name('B') == "Bind");
  CHECK(frontend_message_name('D') == "Describe");
  CHECK(frontend_message_name('E') == "Execute");
  CHECK(frontend_message_name('S') == "Sync");
  CHECK(frontend_message_name('X') == "Terminate");
  CHECK(frontend_message_name('p') == "PasswordMessage");
  CHECK(frontend_message_name('Z') == "Unknown");
  CHECK(frontend_message_name('\0') == "Unknown");
  CHECK(backend_message_name('D') == "DataRow");
  CHECK(backend_message_name('Z') == "ReadyForQuery");
  CHECK(backend_message_name('E') == "ErrorResponse");
  CHECK(backend_message_name('R') == "Authentication");
  CHECK(backend_message_name('T') == "RowDescription");
  CHECK(backend_message_name('S') == "ParameterStatus");
  CHECK(backend_message_name('Q') == "Unknown");
  CHECK(backend_message_name(static_cast<char>(0xff)) == "Unknown");
  CHECK(to_string(Decode::Complete) == "complete");
  CHECK(to_string(Decode::NeedMore) == "need-more");
  CHECK(to_string(Decode::Malformed) == "malformed");
}
