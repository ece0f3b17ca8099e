// Tests for pool/host_policy.cpp (fall/rise, routing, least load per
// weight) and the [health] / route configuration keys.
#include "pool/host_policy.h"

#include <catch2/catch.hpp>

#include <string>

#include "config/config.h"
#include "daemon/ops/health_check.h"
#include "daemon/ops/hosts.h"

using namespace sqlmux;
using config::Route;
using pool::Health;
using pool::HostChoice;
using pool::Role;

TEST_CASE("host policy: fall and rise", "[hosts]") {
  pool::HealthCounter c;
  CHECK(c.health() == Health::Unchecked);
  CHECK(c.record(true, 3, 2) == Health::Up);  // unchecked: one success is enough
  CHECK(c.record(false, 3, 2) == Health::Up);
  CHECK(c.record(false, 3, 2) == Health::Up);
  CHECK(c.record(true, 3, 2) == Health::Up);  // a success resets the failures
  CHECK(c.record(false, 3, 2) == Health::Up);
  CHECK(c.record(false, 3, 2) == Health::Up);
  CHECK(c.record(false, 3, 2) == Health::Down);
  CHECK(c.failures_in_row() == 3);
  CHECK(c.record(true, 3, 2) == Health::Down);
  CHECK(c.record(false, 3, 2) == Health::Down);  // a failure resets the successes
  CHECK(c.record(true, 3, 2) == Health::Down);
  CHECK(c.record(true, 3, 2) == Health::Up);

  pool::HealthCounter never_up;
  CHECK(never_up.record(false, 1, 1) == Health::Down);
}

TEST_CASE("host policy: routes and fallback", "[hosts]") {
  const std::vector<HostChoice> hosts = {
      {Role::Primary, true, 0, 1},
      {Role::Replica, true, 0, 1},
      {Role::Replica, true, 0, 1},
  };
  CHECK(pool::pick_host(hosts, Route::Primary) == 0);
  CHECK(pool::pick_host(hosts, Route::Replica) == 1);
  CHECK(pool::pick_host(hosts, Route::Any) == 0);
  CHECK(pool::pick_host(hosts, Route::Replica, 0b010) == 2);  // host 1 tried already
  // No replica left (tried or unusable): the primary serves reads.
  CHECK(pool::pick_host(hosts, Route::Replica, 0b110) == 0);
  auto down = hosts;
  down[1].usable = down[2].usable = false;
  CHECK(pool::pick_host(down, Route::Replica) == 0);
  // No primary: a primary route has nobody.
  down = hosts;
  down[0].usable = false;
  CHECK(pool::pick_host(down, Route::Primary) == -1);
  CHECK(pool::pick_host(down, Route::Primary, 0) == -1);
  CHECK(pool::pick_host({}, Route::Any) == -1);
  CHECK(pool::pick_host(hosts, Route::Any, 0b111) == -1);

  CHECK(pool::serves(Role::Primary, Route::Replica, false));
  CHECK_FALSE(pool::serves(Role::Primary, Route::Replica, true));
  CHECK_FALSE(pool::serves(Role::Replica, Route::Primary, false));
}

TEST_CASE("host policy: least load per weight", "[hosts]") {
  std::vector<HostChoice> hosts = {
      {Role::Replica, true, 4, 1},
      {Role::Replica, true, 6, 2},  // 3 per weight unit: less loaded
      {Role::Replica, true, 9, 3},  // 3 as well; the first of equals wins
  };
  CHECK(pool::pick_host(hosts, Route::Replica) == 1);
  hosts[1].load = 8;
  CHECK(pool::pick_host(hosts, Route::Replica) == 2);
  // Connections spread by weight when opened one by one.
  std::vector<HostChoice> fresh = {{Role::Primary, true, 0, 1}, {Role::Primary, true, 0, 3}};
  int count[2] = {0, 0};
  for (int i = 0; i < 8; ++i) {
    const int k = pool::pick_host(fresh, Route::Primary);
    REQUIRE(k >= 0);
    ++count[k];
    ++fresh[static_cast<size_t>(k)].load;
  }
  CHECK(count[0] == 2);
  CHECK(count[1] == 6);
}

TEST_CASE("config: route and [health]", "[config][hosts]") {
  const std::string base = R"(
[[listener]]
protocol = "postgres"
listen = "127.0.0.1:6432"
)";
  SECTION("defaults: route follows the configured roles; no [health]") {
    auto r = config::load_string(base + R"(
[[pool]]
name = "rw"
backends = [ { address = "127.0.0.1:5432" }, { address = "127.0.0.1:5433", role = "replica" } ]
[[pool]]
name = "ro"
backends = [ { address = "127.0.0.1:5433", role = "replica", weight = 3 } ]
)",
                                 "t.toml");
    REQUIRE(r.config);
    CHECK(r.config->pools[0].route == Route::Primary);
    CHECK(r.config->pools[1].route == Route::Replica);
    CHECK(r.config->pools[1].backends[0].weight == 3);
    CHECK_FALSE(r.config->health);
  }
  SECTION("explicit route and health settings") {
    auto r = config::load_string(base + R"(
[health]
interval = "250ms"
timeout = "1s"
fall = 2
rise = 1
user = "monitor"
password = "pw"
database = "postgres"
[[pool]]
name = "any"
route = "any"
backends = [ { address = "127.0.0.1:5432" } ]
)",
                                 "t.toml");
    REQUIRE(r.config);
    CHECK(r.config->pools[0].route == Route::Any);
    REQUIRE(r.config->health);
    CHECK(r.config->health->interval.count() == 250);
    CHECK(r.config->health->timeout.count() == 1000);
    CHECK(r.config->health->fall == 2);
    CHECK(r.config->health->rise == 1);
    CHECK(r.config->health->user == "monitor");
    CHECK(r.config->health->password == "pw");
    CHECK(r.config->health->database == "postgres");
    CHECK(config::to_string(Route::Replica) == "replica");
  }
  SECTION("errors name the key") {
    auto r = config::load_string(base + R"(
[health]
fall = 0
interval = "0s"
[[pool]]
name = "p"
route = "nearest"
backends = [ { address = "127.0.0.1:5432" } ]
)",
                                 "t.toml");
    REQUIRE(r.errors.size() == 4);
    std::string all;
    for (const auto& e : r.errors) all += e.to_string() + "\n";
    CHECK(all.find("health.fall: value 0 is out of range") != std::string::npos);
    CHECK(all.find("health.interval: must be positive") != std::string::npos);
    CHECK(all.find("pool[0].route: invalid value \"nearest\"; expected one of: primary, replica, "
                   "any") != std::string::npos);
    // The pool logs in as each client: the checks have no login.
    CHECK(all.find("health.user: health checks need a login") != std::string::npos);
  }
}

TEST_CASE("health checker: one target per host, login from [health] or the first pool", "[hosts]") {
  auto r = config::load_string(R"(
[[listener]]
protocol = "postgres"
listen = "127.0.0.1:6432"
[health]
database = "postgres"
[[pool]]
name = "rw"
user = "app"
password = "pw"
backends = [ { address = "127.0.0.1:5432" }, { address = "127.0.0.1:5433", role = "replica" } ]
[[pool]]
name = "ro"
user = "reader"
route = "replica"
backends = [ { address = "127.0.0.1:5433", role = "replica" }, { address = "unix:/run/pg" } ]
)",
                               "t.toml");
  REQUIRE(r.config);
  // Only the ports matter here: no probe is made.
  const HealthProbes probes{{config::Protocol::Postgres, {5432, nullptr}},
                            {config::Protocol::Mysql, {3306, nullptr}}};
  auto t = HealthChecker::targets(*r.config, probes);
  REQUIRE(t.size() == 3);
  CHECK(t[0].address == "127.0.0.1:5432");
  CHECK(t[0].host == "127.0.0.1");
  CHECK(t[0].port == "5432");
  CHECK(t[0].user == "app");
  CHECK(t[0].password == std::optional<std::string>("pw"));
  CHECK(t[0].database == "postgres");
  CHECK(t[1].address == "127.0.0.1:5433");
  CHECK(t[1].user == "app");  // the first pool that lists it
  CHECK(t[2].address == "unix:/run/pg");
  CHECK(t[2].host == "/run/pg");
  CHECK(t[2].port == "5432");
  CHECK(t[2].user == "reader");
  CHECK_FALSE(t[2].password.has_value());
  CHECK(t[2].protocol == config::Protocol::Postgres);

  auto none = config::load_string(R"(
[[listener]]
protocol = "postgres"
listen = "127.0.0.1:6432"
[[pool]]
name = "rw"
user = "app"
backends = [ { address = "127.0.0.1:5432" } ]
)",
                                  "t.toml");
  REQUIRE(none.config);
  CHECK(HealthChecker::targets(*none.config, probes).empty());  // no [health]: no checks

  // A MySQL pool's host without a port (built here: validation wants one)
  // gets its protocol's default port. A protocol without a probe: no checks.
  config::Config my_cfg;
  my_cfg.health.emplace();
  config::PoolConfig shop;
  shop.name = "shop";
  shop.protocol = config::Protocol::Mysql;
  shop.user = "app";
  config::BackendConfig b;
  b.address.host = "db";
  b.address.text = "db";
  shop.backends.push_back(b);
  my_cfg.pools.push_back(shop);
  auto m = HealthChecker::targets(my_cfg, probes);
  REQUIRE(m.size() == 1);
  CHECK(m[0].host == "db");
  CHECK(m[0].port == "3306");
  CHECK(m[0].protocol == config::Protocol::Mysql);
  CHECK(HealthChecker::targets(my_cfg, {{config::Protocol::Postgres, {5432, nullptr}}}).empty());
}

TEST_CASE("[health]: per-protocol logins, and a database shared by both protocols is refused",
          "[config][hosts]") {
  const std::string listeners = R"(
[[listener]]
protocol = "postgres"
listen = "127.0.0.1:6432"
[[listener]]
protocol = "mysql"
listen = "127.0.0.1:6433"
)";
  const std::string pools = R"(
[[pool]]
name = "appdb"
user = "app"
password = "pw"
backends = [ { address = "127.0.0.1:5432" } ]
[[pool]]
name = "appdb"
protocol = "mysql"
user = "app"
password = "pw"
database = "shop"
backends = [ { address = "127.0.0.1:3306" } ]
)";
  const HealthProbes probes{{config::Protocol::Postgres, {5432, nullptr}},
                            {config::Protocol::Mysql, {3306, nullptr}}};
  SECTION("health.database for both kinds of server is an error at its line") {
    auto r =
        config::load_string(listeners + "[health]\ndatabase = \"postgres\"\n" + pools, "t.toml");
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].to_string().find("t.toml:9:") == 0);
    CHECK(r.errors[0].to_string().find("health.database: applies to postgres and mysql hosts") !=
          std::string::npos);
  }
  SECTION("one protocol's own database leaves the shared one to the other") {
    auto r = config::load_string(listeners + R"(
[health]
user = "monitor"
password = "mpw"
database = "postgres"
[health.mysql]
database = "mysql"
)" + pools,
                                 "t.toml");
    REQUIRE(r.config);
    auto t = HealthChecker::targets(*r.config, probes);
    REQUIRE(t.size() == 2);
    CHECK(t[0].database == "postgres");
    CHECK(t[0].user == "monitor");
    CHECK(t[1].protocol == config::Protocol::Mysql);
    CHECK(t[1].database == "mysql");
    CHECK(t[1].user == "monitor");
    CHECK(t[1].password == std::optional<std::string>("mpw"));
  }
  SECTION("per-protocol users bring their own passwords; unset keys fall back to the pool") {
    auto r = config::load_string(listeners + R"(
[health.postgres]
user = "pgmon"
password = "p1"
database = "postgres"
[health.mysql]
user = "mymon"
)" + pools,
                                 "t.toml");
    REQUIRE(r.config);
    auto t = HealthChecker::targets(*r.config, probes);
    REQUIRE(t.size() == 2);
    CHECK(t[0].user == "pgmon");
    CHECK(t[0].password == std::optional<std::string>("p1"));
    CHECK(t[0].database == "postgres");
    CHECK(t[1].user == "mymon");
    CHECK_FALSE(t[1].password.has_value());  // not the pool's, not [health]'s
    CHECK(t[1].database == "shop");          // the pool's
  }
  SECTION("errors in the sub-tables name their keys") {
    auto r = config::load_string(listeners + R"(
[health.mysql]
password = "x"
databse = "y"
)" + pools,
                                 "t.toml");
    std::string all;
    for (const auto& e : r.errors) all += e.to_string() + "\n";
    CHECK(all.find("health.mysql.databse: unknown key") != std::string::npos);
    CHECK(all.find("did you mean \"database\"") != std::string::npos);
    CHECK(all.find("health.mysql.password: set without user; the password belongs to "
                   "health.mysql.user") != std::string::npos);
  }
  SECTION("a pool that logs in as each client needs its protocol's health user") {
    auto r = config::load_string(listeners + R"(
[health.postgres]
user = "pgmon"
[[pool]]
name = "per_client"
protocol = "mysql"
backends = [ { address = "127.0.0.1:3307" } ]
)" + pools,
                                 "t.toml");
    std::string all;
    for (const auto& e : r.errors) all += e.to_string() + "\n";
    CHECK(all.find("health checks need a login: set health.user (or health.mysql.user), or user "
                   "on mysql pool \"per_client\"") != std::string::npos);
  }
}

TEST_CASE("host status: records, roles and the down/up switch", "[hosts]") {
  HostStatus h("127.0.0.1:5432");
  CHECK(h.health() == Health::Unchecked);
  CHECK(h.usable());
  CHECK_FALSE(h.observed_role().has_value());
  CHECK(h.record(true, Role::Replica, {}, 2, 1));  // up, and a role
  CHECK(h.observed_role() == Role::Replica);
  CHECK_FALSE(h.record(true, Role::Replica, {}, 2, 1));  // nothing new
  CHECK(h.record(true, Role::Primary, {}, 2, 1));        // promoted
  CHECK_FALSE(h.record(false, std::nullopt, "refused", 2, 1));
  CHECK(h.record(false, std::nullopt, "refused again", 2, 1));
  CHECK(h.health() == Health::Down);
  CHECK_FALSE(h.usable());
  CHECK(h.last_error() == "refused again");
  CHECK(h.checks_ok() == 3);
  CHECK(h.checks_failed() == 2);
  CHECK(h.record(true, std::nullopt, {}, 2, 1));
  CHECK(h.usable());
  h.set_disabled(true);
  CHECK_FALSE(h.usable());
  h.reset();
  CHECK(h.health() == Health::Unchecked);
  CHECK_FALSE(h.observed_role().has_value());
}
