// daemon/ops/upgrade_wire: the online upgrade's messages.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstddef>
#include <string>
#include <vector>

#include "daemon/ops/upgrade_wire.h"

using sqlmux::upgrade::SocketDesc;
using sqlmux::upgrade::SocketKind;
using sqlmux::upgrade::WireError;
namespace up = sqlmux::upgrade;

TEST_CASE("upgrade wire: an offer round-trips", "[upgrade]") {
  const std::vector<SocketDesc> socks = {
      {SocketKind::Listener, "postgres", "127.0.0.1:6432"},
      {SocketKind::Listener, "mysql", "[::1]:3307"},
      {SocketKind::Listener, "postgres", "unix:/run/sqlmux/.s.PGSQL 6432"},
      {SocketKind::Admin, "-", "127.0.0.1:6433"},
      {SocketKind::Metrics, "-", "127.0.0.1:9930"},
      {SocketKind::Upgrade, "-", "unix:/run/sqlmux/upgrade.sock"},
  };
  const std::string msg = up::encode_offer(socks);
  CHECK(msg ==
        "sqlmux-handover 1\n"
        "listener postgres 127.0.0.1:6432\n"
        "listener mysql [::1]:3307\n"
        "listener postgres unix:/run/sqlmux/.s.PGSQL 6432\n"
        "admin - 127.0.0.1:6433\n"
        "metrics - 127.0.0.1:9930\n"
        "upgrade - unix:/run/sqlmux/upgrade.sock\n");
  std::vector<SocketDesc> back;
  REQUIRE(up::decode_offer(msg, socks.size(), back) == WireError::None);
  CHECK(back == socks);
}

TEST_CASE("upgrade wire: offers that cannot be written", "[upgrade]") {
  CHECK(up::encode_offer({{SocketKind::Listener, "postgres", "a\nb"}}).empty());
  CHECK(up::encode_offer({{SocketKind::Listener, "postgres", std::string("a\0b", 3)}}).empty());
  CHECK(up::encode_offer({{SocketKind::Listener, "oracle", "h:1"}}).empty());
  CHECK(up::encode_offer({{SocketKind::Admin, "postgres", "h:1"}}).empty());
  CHECK(up::encode_offer({{SocketKind::Listener, "postgres", ""}}).empty());
  CHECK(
      up::encode_offer({{SocketKind::Listener, "postgres", std::string(up::kMaxAddress + 1, 'a')}})
          .empty());
  std::vector<SocketDesc> many(up::kMaxSockets + 1, {SocketKind::Admin, "-", "h:1"});
  CHECK(up::encode_offer(many).empty());
  many.pop_back();
  CHECK_FALSE(up::encode_offer(many).empty());
  CHECK(up::encode_offer({}) == "sqlmux-handover 1\n");
}

TEST_CASE("upgrade wire: malformed offers are named errors", "[upgrade]") {
  std::vector<SocketDesc> out;
  struct Case {
    std::string msg;
    size_t fds;
    WireError want;
  };
  const Case cases[] = {
      {"", 0, WireError::BadHeader},
      {"sqlmux-handover 2\n", 0, WireError::BadHeader},
      {"sqlmux-handover 1", 0, WireError::BadHeader},
      {"sqlmux-handover 1\nlistener postgres 127.0.0.1:6432", 1, WireError::BadLine},
      {"sqlmux-handover 1\nlistener postgres\n", 1, WireError::BadLine},
      {"sqlmux-handover 1\nlistener postgres \n", 1, WireError::BadLine},
      {"sqlmux-handover 1\n\n", 1, WireError::BadLine},
      {"sqlmux-handover 1\nsocket - h:1\n", 1, WireError::BadKind},
      {"sqlmux-handover 1\nlistener - h:1\n", 1, WireError::BadKind},
      {"sqlmux-handover 1\nadmin mysql h:1\n", 1, WireError::BadKind},
      {std::string("sqlmux-handover 1\nadmin - h\0:1\n", 30), 1, WireError::BadLine},
      {"sqlmux-handover 1\nadmin - h:1\n", 0, WireError::CountMismatch},
      {"sqlmux-handover 1\nadmin - h:1\n", 2, WireError::CountMismatch},
      {"sqlmux-handover 1\n", 1, WireError::CountMismatch},
  };
  for (const auto& c : cases) {
    INFO(c.msg);
    CHECK(up::decode_offer(c.msg, c.fds, out) == c.want);
  }
  std::string many = "sqlmux-handover 1\n";
  for (size_t i = 0; i <= up::kMaxSockets; ++i) many += "admin - h:1\n";
  CHECK(up::decode_offer(many, up::kMaxSockets + 1, out) == WireError::TooMany);
  CHECK(up::to_string(WireError::CountMismatch) == "count_mismatch");
  CHECK(up::to_string(SocketKind::Metrics) == "metrics");
}

TEST_CASE("upgrade wire: go and done", "[upgrade]") {
  CHECK(up::encode_go(4242) == "go 4242\n");
  CHECK(up::decode_go(up::encode_go(4242)) == 4242);
  CHECK(up::decode_done(up::encode_done(7)) == 7);
  CHECK(up::decode_go(up::encode_done(7)) == 0);
  CHECK(up::decode_done(up::encode_go(7)) == 0);
  for (const char* bad :
       {"", "go", "go \n", "go 0\n", "go -1\n", "go 12a\n", "go 12", "go  12\n", "go 2147483648\n",
        "go 08\n", "go 99999999999\n", "gone 1\n", "go 1\n\n"}) {
    INFO(bad);
    CHECK(up::decode_go(bad) == 0);
  }
  CHECK(up::decode_go("go 2147483647\n") == 2147483647);
}

namespace {

up::ClientState sample_client() {
  up::ClientState c;
  c.id = 42;
  c.pool = "app";
  c.user = "alice";
  c.database = "appdb";
  c.cancel_pid = -12345;
  c.cancel_key = 0x7fffffff;
  c.describes_portals = false;
  c.params = {{"application_name", "psql\nx", true}, {"search_path", "a, \"b\"", false}};
  c.statements = {{"__asyncpg_stmt_1__", "SELECT $1::int", {23}},
                  {"s2", "SELECT 'é'\n", {}},
                  {"s3", "SELECT $1, $2", {0, 4294967295u}}};
  return c;
}

}  // namespace

TEST_CASE("upgrade wire: a client record round-trips", "[upgrade]") {
  const up::ClientState c = sample_client();
  const std::string msg = up::encode_client(c);
  REQUIRE_FALSE(msg.empty());
  CHECK(msg.rfind("sqlmux-client 1\n", 0) == 0);
  up::ClientState back;
  REQUIRE(up::decode_client(msg, 1, back) == up::ClientWireError::None);
  CHECK(back == c);
  up::ClientState bare;
  bare.id = 1;
  bare.pool = bare.user = bare.database = "x";
  REQUIRE(up::decode_client(up::encode_client(bare), 1, back) == up::ClientWireError::None);
  CHECK(back == bare);
}

TEST_CASE("upgrade wire: client records that cannot be written", "[upgrade]") {
  up::ClientState c = sample_client();
  c.id = 0;
  CHECK(up::encode_client(c).empty());
  c = sample_client();
  c.id = up::kMaxClientId + 1;
  CHECK(up::encode_client(c).empty());
  c = sample_client();
  c.user.clear();
  CHECK(up::encode_client(c).empty());
  c = sample_client();
  c.pool = std::string(up::kMaxName + 1, 'p');
  CHECK(up::encode_client(c).empty());
  c = sample_client();
  c.params[0].value = std::string("a\0b", 3);
  CHECK(up::encode_client(c).empty());
  c = sample_client();
  c.statements[0].name.clear();
  CHECK(up::encode_client(c).empty());
  c = sample_client();
  c.statements[0].param_types.assign(up::kMaxParamTypes + 1, 23);
  CHECK(up::encode_client(c).empty());
  c = sample_client();
  c.statements.assign(up::kMaxClientStatements + 1, c.statements[0]);
  CHECK(up::encode_client(c).empty());
  // Larger than one packet: the client stays where it is.
  c = sample_client();
  c.statements.assign(40, {"s", std::string(2000, 'q'), {}});
  CHECK(up::encode_client(c).empty());
  c.statements.resize(20);
  CHECK_FALSE(up::encode_client(c).empty());
}

TEST_CASE("upgrade wire: malformed client records are named errors", "[upgrade]") {
  const std::string good = up::encode_client(sample_client());
  up::ClientState out;
  using E = up::ClientWireError;
  CHECK(up::decode_client("", 1, out) == E::BadHeader);
  CHECK(up::decode_client("sqlmux-client 2\n" + good.substr(16), 1, out) == E::BadHeader);
  CHECK(up::decode_client(good, 0, out) == E::NoSocket);
  CHECK(up::decode_client(good, 2, out) == E::NoSocket);
  CHECK(up::decode_client(good + "x", 1, out) == E::Trailing);
  // Every strict prefix is truncated, never read past its end.
  for (size_t n = 16; n < good.size(); ++n) {
    INFO(n);
    CHECK(up::decode_client(std::string_view(good).substr(0, n), 1, out) == E::Truncated);
    CHECK(out == up::ClientState{});
  }
  // A string length larger than what follows.
  std::string bad = good;
  bad[16 + 8 + 3] = '\x7f';  // the pool name's length, low byte
  CHECK(up::decode_client(bad, 1, out) == E::Truncated);
  bad = good;
  bad[16 + 8] = '\xff';  // the pool name's length, high byte
  CHECK(up::decode_client(bad, 1, out) == E::Truncated);
  // Id 0, a flag other than 0/1.
  bad = good;
  std::fill(bad.begin() + 16, bad.begin() + 24, '\0');
  CHECK(up::decode_client(bad, 1, out) == E::BadField);
  up::ClientState c = sample_client();
  const size_t flag =
      16 + 8 + (4 + c.pool.size()) + (4 + c.user.size()) + (4 + c.database.size()) + 8;
  bad = good;
  bad[flag] = '\x02';
  CHECK(up::decode_client(bad, 1, out) == E::BadField);
  // A parameter count beyond the limit.
  bad = good;
  bad[flag + 1] = '\x7f';
  CHECK(up::decode_client(bad, 1, out) == E::TooMany);
  CHECK(up::to_string(E::NoSocket) == "no_socket");
}

namespace {

up::ClientState sample_my_client() {
  up::ClientState c;
  c.id = 7;
  c.pool = "appdb";
  c.user = "app";
  c.database = "appdb";
  up::MyClientState& m = c.mysql.emplace();
  m.thread_id = 0x40020003;
  m.thread_counter = 99;
  m.caps = 0x1'81ffa20full;
  m.charset = 224;
  m.scramble = std::string("\x01\0abcdefghij\xffklmnopq", 20);
  m.login_db = "appdb";
  m.application = "pymysql";
  m.schema = "other_db";
  m.results_collation = std::nullopt;
  m.vars = {{"sql_mode", "ANSI_QUOTES"}, {"time_zone", "+03:00"}, {"character_set_results", ""}};
  m.next_statement = 5;
  m.last_statement = 4;
  m.statements = {{1, "SELECT ? + 1", std::string("appdb"), 1, 1, {0x8008}},
                  {2, "SELECT 'é'\n", std::nullopt, 0, 1, {}},
                  {4, std::string("SELECT '\0'", 11), std::string(""), 2, 0, {}}};
  return c;
}

}  // namespace

TEST_CASE("upgrade wire: a MySQL client record round-trips", "[upgrade]") {
  const up::ClientState c = sample_my_client();
  const std::string msg = up::encode_client(c);
  REQUIRE_FALSE(msg.empty());
  CHECK(msg.rfind("sqlmux-myclient 1\n", 0) == 0);
  up::ClientState back;
  REQUIRE(up::decode_client(msg, 1, back) == up::ClientWireError::None);
  CHECK(back == c);
  REQUIRE(back.mysql);
  CHECK(back.mysql->statements[2].sql.size() == 11);
  // The smallest: no schema, no variables, no statements.
  up::ClientState bare;
  bare.id = 1;
  bare.pool = bare.user = bare.database = "x";
  bare.mysql.emplace().thread_id = 1;
  REQUIRE(up::decode_client(up::encode_client(bare), 1, back) == up::ClientWireError::None);
  CHECK(back == bare);
  // A PostgreSQL record is still one (no `mysql`).
  REQUIRE(up::decode_client(up::encode_client(sample_client()), 1, back) ==
          up::ClientWireError::None);
  CHECK_FALSE(back.mysql);
}

TEST_CASE("upgrade wire: MySQL client records that cannot be written", "[upgrade]") {
  const auto bad = [](auto change) {
    up::ClientState c = sample_my_client();
    change(c);
    return up::encode_client(c).empty();
  };
  CHECK(bad([](up::ClientState& c) { c.mysql->thread_id = 0; }));
  CHECK(bad([](up::ClientState& c) { c.cancel_pid = 5; }));  // no PostgreSQL fields
  CHECK(bad([](up::ClientState& c) { c.params.push_back({"a", "b", false}); }));
  CHECK(bad([](up::ClientState& c) { c.mysql->scramble.assign(up::kMaxScramble + 1, 's'); }));
  CHECK(bad([](up::ClientState& c) { c.mysql->login_db = std::string("a\0b", 3); }));
  CHECK(bad([](up::ClientState& c) { c.mysql->application.assign(up::kMaxName + 1, 'a'); }));
  CHECK(bad([](up::ClientState& c) { c.mysql->schema = std::string("a\0b", 3); }));
  CHECK(bad([](up::ClientState& c) { c.mysql->vars.push_back({"", "x"}); }));
  CHECK(bad([](up::ClientState& c) { c.mysql->vars.push_back({"v", std::string("\0", 1)}); }));
  CHECK(bad([](up::ClientState& c) {
    c.mysql->vars.assign(up::kMaxClientParams + 1, {"v", "1"});
  }));
  // Statement ids: ascending, not 0, below the next one; the last among them.
  CHECK(bad([](up::ClientState& c) { c.mysql->statements[0].id = 0; }));
  CHECK(bad([](up::ClientState& c) { c.mysql->statements[1].id = 1; }));
  CHECK(bad([](up::ClientState& c) { c.mysql->statements[2].id = 5; }));
  CHECK(bad([](up::ClientState& c) { c.mysql->next_statement = 0; }));
  CHECK(bad([](up::ClientState& c) { c.mysql->last_statement = 3; }));
  CHECK(bad([](up::ClientState& c) { c.mysql->statements[0].param_types = {1, 2}; }));
  CHECK(bad([](up::ClientState& c) { c.mysql->statements[0].schema = std::string("\0", 1); }));
  CHECK(bad([](up::ClientState& c) {
    c.mysql->statements.assign(40, {1, std::string(2000, 'q'), std::nullopt, 0, 0, {}});
    for (uint32_t i = 0; i < 40; ++i) c.mysql->statements[i].id = i + 1;
    c.mysql->next_statement = 41;
  }));
  CHECK_FALSE(bad([](up::ClientState& c) { c.mysql->last_statement = 0; }));
}

TEST_CASE("upgrade wire: malformed MySQL client records are named errors", "[upgrade]") {
  const std::string good = up::encode_client(sample_my_client());
  constexpr size_t kHead = 18;  // "sqlmux-myclient 1\n"
  up::ClientState out;
  using E = up::ClientWireError;
  CHECK(up::decode_client("sqlmux-myclient 2\n" + good.substr(kHead), 1, out) == E::BadHeader);
  CHECK(up::decode_client(good, 0, out) == E::NoSocket);
  CHECK(up::decode_client(good + "x", 1, out) == E::Trailing);
  for (size_t n = kHead; n < good.size(); ++n) {
    INFO(n);
    CHECK(up::decode_client(std::string_view(good).substr(0, n), 1, out) == E::Truncated);
    CHECK(out == up::ClientState{});
  }
  const up::ClientState c = sample_my_client();
  const size_t my = kHead + 8 + (4 + c.pool.size()) + (4 + c.user.size()) + (4 + c.database.size());
  std::string bad = good;
  std::fill(bad.begin() + static_cast<std::ptrdiff_t>(my),
            bad.begin() + static_cast<std::ptrdiff_t>(my + 4), '\0');  // thread id 0
  CHECK(up::decode_client(bad, 1, out) == E::BadField);
  CHECK(out == up::ClientState{});
  // The scramble's length larger than what follows.
  const size_t scramble = my + 4 + 4 + 8 + 1;
  bad = good;
  bad[scramble] = '\x7f';
  CHECK(up::decode_client(bad, 1, out) == E::Truncated);
  // The schema's flag neither 0 nor 1.
  const size_t schema_flag = scramble + (4 + c.mysql->scramble.size()) +
                             (4 + c.mysql->login_db.size()) + (4 + c.mysql->application.size());
  bad = good;
  REQUIRE(bad[schema_flag] == '\x01');
  bad[schema_flag] = '\x02';
  CHECK(up::decode_client(bad, 1, out) != E::None);
  CHECK(out == up::ClientState{});
  // A variable count beyond the limit.
  const size_t vars = schema_flag + 1 + 4 + c.mysql->schema->size() + 1;
  bad = good;
  bad[vars + 1] = '\x7f';
  CHECK(up::decode_client(bad, 1, out) == E::TooMany);
}

TEST_CASE("upgrade wire: adopted, refused, end", "[upgrade]") {
  uint64_t id = 0;
  CHECK(up::encode_adopted(42) == "adopted 42\n");
  CHECK(up::decode_adopted(up::encode_adopted(42), id));
  CHECK(id == 42);
  CHECK(up::decode_refused(up::encode_refused(up::kMaxClientId), id));
  CHECK(id == up::kMaxClientId);
  CHECK_FALSE(up::decode_adopted(up::encode_refused(7), id));
  for (const char* bad : {"", "adopted\n", "adopted 0\n", "adopted 01\n", "adopted -1\n",
                          "adopted 1", "adopted 1000000000000000000\n", "adopted 1x\n"}) {
    INFO(bad);
    CHECK_FALSE(up::decode_adopted(bad, id));
  }
  CHECK(up::decode_end(up::encode_end()));
  CHECK_FALSE(up::decode_end("end"));
  CHECK_FALSE(up::decode_end("done 1\n"));
}
