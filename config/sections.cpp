// The Loader's readers of the instance-wide sections (see loader.h):
// [server], [tls], [[listener]], [metrics], [admin], [health] and [peers].
#include <arpa/inet.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <utility>

#include "config/loader.h"

namespace sqlmux::config::detail {
namespace {

bool is_ip_literal(const std::string& host) {
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

}  // namespace

void Loader::read_server(const toml::table& t, ServerConfig& s) {
  const std::string path = "server";
  check_keys(t, path,
             {"workers",
              "max_client_conn",
              "log_level",
              "log_format",
              "log_connections",
              "log_disconnections",
              "shutdown_timeout",
              "upgrade_socket",
              "auth_failure_limit",
              "auth_failure_window",
              "auth_failure_delay",
              "auth_failure_max_delay",
              "max_login_clients_per_address",
              "peer_id",
              "peer_secret",
              "peer_secret_file",
              "peer_secret_env",
              "max_user_client_connections",
              "max_db_connections",
              "max_user_connections",
              "client_login_timeout",
              "query_digests",
              "query_digests_max",
              "tcp_keepalive",
              "tcp_keepidle",
              "tcp_keepintvl",
              "tcp_keepcnt",
              "caching_sha2_private_key"});
  if (const toml::node* node = read_string(t, "caching_sha2_private_key", path,
                                           s.caching_sha2_private_key, false, false);
      node != nullptr && ::access(s.caching_sha2_private_key.c_str(), R_OK) != 0) {
    error(*node, child(path, "caching_sha2_private_key"),
          "cannot read " + quoted(s.caching_sha2_private_key) + ": " + std::strerror(errno));
  }
  read_int(t, "workers", path, 0, 256, s.workers);
  read_int(t, "max_client_conn", path, 1, std::numeric_limits<uint32_t>::max(), s.max_client_conn);
  read_enum(t, "log_level", path, kLogLevels, s.log_level);
  read_enum(t, "log_format", path, kLogFormats, s.log_format);
  (void)read_bool(t, "log_connections", path, s.log_connections);
  (void)read_bool(t, "log_disconnections", path, s.log_disconnections);
  read_duration(t, "shutdown_timeout", path, s.shutdown_timeout);
  if (const auto* node = read_string(t, "upgrade_socket", path, s.upgrade_socket, false,
                                     /*allow_empty=*/false)) {
    // sockaddr_un's sun_path holds 107 bytes and a NUL.
    if (s.upgrade_socket.front() != '/' || s.upgrade_socket.size() > 107) {
      error(*node, child(path, "upgrade_socket"),
            "expected an absolute path of at most 107 bytes, got " + quoted(s.upgrade_socket));
      s.upgrade_socket.clear();
    }
  }
  read_int(t, "auth_failure_limit", path, 0, 1000000, s.auth_failure_limit);
  read_duration(t, "auth_failure_window", path, s.auth_failure_window);
  if (const toml::node* n = t.get("auth_failure_window");
      n != nullptr && s.auth_failure_window.count() < 1000) {
    error(*n, child(path, "auth_failure_window"),
          "expected at least 1s, got " + quoted(n->as_string()->get()));
  }
  (void)read_bool(t, "query_digests", path, s.query_digests);
  read_int(t, "query_digests_max", path, 1, 1000000, s.query_digests_max);
  read_duration(t, "auth_failure_delay", path, s.auth_failure_delay);
  read_duration(t, "auth_failure_max_delay", path, s.auth_failure_max_delay);
  // Below the login timeout (60s), so that a late failure is still answered.
  if (const toml::node* n = t.get("auth_failure_max_delay");
      n != nullptr && s.auth_failure_max_delay.count() > 30000) {
    error(*n, child(path, "auth_failure_max_delay"),
          "expected at most 30s, got " + quoted(n->as_string()->get()));
  } else if (const toml::node* d = t.get("auth_failure_delay");
             d != nullptr && d->as_string() != nullptr &&
             s.auth_failure_delay > s.auth_failure_max_delay) {
    error(*d, child(path, "auth_failure_delay"),
          "expected at most auth_failure_max_delay (" +
              std::to_string(s.auth_failure_max_delay.count()) + "ms), got " +
              quoted(d->as_string()->get()));
  }
  read_int(t, "peer_id", path, 0, 16383, s.peer_id);
  if (const toml::node* n = read_secret(t, path, s.peer_secret, "peer_secret")) {
    if (s.peer_secret.size() < 16) {
      error(*n, child(path, "peer_secret"),
            "expected at least 16 characters (the instances' shared key for forwarded KILLs)");
    } else if (s.peer_id == 0) {
      error(*n, child(path, "peer_secret"), "needs server.peer_id: this instance's own id");
    }
  }
  (void)read_bool(t, "tcp_keepalive", path, s.tcp_keepalive);
  read_int(t, "tcp_keepidle", path, 0, 32767, s.tcp_keepidle);
  read_int(t, "tcp_keepintvl", path, 0, 32767, s.tcp_keepintvl);
  read_int(t, "tcp_keepcnt", path, 0, 127, s.tcp_keepcnt);
  read_int(t, "max_login_clients_per_address", path, 0, 1000000, s.max_login_clients_per_address);
  read_int(t, "max_user_client_connections", path, 0, std::numeric_limits<uint32_t>::max(),
           s.max_user_client_connections);
  read_int(t, "max_db_connections", path, 0, std::numeric_limits<uint32_t>::max(),
           s.max_db_connections);
  read_int(t, "max_user_connections", path, 0, std::numeric_limits<uint32_t>::max(),
           s.max_user_connections);
  read_duration(t, "client_login_timeout", path, s.client_login_timeout);
  // A late failure's answer is not cut short by the login timeout.
  if (const toml::node* n = t.get("client_login_timeout");
      n != nullptr && s.client_login_timeout.count() != 0 &&
      s.client_login_timeout <= s.auth_failure_max_delay) {
    error(*n, child(path, "client_login_timeout"),
          "expected 0 (off) or more than auth_failure_max_delay (" +
              std::to_string(s.auth_failure_max_delay.count()) + "ms), got " +
              quoted(n->as_string()->get()));
  }
}

void Loader::read_metrics(const toml::table& t, Config& cfg) {
  const std::string path = "metrics";
  check_keys(t, path, {"listen", "query_digests_top"});
  MetricsConfig m;
  read_int(t, "query_digests_top", path, 0, 10000, m.query_digests_top);
  std::string text;
  const auto* node = read_string(t, "listen", path, text, /*required=*/true);
  if (node == nullptr) {
    return;
  }
  std::optional<Address> addr = parse_address(text);
  if (!addr || addr->kind != Address::Kind::Tcp || !is_ip_literal(addr->host)) {
    error(*node, child(path, "listen"),
          "invalid address " + quoted(text) +
              "; expected ip:port or [ipv6]:port, e.g. \"127.0.0.1:9930\" (port 1-65535)");
    return;
  }
  if (auto it = listen_seen_.find(addr->text); it != listen_seen_.end()) {
    error(*node, child(path, "listen"), "same address as " + it->second);
    return;
  }
  m.listen = std::move(*addr);
  cfg.metrics = std::move(m);
}

void Loader::read_tls(const toml::table& t, Config& cfg) {
  const std::string path = "tls";
  check_keys(t, path, {"cert", "key", "ca", "min_version", "ciphers"});
  TlsConfig c;
  auto file = [&](std::string_view key, std::string& out, bool required) {
    const toml::node* node = read_string(t, key, path, out, required, /*allow_empty=*/false);
    if (node != nullptr && ::access(out.c_str(), R_OK) != 0) {
      error(*node, child(path, key), "cannot read " + quoted(out) + ": " + std::strerror(errno));
    }
    return node != nullptr;
  };
  file("cert", c.cert, true);
  file("key", c.key, true);
  std::string ca;
  if (file("ca", ca, false)) c.ca = ca;
  if (const toml::node* node = read_string(t, "min_version", path, c.min_version)) {
    if (c.min_version != "1.2" && c.min_version != "1.3") {
      error(*node, child(path, "min_version"),
            "invalid value " + quoted(c.min_version) + "; expected one of: 1.2, 1.3");
    }
  }
  read_string(t, "ciphers", path, c.ciphers);
  cfg.tls = std::move(c);
}

void Loader::read_listener(const toml::table& t, const std::string& path, Config& cfg) {
  check_keys(t, path, {"protocol", "listen", "client_tls"});
  ListenerConfig l;
  read_enum(t, "protocol", path, kProtocols, l.protocol, /*required=*/true);
  l.client_tls = cfg.tls ? ClientTls::Allow : ClientTls::Disable;
  if (const toml::node* node = read_enum(t, "client_tls", path, kClientTls, l.client_tls)) {
    if (l.client_tls != ClientTls::Disable && !cfg.tls) {
      error(*node, child(path, "client_tls"),
            quoted(to_string(l.client_tls)) + " needs a [tls] table (cert and key)");
    }
  }
  if (const toml::node* node = read_address(t, "listen", path, l.listen)) {
    auto [it, fresh] = listen_seen_.emplace(l.listen.text, path);
    if (!fresh) {
      error(*node, child(path, "listen"), "same address as " + it->second);
    }
  }
  cfg.listeners.push_back(std::move(l));
}

// user / password / database of [health] or [health.<protocol>].
void Loader::read_health_login(const toml::table& t, const std::string& path,
                               HealthConfig::Login& out, bool nested) {
  if (nested) {
    check_keys(t, path, {"user", "password", "password_file", "password_env", "database"});
  }
  std::string text;
  if (read_string(t, "user", path, text, false, /*allow_empty=*/false)) out.user = text;
  if (const auto* pw = read_secret(t, path, text)) {
    out.password = text;
    if (!out.user)
      error(*pw, child(path, "password"),
            "set without user; the password belongs to " + child(path, "user"));
  }
  if (read_string(t, "database", path, text, false, /*allow_empty=*/false)) out.database = text;
}

void Loader::read_health(const toml::table& t, Config& cfg) {
  const std::string path = "health";
  check_keys(t, path,
             {"interval", "timeout", "fall", "rise", "user", "password", "password_file",
              "password_env", "database", "postgres", "mysql"});
  HealthConfig h;
  read_duration(t, "interval", path, h.interval);
  read_duration(t, "timeout", path, h.timeout);
  for (auto [key, d] : {std::pair<const char*, Duration>{"interval", h.interval},
                        std::pair<const char*, Duration>{"timeout", h.timeout}}) {
    if (d.count() <= 0 && t.get(key) != nullptr)
      error(*t.get(key), child(path, key), "must be positive");
  }
  read_int(t, "fall", path, 1, 1000, h.fall);
  read_int(t, "rise", path, 1, 1000, h.rise);
  HealthConfig::Login top;
  read_health_login(t, path, top, /*nested=*/false);
  h.user = top.user;
  h.password = top.password;
  h.database = top.database;
  for (const auto& [name, proto] : kProtocols) {
    if (const toml::table* sub = table_at(t, name, path)) {
      read_health_login(*sub, child(path, name), h.per_protocol[proto], /*nested=*/true);
    }
  }
  // Each protocol's hosts need a login: the pool's own, or one from
  // [health] / [health.<protocol>].
  for (const PoolConfig& p : cfg.pools) {
    if (!p.user && !h.login_for(p.protocol).user) {
      const std::string proto(to_string(p.protocol));
      error(t, child(path, "user"),
            "health checks need a login: set health.user (or health." + proto +
                ".user), or user on " + proto + " pool " + quoted(p.name) +
                " (which logs in as each client)");
      break;
    }
  }
  // A database name rarely exists on both kinds of server: health.database
  // shared by postgres and mysql hosts is a mistake that marks one side down.
  if (h.database) {
    int sharing = 0;
    for (const auto& entry : kProtocols) {
      const Protocol proto = entry.second;
      const bool used = std::any_of(cfg.pools.begin(), cfg.pools.end(),
                                    [proto](const PoolConfig& p) { return p.protocol == proto; });
      const auto it = h.per_protocol.find(proto);
      if (used && (it == h.per_protocol.end() || !it->second.database)) {
        ++sharing;
      }
    }
    if (sharing > 1) {
      error(*t.get("database"), child(path, "database"),
            "applies to postgres and mysql hosts alike, and one database name rarely exists "
            "on both kinds of server; set database in [health.postgres] and [health.mysql] "
            "instead");
    }
  }
  cfg.health = std::move(h);
}

// [peers]: `<peer_id> = "ip:port"` for each instance (README "Running
// several instances").
void Loader::read_peers(const toml::table& t, Config& cfg) {
  for (const auto& [toml_key, node] : t) {
    const std::string key(toml_key.str());
    const std::string path = child("peers", key);
    uint32_t id = 0;
    const bool digits =
        !key.empty() && key.size() <= 5 &&
        std::all_of(key.begin(), key.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (digits) id = static_cast<uint32_t>(std::stoul(key));
    if (!digits || id < 1 || id > 16383) {
      error(node, path, "expected a peer_id from 1 to 16383 as the key");
      continue;
    }
    Address a;
    if (read_address(t, key, "peers", a) == nullptr) continue;
    if (a.kind != Address::Kind::Tcp || !is_ip_literal(a.host)) {
      error(node, path, "expected an IP address and port, got " + quoted(a.text));
      continue;
    }
    cfg.peers[id] = std::move(a);
  }
  if (!cfg.peers.empty() && cfg.server.peer_id == 0) {
    error(t, "peers", "[peers] needs server.peer_id: this instance's own id");
  }
}

void Loader::read_admin(const toml::table& t, Config& cfg) {
  const std::string path = "admin";
  check_keys(t, path, {"listen", "users"});
  AdminConfig a;
  if (const toml::node* node = read_address(t, "listen", path, a.listen)) {
    auto [it, fresh] = listen_seen_.emplace(a.listen.text, path);
    if (!fresh) {
      error(*node, child(path, "listen"), "same address as " + it->second);
    }
  }
  const toml::node* node = find(t, "users", path, /*required=*/true);
  const std::string key = child(path, "users");
  const toml::array* arr =
      node ? typed<toml::array>(*node, key, "an array of user names") : nullptr;
  if (arr && arr->empty()) {
    error(*arr, key, "at least one user is required");
  }
  for (size_t i = 0; arr && i < arr->size(); ++i) {
    const auto* v = typed<toml::value<std::string>>(*arr->get(i), indexed(key, i), "a string");
    if (v == nullptr) {
      continue;
    }
    if (!users_seen_.contains(v->get())) {
      error(*v, indexed(key, i), "names no [[user]]: " + quoted(v->get()));
    }
    a.users.push_back(v->get());
  }
  cfg.admin = std::move(a);
}

}  // namespace sqlmux::config::detail
