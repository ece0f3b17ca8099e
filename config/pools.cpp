// The Loader's readers of [[user]] and [[pool]] (see loader.h), with the
// checks across them: a user's default_pool names a pool.
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <limits>
#include <string>
#include <utility>

#include "config/loader.h"

namespace sqlmux::config::detail {
namespace {

bool is_md5_hash(std::string_view pw) {
  return pw.size() == 35 && pw.substr(0, 3) == "md5" && is_hex(pw.substr(3));
}

constexpr std::string_view kScramPrefix = "SCRAM-SHA-256$";

bool is_scram_verifier(std::string_view pw) {
  return pw.starts_with(kScramPrefix);
}

// SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>, salt and keys in base64.
bool is_well_formed_scram(std::string_view pw) {
  auto base64 = [](std::string_view s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '/' || c == '=';
    });
  };
  std::string_view rest = pw.substr(kScramPrefix.size());
  size_t colon1 = rest.find(':');
  size_t dollar = rest.find('$');
  if (colon1 == std::string_view::npos || dollar == std::string_view::npos || dollar < colon1) {
    return false;
  }
  std::string_view iterations = rest.substr(0, colon1);
  std::string_view salt = rest.substr(colon1 + 1, dollar - colon1 - 1);
  std::string_view keys = rest.substr(dollar + 1);
  size_t colon2 = keys.find(':');
  if (iterations.empty() || iterations.size() > 9 ||
      !std::all_of(iterations.begin(), iterations.end(),
                   [](char c) { return c >= '0' && c <= '9'; }) ||
      std::stoi(std::string(iterations)) < 1 || colon2 == std::string_view::npos) {
    return false;
  }
  return base64(salt) && base64(keys.substr(0, colon2)) && base64(keys.substr(colon2 + 1));
}

}  // namespace

void Loader::read_user(const toml::table& t, const std::string& path, Config& cfg) {
  check_keys(t, path,
             {"name", "password", "password_file", "password_env", "auth", "default_pool",
              "max_user_client_connections", "max_user_connections"});
  UserConfig u;
  if (const auto* node = read_string(t, "name", path, u.name, true, /*allow_empty=*/false)) {
    auto [it, fresh] = users_seen_.emplace(u.name, path);
    if (!fresh) {
      error(*node, child(path, "name"),
            "duplicate user " + quoted(u.name) + ", first defined in " + it->second);
    }
  }
  const toml::node* password = read_secret(t, path, u.password);
  const toml::node* auth = read_enum(t, "auth", path, kAuthMethods, u.auth);
  if (u.auth != AuthMethod::Trust && !has_secret(t)) {
    error(t, child(path, "password"),
          "required key is missing (unless auth = \"trust\"; or password_file, password_env)");
  } else if (u.auth != AuthMethod::Trust && password && u.password.empty()) {
    error(*password, child(path, "password"), "must not be empty (unless auth = \"trust\")");
  }
  if (password && is_scram_verifier(u.password) && !is_well_formed_scram(u.password)) {
    error(*password, child(path, "password"),
          "malformed SCRAM verifier; expected "
          "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>");
  }
  if (auth && u.auth == AuthMethod::ScramSha256 && is_md5_hash(u.password)) {
    error(*auth, child(path, "auth"),
          "\"scram-sha-256\" is impossible with an md5-hashed password; use auth = \"md5\", or a "
          "plaintext password or SCRAM verifier");
  }
  if (auth && u.auth == AuthMethod::Md5 && is_scram_verifier(u.password)) {
    error(*auth, child(path, "auth"),
          "\"md5\" is impossible with a SCRAM-SHA-256 verifier password; use auth = "
          "\"scram-sha-256\", or a plaintext password or md5 hash");
  }
  if (const auto* node = read_string(t, "default_pool", path, u.default_pool, false, false)) {
    default_pool_nodes_.emplace_back(node, child(path, "default_pool"));
  }
  if (t.get("max_user_client_connections") != nullptr) {
    uint32_t cap = 0;
    if (read_int(t, "max_user_client_connections", path, 0, std::numeric_limits<uint32_t>::max(),
                 cap) != nullptr) {
      u.max_user_client_connections = cap;
    }
  }
  if (t.get("max_user_connections") != nullptr) {
    uint32_t cap = 0;
    if (read_int(t, "max_user_connections", path, 0, std::numeric_limits<uint32_t>::max(), cap) !=
        nullptr) {
      u.max_user_connections = cap;
    }
  }
  cfg.users.push_back(std::move(u));
}

void Loader::read_pool(const toml::table& t, const std::string& path, Config& cfg) {
  check_keys(t, path,
             {"name",
              "protocol",
              "mode",
              "size",
              "min_idle",
              "reserve_pool_size",
              "reserve_pool_timeout",
              "max_db_connections",
              "database",
              "user",
              "password",
              "password_file",
              "password_env",
              "backends",
              "route",
              "query_wait_timeout",
              "client_idle_timeout",
              "idle_transaction_timeout",
              "transaction_timeout",
              "query_timeout",
              "server_idle_timeout",
              "server_lifetime",
              "server_connect_timeout",
              "max_prepared_statements",
              "server_tls",
              "server_tls_ca",
              "session_reconnect",
              "listen_pin",
              "auth_user",
              "auth_password",
              "auth_password_file",
              "auth_password_env",
              "auth_query",
              "auth_query_cache_ttl"});
  PoolConfig p;
  const auto* name = read_string(t, "name", path, p.name, true, /*allow_empty=*/false);
  read_enum(t, "protocol", path, kProtocols, p.protocol);
  if (name) {
    std::string id = std::string(to_string(p.protocol)) + "/" + p.name;
    auto [it, fresh] = pools_seen_.emplace(id, path);
    if (!fresh) {
      error(*name, child(path, "name"),
            "duplicate " + std::string(to_string(p.protocol)) + " pool " + quoted(p.name) +
                ", first defined in " + it->second);
    }
  }
  read_enum(t, "mode", path, kPoolModes, p.mode);
  constexpr int64_t kMax = std::numeric_limits<uint32_t>::max();
  bool size_ok = t.get("size") == nullptr || read_int(t, "size", path, 1, kMax, p.size);
  const toml::node* min_idle = read_int(t, "min_idle", path, 0, kMax, p.min_idle);
  if (min_idle && size_ok && p.min_idle > p.size) {
    error(*min_idle, child(path, "min_idle"),
          "min_idle (" + std::to_string(p.min_idle) + ") must not exceed size (" +
              std::to_string(p.size) + ")");
  }
  read_int(t, "reserve_pool_size", path, 0, 100000, p.reserve_pool_size);
  read_duration(t, "reserve_pool_timeout", path, p.reserve_pool_timeout);
  if (t.get("max_db_connections") != nullptr) {
    uint32_t cap = 0;
    if (read_int(t, "max_db_connections", path, 0, kMax, cap) != nullptr) {
      p.max_db_connections = cap;
    }
  }
  if (!read_string(t, "database", path, p.database, false, /*allow_empty=*/false)) {
    p.database = p.name;
  }
  std::string text;
  if (read_string(t, "user", path, text, false, /*allow_empty=*/false)) {
    p.user = text;
  }
  if (const auto* pw = read_secret(t, path, text)) {
    p.password = text;
    if (!p.user) {
      error(*pw, child(path, "password"),
            "set without user; the password belongs to the backend user");
    }
  }
  read_backends(t, path, p);
  const bool any_primary = std::any_of(p.backends.begin(), p.backends.end(),
                                       [](const BackendConfig& b) { return b.role == "primary"; });
  p.route = any_primary || p.backends.empty() ? Route::Primary : Route::Replica;
  read_enum(t, "route", path, kRoutes, p.route);
  read_duration(t, "query_wait_timeout", path, p.query_wait_timeout);
  read_duration(t, "client_idle_timeout", path, p.client_idle_timeout);
  read_duration(t, "idle_transaction_timeout", path, p.idle_transaction_timeout);
  read_duration(t, "transaction_timeout", path, p.transaction_timeout);
  read_duration(t, "query_timeout", path, p.query_timeout);
  read_duration(t, "server_idle_timeout", path, p.server_idle_timeout);
  read_duration(t, "server_lifetime", path, p.server_lifetime);
  read_duration(t, "server_connect_timeout", path, p.server_connect_timeout);
  (void)read_int(t, "max_prepared_statements", path, 1, kMax, p.max_prepared_statements);
  (void)read_bool(t, "session_reconnect", path, p.session_reconnect);
  (void)read_bool(t, "listen_pin", path, p.listen_pin);
  if (const toml::node* node = read_string(t, "server_tls", path, p.server_tls)) {
    static constexpr std::string_view kModes[] = {"disable", "prefer", "require", "verify-ca",
                                                  "verify-full"};
    if (std::find(std::begin(kModes), std::end(kModes), p.server_tls) == std::end(kModes)) {
      error(*node, child(path, "server_tls"),
            "invalid value " + quoted(p.server_tls) +
                "; expected one of: disable, prefer, require, verify-ca, verify-full");
    }
  }
  if (const toml::node* node =
          read_string(t, "server_tls_ca", path, p.server_tls_ca, false, /*allow_empty=*/false)) {
    if (::access(p.server_tls_ca.c_str(), R_OK) != 0) {
      error(*node, child(path, "server_tls_ca"),
            "cannot read " + quoted(p.server_tls_ca) + ": " + std::strerror(errno));
    }
  } else if (p.server_tls.rfind("verify", 0) == 0) {
    error(t, child(path, "server_tls_ca"),
          quoted(p.server_tls) + " needs server_tls_ca (the CA file that signed the server)");
  }
  read_auth_query(t, path, p);
  pool_names_.insert(p.name);
  cfg.pools.push_back(std::move(p));
}

// auth_user / auth_password / auth_query / auth_query_cache_ttl.
void Loader::read_auth_query(const toml::table& t, const std::string& path, PoolConfig& p) {
  std::string text;
  const toml::node* au = read_string(t, "auth_user", path, text, false, /*allow_empty=*/false);
  if (au != nullptr) p.auth_user = text;
  if (const auto* pw = read_secret(t, path, text, "auth_password")) {
    p.auth_password = text;
    if (!p.auth_user) {
      error(*pw, child(path, "auth_password"),
            "set without auth_user; the password belongs to auth_user");
    }
  }
  const toml::node* q = read_string(t, "auth_query", path, p.auth_query, false,
                                    /*allow_empty=*/false);
  if (q != nullptr && !p.auth_user) {
    error(*q, child(path, "auth_query"), "set without auth_user, which runs it");
  }
  if (const toml::node* ttl = t.get("auth_query_cache_ttl")) {
    read_duration(t, "auth_query_cache_ttl", path, p.auth_query_cache_ttl);
    if (p.auth_query_cache_ttl.count() <= 0) {
      error(*ttl, child(path, "auth_query_cache_ttl"), "must be positive");
    } else if (!p.auth_user) {
      error(*ttl, child(path, "auth_query_cache_ttl"), "set without auth_user");
    }
  }
  if (q == nullptr && p.protocol == Protocol::Mysql) p.auth_query = kMysqlAuthQuery;
  if (au == nullptr) return;
  if (p.user) {
    error(*au, child(path, "auth_user"),
          "set together with user; auth_query serves pools that log each client in as itself");
  } else if (p.protocol == Protocol::Mysql && p.server_tls != "disable") {
    error(*au, child(path, "auth_user"),
          "needs server_tls = \"disable\" in a MySQL pool: its auth_query lookup connects "
          "without TLS");
  }
}

void Loader::read_backends(const toml::table& t, const std::string& path, PoolConfig& p) {
  const toml::node* node = find(t, "backends", path, /*required=*/true);
  const std::string key = child(path, "backends");
  const toml::array* arr =
      node ? typed<toml::array>(*node, key, "an array of backend tables") : nullptr;
  if (arr && arr->empty()) {
    error(*arr, key, "at least one backend is required");
  }
  for_each_table(arr, key, [&](const toml::table& bt, const std::string& bpath) {
    check_keys(bt, bpath, {"address", "role", "weight"});
    BackendConfig b;
    const toml::node* addr = read_address(bt, "address", bpath, b.address);
    if (addr && b.address.kind == Address::Kind::Unix && p.protocol != Protocol::Postgres) {
      error(*addr, child(bpath, "address"),
            "unix sockets are supported for postgres backends only");
    }
    int role = 0;
    if (read_enum(bt, "role", bpath, kRoles, role)) {
      b.role = kRoles[role].first;
    }
    read_int(bt, "weight", bpath, 1, std::numeric_limits<int>::max(), b.weight);
    p.backends.push_back(std::move(b));
  });
}

void Loader::check_default_pools() {
  for (const auto& [node, key] : default_pool_nodes_) {
    const std::string& name = node->get();
    if (!pool_names_.contains(name)) {
      error(*node, key, "names no pool: " + quoted(name));
    }
  }
}

}  // namespace sqlmux::config::detail
