// Tests for config/config.cpp: the TOML schema, defaults and every validation error.
#include "config/config.h"

#include <catch2/catch.hpp>

#include <filesystem>
#include <string>
#include <vector>

using namespace sqlmux::config;
using namespace std::chrono_literals;

namespace {

// A minimal valid document; tests append to it or replace parts of it.
const std::string kListener = R"(
[[listener]]
protocol = "postgres"
listen = "127.0.0.1:6432"
)";
const std::string kPool = R"(
[[pool]]
name = "appdb"
backends = [ { address = "127.0.0.1:5432" } ]
)";

LoadResult load(const std::string& text) {
  return load_string(text, "test.toml");
}

std::string all_errors(const LoadResult& r) {
  std::string out;
  for (const auto& e : r.errors) {
    out += e.to_string() + "\n";
  }
  return out;
}

// The single error the document produces.
ConfigError only_error(const std::string& text) {
  LoadResult r = load(text);
  INFO(all_errors(r));
  REQUIRE(r.errors.size() == 1);
  CHECK_FALSE(r.config.has_value());
  return r.errors[0];
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

}  // namespace

TEST_CASE("config: full config round trip", "[config]") {
  const std::string text = R"([server]
workers = 8
max_client_conn = 500
log_level = "debug"
shutdown_timeout = "45s"
upgrade_socket = "/run/sqlmux/upgrade.sock"
auth_failure_limit = 3
auth_failure_window = "1m"
auth_failure_delay = "250ms"
auth_failure_max_delay = "8s"
max_login_clients_per_address = 16
client_login_timeout = "20s"
query_digests = true
query_digests_max = 50

[[listener]]
protocol = "postgres"
listen = "127.0.0.1:6432"

[[listener]]
protocol = "mysql"
listen = "[::1]:6033"

[[listener]]
protocol = "postgres"
listen = "unix:/tmp/.s.PGSQL.6432"

[[user]]
name = "app"
password = "apppass"
auth = "scram-sha-256"
default_pool = "shop"

[[user]]
name = "legacy"
password = "md58fc05b76c922498496f1ba9c2bfb4b8d"
auth = "md5"

[[user]]
name = "mon"
auth = "trust"

[[user]]
name = "clear"
password = "x"
auth = "password"

[[pool]]
name = "appdb"
protocol = "postgres"
mode = "statement"
size = 7
min_idle = 3
database = "realdb"
user = "backend_user"
password = "backend_pass"
backends = [
  { address = "10.0.0.1:5432", role = "primary", weight = 3 },
  { address = "db.example.com:5433", role = "replica" },
]
query_wait_timeout = "500ms"
client_idle_timeout = "5m"
idle_transaction_timeout = "30s"
transaction_timeout = "1h"
query_timeout = "45s"
server_idle_timeout = "10m"
server_lifetime = "2h"
server_connect_timeout = "3s"

[[pool]]
name = "shop"
protocol = "mysql"
mode = "session"
backends = [ { address = "127.0.0.1:3306" } ]
)";
  LoadResult r = load(text);
  INFO(all_errors(r));
  REQUIRE(r.errors.empty());
  REQUIRE(r.config.has_value());
  const Config& c = *r.config;
  CHECK(c.source == "test.toml");

  CHECK(c.server.workers == 8);
  CHECK(c.server.max_client_conn == 500);
  CHECK(c.server.log_level == LogLevel::Debug);
  CHECK(c.server.shutdown_timeout == 45s);
  CHECK(c.server.upgrade_socket == "/run/sqlmux/upgrade.sock");
  CHECK(c.server.auth_failure_limit == 3);
  CHECK(c.server.auth_failure_window == 60s);
  CHECK(c.server.auth_failure_delay == 250ms);
  CHECK(c.server.auth_failure_max_delay == 8s);
  CHECK(c.server.max_login_clients_per_address == 16);
  CHECK(c.server.client_login_timeout == 20s);
  CHECK(c.server.query_digests);
  CHECK(c.server.query_digests_max == 50);

  REQUIRE(c.listeners.size() == 3);
  CHECK(c.listeners[0].protocol == Protocol::Postgres);
  CHECK(c.listeners[0].listen.kind == Address::Kind::Tcp);
  CHECK(c.listeners[0].listen.host == "127.0.0.1");
  CHECK(c.listeners[0].listen.port == 6432);
  CHECK(c.listeners[1].protocol == Protocol::Mysql);
  CHECK(c.listeners[1].listen.host == "::1");
  CHECK(c.listeners[1].listen.port == 6033);
  CHECK(c.listeners[1].listen.text == "[::1]:6033");
  CHECK(c.listeners[2].listen.kind == Address::Kind::Unix);
  CHECK(c.listeners[2].listen.unix_path == "/tmp/.s.PGSQL.6432");

  REQUIRE(c.users.size() == 4);
  CHECK(c.users[0].name == "app");
  CHECK(c.users[0].password == "apppass");
  CHECK(c.users[0].auth == AuthMethod::ScramSha256);
  CHECK(c.users[0].default_pool == "shop");
  CHECK(c.users[1].auth == AuthMethod::Md5);
  CHECK(c.users[1].password == "md58fc05b76c922498496f1ba9c2bfb4b8d");
  CHECK(c.users[2].auth == AuthMethod::Trust);
  CHECK(c.users[2].password.empty());
  CHECK(c.users[3].auth == AuthMethod::Password);

  REQUIRE(c.pools.size() == 2);
  const PoolConfig& p = c.pools[0];
  CHECK(p.name == "appdb");
  CHECK(p.protocol == Protocol::Postgres);
  CHECK(p.mode == PoolMode::Statement);
  CHECK(p.size == 7);
  CHECK(p.min_idle == 3);
  CHECK(p.database == "realdb");
  CHECK(p.user == std::optional<std::string>("backend_user"));
  CHECK(p.password == std::optional<std::string>("backend_pass"));
  REQUIRE(p.backends.size() == 2);
  CHECK(p.backends[0].address.host == "10.0.0.1");
  CHECK(p.backends[0].address.port == 5432);
  CHECK(p.backends[0].role == "primary");
  CHECK(p.backends[0].weight == 3);
  CHECK(p.backends[1].address.host == "db.example.com");
  CHECK(p.backends[1].address.port == 5433);
  CHECK(p.backends[1].role == "replica");
  CHECK(p.backends[1].weight == 1);
  CHECK(p.query_wait_timeout == 500ms);
  CHECK(p.client_idle_timeout == 5min);
  CHECK(p.idle_transaction_timeout == 30s);
  CHECK(p.transaction_timeout == 1h);
  CHECK(p.query_timeout == 45s);
  CHECK(p.server_idle_timeout == 10min);
  CHECK(p.server_lifetime == 2h);
  CHECK(p.server_connect_timeout == 3s);
  CHECK(c.pools[1].protocol == Protocol::Mysql);
  CHECK(c.pools[1].mode == PoolMode::Session);

  CHECK(c.find_user("legacy") == &c.users[1]);
  CHECK(c.find_user("nobody") == nullptr);
  CHECK(c.find_pool("appdb", Protocol::Postgres) == &c.pools[0]);
  CHECK(c.find_pool("appdb", Protocol::Mysql) == nullptr);
  CHECK(c.find_pool("shop", Protocol::Mysql) == &c.pools[1]);
}

TEST_CASE("config: defaults", "[config]") {
  LoadResult r = load(kListener + "[[user]]\nname = \"u\"\npassword = \"p\"\n" + kPool);
  INFO(all_errors(r));
  REQUIRE(r.config.has_value());
  const Config& c = *r.config;
  CHECK(c.server.workers == 2);
  CHECK(c.server.max_client_conn == 10000);
  CHECK(c.server.log_level == LogLevel::Info);
  CHECK(c.server.log_format == sqlmux::config::LogFormat::Text);
  CHECK(c.server.log_connections);
  CHECK(c.server.log_disconnections);
  CHECK(c.server.shutdown_timeout == 30s);
  CHECK(c.server.upgrade_socket.empty());
  CHECK(c.server.auth_failure_limit == 5);
  CHECK(c.server.auth_failure_window == 10s);
  CHECK(c.server.auth_failure_delay == 200ms);
  CHECK(c.server.auth_failure_max_delay == 5s);
  CHECK(c.server.max_login_clients_per_address == 1000);
  CHECK(c.server.client_login_timeout == 60s);
  CHECK_FALSE(c.server.query_digests);
  CHECK(c.server.query_digests_max == 1000);
  CHECK(c.users[0].auth == AuthMethod::Default);
  CHECK(c.users[0].default_pool.empty());
  const PoolConfig& p = c.pools[0];
  CHECK(p.protocol == Protocol::Postgres);
  CHECK(p.mode == PoolMode::Transaction);
  CHECK(p.size == 20);
  CHECK(p.min_idle == 0);
  CHECK(p.database == "appdb");
  CHECK_FALSE(p.user.has_value());
  CHECK_FALSE(p.password.has_value());
  CHECK(p.backends[0].role == "primary");
  CHECK(p.backends[0].weight == 1);
  CHECK(p.query_wait_timeout == 120s);
  CHECK(p.client_idle_timeout == 0ms);
  CHECK(p.idle_transaction_timeout == 0ms);
  CHECK(p.transaction_timeout == 0ms);
  CHECK(p.query_timeout == 0ms);
  CHECK(p.server_idle_timeout == 600s);
  CHECK(p.server_lifetime == 3600s);
  CHECK(p.server_connect_timeout == 15s);
}

TEST_CASE("config: enum names", "[config]") {
  CHECK(to_string(Protocol::Postgres) == "postgres");
  CHECK(to_string(Protocol::Mysql) == "mysql");
  CHECK(to_string(PoolMode::Session) == "session");
  CHECK(to_string(PoolMode::Transaction) == "transaction");
  CHECK(to_string(PoolMode::Statement) == "statement");
  CHECK(to_string(LogLevel::Error) == "error");
  CHECK(to_string(LogLevel::Warn) == "warn");
  CHECK(to_string(LogLevel::Info) == "info");
  CHECK(to_string(LogLevel::Debug) == "debug");
  CHECK(to_string(AuthMethod::ScramSha256) == "scram-sha-256");
  CHECK(to_string(AuthMethod::Md5) == "md5");
  CHECK(to_string(AuthMethod::Password) == "password");
  CHECK(to_string(AuthMethod::Trust) == "trust");
  CHECK(to_string(AuthMethod::Default) == "default");
}

TEST_CASE("config: error format", "[config]") {
  ConfigError e{"a.toml", 3, 7, "pool[1].size", "bad"};
  CHECK(e.to_string() == "a.toml:3:7: pool[1].size: bad");
  ConfigError syntax{"a.toml", 2, 5, "", "oops"};
  CHECK(syntax.to_string() == "a.toml:2:5: oops");
}

TEST_CASE("config: single errors with key path and position", "[config]") {
  struct Case {
    std::string name;
    std::string text;
    std::string key;
    int line;
    std::string message_part;
  };
  // Line numbers: kListener occupies lines 1-4 (it starts with a newline).
  const std::vector<Case> cases = {
      {"unknown key with hint",
       kListener + "[[pool]]\nname = \"a\"\nszie = 3\n" + "backends = [ { address = \"h:1\" } ]\n",
       "pool[0].szie", 7, "unknown key; known keys: name, protocol, mode, size"},
      {"unknown top-level key", "[servers]\nworkers = 1\n" + kListener, "servers", 1,
       "did you mean \"server\"?"},
      {"unknown server key", "[server]\nlog = \"info\"\n" + kListener, "server.log", 2,
       "unknown key"},
      {"unknown backend key",
       kListener + "[[pool]]\nname = \"a\"\nbackends = [ { address = \"h:1\", wieght = 2 } ]\n",
       "pool[0].backends[0].wieght", 7, "did you mean \"weight\"?"},
      {"workers wrong type", "[server]\nworkers = \"4\"\n" + kListener, "server.workers", 2,
       "expected an integer, got a string"},
      {"workers too large", "[server]\nworkers = 257\n" + kListener, "server.workers", 2,
       "expected 0 to 256"},
      {"workers negative", "[server]\nworkers = -1\n" + kListener, "server.workers", 2,
       "out of range"},
      {"max_client_conn zero", "[server]\nmax_client_conn = 0\n" + kListener,
       "server.max_client_conn", 2, "expected at least 1"},
      {"auth_failure_limit negative", "[server]\nauth_failure_limit = -1\n" + kListener,
       "server.auth_failure_limit", 2, "expected 0 to 1000000"},
      {"auth_failure_window too short", "[server]\nauth_failure_window = \"500ms\"\n" + kListener,
       "server.auth_failure_window", 2, "expected at least 1s, got \"500ms\""},
      {"auth_failure_max_delay too long",
       "[server]\nauth_failure_max_delay = \"31s\"\n" + kListener, "server.auth_failure_max_delay",
       2, "expected at most 30s, got \"31s\""},
      {"auth_failure_delay over the max",
       "[server]\nauth_failure_max_delay = \"1s\"\nauth_failure_delay = \"2s\"\n" + kListener,
       "server.auth_failure_delay", 3,
       "expected at most auth_failure_max_delay (1000ms), got \"2s\""},
      {"auth_failure_delay malformed", "[server]\nauth_failure_delay = 5\n" + kListener,
       "server.auth_failure_delay", 2, "expected a duration such as \"30s\", got an integer"},
      {"query_digests_max zero", "[server]\nquery_digests_max = 0\n" + kListener,
       "server.query_digests_max", 2, "expected 1 to 1000000"},
      {"caching_sha2_private_key unreadable",
       "[server]\ncaching_sha2_private_key = \"/nonexistent/rsa.pem\"\n" + kListener,
       "server.caching_sha2_private_key", 2,
       "cannot read \"/nonexistent/rsa.pem\": No such file or directory"},
      {"max_login_clients_per_address negative",
       "[server]\nmax_login_clients_per_address = -1\n" + kListener,
       "server.max_login_clients_per_address", 2, "expected 0 to 1000000"},
      {"auth_failure_window malformed", "[server]\nauth_failure_window = 10\n" + kListener,
       "server.auth_failure_window", 2, "expected a duration such as \"30s\", got an integer"},
      {"bad log level", "[server]\n\nlog_level = \"verbose\"\n" + kListener, "server.log_level", 3,
       "invalid value \"verbose\"; expected one of: error, warn, info, debug"},
      {"bad log format", "[server]\nlog_format = \"xml\"\n" + kListener, "server.log_format", 2,
       "invalid value \"xml\"; expected one of: text, json"},
      {"log_connections not a boolean", "[server]\nlog_connections = 1\n" + kListener,
       "server.log_connections", 2, "expected a boolean, got an integer"},
      {"client_login_timeout not above auth_failure_max_delay",
       "[server]\nclient_login_timeout = \"5s\"\n" + kListener, "server.client_login_timeout", 2,
       "expected 0 (off) or more than auth_failure_max_delay (5000ms), got \"5s\""},
      {"client_login_timeout malformed", "[server]\nclient_login_timeout = \"1 m\"\n" + kListener,
       "server.client_login_timeout", 2, "invalid duration \"1 m\""},
      {"client_idle_timeout as integer",
       kListener + "[[pool]]\nname = \"a\"\nclient_idle_timeout = 30\n" +
           "backends = [ { address = \"h:1\" } ]\n",
       "pool[0].client_idle_timeout", 7, "expected a duration such as \"30s\", got an integer"},
      {"idle_transaction_timeout malformed",
       kListener + "[[pool]]\nname = \"a\"\nidle_transaction_timeout = \"x\"\n" +
           "backends = [ { address = \"h:1\" } ]\n",
       "pool[0].idle_transaction_timeout", 7, "invalid duration \"x\""},
      {"query_timeout as integer",
       kListener + "[[pool]]\nname = \"a\"\nquery_timeout = 1\n" +
           "backends = [ { address = \"h:1\" } ]\n",
       "pool[0].query_timeout", 7, "expected a duration such as \"30s\", got an integer"},
      {"transaction_timeout malformed",
       kListener + "[[pool]]\nname = \"a\"\ntransaction_timeout = \"-1s\"\n" +
           "backends = [ { address = \"h:1\" } ]\n",
       "pool[0].transaction_timeout", 7, "invalid duration \"-1s\""},
      {"duration as integer", "[server]\nshutdown_timeout = 30\n" + kListener,
       "server.shutdown_timeout", 2, "expected a duration such as \"30s\", got an integer"},
      {"duration malformed", "[server]\nshutdown_timeout = \"30\"\n" + kListener,
       "server.shutdown_timeout", 2,
       "invalid duration \"30\"; expected a duration such as \"30s\""},
      {"upgrade_socket relative", "[server]\nupgrade_socket = \"run/u.sock\"\n" + kListener,
       "server.upgrade_socket", 2,
       "expected an absolute path of at most 107 bytes, got \"run/u.sock\""},
      {"upgrade_socket empty", "[server]\nupgrade_socket = \"\"\n" + kListener,
       "server.upgrade_socket", 2, "must not be empty"},
      {"server not a table", "server = 3\n" + kListener, "server", 1, "expected a table"},
      {"no listener", "[server]\nworkers = 1\n", "listener", 1, "at least one [[listener]]"},
      {"empty listener array", "listener = []\n", "listener", 1, "at least one [[listener]]"},
      {"listener as plain table", "[listener]\nprotocol = \"postgres\"\n", "listener", 1,
       "expected an array of tables ([[listener]])"},
      {"listener missing protocol", "\n[[listener]]\nlisten = \"127.0.0.1:6432\"\n",
       "listener[0].protocol", 2, "required key is missing"},
      {"listener missing listen", "[[listener]]\nprotocol = \"mysql\"\n", "listener[0].listen", 1,
       "required key is missing"},
      {"listener bad protocol", "[[listener]]\nprotocol = \"oracle\"\nlisten = \"h:1\"\n",
       "listener[0].protocol", 2, "expected one of: postgres, mysql"},
      {"listener bad address", "[[listener]]\nprotocol = \"postgres\"\nlisten = \"localhost\"\n",
       "listener[0].listen", 3, "invalid address \"localhost\""},
      {"listener port out of range",
       "[[listener]]\nprotocol = \"postgres\"\nlisten = \"h:70000\"\n", "listener[0].listen", 3,
       "port 1-65535"},
      {"duplicate listen address", kListener + kListener, "listener[1].listen", 8,
       "same address as listener[0]"},
      {"duplicate user",
       kListener + "[[user]]\nname = \"a\"\npassword = \"x\"\n" +
           "[[user]]\nname = \"a\"\npassword = \"y\"\n",
       "user[1].name", 9, "duplicate user \"a\""},
      {"user without name", kListener + "[[user]]\npassword = \"x\"\n", "user[0].name", 5,
       "required key is missing"},
      {"user empty name", kListener + "[[user]]\nname = \"\"\npassword = \"x\"\n", "user[0].name",
       6, "must not be empty"},
      {"user without password", kListener + "[[user]]\nname = \"a\"\n", "user[0].password", 5,
       "unless auth = \"trust\""},
      {"user empty password", kListener + "[[user]]\nname = \"a\"\npassword = \"\"\n",
       "user[0].password", 7, "must not be empty"},
      {"user password wrong type", kListener + "[[user]]\nname = \"a\"\npassword = 123\n",
       "user[0].password", 7, "expected a string, got an integer"},
      {"bad auth", kListener + "[[user]]\nname = \"a\"\npassword = \"x\"\nauth = \"ldap\"\n",
       "user[0].auth", 8, "expected one of: scram-sha-256, md5, password, trust"},
      {"scram with md5 hash",
       kListener + "[[user]]\nname = \"a\"\npassword = \"md58fc05b76c922498496f1ba9c2bfb4b8d\"\n" +
           "auth = \"scram-sha-256\"\n",
       "user[0].auth", 8, "impossible with an md5-hashed password"},
      {"md5 with scram verifier",
       kListener +
           "[[user]]\nname = \"a\"\npassword = \"SCRAM-SHA-256$4096:c2FsdA==$YQ==:Yg==\"\n" +
           "auth = \"md5\"\n",
       "user[0].auth", 8, "impossible with a SCRAM-SHA-256 verifier"},
      {"malformed scram verifier",
       kListener + "[[user]]\nname = \"a\"\npassword = \"SCRAM-SHA-256$abc\"\n", "user[0].password",
       7, "malformed SCRAM verifier"},
      {"default_pool names no pool",
       kListener + kPool + "[[user]]\nname = \"a\"\npassword = \"x\"\ndefault_pool = \"nope\"\n",
       "user[0].default_pool", 12, "names no pool: \"nope\""},
      {"pool without backends", kListener + "\n[[pool]]\nname = \"a\"\n", "pool[0].backends", 6,
       "required key is missing"},
      {"pool with empty backends", kListener + "[[pool]]\nname = \"a\"\nbackends = []\n",
       "pool[0].backends", 7, "at least one backend"},
      {"backends not an array", kListener + "[[pool]]\nname = \"a\"\nbackends = \"h:1\"\n",
       "pool[0].backends", 7, "expected an array of backend tables, got a string"},
      {"backend not a table", kListener + "[[pool]]\nname = \"a\"\nbackends = [ \"h:1\" ]\n",
       "pool[0].backends[0]", 7, "expected a table, got a string"},
      {"backend without address",
       kListener + "[[pool]]\nname = \"a\"\nbackends = [ { weight = 1 } ]\n",
       "pool[0].backends[0].address", 7, "required key is missing"},
      {"backend bad role",
       kListener +
           "[[pool]]\nname = \"a\"\nbackends = [ { address = \"h:1\", role = \"leader\" } ]\n",
       "pool[0].backends[0].role", 7, "expected one of: primary, replica"},
      {"backend zero weight",
       kListener + "[[pool]]\nname = \"a\"\nbackends = [ { address = \"h:1\", weight = 0 } ]\n",
       "pool[0].backends[0].weight", 7, "expected at least 1"},
      {"mysql unix backend",
       kListener + "[[pool]]\nname = \"a\"\nprotocol = \"mysql\"\n" +
           "backends = [ { address = \"unix:/tmp/mysql.sock\" } ]\n",
       "pool[0].backends[0].address", 8, "postgres backends only"},
      {"pool without name", kListener + "[[pool]]\nbackends = [ { address = \"h:1\" } ]\n",
       "pool[0].name", 5, "required key is missing"},
      {"duplicate pool", kListener + kPool + kPool, "pool[1].name", 11,
       "duplicate postgres pool \"appdb\""},
      {"bad pool mode", kListener + kPool + "mode = \"batch\"\n", "pool[0].mode", 9,
       "expected one of: session, transaction, statement"},
      {"pool size zero", kListener + kPool + "size = 0\n", "pool[0].size", 9,
       "expected at least 1"},
      {"min_idle above size", kListener + kPool + "size = 5\nmin_idle = 6\n", "pool[0].min_idle",
       10, "min_idle (6) must not exceed size (5)"},
      {"min_idle above default size", kListener + kPool + "min_idle = 21\n", "pool[0].min_idle", 9,
       "must not exceed size (20)"},
      {"pool password without user", kListener + kPool + "password = \"x\"\n", "pool[0].password",
       9, "set without user"},
      {"pool bad duration", kListener + kPool + "server_lifetime = \"1 hour\"\n",
       "pool[0].server_lifetime", 9, "invalid duration \"1 hour\""},
      {"pool float size", kListener + kPool + "size = 2.5\n", "pool[0].size", 9,
       "expected an integer, got a floating-point number"},
  };
  for (const Case& c : cases) {
    SECTION(c.name) {
      ConfigError e = only_error(c.text);
      INFO(e.to_string());
      CHECK(e.file == "test.toml");
      CHECK(e.key == c.key);
      CHECK(e.line == c.line);
      CHECK(e.column >= 1);
      CHECK(contains(e.message, c.message_part));
      CHECK(contains(e.to_string(), "test.toml:" + std::to_string(c.line) + ":"));
    }
  }
}

TEST_CASE("config: column points at the value", "[config]") {
  ConfigError e = only_error("[server]\nworkers = 999\n" + kListener);
  CHECK(e.line == 2);
  CHECK(e.column == 11);
  CHECK(e.to_string() ==
        "test.toml:2:11: server.workers: value 999 is out of range; expected 0 to 256");
}

TEST_CASE("config: every error is reported at once", "[config]") {
  const std::string text = R"([server]
workers = 1000
log_level = "loud"

[[user]]
name = "a"
password = "x"

[[user]]
name = "a"
password = "y"

[[pool]]
name = "p"
szie = 3
min_idle = 30
)";
  LoadResult r = load(text);
  INFO(all_errors(r));
  CHECK_FALSE(r.config.has_value());
  REQUIRE(r.errors.size() == 7);
  const std::vector<std::pair<std::string, int>> expected = {
      {"listener", 1},          {"server.workers", 2},    {"server.log_level", 3},
      {"user[1].name", 10},     {"pool[0].backends", 13}, {"pool[0].szie", 15},
      {"pool[0].min_idle", 16},
  };
  for (size_t i = 0; i < expected.size(); ++i) {
    CHECK(r.errors[i].key == expected[i].first);
    CHECK(r.errors[i].line == expected[i].second);
  }
}

TEST_CASE("config: a later pool's errors use its own index", "[config]") {
  LoadResult r = load(kListener + kPool +
                      "[[pool]]\nname = \"b\"\nbackends = [ { address = \"h:1\" }, "
                      "{ address = \"bad\" } ]\n");
  INFO(all_errors(r));
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].key == "pool[1].backends[1].address");
  CHECK(r.errors[0].line == 11);
}

TEST_CASE("config: same pool name on different protocols is fine", "[config]") {
  LoadResult r = load(kListener + kPool +
                      "[[pool]]\nname = \"appdb\"\nprotocol = \"mysql\"\n"
                      "backends = [ { address = \"h:3306\" } ]\n");
  INFO(all_errors(r));
  CHECK(r.errors.empty());
  REQUIRE(r.config.has_value());
  CHECK(r.config->find_pool("appdb", Protocol::Mysql) == &r.config->pools[1]);
}

TEST_CASE("config: TOML syntax error", "[config]") {
  LoadResult r = load("[server]\nworkers = 2\nlog_level = = \"info\"\n");
  REQUIRE(r.errors.size() == 1);
  CHECK_FALSE(r.config.has_value());
  CHECK(r.errors[0].file == "test.toml");
  CHECK(r.errors[0].line == 3);
  CHECK(r.errors[0].column > 0);
  CHECK(r.errors[0].key.empty());
  CHECK_FALSE(r.errors[0].message.empty());
  CHECK(contains(r.errors[0].to_string(), "test.toml:3:"));

  LoadResult dup = load("[server]\nworkers = 2\nworkers = 3\n");
  REQUIRE(dup.errors.size() == 1);
  CHECK(dup.errors[0].line == 3);
}

TEST_CASE("config: load_file", "[config]") {
  LoadResult missing = load_file("/nonexistent/sqlmux.toml");
  REQUIRE(missing.errors.size() == 1);
  CHECK_FALSE(missing.config.has_value());
  CHECK(missing.errors[0].file == "/nonexistent/sqlmux.toml");
  CHECK(contains(missing.errors[0].message, "cannot open"));
}

TEST_CASE("config: example configs load without errors", "[config]") {
  const std::filesystem::path dir = std::filesystem::path(SQLMUX_SOURCE_DIR) / "config/examples";
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".toml") {
      continue;
    }
    ++count;
    LoadResult r = load_file(entry.path().string());
    INFO(entry.path().string() << "\n" << all_errors(r));
    CHECK(r.errors.empty());
    CHECK(r.config.has_value());
  }
  CHECK(count >= 2);

  LoadResult pg = load_file(std::string(SQLMUX_SOURCE_DIR) + "/config/examples/postgres.toml");
  REQUIRE(pg.config.has_value());
  const Config& c = *pg.config;
  REQUIRE(c.listeners.size() == 1);
  CHECK(c.listeners[0].listen.text == "127.0.0.1:6432");
  REQUIRE(c.find_user("app") != nullptr);
  CHECK(c.find_user("app")->password == "apppass");
  const PoolConfig* tx = c.find_pool("appdb", Protocol::Postgres);
  const PoolConfig* session = c.find_pool("appdb_session", Protocol::Postgres);
  REQUIRE(tx != nullptr);
  REQUIRE(session != nullptr);
  CHECK(tx->mode == PoolMode::Transaction);
  CHECK(session->mode == PoolMode::Session);
  CHECK(session->database == "appdb");
  CHECK(tx->size == 20);
  CHECK(session->size == 20);
  CHECK(tx->backends.at(0).address.text == "127.0.0.1:5432");
  CHECK(session->backends.at(0).address.text == "127.0.0.1:5432");
}

TEST_CASE("config: parse_duration", "[config]") {
  const std::vector<std::pair<std::string, Duration>> valid = {
      {"0s", 0ms},
      {"0ms", 0ms},
      {"500ms", 500ms},
      {"30s", 30s},
      {"10m", 10min},
      {"1h", 1h},
      {"120s", 120s},
      {"0h", 0ms},
      {"007s", 7s},
      {"2562047h", std::chrono::hours(2562047)},
      {"9223372036854775807ms", Duration(9223372036854775807)},
  };
  for (const auto& [text, expected] : valid) {
    INFO(text);
    auto d = parse_duration(text);
    REQUIRE(d.has_value());
    CHECK(*d == expected);
  }
  const std::vector<std::string> invalid = {
      "",
      "30",
      "s",
      "-5s",
      "+5s",
      "1.5s",
      "5 s",
      " 5s",
      "5s ",
      "5sec",
      "5S",
      "10d",
      "1us",
      "abc",
      "5ms5",
      "ms",
      "1h30m",
      "9223372036854775807ms1",
      "99999999999999999999s",
      "9223372036854776s",
      "9223372036854775808ms",
      "3000000000000000h",
  };
  for (const auto& text : invalid) {
    INFO(text);
    CHECK_FALSE(parse_duration(text).has_value());
  }
}

TEST_CASE("config: parse_address", "[config]") {
  struct Valid {
    std::string text;
    Address::Kind kind;
    std::string host;
    uint16_t port;
    std::string unix_path;
  };
  const std::vector<Valid> valid = {
      {"127.0.0.1:6432", Address::Kind::Tcp, "127.0.0.1", 6432, ""},
      {"localhost:5432", Address::Kind::Tcp, "localhost", 5432, ""},
      {"db-1.example.com:1", Address::Kind::Tcp, "db-1.example.com", 1, ""},
      {"0.0.0.0:65535", Address::Kind::Tcp, "0.0.0.0", 65535, ""},
      {"[::1]:6432", Address::Kind::Tcp, "::1", 6432, ""},
      {"[::]:6432", Address::Kind::Tcp, "::", 6432, ""},
      {"[2001:db8::1]:3306", Address::Kind::Tcp, "2001:db8::1", 3306, ""},
      {"unix:/tmp/.s.PGSQL.6432", Address::Kind::Unix, "", 0, "/tmp/.s.PGSQL.6432"},
      {"unix:/var/run/postgresql", Address::Kind::Unix, "", 0, "/var/run/postgresql"},
  };
  for (const auto& v : valid) {
    INFO(v.text);
    auto a = parse_address(v.text);
    REQUIRE(a.has_value());
    CHECK(a->kind == v.kind);
    CHECK(a->host == v.host);
    CHECK(a->port == v.port);
    CHECK(a->unix_path == v.unix_path);
    CHECK(a->text == v.text);
  }
  const std::vector<std::string> invalid = {
      "",
      "localhost",
      "127.0.0.1",
      ":6432",
      "host:",
      "host:0",
      "host:65536",
      "host:99999999",
      "host:-1",
      "host:+80",
      "host:80a",
      "host: 80",
      "ho st:80",
      "::1:6432",
      "[::1]",
      "[::1]6432",
      "[::1:6432",
      "[]:6432",
      "[example.com]:80",
      "unix:",
      "unix:relative/path",
      "unix:/" + std::string(200, 'x'),
      "tcp://host:80",
  };
  for (const auto& text : invalid) {
    INFO(text);
    CHECK_FALSE(parse_address(text).has_value());
  }
}

TEST_CASE("config: [tls] and client_tls", "[config]") {
  const std::string listener = R"(
[[listener]]
protocol = "postgres"
listen = "127.0.0.1:6432"
)";
  SECTION("no [tls]: listeners default to disable") {
    auto r = load(listener + kPool);
    REQUIRE(r.config.has_value());
    CHECK(r.config->listeners[0].client_tls == ClientTls::Disable);
    CHECK_FALSE(r.config->tls.has_value());
  }
  SECTION("[tls]: listeners default to allow; require and the settings are read") {
    const std::string file = std::string(SQLMUX_SOURCE_DIR) + "/config/examples/postgres.toml";
    auto r = load("[tls]\ncert = \"" + file + "\"\nkey = \"" + file +
                  "\"\nmin_version = \"1.3\"\nciphers = \"HIGH\"\n" + listener +
                  "[[listener]]\nprotocol = \"postgres\"\nlisten = \"127.0.0.1:6433\"\n"
                  "client_tls = \"require\"\n" +
                  kPool);
    REQUIRE(r.config.has_value());
    CHECK(r.config->listeners[0].client_tls == ClientTls::Allow);
    CHECK(r.config->listeners[1].client_tls == ClientTls::Require);
    CHECK(r.config->tls->min_version == "1.3");
    CHECK(r.config->tls->ciphers == "HIGH");
    CHECK(to_string(ClientTls::Require) == "require");
  }
  SECTION("errors") {
    auto e = only_error(listener + "client_tls = \"require\"\n" + kPool);
    CHECK(e.key == "listener[0].client_tls");
    CHECK(e.message.find("needs a [tls] table") != std::string::npos);
    auto r = load(
        "[tls]\ncert = \"/nonexistent/c.pem\"\nkey = \"/nonexistent/k.pem\"\n"
        "min_version = \"1.1\"\n" +
        listener + kPool);
    REQUIRE(r.errors.size() == 3);
    CHECK(all_errors(r).find("tls.cert: cannot read") != std::string::npos);
    CHECK(all_errors(r).find("tls.key: cannot read") != std::string::npos);
    CHECK(all_errors(r).find("tls.min_version: invalid value") != std::string::npos);
  }
  SECTION("server_tls") {
    auto r = load(listener + kPool + "server_tls = \"require\"\n");
    REQUIRE(r.config.has_value());
    CHECK(r.config->pools[0].server_tls == "require");
    auto e = only_error(listener + kPool + "server_tls = \"verify-full\"\n");
    CHECK(e.key == "pool[0].server_tls_ca");
    CHECK(e.message.find("needs server_tls_ca") != std::string::npos);
    e = only_error(listener + kPool + "server_tls = \"on\"\n");
    CHECK(e.key == "pool[0].server_tls");
  }
  SECTION("server_tls with SCRAM passthrough (its own login speaks TLS)") {
    const std::string hashed =
        "[[user]]\nname = \"a\"\npassword = \"md5" + std::string(32, 'a') + "\"\n";
    auto r = load(listener + hashed + kPool + "server_tls = \"require\"\n");
    INFO(all_errors(r));
    REQUIRE(r.config.has_value());
    CHECK(r.config->pools[0].server_tls == "require");
  }
  SECTION("mysql listeners and pools take client_tls and server_tls too") {
    const std::string file = std::string(SQLMUX_SOURCE_DIR) + "/config/examples/postgres.toml";
    auto r = load("[tls]\ncert = \"" + file + "\"\nkey = \"" + file +
                  "\"\n[[listener]]\nprotocol = \"mysql\"\nlisten = \"127.0.0.1:3307\"\n"
                  "client_tls = \"require\"\n"
                  "[[pool]]\nname = \"m\"\nprotocol = \"mysql\"\n"
                  "backends = [ { address = \"127.0.0.1:3306\" } ]\n"
                  "server_tls = \"verify-full\"\nserver_tls_ca = \"" +
                  file + "\"\n");
    INFO(all_errors(r));
    REQUIRE(r.config.has_value());
    CHECK(r.config->listeners[0].client_tls == ClientTls::Require);
    CHECK(r.config->pools[0].server_tls == "verify-full");
  }
}

TEST_CASE("config: a MySQL native hash is recognised", "[config]") {
  CHECK(sqlmux::config::is_mysql_native_hash("*58815970BE77B3720276F63DB198B1FA42E5CC02"));
  CHECK(sqlmux::config::is_mysql_native_hash("*58815970be77b3720276f63db198b1fa42e5cc02"));
  CHECK_FALSE(sqlmux::config::is_mysql_native_hash("58815970BE77B3720276F63DB198B1FA42E5CC02"));
  CHECK_FALSE(sqlmux::config::is_mysql_native_hash("*58815970BE77B3720276F63DB198B1FA42E5CC0"));
  CHECK_FALSE(sqlmux::config::is_mysql_native_hash("*58815970BE77B3720276F63DB198B1FA42E5CC0Z"));
  CHECK_FALSE(sqlmux::config::is_mysql_native_hash("*"));
}
