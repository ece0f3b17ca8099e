// Tests for daemon/admin/config_rows.cpp: SHOW CONFIG lists every key of
// config/config.h with its value, default and whether RELOAD applies it.
#include "daemon/admin/config_rows.h"

#include <catch2/catch.hpp>

#include <map>
#include <string>

using namespace sqlmux;

namespace {

std::map<std::string, admin::ConfigRow> rows_of(const std::string& text) {
  config::LoadResult r = config::load_string(text, "t.toml");
  std::string errors;
  for (const auto& e : r.errors) errors += e.to_string() + "\n";
  INFO(errors);
  REQUIRE(r.config.has_value());
  std::map<std::string, admin::ConfigRow> out;
  for (auto& row : admin::config_rows(*r.config)) {
    INFO(row.key);
    CHECK(out.count(row.key) == 0);  // each key once
    out.emplace(row.key, row);
  }
  return out;
}

}  // namespace

TEST_CASE("admin SHOW CONFIG: every key, its value, default and changeable", "[admin]") {
  const std::string file = std::string(SQLMUX_SOURCE_DIR) + "/config/examples/postgres.toml";
  const auto rows = rows_of(R"([server]
workers = 3
peer_id = 4
peer_secret = "0123456789abcdef-fleet"
[peers]
4 = "127.0.0.1:6432"
5 = "127.0.0.1:6442"
[[listener]]
protocol = "postgres"
listen = "127.0.0.1:6432"
client_tls = "require"
[[user]]
name = "app"
password = "secret1"
[[user]]
name = "admin"
password = "secret2"
auth = "md5"
[[pool]]
name = "appdb"
size = 7
max_db_connections = 3
user = "app"
password = "secret3"
backends = [ { address = "127.0.0.1:5432" }, { address = "127.0.0.1:5433", role = "replica", weight = 2 } ]
[metrics]
listen = "127.0.0.1:9187"
[health]
interval = "2s"
user = "probe"
password = "secret4"
[health.mysql]
database = "mysql"
[admin]
listen = "127.0.0.1:6433"
users = ["admin"]
[tls]
cert = ")" + file + R"("
key = ")" + file + R"("
)");
  // Every field of config/config.h (one pool, two backends, two users).
  const char* keys[] = {"config_file",
                        "server.workers",
                        "server.max_client_conn",
                        "server.log_level",
                        "server.log_format",
                        "server.log_connections",
                        "server.log_disconnections",
                        "server.shutdown_timeout",
                        "server.client_login_timeout",
                        "server.query_digests",
                        "server.tcp_keepalive",
                        "server.tcp_keepidle",
                        "server.tcp_keepintvl",
                        "server.tcp_keepcnt",
                        "server.query_digests_max",
                        "server.caching_sha2_private_key",
                        "server.auth_failure_limit",
                        "server.auth_failure_window",
                        "server.auth_failure_delay",
                        "server.auth_failure_max_delay",
                        "server.max_login_clients_per_address",
                        "server.peer_id",
                        "server.upgrade_socket",
                        "server.peer_secret",
                        "server.max_user_client_connections",
                        "server.max_db_connections",
                        "server.max_user_connections",
                        "peers.4",
                        "peers.5",
                        "listener[0].protocol",
                        "listener[0].listen",
                        "listener[0].client_tls",
                        "user[0].name",
                        "user[0].password",
                        "user[0].auth",
                        "user[0].default_pool",
                        "user[0].max_user_client_connections",
                        "user[0].max_user_connections",
                        "user[1].auth",
                        "pool[0].name",
                        "pool[0].protocol",
                        "pool[0].mode",
                        "pool[0].size",
                        "pool[0].min_idle",
                        "pool[0].reserve_pool_size",
                        "pool[0].reserve_pool_timeout",
                        "pool[0].max_db_connections",
                        "pool[0].database",
                        "pool[0].user",
                        "pool[0].password",
                        "pool[0].backends[0].address",
                        "pool[0].backends[0].role",
                        "pool[0].backends[0].weight",
                        "pool[0].backends[1].address",
                        "pool[0].backends[1].role",
                        "pool[0].backends[1].weight",
                        "pool[0].route",
                        "pool[0].query_wait_timeout",
                        "pool[0].client_idle_timeout",
                        "pool[0].idle_transaction_timeout",
                        "pool[0].transaction_timeout",
                        "pool[0].query_timeout",
                        "pool[0].server_idle_timeout",
                        "pool[0].server_lifetime",
                        "pool[0].server_connect_timeout",
                        "pool[0].server_tls",
                        "pool[0].server_tls_ca",
                        "pool[0].max_prepared_statements",
                        "pool[0].session_reconnect",
                        "pool[0].listen_pin",
                        "pool[0].auth_user",
                        "pool[0].auth_password",
                        "pool[0].auth_query",
                        "pool[0].auth_query_cache_ttl",
                        "metrics.listen",
                        "metrics.query_digests_top",
                        "health.interval",
                        "health.timeout",
                        "health.fall",
                        "health.rise",
                        "health.user",
                        "health.password",
                        "health.database",
                        "health.mysql.user",
                        "health.mysql.password",
                        "health.mysql.database",
                        "admin.listen",
                        "admin.users",
                        "tls.cert",
                        "tls.key",
                        "tls.ca",
                        "tls.min_version",
                        "tls.ciphers"};
  for (const char* k : keys) {
    INFO(k);
    CHECK(rows.count(k) == 1);
  }
  CHECK(rows.size() ==
        sizeof keys / sizeof keys[0] + 5);  // and user[1]'s name, password, default_pool, caps

  auto value = [&](const char* k) { return rows.at(k).value; };
  auto def = [&](const char* k) { return rows.at(k).default_value; };
  auto changeable = [&](const char* k) { return rows.at(k).changeable; };
  CHECK(value("server.workers") == "3");
  CHECK(def("server.workers") == "2");
  CHECK_FALSE(changeable("server.workers"));
  CHECK(value("server.upgrade_socket").empty());
  CHECK_FALSE(changeable("server.upgrade_socket"));
  CHECK(value("server.shutdown_timeout") == "30s");
  CHECK(def("server.shutdown_timeout") == "30s");
  CHECK(changeable("server.shutdown_timeout"));
  CHECK(value("pool[0].size") == "7");
  CHECK(def("pool[0].size") == "20");
  CHECK(changeable("pool[0].size"));
  CHECK(value("pool[0].max_db_connections") == "3");
  CHECK(value("user[0].max_user_connections") == "");  // absent: [server]'s
  CHECK(def("server.max_db_connections") == "0");
  CHECK(changeable("server.max_user_connections"));
  CHECK(value("pool[0].database") == "appdb");
  CHECK(def("pool[0].database") == "appdb");  // the pool's name
  CHECK_FALSE(changeable("pool[0].mode"));
  CHECK_FALSE(changeable("pool[0].user"));
  CHECK(value("pool[0].backends[1].weight") == "2");
  CHECK(def("pool[0].backends[1].weight") == "1");
  CHECK(def("pool[0].backends[0].address") == std::nullopt);  // required
  CHECK(value("pool[0].route") == "primary");
  CHECK(value("listener[0].client_tls") == "require");
  CHECK(def("listener[0].client_tls") == "allow");  // [tls] is configured
  CHECK_FALSE(changeable("listener[0].listen"));
  CHECK(value("user[1].auth") == "md5");
  CHECK(def("user[1].auth") == "default");
  CHECK(value("health.interval") == "2s");
  CHECK(def("health.interval") == "5s");
  CHECK(value("health.mysql.database") == "mysql");
  CHECK(value("health.mysql.user") == "");  // absent: [health]'s
  CHECK_FALSE(changeable("metrics.listen"));
  CHECK_FALSE(changeable("tls.cert"));
  CHECK(changeable("admin.users"));
  CHECK(def("tls.min_version") == "1.2");
  for (const auto& [k, r] : rows) {
    INFO(k);
    CHECK(r.value.find("secret") == std::string::npos);  // passwords masked
  }
  CHECK(value("pool[0].password") == "********");
  CHECK(value("health.password") == "********");
  CHECK(value("server.peer_secret") == "********");
  CHECK(changeable("server.peer_secret"));
}
