// Loading and validating the sqlmux TOML configuration (see config.h): the
// public entry points, the order in which the Loader (loader.h) reads the
// sections, and the value syntaxes (durations, addresses) the schema uses.
#include "config/config.h"

#include <toml++/toml.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>
#include <tuple>
#include <utility>

#include "config/loader.h"

namespace sqlmux::config {
namespace detail {

bool is_hex(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
}

LoadResult Loader::run(const toml::table& root) {
  Config cfg;
  cfg.source = file_;
  check_keys(root, "",
             {"server", "listener", "user", "pool", "metrics", "admin", "health", "tls", "peers"});
  const toml::table* tls = table_at(root, "tls", "");
  if (tls != nullptr) read_tls(*tls, cfg);
  if (const toml::table* server = table_at(root, "server", "")) {
    read_server(*server, cfg.server);
  }

  const toml::array* listeners = table_array_at(root, "listener");
  if (root.get("listener") == nullptr) {
    error(root, "listener", "at least one [[listener]] is required");
  } else if (listeners != nullptr && listeners->empty()) {
    error(*listeners, "listener", "at least one [[listener]] is required");
  }
  for_each_table(listeners, "listener",
                 [&](const toml::table& t, const std::string& p) { read_listener(t, p, cfg); });
  for_each_table(table_array_at(root, "user"), "user",
                 [&](const toml::table& t, const std::string& p) { read_user(t, p, cfg); });
  for_each_table(table_array_at(root, "pool"), "pool",
                 [&](const toml::table& t, const std::string& p) { read_pool(t, p, cfg); });
  check_default_pools();
  if (const toml::table* metrics = table_at(root, "metrics", "")) {
    read_metrics(*metrics, cfg);
  }
  if (const toml::table* admin = table_at(root, "admin", "")) {
    read_admin(*admin, cfg);
  }
  if (const toml::table* health = table_at(root, "health", "")) {
    read_health(*health, cfg);
  }
  if (const toml::table* peers = table_at(root, "peers", "")) {
    read_peers(*peers, cfg);
  }

  std::stable_sort(errors_.begin(), errors_.end(), [](const ConfigError& a, const ConfigError& b) {
    return std::tie(a.line, a.column) < std::tie(b.line, b.column);
  });
  LoadResult result;
  result.errors = std::move(errors_);
  if (result.errors.empty()) {
    result.config = std::move(cfg);
  }
  return result;
}

}  // namespace detail

namespace {

template <typename Table, typename E>
std::string_view name_of(const Table& table, E value) {
  for (const auto& [name, v] : table) {
    if (v == value) {
      return name;
    }
  }
  return "unknown";
}

}  // namespace

using detail::is_hex;
using detail::kAuthMethods;
using detail::kClientTls;
using detail::kLogFormats;
using detail::kLogLevels;
using detail::kPoolModes;
using detail::kProtocols;
using detail::kRoutes;
using detail::Loader;

bool is_mysql_native_hash(std::string_view pw) {
  return pw.size() == 41 && pw[0] == '*' && is_hex(pw.substr(1));
}

std::string_view to_string(Protocol p) {
  return name_of(kProtocols, p);
}
std::string_view to_string(PoolMode m) {
  return name_of(kPoolModes, m);
}
std::string_view to_string(LogLevel l) {
  return name_of(kLogLevels, l);
}
std::string_view to_string(LogFormat f) {
  return name_of(kLogFormats, f);
}
std::string_view to_string(AuthMethod a) {
  return a == AuthMethod::Default ? "default" : name_of(kAuthMethods, a);
}

std::string_view to_string(ClientTls t) {
  return name_of(kClientTls, t);
}

std::string_view to_string(Route r) {
  return name_of(kRoutes, r);
}

const UserConfig* Config::find_user(std::string_view name) const {
  auto it =
      std::find_if(users.begin(), users.end(), [&](const UserConfig& u) { return u.name == name; });
  return it == users.end() ? nullptr : &*it;
}

uint32_t user_client_cap(const Config& cfg, const UserConfig& u) {
  return u.max_user_client_connections.value_or(cfg.server.max_user_client_connections);
}

uint32_t db_connection_cap(const Config& cfg, const PoolConfig& p) {
  return p.max_db_connections.value_or(cfg.server.max_db_connections);
}

uint32_t user_connection_cap(const Config& cfg, std::string_view server_user) {
  const UserConfig* u = cfg.find_user(server_user);
  if (u != nullptr && u->max_user_connections) return *u->max_user_connections;
  return cfg.server.max_user_connections;
}

std::string qualified_name(const PoolConfig& p) {
  return std::string(to_string(p.protocol)) + ":" + p.name;
}

HealthConfig::Login HealthConfig::login_for(Protocol p) const {
  Login out{user, password, database};
  const auto it = per_protocol.find(p);
  if (it == per_protocol.end()) return out;
  if (it->second.user) {
    out.user = it->second.user;
    out.password = it->second.password;  // a user brings its own password
  }
  if (it->second.database) out.database = it->second.database;
  return out;
}

const PoolConfig* Config::find_pool(std::string_view name, Protocol proto) const {
  auto it = std::find_if(pools.begin(), pools.end(), [&](const PoolConfig& p) {
    return p.name == name && p.protocol == proto;
  });
  return it == pools.end() ? nullptr : &*it;
}

std::string ConfigError::to_string() const {
  std::string out = file + ":" + std::to_string(line) + ":" + std::to_string(column) + ": ";
  if (!key.empty()) {
    out += key + ": ";
  }
  return out + message;
}

LoadResult load_string(std::string_view text, std::string_view source_name) {
  std::string file(source_name);
#if TOML_EXCEPTIONS
  try {
    toml::table root = toml::parse(text, std::string_view(file));
    return Loader(file).run(root);
  } catch (const toml::parse_error& e) {
    const toml::source_position& pos = e.source().begin;
    return LoadResult{std::nullopt,
                      {ConfigError{file, static_cast<int>(pos.line), static_cast<int>(pos.column),
                                   "", std::string(e.description())}}};
  }
#else
  toml::parse_result parsed = toml::parse(text, std::string_view(file));
  if (!parsed) {
    const toml::source_position& pos = parsed.error().source().begin;
    return LoadResult{std::nullopt,
                      {ConfigError{file, static_cast<int>(pos.line), static_cast<int>(pos.column),
                                   "", std::string(parsed.error().description())}}};
  }
  return Loader(file).run(parsed.table());
#endif
}

LoadResult load_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return LoadResult{
        std::nullopt,
        {ConfigError{path, 0, 0, "", std::string("cannot open file: ") + std::strerror(errno)}}};
  }
  std::ostringstream text;
  text << in.rdbuf();
  return load_string(text.str(), path);
}

std::optional<Duration> parse_duration(std::string_view text) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  size_t digits = 0;
  int64_t value = 0;
  for (; digits < text.size() && text[digits] >= '0' && text[digits] <= '9'; ++digits) {
    int digit = text[digits] - '0';
    if (value > (kMax - digit) / 10) {
      return std::nullopt;
    }
    value = value * 10 + digit;
  }
  if (digits == 0) {
    return std::nullopt;
  }
  std::string_view unit = text.substr(digits);
  constexpr std::array<std::pair<std::string_view, int64_t>, 4> kUnits{
      {{"ms", 1}, {"s", 1'000}, {"m", 60'000}, {"h", 3'600'000}}};
  for (const auto& [name, scale] : kUnits) {
    if (unit == name) {
      return value > kMax / scale ? std::nullopt : std::optional<Duration>(value * scale);
    }
  }
  return std::nullopt;
}

std::optional<Address> parse_address(std::string_view text) {
  Address addr;
  addr.text = std::string(text);
  if (text.starts_with("unix:")) {
    std::string_view path = text.substr(5);
    // sockaddr_un::sun_path holds 108 bytes including the terminating NUL.
    if (!path.starts_with('/') || path.size() > 107 || path.find('\0') != std::string_view::npos) {
      return std::nullopt;
    }
    addr.kind = Address::Kind::Unix;
    addr.unix_path = std::string(path);
    return addr;
  }
  std::string_view host, port;
  if (text.starts_with('[')) {
    size_t close = text.find(']');
    if (close == std::string_view::npos || text.substr(close + 1, 1) != ":") {
      return std::nullopt;
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
    bool ok = host.find(':') != std::string_view::npos &&
              std::all_of(host.begin(), host.end(), [](char c) {
                return std::isxdigit(static_cast<unsigned char>(c)) || c == ':' || c == '.';
              });
    if (!ok) {
      return std::nullopt;
    }
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      return std::nullopt;
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    bool ok = !host.empty() && std::all_of(host.begin(), host.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_';
    });
    if (!ok) {
      return std::nullopt;
    }
  }
  if (port.empty() || port.size() > 5 ||
      !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  int port_num = std::stoi(std::string(port));
  if (port_num < 1 || port_num > 65535) {
    return std::nullopt;
  }
  addr.host = std::string(host);
  addr.port = static_cast<uint16_t>(port_num);
  return addr;
}

}  // namespace sqlmux::config
