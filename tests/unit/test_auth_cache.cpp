// Tests for pool/auth_cache.cpp (auth_query results kept for a TTL,
// dropped after a failed login, bounded) and the auth_query pool keys.
#include "pool/auth_cache.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <string>

#include "config/config.h"
#include "config/config_diff.h"

using namespace sqlmux;

TEST_CASE("auth cache: an entry serves for its TTL, a missing user too", "[auth_cache]") {
  pool::AuthCache c(10);
  CHECK_FALSE(c.fresh("alice", 0, 1000));
  c.put("alice", std::string("SCRAM-SHA-256$4096:c2FsdA==$a:b"), 1000);
  c.put("nobody", std::nullopt, 1000);
  auto e = c.fresh("alice", 1999, 1000);
  REQUIRE(e);
  REQUIRE(e->secret);
  CHECK(*e->secret == "SCRAM-SHA-256$4096:c2FsdA==$a:b");
  CHECK(e->fetched_ms == 1000);
  auto n = c.fresh("nobody", 1500, 1000);
  REQUIRE(n);
  CHECK_FALSE(n->secret);                       // known not to exist: no lookup either
  CHECK_FALSE(c.fresh("alice", 2000, 1000));    // the TTL is over
  CHECK(c.fresh("alice", 500, 1000));           // a clock that went back: as old as it was
  c.put("alice", std::string("md5abc"), 2500);  // a new lookup replaces it
  REQUIRE(c.fresh("alice", 2600, 1000));
  CHECK(*c.fresh("alice", 2600, 1000)->secret == "md5abc");
  CHECK(c.size() == 2);
}

TEST_CASE("auth cache: a failed login drops an entry older than the minimum age", "[auth_cache]") {
  pool::AuthCache c(10);
  c.put("alice", std::string("v1"), 1000);
  CHECK_FALSE(c.drop_if_older("alice", 2000, 5000));  // too recent: kept (no lookup storm)
  CHECK(c.fresh("alice", 2000, 60000));
  CHECK(c.drop_if_older("alice", 6000, 5000));
  CHECK_FALSE(c.fresh("alice", 6000, 60000));  // the next login looks up again
  CHECK_FALSE(c.drop_if_older("alice", 7000, 5000));
  CHECK_FALSE(c.drop_if_older("bob", 7000, 0));
}

TEST_CASE("auth cache: bounded, the oldest entry goes first", "[auth_cache]") {
  pool::AuthCache c(3);
  c.put("a", std::string("1"), 30);
  c.put("b", std::string("2"), 10);
  c.put("c", std::nullopt, 20);
  c.put("a", std::string("1b"), 40);  // a replacement takes no room
  CHECK(c.size() == 3);
  c.put("d", std::string("4"), 50);  // evicts b (fetched at 10)
  CHECK(c.size() == 3);
  CHECK_FALSE(c.fresh("b", 50, 1000));
  CHECK(c.fresh("a", 50, 1000));
  CHECK(c.fresh("c", 50, 1000));
  CHECK(c.fresh("d", 50, 1000));
}

namespace {
const std::string kPool = R"(
[[listener]]
protocol = "postgres"
listen = "127.0.0.1:6432"
[[pool]]
name = "app"
backends = [{ address = "127.0.0.1:5432" }]
)";
}  // namespace

TEST_CASE("config: auth_user, auth_password, auth_query, auth_query_cache_ttl",
          "[auth_cache][config]") {
  auto d = config::load_string(kPool, "t.toml");
  REQUIRE(d.errors.empty());
  CHECK_FALSE(d.config->pools[0].auth_user);
  CHECK(d.config->pools[0].auth_query == "SELECT usename, passwd FROM pg_shadow WHERE usename=$1");
  CHECK(d.config->pools[0].auth_query_cache_ttl.count() == 60000);

  auto r = config::load_string(kPool +
                                   "auth_user = \"pgbouncer\"\n"
                                   "auth_password = \"pw\"\n"
                                   "auth_query = \"SELECT * FROM pgbouncer.get_auth($1)\"\n"
                                   "auth_query_cache_ttl = \"5s\"\n",
                               "t.toml");
  REQUIRE(r.errors.empty());
  const config::PoolConfig& p = r.config->pools[0];
  CHECK(*p.auth_user == "pgbouncer");
  CHECK(*p.auth_password == "pw");
  CHECK(p.auth_query == "SELECT * FROM pgbouncer.get_auth($1)");
  CHECK(p.auth_query_cache_ttl.count() == 5000);

  const config::ConfigDiff diff = config::diff(*d.config, *r.config);
  REQUIRE(diff.pools_changed.size() == 1);
  const auto& applied = diff.pools_changed[0].applied;
  for (const char* k : {"auth_user", "auth_password", "auth_query", "auth_query_cache_ttl"}) {
    CHECK(std::count(applied.begin(), applied.end(), k) == 1);
  }
  CHECK(diff.pools_changed[0].restart.empty());

  auto no_user = config::load_string(kPool + "auth_password = \"pw\"\n", "t.toml");
  REQUIRE(no_user.errors.size() == 1);
  CHECK(no_user.errors[0].key == "pool[0].auth_password");
  CHECK(no_user.errors[0].line == 8);

  auto fixed = config::load_string(kPool + "user = \"app\"\nauth_user = \"pgbouncer\"\n", "t.toml");
  REQUIRE(fixed.errors.size() == 1);
  CHECK(fixed.errors[0].key == "pool[0].auth_user");
  CHECK(fixed.errors[0].line == 9);

  auto zero =
      config::load_string(kPool + "auth_user = \"a\"\nauth_query_cache_ttl = \"0s\"\n", "t.toml");
  REQUIRE(zero.errors.size() == 1);
  CHECK(zero.errors[0].key == "pool[0].auth_query_cache_ttl");

  // The passthrough login speaks TLS: auth_query with server_tls is fine.
  auto tls = config::load_string(kPool + "auth_user = \"a\"\nserver_tls = \"require\"\n", "t.toml");
  CHECK(tls.errors.empty());

  auto mysql = config::load_string(std::string(R"(
[[listener]]
protocol = "mysql"
listen = "127.0.0.1:6433"
[[pool]]
name = "app"
protocol = "mysql"
backends = [{ address = "127.0.0.1:3306" }]
auth_user = "a"
)"),
                                   "t.toml");
  // MySQL pools (issue 15): accepted, with the mysql.user default query.
  REQUIRE(mysql.errors.empty());
  CHECK(*mysql.config->pools[0].auth_user == "a");
  CHECK(mysql.config->pools[0].auth_query == config::kMysqlAuthQuery);

  // A MySQL pool's lookup connection has no TLS: refused with server_tls.
  auto mysql_tls = config::load_string(std::string(R"(
[[listener]]
protocol = "mysql"
listen = "127.0.0.1:6433"
[[pool]]
name = "app"
protocol = "mysql"
backends = [{ address = "127.0.0.1:3306" }]
server_tls = "require"
auth_user = "a"
)"),
                                       "t.toml");
  REQUIRE(mysql_tls.errors.size() == 1);
  CHECK(mysql_tls.errors[0].key == "pool[0].auth_user");
  CHECK(mysql_tls.errors[0].message.find("without TLS") != std::string::npos);
}
