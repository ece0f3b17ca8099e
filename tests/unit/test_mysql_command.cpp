// mysql_command: COM_STMT_EXECUTE parsing (captured and hand-made),
// binding remembered parameter types, statement-id rewriting, simple
// command builders.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "protocol/mysql/command.h"
#include "tests/unit/test_mysql_fixtures.h"

using namespace sqlmux::my;
using sqlmux::my::testing::bytes;
using sqlmux::my::testing::ExactBuf;
using sqlmux::my::testing::real;
using sqlmux::my::testing::real_one;

namespace {

// The statement id MariaDB gave the DEPRECATE_EOF session's PREPARE.
uint32_t de_statement_id() {
  const auto prep = real("de", "prepare", 'S');
  REQUIRE_FALSE(prep.empty());
  const std::string_view ok = prep[0]->wire.substr(4);
  REQUIRE(ok.size() >= 5);
  return static_cast<uint32_t>(static_cast<uint8_t>(ok[1])) |
         (static_cast<uint32_t>(static_cast<uint8_t>(ok[2])) << 8);
}

}  // namespace

TEST_CASE("mysql_command: captured COM_STMT_EXECUTE with types", "[mysql]") {
  const std::string_view wire = real_one("de", "execute_types", 'C');
  ExactBuf buf(wire);
  StmtExecute e;
  REQUIRE(decode_stmt_execute(buf.view(), 2, e));
  CHECK(e.statement_id == de_statement_id());
  CHECK(e.flags == cursor::kNoCursor);
  CHECK(e.iterations == 1);
  CHECK(e.null_bitmap == bytes({0x00}));
  CHECK(e.new_params_bound);
  REQUIRE(e.types.size() == 2);
  CHECK(e.types[0] == ParamType{static_cast<uint8_t>(FieldType::LongLong), 0});
  CHECK(e.types[1] == ParamType{static_cast<uint8_t>(FieldType::VarString), 0});
  CHECK(e.values == bytes({0, 0, 0, 0, 0, 0, 0, 0, 3, 'z', 'z', 'z'}));
  std::string again;
  encode_stmt_execute(again, e);
  CHECK(again == wire);
  // Every strict prefix fails or parses to something else.
  for (size_t n = 0; n < wire.size(); ++n) {
    ExactBuf b(wire.substr(0, n));
    StmtExecute part;
    if (decode_stmt_execute(b.view(), 2, part)) {
      CHECK(n >= 16);  // only the values may be cut
      CHECK_FALSE(part == e);
    }
  }
}

TEST_CASE("mysql_command: captured COM_STMT_EXECUTE without types, and binding them", "[mysql]") {
  const std::string_view with = real_one("de", "execute_types", 'C');
  const std::string_view without = real_one("de", "execute_null_no_types", 'C');
  StmtExecute first;
  StmtExecute e;
  REQUIRE(decode_stmt_execute(with, 2, first));
  REQUIRE(decode_stmt_execute(without, 2, e));
  CHECK_FALSE(e.new_params_bound);
  CHECK(e.types.empty());
  CHECK(e.null_bitmap == bytes({0x02}));  // the second parameter is NULL
  CHECK(e.values.size() == 8);
  // Resend with the types remembered from the first EXECUTE.
  std::string bound;
  REQUIRE(bind_param_types(without, 2, first.types, bound));
  StmtExecute b;
  REQUIRE(decode_stmt_execute(bound, 2, b));
  CHECK(b.new_params_bound);
  CHECK(b.types == first.types);
  CHECK(b.values == e.values);
  CHECK(b.null_bitmap == e.null_bitmap);
  CHECK(bound == std::string(without.substr(0, 11)) + bytes({0x01, 0x08, 0x00, 0xfd, 0x00}) +
                     std::string(without.substr(12)));
  // Already bound: copied as is. Wrong type count: refused.
  std::string copy;
  REQUIRE(bind_param_types(with, 2, first.types, copy));
  CHECK(copy == with);
  CHECK_FALSE(bind_param_types(without, 2, {ParamType{8, 0}}, copy));
  // The EOF session's unsigned LONG parameter.
  const std::string_view eof_exec = real_one("eof", "execute", 'C');
  REQUIRE(decode_stmt_execute(eof_exec, 1, e));
  REQUIRE(e.types.size() == 1);
  CHECK(e.types[0] == ParamType{static_cast<uint8_t>(FieldType::Long), kParamUnsigned});
  // The cursor variant.
  REQUIRE(decode_stmt_execute(real_one("eof", "execute_cursor", 'C'), 1, e));
  CHECK(e.flags == cursor::kReadOnly);
}

TEST_CASE("mysql_command: COM_STMT_EXECUTE malformed and edge cases", "[mysql]") {
  StmtExecute e;
  e.statement_id = 9;
  e.iterations = 1;
  e.null_bitmap = bytes({0x00, 0x01});  // 9 parameters, the 9th NULL
  e.new_params_bound = true;
  e.types.assign(9, ParamType{static_cast<uint8_t>(FieldType::Long), 0});
  e.values = std::string(32, 'v');
  std::string wire;
  encode_stmt_execute(wire, e);
  StmtExecute back;
  REQUIRE(decode_stmt_execute(wire, 9, back));
  CHECK(back == e);
  // Bits past num_params must be 0.
  std::string bad = wire;
  bad[11] = 0x02;
  CHECK_FALSE(decode_stmt_execute(bad, 9, back));
  // new-params-bound must be 0 or 1.
  bad = wire;
  bad[12] = 0x02;
  CHECK_FALSE(decode_stmt_execute(bad, 9, back));
  // Types beyond the packet.
  CHECK_FALSE(decode_stmt_execute(std::string_view(wire).substr(0, 20), 9, back));
  // A huge parameter count does not read past a small packet.
  CHECK_FALSE(decode_stmt_execute(wire, 65535, back));
  // Not an EXECUTE.
  bad = wire;
  bad[0] = 0x16;
  CHECK_FALSE(decode_stmt_execute(bad, 9, back));
  // No parameters: the packet ends after the iteration count (anything
  // after it is kept as values).
  StmtExecute none;
  none.statement_id = 3;
  std::string nw;
  encode_stmt_execute(nw, none);
  CHECK(nw.size() == kExecuteHeadLen);
  REQUIRE(decode_stmt_execute(nw, 0, back));
  CHECK(back == none);
  std::string out;
  REQUIRE(bind_param_types(nw, 0, {}, out));
  CHECK(out == nw);
}

TEST_CASE("mysql_command: statement ids", "[mysql]") {
  std::string close;
  encode_stmt_close(close, de_statement_id());
  CHECK(close == real_one("de", "stmt_close", 'C'));
  std::string reset;
  encode_stmt_reset(reset, 4);
  CHECK(reset == real_one("eof", "stmt_reset", 'C'));
  std::string fetch;
  encode_stmt_fetch(fetch, 4, 10);
  CHECK(fetch == real_one("eof", "fetch", 'C'));
  std::string longdata;
  encode_stmt_send_long_data(longdata, 5, 1, "chunk");
  CHECK(longdata == bytes({0x18, 5, 0, 0, 0, 1, 0}) + "chunk");

  std::string exec(real_one("de", "execute_types", 'C'));
  for (std::string* p : {&close, &reset, &fetch, &longdata, &exec}) {
    uint32_t id = 0;
    REQUIRE(statement_id_of(*p, id));
    const std::string before = *p;
    REQUIRE(rewrite_statement_id(*p, 0x12345678));
    REQUIRE(statement_id_of(*p, id));
    CHECK(id == 0x12345678);
    CHECK(p->substr(1, 4) == bytes({0x78, 0x56, 0x34, 0x12}));
    CHECK(p->substr(5) == before.substr(5));  // nothing else changes
    CHECK((*p)[0] == before[0]);
  }
  // Not for other commands or short packets.
  std::string query = "\x03SELECT 1";
  uint32_t id = 0;
  CHECK_FALSE(statement_id_of(query, id));
  CHECK_FALSE(rewrite_statement_id(query, 1));
  CHECK(query == "\x03SELECT 1");
  std::string shortp = bytes({0x19, 1, 0, 0});
  CHECK_FALSE(statement_id_of(shortp, id));
  CHECK_FALSE(rewrite_statement_id(shortp, 1));
  CHECK_FALSE(rewrite_statement_id(nullptr, 0, 1));
  CHECK(has_statement_id(static_cast<uint8_t>(Command::StmtBulkExecute)));
  CHECK_FALSE(has_statement_id(static_cast<uint8_t>(Command::StmtPrepare)));
}

TEST_CASE("mysql_command: simple commands", "[mysql]") {
  std::string q;
  encode_command(q, Command::Query, "SELECT id, name, price FROM shop.items ORDER BY id");
  CHECK(q == real_one("de", "select_items", 'C'));
  std::string init;
  encode_command(init, Command::InitDb, "shop");
  CHECK(init == real_one("de", "init_db", 'C'));
  std::string ping;
  encode_command(ping, Command::Ping);
  CHECK(ping == real_one("de", "ping", 'C'));
  uint8_t c = 0;
  std::string_view arg;
  REQUIRE(decode_command(init, c, arg));
  CHECK(c == static_cast<uint8_t>(Command::InitDb));
  CHECK(arg == "shop");
  CHECK_FALSE(decode_command({}, c, arg));
}

TEST_CASE("mysql_command: COM_STMT_EXECUTE with 32767 / 32768 / 65535 parameters", "[mysql]") {
  for (const uint16_t n : {uint16_t{32767}, uint16_t{32768}, uint16_t{65535}}) {
    CAPTURE(n);
    StmtExecute e;
    e.statement_id = 4;
    e.iterations = 1;
    e.null_bitmap.assign((n + 7) / 8, '\0');
    e.null_bitmap.back() = static_cast<char>(1 << ((n - 1) % 8));  // the last one NULL
    e.new_params_bound = true;
    e.types.assign(n, ParamType{static_cast<uint8_t>(FieldType::Long), 0});
    e.values = std::string(4 * (n - 1), 'v');
    std::string wire;
    encode_stmt_execute(wire, e);
    StmtExecute back;
    REQUIRE(decode_stmt_execute(wire, n, back));
    CHECK(back == e);
    // One type short is malformed.
    CHECK_FALSE(decode_stmt_execute(
        std::string_view(wire).substr(0, kExecuteHeadLen + e.null_bitmap.size() + 1 + 2 * n - 2), n,
        back));
    // Without types, the remembered ones are bound in.
    StmtExecute bare = e;
    bare.new_params_bound = false;
    bare.types.clear();
    std::string bare_wire;
    encode_stmt_execute(bare_wire, bare);
    std::string bound;
    REQUIRE(bind_param_types(bare_wire, n, e.types, bound));
    CHECK(bound == wire);
  }
}

// --- KILL and CONNECTION_ID() ------------------------------------------------

namespace {
KillParse kill_of(std::string_view sql, KillStatement& k) {
  k = KillStatement{};
  return parse_kill(sql, k);
}
}  // namespace

TEST_CASE("mysql_command: KILL statements sqlmux answers", "[mysql]") {
  KillStatement k;
  REQUIRE(kill_of("KILL 12", k) == KillParse::Kill);
  CHECK(k == KillStatement{false, false, 12});
  REQUIRE(kill_of("kill query 7", k) == KillParse::Kill);
  CHECK(k == KillStatement{true, false, 7});
  REQUIRE(kill_of("  /* c */ Kill\n CONNECTION\t42 ; -- bye", k) == KillParse::Kill);
  CHECK(k == KillStatement{false, false, 42});
  REQUIRE(kill_of("KILL HARD QUERY 3;", k) == KillParse::Kill);
  CHECK(k == KillStatement{true, false, 3});
  REQUIRE(kill_of("KILL SOFT 9 # why", k) == KillParse::Kill);
  CHECK(k == KillStatement{false, false, 9});
  REQUIRE(kill_of("KILL QUERY CONNECTION_ID()", k) == KillParse::Kill);
  CHECK(k == KillStatement{true, true, 0});
  REQUIRE(kill_of("kill connection_id ( )", k) == KillParse::Kill);
  CHECK(k == KillStatement{false, true, 0});
  // An id past 64 bits saturates: no such thread.
  REQUIRE(kill_of("KILL 99999999999999999999999", k) == KillParse::Kill);
  CHECK(k.id == UINT64_MAX);
}

TEST_CASE("mysql_command: not KILL, and KILL forms sqlmux refuses", "[mysql]") {
  KillStatement k;
  for (std::string_view s : {"", "SELECT 1", "KILLER 1", "/* KILL 1 */ SELECT 1", "-- KILL 1\nDO 1",
                             "# KILL 1\nDO 1", "/*!KILL 1*/", "SELECT 'KILL 1'", "kil 1"}) {
    INFO(s);
    CHECK(kill_of(s, k) == KillParse::NotKill);
  }
  for (std::string_view s :
       {"KILL", "KILL QUERY", "KILL USER app", "KILL QUERY ID 5", "KILL 1 + 1", "KILL 1; SELECT 1",
        "KILL 'x'", "KILL @id", "KILL 1 /* open", "KILL CONNECTION_ID(", "KILL --1", "KILL -1"}) {
    INFO(s);
    CHECK(kill_of(s, k) == KillParse::Unsupported);
  }
}

TEST_CASE("mysql_command: SELECT CONNECTION_ID() with sqlmux's thread id", "[mysql]") {
  std::string out;
  REQUIRE(rewrite_connection_id("SELECT CONNECTION_ID()", 17, out));
  CHECK(out == "SELECT 17 AS `CONNECTION_ID()`");
  REQUIRE(rewrite_connection_id("select connection_id();", 5, out));
  CHECK(out == "select 5 AS `connection_id()`;");
  REQUIRE(rewrite_connection_id(" /* x */ SELECT  CONNECTION_ID( )  AS cid -- c", 8, out));
  CHECK(out == " /* x */ SELECT  8  AS cid -- c");
  REQUIRE(rewrite_connection_id("SELECT CONNECTION_ID() id", 9, out));
  CHECK(out == "SELECT 9 id");
  REQUIRE(rewrite_connection_id("SELECT CONNECTION_ID() `my id`", 9, out));
  CHECK(out == "SELECT 9 `my id`");
  REQUIRE(rewrite_connection_id("SELECT CONNECTION_ID() AS 'a'", 4294967295u, out));
  CHECK(out == "SELECT 4294967295 AS 'a'");
  REQUIRE(rewrite_connection_id("SELECT CONNECTION_ID(/**/)", 1, out));
  CHECK(out == "SELECT 1 AS `CONNECTION_ID()`");
  for (std::string_view s :
       {"", "SELECT 1", "SELECT CONNECTION_ID() FROM DUAL", "SELECT CONNECTION_ID() + 1",
        "SELECT CONNECTION_ID(), 1", "SELECT CONNECTION_ID() AS", "SELECT CONNECTION_ID() AS ``",
        "SELECT CONNECTION_ID() `open", "SELECT CONNECTION_ID", "SELECT CONNECTION_ID(1)",
        "SELECT CONNECTION_IDX()", "SELECT CONNECTION_ID() a b", "DO CONNECTION_ID()",
        "SELECT CONNECTION_ID() /* open", "SELECT CONNECTION_ID(); SELECT 1"}) {
    INFO(s);
    CHECK_FALSE(rewrite_connection_id(s, 3, out));
  }
}
