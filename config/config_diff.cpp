#include "config/config_diff.h"

#include <algorithm>
#include <map>
#include <tuple>

namespace sqlmux::config {
namespace {

bool same_backends(const std::vector<BackendConfig>& a, const std::vector<BackendConfig>& b) {
  return std::equal(
      a.begin(), a.end(), b.begin(), b.end(), [](const BackendConfig& x, const BackendConfig& y) {
        return x.address.text == y.address.text && x.role == y.role && x.weight == y.weight;
      });
}

PoolChange pool_change(const PoolConfig& a, const PoolConfig& b) {
  PoolChange c;
  c.name = qualified_name(b);
  auto note = [](std::vector<std::string>& into, bool differs, const char* key) {
    if (differs) into.emplace_back(key);
  };
  note(c.applied, a.size != b.size, "size");
  note(c.applied, a.min_idle != b.min_idle, "min_idle");
  note(c.applied, a.reserve_pool_size != b.reserve_pool_size, "reserve_pool_size");
  note(c.applied, a.reserve_pool_timeout != b.reserve_pool_timeout, "reserve_pool_timeout");
  note(c.applied, a.max_db_connections != b.max_db_connections, "max_db_connections");
  note(c.applied, a.database != b.database, "database");
  note(c.applied, !same_backends(a.backends, b.backends), "backends");
  note(c.applied, a.route != b.route, "route");
  note(c.applied, a.server_tls != b.server_tls || a.server_tls_ca != b.server_tls_ca, "server_tls");
  note(c.applied, a.query_wait_timeout != b.query_wait_timeout, "query_wait_timeout");
  note(c.applied, a.client_idle_timeout != b.client_idle_timeout, "client_idle_timeout");
  note(c.applied, a.idle_transaction_timeout != b.idle_transaction_timeout,
       "idle_transaction_timeout");
  note(c.applied, a.transaction_timeout != b.transaction_timeout, "transaction_timeout");
  note(c.applied, a.query_timeout != b.query_timeout, "query_timeout");
  note(c.applied, a.server_idle_timeout != b.server_idle_timeout, "server_idle_timeout");
  note(c.applied, a.server_lifetime != b.server_lifetime, "server_lifetime");
  note(c.applied, a.server_connect_timeout != b.server_connect_timeout, "server_connect_timeout");
  note(c.applied, a.max_prepared_statements != b.max_prepared_statements,
       "max_prepared_statements");
  note(c.applied, a.session_reconnect != b.session_reconnect, "session_reconnect");
  note(c.applied, a.listen_pin != b.listen_pin, "listen_pin");
  note(c.applied, a.auth_user != b.auth_user, "auth_user");
  note(c.applied, a.auth_password != b.auth_password, "auth_password");
  note(c.applied, a.auth_query != b.auth_query, "auth_query");
  note(c.applied, a.auth_query_cache_ttl != b.auth_query_cache_ttl, "auth_query_cache_ttl");
  note(c.restart, a.mode != b.mode, "mode");
  note(c.restart, a.user != b.user, "user");
  note(c.restart, a.password != b.password, "password");
  return c;
}

bool same_listeners(const std::vector<ListenerConfig>& a, const std::vector<ListenerConfig>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                    [](const ListenerConfig& x, const ListenerConfig& y) {
                      return x.protocol == y.protocol && x.listen.text == y.listen.text &&
                             x.client_tls == y.client_tls;
                    });
}

void append(std::string& out, const char* label, const std::vector<std::string>& items,
            const char* sign) {
  if (items.empty()) return;
  if (!out.empty()) out.append("; ");
  out.append(label);
  for (const auto& i : items) {
    out.append(" ");
    out.append(sign);
    out.append(i);
  }
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ",") + s;
  return out;
}

}  // namespace

bool ConfigDiff::empty() const {
  return pools_added.empty() && pools_removed.empty() && pools_changed.empty() &&
         users_added.empty() && users_removed.empty() && users_changed.empty() && applied.empty() &&
         restart.empty();
}

std::string ConfigDiff::summary() const {
  if (empty()) return "no changes";
  std::string out;
  append(out, "pools", pools_added, "+");
  append(out, "pools", pools_removed, "-");
  for (const auto& c : pools_changed) {
    out += out.empty() ? "" : "; ";
    out += "pool ~" + c.name;
    if (!c.applied.empty()) out += " applied(" + join(c.applied) + ")";
    if (!c.restart.empty()) out += " needs restart(" + join(c.restart) + ")";
  }
  append(out, "users", users_added, "+");
  append(out, "users", users_removed, "-");
  append(out, "users", users_changed, "~");
  if (!applied.empty()) out += (out.empty() ? "" : "; ") + std::string("applied: ") + join(applied);
  if (!restart.empty()) {
    out += (out.empty() ? "" : "; ") + std::string("needs restart: ") + join(restart);
  }
  return out;
}

ConfigDiff diff(const Config& before, const Config& after) {
  ConfigDiff d;
  std::map<std::string, const PoolConfig*> old_pools;
  for (const auto& p : before.pools) old_pools.emplace(qualified_name(p), &p);
  for (const auto& p : after.pools) {
    auto it = old_pools.find(qualified_name(p));
    if (it == old_pools.end()) {
      d.pools_added.push_back(qualified_name(p));
      continue;
    }
    PoolChange c = pool_change(*it->second, p);
    if (!c.applied.empty() || !c.restart.empty()) d.pools_changed.push_back(std::move(c));
    old_pools.erase(it);
  }
  for (const auto& [key, p] : old_pools) d.pools_removed.push_back(key);

  std::map<std::string, const UserConfig*> old_users;
  for (const auto& u : before.users) old_users.emplace(u.name, &u);
  for (const auto& u : after.users) {
    auto it = old_users.find(u.name);
    if (it == old_users.end()) {
      d.users_added.push_back(u.name);
      continue;
    }
    const UserConfig& o = *it->second;
    if (std::tie(o.password, o.auth, o.default_pool, o.max_user_client_connections,
                 o.max_user_connections) != std::tie(u.password, u.auth, u.default_pool,
                                                     u.max_user_client_connections,
                                                     u.max_user_connections)) {
      d.users_changed.push_back(u.name);
    }
    old_users.erase(it);
  }
  for (const auto& [name, u] : old_users) d.users_removed.push_back(name);

  const ServerConfig& a = before.server;
  const ServerConfig& b = after.server;
  if (a.workers != b.workers) d.restart.emplace_back("server.workers");
  // Cancel keys already given out carry the id.
  if (a.peer_id != b.peer_id) d.restart.emplace_back("server.peer_id");
  if (a.upgrade_socket != b.upgrade_socket) d.restart.emplace_back("server.upgrade_socket");
  if (before.peers != after.peers) d.applied.emplace_back("peers");
  if (a.peer_secret != b.peer_secret) d.applied.emplace_back("server.peer_secret");
  if (a.max_client_conn != b.max_client_conn) d.applied.emplace_back("server.max_client_conn");
  if (a.log_level != b.log_level) d.applied.emplace_back("server.log_level");
  if (a.log_format != b.log_format) d.applied.emplace_back("server.log_format");
  if (a.log_connections != b.log_connections) d.applied.emplace_back("server.log_connections");
  if (a.log_disconnections != b.log_disconnections)
    d.applied.emplace_back("server.log_disconnections");
  if (a.shutdown_timeout != b.shutdown_timeout) d.applied.emplace_back("server.shutdown_timeout");
  if (a.auth_failure_limit != b.auth_failure_limit)
    d.applied.emplace_back("server.auth_failure_limit");
  if (a.auth_failure_window != b.auth_failure_window)
    d.applied.emplace_back("server.auth_failure_window");
  if (a.auth_failure_delay != b.auth_failure_delay)
    d.applied.emplace_back("server.auth_failure_delay");
  if (a.auth_failure_max_delay != b.auth_failure_max_delay)
    d.applied.emplace_back("server.auth_failure_max_delay");
  if (a.max_login_clients_per_address != b.max_login_clients_per_address)
    d.applied.emplace_back("server.max_login_clients_per_address");
  if (a.max_user_client_connections != b.max_user_client_connections)
    d.applied.emplace_back("server.max_user_client_connections");
  if (a.max_db_connections != b.max_db_connections)
    d.applied.emplace_back("server.max_db_connections");
  if (a.max_user_connections != b.max_user_connections)
    d.applied.emplace_back("server.max_user_connections");
  if (a.tcp_keepalive != b.tcp_keepalive) d.applied.emplace_back("server.tcp_keepalive");
  if (a.tcp_keepidle != b.tcp_keepidle) d.applied.emplace_back("server.tcp_keepidle");
  if (a.tcp_keepintvl != b.tcp_keepintvl) d.applied.emplace_back("server.tcp_keepintvl");
  if (a.tcp_keepcnt != b.tcp_keepcnt) d.applied.emplace_back("server.tcp_keepcnt");
  if (a.client_login_timeout != b.client_login_timeout)
    d.applied.emplace_back("server.client_login_timeout");
  if (a.caching_sha2_private_key != b.caching_sha2_private_key)
    d.applied.emplace_back("server.caching_sha2_private_key");
  if (!same_listeners(before.listeners, after.listeners)) d.restart.emplace_back("listener");
  const bool had_admin = before.admin.has_value();
  if (had_admin != after.admin.has_value() ||
      (had_admin && before.admin->listen.text != after.admin->listen.text)) {
    d.restart.emplace_back("admin.listen");
  }
  const bool had_metrics = before.metrics.has_value();
  if (had_metrics != after.metrics.has_value() ||
      (had_metrics && before.metrics->listen.text != after.metrics->listen.text)) {
    d.restart.emplace_back("metrics.listen");
  }
  if (had_admin && after.admin && before.admin->users != after.admin->users) {
    d.applied.emplace_back("admin.users");
  }
  const auto health_tuple = [](const std::optional<HealthConfig>& h) {
    return h ? std::make_tuple(true, h->interval, h->timeout, h->fall, h->rise, h->user,
                               h->password, h->database, h->per_protocol)
             : std::make_tuple(false, Duration{}, Duration{}, 0u, 0u, std::optional<std::string>{},
                               std::optional<std::string>{}, std::optional<std::string>{},
                               std::map<Protocol, HealthConfig::Login>{});
  };
  if (health_tuple(before.health) != health_tuple(after.health)) d.applied.emplace_back("health");
  const auto tls_tuple = [](const std::optional<TlsConfig>& t) {
    return t ? std::make_tuple(true, t->cert, t->key, t->ca, t->min_version, t->ciphers)
             : std::make_tuple(false, std::string(), std::string(), std::optional<std::string>(),
                               std::string(), std::string());
  };
  if (tls_tuple(before.tls) != tls_tuple(after.tls)) d.restart.emplace_back("tls");
  return d;
}

PoolConfig live_pool_config(const PoolConfig& before, const PoolConfig& after) {
  PoolConfig p = after;
  p.mode = before.mode;
  p.user = before.user;
  p.password = before.password;
  return p;
}

}  // namespace sqlmux::config
