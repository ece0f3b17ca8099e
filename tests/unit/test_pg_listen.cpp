// pool/pg/listen: LISTEN/UNLISTEN recognised in a client's SQL, a client's
// channel set under committed ops, and a pool's registry of listeners.
#include <catch2/catch.hpp>

#include "pool/pg/listen.h"

using sqlmux::pool::ListenOp;
using sqlmux::pool::ListenRegistry;
using sqlmux::pool::ListenSet;
using K = ListenOp::Kind;

namespace {
std::vector<ListenOp> ops_of(std::string_view sql) {
  std::string enc;
  const size_t n = sqlmux::pool::encode_listen_ops(sql, enc);
  std::vector<ListenOp> out;
  size_t pos = 0;
  ListenOp op;
  while (sqlmux::pool::next_listen_op(enc, pos, op)) out.push_back(op);
  REQUIRE(out.size() == n);
  REQUIRE(pos == enc.size());
  return out;
}
}  // namespace

TEST_CASE("listen: the statements recognised, as the server names their channels", "[listen]") {
  using sqlmux::pool::parse_listen;
  CHECK(parse_listen("LISTEN jobs") == ListenOp{K::Listen, "jobs"});
  CHECK(parse_listen("  listen Jobs ;  ") == ListenOp{K::Listen, "jobs"});
  CHECK(parse_listen("LISTEN \"Jobs\"\"x\"") == ListenOp{K::Listen, "Jobs\"x"});
  CHECK(parse_listen("/* a */ LISTEN -- b\n q1;") == ListenOp{K::Listen, "q1"});
  CHECK(parse_listen("UNLISTEN jobs") == ListenOp{K::Unlisten, "jobs"});
  CHECK(parse_listen("unlisten *") == ListenOp{K::UnlistenAll, ""});
  CHECK(parse_listen("UNLISTEN * ;") == ListenOp{K::UnlistenAll, ""});
  // Identifiers longer than 63 bytes are truncated, as by the server.
  CHECK(parse_listen("LISTEN " + std::string(70, 'a'))->channel == std::string(63, 'a'));
  // Not a LISTEN: left to the server (which runs or refuses it as usual).
  CHECK_FALSE(parse_listen("LISTENER x"));
  CHECK_FALSE(parse_listen("LISTEN\xc3\xa9 x"));  // one identifier, as the server lexes it
  CHECK_FALSE(parse_listen("LISTEN"));
  CHECK_FALSE(parse_listen("LISTEN a b"));
  CHECK_FALSE(parse_listen("LISTEN a.b"));
  CHECK_FALSE(parse_listen("LISTEN \"\""));
  CHECK_FALSE(parse_listen(std::string_view("LISTEN \"a\0b\"", 12)));
  CHECK_FALSE(parse_listen("UNLISTEN * x"));
  CHECK_FALSE(parse_listen("SELECT 'LISTEN x'"));
  CHECK_FALSE(parse_listen("NOTIFY x"));
}

TEST_CASE("listen: the ops of a simple query, in order; asyncpg's reset query", "[listen]") {
  CHECK(ops_of("LISTEN a; LISTEN \"B\"; UNLISTEN a") ==
        std::vector<ListenOp>{{K::Listen, "a"}, {K::Listen, "B"}, {K::Unlisten, "a"}});
  CHECK(ops_of("SELECT pg_advisory_unlock_all();\nCLOSE ALL;\nUNLISTEN *;\nRESET ALL;") ==
        std::vector<ListenOp>{{K::UnlistenAll, ""}});
  CHECK(ops_of("SELECT 'LISTEN x; UNLISTEN y'").empty());
  CHECK(ops_of("-- LISTEN x\nSELECT 1").empty());
  CHECK(ops_of("").empty());
}

TEST_CASE("listen: the cheap first look finds every LISTEN and UNLISTEN", "[listen]") {
  using sqlmux::pool::may_listen;
  CHECK(may_listen("LISTEN a"));
  CHECK(may_listen("unlisten *"));
  CHECK(may_listen("x;LiStEn"));
  CHECK_FALSE(may_listen("SELECT 1"));
  CHECK_FALSE(may_listen("liste"));
  CHECK_FALSE(may_listen(""));
}

TEST_CASE("listen: a malformed encoded list ends the walk", "[listen]") {
  ListenOp op;
  size_t pos = 0;
  CHECK_FALSE(sqlmux::pool::next_listen_op(std::string_view("Xa\0", 3), pos, op));
  pos = 0;
  CHECK_FALSE(sqlmux::pool::next_listen_op("Labc", pos, op));  // no NUL
}

TEST_CASE("listen: a client's set follows committed ops in order", "[listen]") {
  ListenSet s;
  std::vector<std::string> added;
  std::vector<std::string> removed;
  s.apply({{K::Listen, "a"}, {K::Listen, "b"}, {K::Listen, "a"}}, added, removed);
  CHECK(added == std::vector<std::string>{"a", "b"});
  CHECK(removed.empty());
  added.clear();
  // LISTEN then UNLISTEN of one channel in one transaction: no change.
  s.apply({{K::Listen, "c"}, {K::Unlisten, "c"}, {K::Unlisten, "zz"}}, added, removed);
  CHECK(added.empty());
  CHECK(removed.empty());
  // UNLISTEN * then LISTEN b: a leaves, b stays.
  s.apply({{K::UnlistenAll, ""}, {K::Listen, "b"}}, added, removed);
  CHECK(added.empty());
  CHECK(removed == std::vector<std::string>{"a"});
  CHECK(s.size() == 1);
  CHECK(s.contains("b"));
}

TEST_CASE("listen: the registry says when a channel gains its first and loses its last",
          "[listen]") {
  ListenRegistry r;
  CHECK(r.add("a", {0, 1}));
  CHECK_FALSE(r.add("a", {1, 2}));
  CHECK_FALSE(r.add("a", {1, 2}));  // twice: no-op
  CHECK(r.add("b", {1, 2}));
  CHECK(r.subscriptions() == 3);
  CHECK(r.channels() == 2);
  REQUIRE(r.subscribers("a") != nullptr);
  CHECK(r.subscribers("a")->size() == 2);
  CHECK(r.subscribers("zz") == nullptr);
  CHECK(r.all_subscribers().size() == 2);
  CHECK_FALSE(r.remove("a", 1));
  CHECK_FALSE(r.remove("a", 99));  // not a subscriber
  CHECK(r.remove("a", 2));
  CHECK(r.subscribers("a") == nullptr);
  CHECK(r.remove("b", 2));
  CHECK(r.empty());
  CHECK(r.subscriptions() == 0);
}

TEST_CASE("listen: channel names quoted for the listener connection", "[listen]") {
  CHECK(sqlmux::pool::quote_channel("a") == "\"a\"");
  CHECK(sqlmux::pool::quote_channel("A\"b") == "\"A\"\"b\"");
}
