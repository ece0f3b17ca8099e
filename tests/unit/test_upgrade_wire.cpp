// daemon/ops/upgrade_wire: the online upgrade's messages.
#include <catch2/catch.hpp>

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
