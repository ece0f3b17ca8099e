// Tests for the [admin] table (config/config.cpp) and config diffing
// (config/config_diff.cpp), which reload uses.
#include <catch2/catch.hpp>

#include <string>

#include "config/config.h"
#include "config/config_diff.h"

using namespace sqlmux::config;

namespace {

const std::string kBase = R"([[listener]]
protocol = "postgres"
listen = "127.0.0.1:6432"

[[user]]
name = "app"
password = "apppass"

[[user]]
name = "admin"
password = "adminpass"

[[pool]]
name = "appdb"
size = 10
user = "app"
password = "apppass"
backends = [ { address = "127.0.0.1:5432" } ]
)";

LoadResult load(const std::string& text) {
  return load_string(text, "t.toml");
}

Config cfg(const std::string& text) {
  LoadResult r = load(text);
  std::string errors;
  for (const auto& e : r.errors) errors += e.to_string() + "\n";
  INFO(errors);
  REQUIRE(r.config.has_value());
  return *r.config;
}

std::string only_error(const std::string& text) {
  LoadResult r = load(text);
  REQUIRE(r.errors.size() == 1);
  return r.errors[0].to_string();
}

}  // namespace

TEST_CASE("config [admin]: absent means no console; present is parsed", "[config][admin]") {
  CHECK_FALSE(cfg(kBase).admin.has_value());
  Config c = cfg(kBase + "\n[admin]\nlisten = \"127.0.0.1:6433\"\nusers = [\"admin\"]\n");
  REQUIRE(c.admin.has_value());
  CHECK(c.admin->listen.port == 6433);
  CHECK(c.admin->listen.host == "127.0.0.1");
  CHECK(c.admin->users == std::vector<std::string>{"admin"});
  c = cfg(kBase +
          "[admin]\nlisten = \"unix:/run/sqlmux/admin.sock\"\nusers = [\"admin\", \"app\"]\n");
  CHECK(c.admin->listen.kind == Address::Kind::Unix);
  CHECK(c.admin->users.size() == 2);
}

TEST_CASE("config [admin]: errors point at the line and key", "[config][admin]") {
  // kBase has 18 lines; [admin] is line 19.
  CHECK(only_error(kBase +
                   "[admin]\nlisten = \"127.0.0.1:6433\"\nusers = [\"admin\", \"ghost\"]\n") ==
        "t.toml:21:19: admin.users[1]: names no [[user]]: \"ghost\"");
  CHECK(only_error(kBase + "[admin]\nlisten = \"127.0.0.1\"\nusers = [\"admin\"]\n")
            .starts_with("t.toml:20:10: admin.listen: invalid address \"127.0.0.1\""));
  CHECK(only_error(kBase + "[admin]\nlisten = \"127.0.0.1:6432\"\nusers = [\"admin\"]\n") ==
        "t.toml:20:10: admin.listen: same address as listener[0]");
  CHECK(only_error(kBase + "[admin]\nlisten = \"127.0.0.1:6433\"\n") ==
        "t.toml:19:1: admin.users: required key is missing");
  CHECK(only_error(kBase + "[admin]\nlisten = \"127.0.0.1:6433\"\nusers = []\n") ==
        "t.toml:21:9: admin.users: at least one user is required");
  CHECK(only_error(kBase + "[admin]\nlisten = \"127.0.0.1:6433\"\nusers = [1]\n") ==
        "t.toml:21:10: admin.users[0]: expected a string, got an integer");
  CHECK(only_error(kBase + "[admin]\nlisten = \"127.0.0.1:6433\"\nusers = [\"admin\"]\nuser = 1\n")
            .starts_with("t.toml:22:8: admin.user: unknown key; known keys: listen, users (did you "
                         "mean \"users\"?)"));
  CHECK(only_error(kBase + "[admin]\nusers = [\"admin\"]\n") ==
        "t.toml:19:1: admin.listen: required key is missing");
}

TEST_CASE("config diff: identical configurations", "[config][reload]") {
  ConfigDiff d = diff(cfg(kBase), cfg(kBase));
  CHECK(d.empty());
  CHECK(d.summary() == "no changes");
}

TEST_CASE("config diff: pools added, removed and changed", "[config][reload]") {
  std::string after = kBase;
  after.replace(after.find("size = 10"), 9, "size = 3");
  after += R"(
[[pool]]
name = "reports"
backends = [ { address = "127.0.0.1:5433" } ]
)";
  ConfigDiff d = diff(cfg(kBase), cfg(after));
  CHECK(d.pools_added == std::vector<std::string>{"postgres:reports"});
  CHECK(d.pools_removed.empty());
  REQUIRE(d.pools_changed.size() == 1);
  CHECK(d.pools_changed[0].name == "postgres:appdb");
  CHECK(d.pools_changed[0].applied == std::vector<std::string>{"size"});
  CHECK(d.pools_changed[0].restart.empty());
  CHECK(d.summary() == "pools +postgres:reports; pool ~postgres:appdb applied(size)");

  ConfigDiff back = diff(cfg(after), cfg(kBase));
  CHECK(back.pools_removed == std::vector<std::string>{"postgres:reports"});
  CHECK(back.summary() == "pools -postgres:reports; pool ~postgres:appdb applied(size)");
}

TEST_CASE("config diff: [metrics] listen needs a restart (it was ignored silently)",
          "[config][reload]") {
  const std::string with = kBase + "\n[metrics]\nlisten = \"127.0.0.1:9187\"\n";
  std::string moved = with;
  moved.replace(moved.find("9187"), 4, "9188");
  CHECK(diff(cfg(with), cfg(moved)).restart == std::vector<std::string>{"metrics.listen"});
  CHECK(diff(cfg(kBase), cfg(with)).restart == std::vector<std::string>{"metrics.listen"});
  CHECK(diff(cfg(with), cfg(kBase)).restart == std::vector<std::string>{"metrics.listen"});
  CHECK(diff(cfg(with), cfg(with)).empty());
}

TEST_CASE("config diff: what needs a restart", "[config][reload]") {
  std::string after = kBase;
  after.replace(after.find("listen = \"127.0.0.1:6432\""), 25, "listen = \"127.0.0.1:7432\"");
  after.replace(after.find("size = 10"), 9, "mode = \"session\"\nsize = 10");
  after.replace(after.find("127.0.0.1:5432"), 14, "127.0.0.1:5999");
  after = "[server]\nworkers = 4\nmax_client_conn = 50\n" + after;
  ConfigDiff d = diff(cfg(kBase), cfg(after));
  REQUIRE(d.pools_changed.size() == 1);
  CHECK(d.pools_changed[0].applied == std::vector<std::string>{"backends"});
  CHECK(d.pools_changed[0].restart == std::vector<std::string>{"mode"});
  CHECK(d.applied == std::vector<std::string>{"server.max_client_conn"});
  CHECK(d.restart == std::vector<std::string>{"server.workers", "listener"});
  CHECK(d.summary() ==
        "pool ~postgres:appdb applied(backends) needs restart(mode); applied: "
        "server.max_client_conn; needs "
        "restart: server.workers,listener");

  // The running pool keeps its mode; the rest follows the file.
  PoolConfig live = live_pool_config(cfg(kBase).pools[0], cfg(after).pools[0]);
  CHECK(live.mode == PoolMode::Transaction);
  CHECK(live.backends[0].address.port == 5999);
}

TEST_CASE("config diff: users and the admin table", "[config][reload]") {
  const std::string admin = "[admin]\nlisten = \"127.0.0.1:6433\"\nusers = [\"admin\"]\n";
  std::string after = kBase + "[[user]]\nname = \"new\"\npassword = \"x\"\n" + admin;
  after.replace(after.find("password = \"adminpass\""), 22, "password = \"changed\"");
  ConfigDiff d = diff(cfg(kBase), cfg(after));
  CHECK(d.users_added == std::vector<std::string>{"new"});
  CHECK(d.users_changed == std::vector<std::string>{"admin"});
  CHECK(d.restart == std::vector<std::string>{"admin.listen"});  // a console appeared

  std::string more = after;
  more.replace(more.find("users = [\"admin\"]"), 17, "users = [\"admin\", \"new\"]");
  ConfigDiff d2 = diff(cfg(after), cfg(more));
  CHECK(d2.applied == std::vector<std::string>{"admin.users"});
  CHECK(d2.restart.empty());
  CHECK(diff(cfg(more), cfg(kBase)).users_removed == std::vector<std::string>{"new"});
}

TEST_CASE("config: listen_pin is a pool boolean, off by default, applied on reload",
          "[config][reload]") {
  CHECK_FALSE(cfg(kBase).pools[0].listen_pin);
  std::string on = kBase;
  on.replace(on.find("size = 10"), 9, "size = 10\nlisten_pin = true");
  CHECK(cfg(on).pools[0].listen_pin);
  const auto d = diff(cfg(kBase), cfg(on));
  CHECK(d.restart.empty());
}

TEST_CASE("config: session_reconnect is a pool boolean, off by default, applied on reload",
          "[config][reload]") {
  CHECK_FALSE(cfg(kBase).pools[0].session_reconnect);
  std::string on = kBase;
  on.replace(on.find("size = 10"), 9, "size = 10\nsession_reconnect = true");
  CHECK(cfg(on).pools[0].session_reconnect);
  std::string off = kBase;
  off.replace(off.find("size = 10"), 9, "size = 10\nsession_reconnect = false");
  CHECK_FALSE(cfg(off).pools[0].session_reconnect);

  // kBase's pool starts at line 13; the key is line 16.
  std::string bad = kBase;
  bad.replace(bad.find("size = 10"), 9, "size = 10\nsession_reconnect = \"yes\"");
  CHECK(only_error(bad) ==
        "t.toml:16:21: pool[0].session_reconnect: expected a boolean, got a string");

  ConfigDiff d = diff(cfg(kBase), cfg(on));
  REQUIRE(d.pools_changed.size() == 1);
  CHECK(d.pools_changed[0].applied == std::vector<std::string>{"session_reconnect"});
  CHECK(d.pools_changed[0].restart.empty());
  CHECK(live_pool_config(cfg(kBase).pools[0], cfg(on).pools[0]).session_reconnect);
}
