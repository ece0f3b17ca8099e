#include "daemon/admin/config_rows.h"

namespace sqlmux::admin {
namespace {

std::string duration(config::Duration d) {
  const auto ms = d.count();
  return ms % 1000 == 0 ? std::to_string(ms / 1000) + "s" : std::to_string(ms) + "ms";
}

std::string masked(const std::string& secret) {
  return secret.empty() ? "" : "********";
}

std::string flag(bool b) {
  return b ? "true" : "false";
}

template <typename E>
std::string text(E e) {
  return std::string(config::to_string(e));
}

class Rows {
 public:
  // A key RELOAD applies.
  void add(std::string key, std::string value, std::optional<std::string> def) {
    rows_.push_back({std::move(key), std::move(value), std::move(def), true});
  }
  // A key that needs a restart.
  void fixed(std::string key, std::string value, std::optional<std::string> def) {
    rows_.push_back({std::move(key), std::move(value), std::move(def), false});
  }
  std::vector<ConfigRow> take() { return std::move(rows_); }

 private:
  std::vector<ConfigRow> rows_;
};

void server_rows(Rows& r, const config::ServerConfig& s) {
  const config::ServerConfig d;
  r.fixed("server.workers", std::to_string(s.workers), std::to_string(d.workers));
  r.add("server.max_client_conn", std::to_string(s.max_client_conn),
        std::to_string(d.max_client_conn));
  r.add("server.log_level", text(s.log_level), text(d.log_level));
  r.add("server.log_format", text(s.log_format), text(d.log_format));
  r.add("server.log_connections", flag(s.log_connections), flag(d.log_connections));
  r.add("server.log_disconnections", flag(s.log_disconnections), flag(d.log_disconnections));
  r.add("server.shutdown_timeout", duration(s.shutdown_timeout), duration(d.shutdown_timeout));
  r.fixed("server.upgrade_socket", s.upgrade_socket, d.upgrade_socket);
  r.add("server.client_login_timeout", duration(s.client_login_timeout),
        duration(d.client_login_timeout));
  r.add("server.query_digests", flag(s.query_digests), flag(d.query_digests));
  r.add("server.tcp_keepalive", flag(s.tcp_keepalive), flag(d.tcp_keepalive));
  r.add("server.tcp_keepidle", std::to_string(s.tcp_keepidle), std::to_string(d.tcp_keepidle));
  r.add("server.tcp_keepintvl", std::to_string(s.tcp_keepintvl), std::to_string(d.tcp_keepintvl));
  r.add("server.tcp_keepcnt", std::to_string(s.tcp_keepcnt), std::to_string(d.tcp_keepcnt));
  r.add("server.query_digests_max", std::to_string(s.query_digests_max),
        std::to_string(d.query_digests_max));
  r.add("server.caching_sha2_private_key", s.caching_sha2_private_key, d.caching_sha2_private_key);
  r.add("server.auth_failure_limit", std::to_string(s.auth_failure_limit),
        std::to_string(d.auth_failure_limit));
  r.add("server.auth_failure_window", duration(s.auth_failure_window),
        duration(d.auth_failure_window));
  r.add("server.auth_failure_delay", duration(s.auth_failure_delay),
        duration(d.auth_failure_delay));
  r.add("server.auth_failure_max_delay", duration(s.auth_failure_max_delay),
        duration(d.auth_failure_max_delay));
  r.add("server.max_login_clients_per_address", std::to_string(s.max_login_clients_per_address),
        std::to_string(d.max_login_clients_per_address));
  r.fixed("server.peer_id", std::to_string(s.peer_id), std::to_string(d.peer_id));
  r.add("server.peer_secret", masked(s.peer_secret), "");
  r.add("server.max_user_client_connections", std::to_string(s.max_user_client_connections),
        std::to_string(d.max_user_client_connections));
  r.add("server.max_db_connections", std::to_string(s.max_db_connections),
        std::to_string(d.max_db_connections));
  r.add("server.max_user_connections", std::to_string(s.max_user_connections),
        std::to_string(d.max_user_connections));
}

void pool_rows(Rows& r, size_t i, const config::PoolConfig& pc) {
  const config::PoolConfig d;
  const std::string p = "pool[" + std::to_string(i) + "].";
  // A pool is known by its protocol and name: another one is another pool.
  r.fixed(p + "name", pc.name, std::nullopt);
  r.fixed(p + "protocol", text(pc.protocol), text(d.protocol));
  r.fixed(p + "mode", text(pc.mode), text(d.mode));
  r.add(p + "size", std::to_string(pc.size), std::to_string(d.size));
  r.add(p + "min_idle", std::to_string(pc.min_idle), std::to_string(d.min_idle));
  r.add(p + "reserve_pool_size", std::to_string(pc.reserve_pool_size),
        std::to_string(d.reserve_pool_size));
  r.add(p + "reserve_pool_timeout", duration(pc.reserve_pool_timeout),
        duration(d.reserve_pool_timeout));
  // Absent: [server] max_db_connections applies (shown empty).
  r.add(p + "max_db_connections",
        pc.max_db_connections ? std::to_string(*pc.max_db_connections) : "", "");
  r.add(p + "database", pc.database, pc.name);  // defaults to the pool's name
  r.fixed(p + "user", pc.user.value_or(""), "");
  r.fixed(p + "password", masked(pc.password.value_or("")), "");
  for (size_t j = 0; j < pc.backends.size(); ++j) {
    const config::BackendConfig db;
    const std::string b = p + "backends[" + std::to_string(j) + "].";
    r.add(b + "address", pc.backends[j].address.text, std::nullopt);
    r.add(b + "role", pc.backends[j].role, db.role);
    r.add(b + "weight", std::to_string(pc.backends[j].weight), std::to_string(db.weight));
  }
  bool any_primary = false;
  for (const auto& b : pc.backends) any_primary = any_primary || b.role == "primary";
  r.add(p + "route", text(pc.route),
        text(any_primary ? config::Route::Primary : config::Route::Replica));
  r.add(p + "query_wait_timeout", duration(pc.query_wait_timeout), duration(d.query_wait_timeout));
  r.add(p + "client_idle_timeout", duration(pc.client_idle_timeout),
        duration(d.client_idle_timeout));
  r.add(p + "idle_transaction_timeout", duration(pc.idle_transaction_timeout),
        duration(d.idle_transaction_timeout));
  r.add(p + "transaction_timeout", duration(pc.transaction_timeout),
        duration(d.transaction_timeout));
  r.add(p + "query_timeout", duration(pc.query_timeout), duration(d.query_timeout));
  r.add(p + "server_idle_timeout", duration(pc.server_idle_timeout),
        duration(d.server_idle_timeout));
  r.add(p + "server_lifetime", duration(pc.server_lifetime), duration(d.server_lifetime));
  r.add(p + "server_connect_timeout", duration(pc.server_connect_timeout),
        duration(d.server_connect_timeout));
  r.add(p + "server_tls", pc.server_tls, d.server_tls);
  r.add(p + "server_tls_ca", pc.server_tls_ca, d.server_tls_ca);
  r.add(p + "max_prepared_statements", std::to_string(pc.max_prepared_statements),
        std::to_string(d.max_prepared_statements));
  r.add(p + "session_reconnect", flag(pc.session_reconnect), flag(d.session_reconnect));
  r.add(p + "listen_pin", flag(pc.listen_pin), flag(d.listen_pin));
  r.add(p + "auth_user", pc.auth_user.value_or(""), "");
  r.add(p + "auth_password", masked(pc.auth_password.value_or("")), "");
  r.add(
      p + "auth_query", pc.auth_query,
      pc.protocol == config::Protocol::Mysql ? std::string(config::kMysqlAuthQuery) : d.auth_query);
  r.add(p + "auth_query_cache_ttl", duration(pc.auth_query_cache_ttl),
        duration(d.auth_query_cache_ttl));
}

void health_rows(Rows& r, const config::HealthConfig& h) {
  const config::HealthConfig d;
  r.add("health.interval", duration(h.interval), duration(d.interval));
  r.add("health.timeout", duration(h.timeout), duration(d.timeout));
  r.add("health.fall", std::to_string(h.fall), std::to_string(d.fall));
  r.add("health.rise", std::to_string(h.rise), std::to_string(d.rise));
  // Absent login keys: a pool's login that lists the host (shown empty).
  auto login = [&](const std::string& p, const config::HealthConfig::Login& l) {
    r.add(p + "user", l.user.value_or(""), "");
    r.add(p + "password", masked(l.password.value_or("")), "");
    r.add(p + "database", l.database.value_or(""), "");
  };
  login("health.", {h.user, h.password, h.database});
  for (const auto& [proto, l] : h.per_protocol) login("health." + text(proto) + ".", l);
}

}  // namespace

std::vector<ConfigRow> config_rows(const config::Config& cfg) {
  Rows r;
  r.fixed("config_file", cfg.source, std::nullopt);
  server_rows(r, cfg.server);
  const config::ClientTls tls_default =
      cfg.tls ? config::ClientTls::Allow : config::ClientTls::Disable;
  for (size_t i = 0; i < cfg.listeners.size(); ++i) {
    const std::string p = "listener[" + std::to_string(i) + "].";
    r.fixed(p + "protocol", text(cfg.listeners[i].protocol), text(config::Protocol::Postgres));
    r.fixed(p + "listen", cfg.listeners[i].listen.text, std::nullopt);
    r.fixed(p + "client_tls", text(cfg.listeners[i].client_tls), text(tls_default));
  }
  for (size_t i = 0; i < cfg.users.size(); ++i) {
    const auto& u = cfg.users[i];
    const std::string p = "user[" + std::to_string(i) + "].";
    r.add(p + "name", u.name, std::nullopt);
    r.add(p + "password", masked(u.password), std::nullopt);
    r.add(p + "auth", text(u.auth), text(config::AuthMethod::Default));
    r.add(p + "default_pool", u.default_pool, "");
    // Absent: [server] max_user_client_connections applies (shown empty).
    r.add(p + "max_user_client_connections",
          u.max_user_client_connections ? std::to_string(*u.max_user_client_connections) : "", "");
    // Absent: [server] max_user_connections applies (shown empty).
    r.add(p + "max_user_connections",
          u.max_user_connections ? std::to_string(*u.max_user_connections) : "", "");
  }
  for (size_t i = 0; i < cfg.pools.size(); ++i) pool_rows(r, i, cfg.pools[i]);
  if (cfg.metrics) {
    r.fixed("metrics.listen", cfg.metrics->listen.text, std::nullopt);
    r.add("metrics.query_digests_top", std::to_string(cfg.metrics->query_digests_top),
          std::to_string(config::MetricsConfig{}.query_digests_top));
  }
  if (cfg.health) health_rows(r, *cfg.health);
  if (cfg.admin) {
    r.fixed("admin.listen", cfg.admin->listen.text, std::nullopt);
    std::string users;
    for (const auto& u : cfg.admin->users) users += (users.empty() ? "" : ",") + u;
    r.add("admin.users", users, std::nullopt);
  }
  for (const auto& [id, address] : cfg.peers) {
    r.add("peers." + std::to_string(id), address.text, std::nullopt);
  }
  if (cfg.tls) {
    const config::TlsConfig d;
    r.fixed("tls.cert", cfg.tls->cert, std::nullopt);
    r.fixed("tls.key", cfg.tls->key, std::nullopt);
    r.fixed("tls.ca", cfg.tls->ca.value_or(""), "");
    r.fixed("tls.min_version", cfg.tls->min_version, d.min_version);
    r.fixed("tls.ciphers", cfg.tls->ciphers, d.ciphers);
  }
  return r.take();
}

}  // namespace sqlmux::admin
