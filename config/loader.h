// The TOML loader behind load_string / load_file (config.h); internal to
// config/. It walks the parsed TOML tree once, filling a Config and
// collecting every problem it finds as a ConfigError that points at the
// offending node. Its parts:
//   config.cpp     run(): the order the sections are read in; the public API
//   toml_read.cpp  typed readers of one key (string, integer, duration, ...)
//   sections.cpp   [server], [tls], [[listener]], [metrics], [admin],
//                  [health], [peers]
//   pools.cpp      [[user]], [[pool]] and their cross-checks
#pragma once

#include <toml++/toml.h>

#include <array>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/config.h"

namespace sqlmux::config::detail {

inline constexpr std::array<std::pair<std::string_view, Protocol>, 2> kProtocols{{
    {"postgres", Protocol::Postgres},
    {"mysql", Protocol::Mysql},
}};
inline constexpr std::array<std::pair<std::string_view, PoolMode>, 3> kPoolModes{{
    {"session", PoolMode::Session},
    {"transaction", PoolMode::Transaction},
    {"statement", PoolMode::Statement},
}};
inline constexpr std::array<std::pair<std::string_view, LogLevel>, 4> kLogLevels{{
    {"error", LogLevel::Error},
    {"warn", LogLevel::Warn},
    {"info", LogLevel::Info},
    {"debug", LogLevel::Debug},
}};
inline constexpr std::array<std::pair<std::string_view, LogFormat>, 2> kLogFormats{{
    {"text", LogFormat::Text},
    {"json", LogFormat::Json},
}};
inline constexpr std::array<std::pair<std::string_view, AuthMethod>, 4> kAuthMethods{{
    {"scram-sha-256", AuthMethod::ScramSha256},
    {"md5", AuthMethod::Md5},
    {"password", AuthMethod::Password},
    {"trust", AuthMethod::Trust},
}};
inline constexpr std::array<std::pair<std::string_view, int>, 2> kRoles{
    {{"primary", 0}, {"replica", 1}}};
inline constexpr std::array<std::pair<std::string_view, ClientTls>, 3> kClientTls{{
    {"disable", ClientTls::Disable},
    {"allow", ClientTls::Allow},
    {"require", ClientTls::Require},
}};
inline constexpr std::array<std::pair<std::string_view, Route>, 3> kRoutes{{
    {"primary", Route::Primary},
    {"replica", Route::Replica},
    {"any", Route::Any},
}};

template <typename Range>
std::string join(const Range& items) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) {
      out += ", ";
    }
    if constexpr (requires { item.first; }) {
      out += item.first;
    } else {
      out += item;
    }
  }
  return out;
}

// "a table", "an integer", ...: a TOML node type in an error message.
std::string_view type_name(toml::node_type t);
bool is_hex(std::string_view s);
std::string quoted(std::string_view s);
// "pool[0]" + "name" -> "pool[0].name" (the key an error names).
std::string child(const std::string& path, std::string_view key);
// "pool", 2 -> "pool[2]".
std::string indexed(std::string_view key, size_t i);

class Loader {
 public:
  explicit Loader(std::string file) : file_(std::move(file)) {}

  LoadResult run(const toml::table& root);

 private:
  // toml_read.cpp
  void error(const toml::node& at, std::string key, std::string message);
  void check_keys(const toml::table& t, const std::string& path,
                  std::initializer_list<std::string_view> known);
  // The node for `key`, or nullptr; reports a missing required key at the table.
  const toml::node* find(const toml::table& t, std::string_view key, const std::string& path,
                         bool required);
  template <typename T>
  const T* typed(const toml::node& node, const std::string& key, std::string_view expected) {
    if (const T* v = node.as<T>()) {
      return v;
    }
    error(node, key,
          "expected " + std::string(expected) + ", got " + std::string(type_name(node.type())));
    return nullptr;
  }

  const toml::table* table_at(const toml::table& t, std::string_view key, const std::string& path);
  const toml::array* table_array_at(const toml::table& root, std::string_view key);
  template <typename Fn>
  void for_each_table(const toml::array* arr, std::string_view key, Fn&& fn) {
    if (arr == nullptr) {
      return;
    }
    for (size_t i = 0; i < arr->size(); ++i) {
      if (const toml::table* t = typed<toml::table>(*arr->get(i), indexed(key, i), "a table")) {
        fn(*t, indexed(key, i));
      }
    }
  }

  const toml::value<std::string>* read_string(const toml::table& t, std::string_view key,
                                              const std::string& path, std::string& out,
                                              bool required = false, bool allow_empty = true);
  // A password: `password` itself, or read from `password_file` or the
  // environment variable `password_env` (exactly one of the three). The
  // node of the key that gave it, or nullptr (none given, or an error).
  const toml::node* read_secret(const toml::table& t, const std::string& path, std::string& out,
                                const std::string& base = "password");
  static bool has_secret(const toml::table& t);
  const toml::node* read_bool(const toml::table& t, std::string_view key, const std::string& path,
                              bool& out);
  template <typename T>
  const toml::node* read_int(const toml::table& t, std::string_view key, const std::string& path,
                             int64_t lo, int64_t hi, T& out) {
    const toml::node* node = t.get(key);
    if (node == nullptr) {
      return nullptr;
    }
    const auto* v = typed<toml::value<int64_t>>(*node, child(path, key), "an integer");
    if (v == nullptr) {
      return nullptr;
    }
    if (v->get() < lo || v->get() > hi) {
      std::string range = hi >= std::numeric_limits<int32_t>::max()
                              ? "at least " + std::to_string(lo)
                              : std::to_string(lo) + " to " + std::to_string(hi);
      error(*node, child(path, key),
            "value " + std::to_string(v->get()) + " is out of range; expected " + range);
      return nullptr;
    }
    out = static_cast<T>(v->get());
    return node;
  }

  template <typename Table, typename E>
  const toml::node* read_enum(const toml::table& t, std::string_view key, const std::string& path,
                              const Table& names, E& out, bool required = false) {
    std::string text;
    const auto* node = read_string(t, key, path, text, required);
    if (node == nullptr) {
      return nullptr;
    }
    for (const auto& [name, value] : names) {
      if (name == text) {
        out = value;
        return node;
      }
    }
    error(*node, child(path, key),
          "invalid value " + quoted(text) + "; expected one of: " + join(names));
    return nullptr;
  }

  void read_duration(const toml::table& t, std::string_view key, const std::string& path,
                     Duration& out);
  const toml::node* read_address(const toml::table& t, std::string_view key,
                                 const std::string& path, Address& out);

  // sections.cpp
  void read_server(const toml::table& t, ServerConfig& s);
  void read_metrics(const toml::table& t, Config& cfg);
  void read_tls(const toml::table& t, Config& cfg);
  void read_listener(const toml::table& t, const std::string& path, Config& cfg);
  // user / password / database of [health] or [health.<protocol>].
  void read_health_login(const toml::table& t, const std::string& path, HealthConfig::Login& out,
                         bool nested);
  void read_health(const toml::table& t, Config& cfg);
  // [peers]: `<peer_id> = "ip:port"` for each instance (README "Running
  // several instances").
  void read_peers(const toml::table& t, Config& cfg);
  void read_admin(const toml::table& t, Config& cfg);

  // pools.cpp
  void read_user(const toml::table& t, const std::string& path, Config& cfg);
  void read_pool(const toml::table& t, const std::string& path, Config& cfg);
  // auth_user / auth_password / auth_query / auth_query_cache_ttl.
  void read_auth_query(const toml::table& t, const std::string& path, PoolConfig& p);
  void read_backends(const toml::table& t, const std::string& path, PoolConfig& p);
  void check_default_pools();

  std::string file_;
  std::vector<ConfigError> errors_;
  std::map<std::string, std::string> listen_seen_, users_seen_, pools_seen_;
  std::set<std::string> pool_names_;
  std::vector<std::pair<const toml::value<std::string>*, std::string>> default_pool_nodes_;
};

}  // namespace sqlmux::config::detail
