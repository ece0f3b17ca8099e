// Loading and validating the sqlmux TOML configuration (see config.h).
//
// The loader walks the parsed TOML tree once, filling a Config and collecting
// every problem it finds as a ConfigError that points at the offending node.
#include "config/config.h"
#include "config/secret.h"

#include <arpa/inet.h>
#include <toml++/toml.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <tuple>
#include <utility>

namespace sqlmux::config {
namespace {

constexpr std::array<std::pair<std::string_view, Protocol>, 2> kProtocols{{
    {"postgres", Protocol::Postgres},
    {"mysql", Protocol::Mysql},
}};
constexpr std::array<std::pair<std::string_view, PoolMode>, 3> kPoolModes{{
    {"session", PoolMode::Session},
    {"transaction", PoolMode::Transaction},
    {"statement", PoolMode::Statement},
}};
constexpr std::array<std::pair<std::string_view, LogLevel>, 4> kLogLevels{{
    {"error", LogLevel::Error},
    {"warn", LogLevel::Warn},
    {"info", LogLevel::Info},
    {"debug", LogLevel::Debug},
}};
constexpr std::array<std::pair<std::string_view, LogFormat>, 2> kLogFormats{{
    {"text", LogFormat::Text},
    {"json", LogFormat::Json},
}};
constexpr std::array<std::pair<std::string_view, AuthMethod>, 4> kAuthMethods{{
    {"scram-sha-256", AuthMethod::ScramSha256},
    {"md5", AuthMethod::Md5},
    {"password", AuthMethod::Password},
    {"trust", AuthMethod::Trust},
}};
constexpr std::array<std::pair<std::string_view, int>, 2> kRoles{{{"primary", 0}, {"replica", 1}}};
constexpr std::array<std::pair<std::string_view, ClientTls>, 3> kClientTls{{
    {"disable", ClientTls::Disable},
    {"allow", ClientTls::Allow},
    {"require", ClientTls::Require},
}};
constexpr std::array<std::pair<std::string_view, Route>, 3> kRoutes{{
    {"primary", Route::Primary},
    {"replica", Route::Replica},
    {"any", Route::Any},
}};

template <typename Table, typename E>
std::string_view name_of(const Table& table, E value) {
  for (const auto& [name, v] : table) {
    if (v == value) {
      return name;
    }
  }
  return "unknown";
}

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

std::string_view type_name(toml::node_type t) {
  constexpr std::array<std::string_view, 10> kNames{
      "nothing",   "a table", "an array", "a string",   "an integer", "a floating-point number",
      "a boolean", "a date",  "a time",   "a date-time"};
  auto i = static_cast<size_t>(t);
  return i < kNames.size() ? kNames[i] : "nothing";
}

// Levenshtein distance, for "did you mean" hints on misspelled keys.
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) {
    row[j] = j;
  }
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

bool is_hex(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
}

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

bool is_ip_literal(const std::string& host) {
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

std::string quoted(std::string_view s) {
  return "\"" + std::string(s) + "\"";
}

std::string child(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}

std::string indexed(std::string_view key, size_t i) {
  return std::string(key) + "[" + std::to_string(i) + "]";
}

class Loader {
 public:
  explicit Loader(std::string file) : file_(std::move(file)) {}

  LoadResult run(const toml::table& root) {
    Config cfg;
    cfg.source = file_;
    check_keys(
        root, "",
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

    std::stable_sort(errors_.begin(), errors_.end(),
                     [](const ConfigError& a, const ConfigError& b) {
                       return std::tie(a.line, a.column) < std::tie(b.line, b.column);
                     });
    LoadResult result;
    result.errors = std::move(errors_);
    if (result.errors.empty()) {
      result.config = std::move(cfg);
    }
    return result;
  }

 private:
  void error(const toml::node& at, std::string key, std::string message) {
    const toml::source_position& pos = at.source().begin;
    errors_.push_back(ConfigError{file_, static_cast<int>(pos.line), static_cast<int>(pos.column),
                                  std::move(key), std::move(message)});
  }

  void check_keys(const toml::table& t, const std::string& path,
                  std::initializer_list<std::string_view> known) {
    for (const auto& [toml_key, node] : t) {
      std::string_view key = toml_key.str();
      if (std::find(known.begin(), known.end(), key) != known.end()) {
        continue;
      }
      std::string message = "unknown key; known keys: " + join(known);
      auto best = std::min_element(known.begin(), known.end(), [key](auto a, auto b) {
        return edit_distance(key, a) < edit_distance(key, b);
      });
      if (best != known.end() && edit_distance(key, *best) <= 2) {
        message += " (did you mean " + quoted(*best) + "?)";
      }
      error(node, child(path, key), message);
    }
  }

  // The node for `key`, or nullptr; reports a missing required key at the table.
  const toml::node* find(const toml::table& t, std::string_view key, const std::string& path,
                         bool required) {
    const toml::node* node = t.get(key);
    if (node == nullptr && required) {
      error(t, child(path, key), "required key is missing");
    }
    return node;
  }

  template <typename T>
  const T* typed(const toml::node& node, const std::string& key, std::string_view expected) {
    if (const T* v = node.as<T>()) {
      return v;
    }
    error(node, key,
          "expected " + std::string(expected) + ", got " + std::string(type_name(node.type())));
    return nullptr;
  }

  const toml::table* table_at(const toml::table& t, std::string_view key, const std::string& path) {
    const toml::node* node = t.get(key);
    return node ? typed<toml::table>(*node, child(path, key), "a table") : nullptr;
  }

  const toml::array* table_array_at(const toml::table& root, std::string_view key) {
    const toml::node* node = root.get(key);
    if (node == nullptr) {
      return nullptr;
    }
    const toml::array* arr = node->as_array();
    if (arr == nullptr) {
      error(*node, std::string(key),
            "expected an array of tables ([[" + std::string(key) + "]]), got " +
                std::string(type_name(node->type())));
    }
    return arr;
  }

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
                                              bool required = false, bool allow_empty = true) {
    const toml::node* node = find(t, key, path, required);
    if (node == nullptr) {
      return nullptr;
    }
    const auto* v = typed<toml::value<std::string>>(*node, child(path, key), "a string");
    if (v == nullptr) {
      return nullptr;
    }
    if (!allow_empty && v->get().empty()) {
      error(*node, child(path, key), "must not be empty");
      return nullptr;
    }
    out = v->get();
    return v;
  }

  // A password: `password` itself, or read from `password_file` or the
  // environment variable `password_env` (exactly one of the three). The
  // node of the key that gave it, or nullptr (none given, or an error).
  const toml::node* read_secret(const toml::table& t, const std::string& path, std::string& out,
                                const std::string& base = "password") {
    const std::string keys[] = {base, base + "_file", base + "_env"};
    const toml::node* found = nullptr;
    std::string found_key;
    for (const std::string& key : keys) {
      const toml::node* n = t.get(key);
      if (n == nullptr) continue;
      if (found != nullptr) {
        error(*n, child(path, key),
              "set together with " + found_key + "; give only one of " + keys[0] + ", " + keys[1] +
                  ", " + keys[2]);
        return nullptr;
      }
      found = n;
      found_key = key;
    }
    if (found == nullptr) return nullptr;
    std::string text;
    const auto* v = read_string(t, found_key, path, text);
    if (v == nullptr) return nullptr;
    if (found_key == base) {
      out = std::move(text);
      return v;
    }
    std::string err;
    const bool ok =
        found_key == keys[1] ? read_secret_file(text, out, err) : read_secret_env(text, out, err);
    if (!ok) {
      error(*v, child(path, found_key), err);
      return nullptr;
    }
    return v;
  }

  static bool has_secret(const toml::table& t) {
    return t.get("password") != nullptr || t.get("password_file") != nullptr ||
           t.get("password_env") != nullptr;
  }

  const toml::node* read_bool(const toml::table& t, std::string_view key, const std::string& path,
                              bool& out) {
    const toml::node* node = t.get(key);
    if (node == nullptr) return nullptr;
    const auto* v = typed<toml::value<bool>>(*node, child(path, key), "a boolean");
    if (v == nullptr) return nullptr;
    out = v->get();
    return node;
  }

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
                     Duration& out) {
    const toml::node* node = t.get(key);
    if (node == nullptr) {
      return;
    }
    const auto* v = node->as_string();
    std::optional<Duration> d = v ? parse_duration(v->get()) : std::nullopt;
    if (d) {
      out = *d;
    } else if (v) {
      error(*node, child(path, key),
            "invalid duration " + quoted(v->get()) +
                "; expected a duration such as \"30s\" (units: ms, s, m, h)");
    } else {
      error(*node, child(path, key),
            "expected a duration such as \"30s\", got " + std::string(type_name(node->type())));
    }
  }

  const toml::node* read_address(const toml::table& t, std::string_view key,
                                 const std::string& path, Address& out) {
    std::string text;
    const auto* node = read_string(t, key, path, text, /*required=*/true);
    if (node == nullptr) {
      return nullptr;
    }
    if (std::optional<Address> addr = parse_address(text)) {
      out = std::move(*addr);
      return node;
    }
    error(*node, child(path, key),
          "invalid address " + quoted(text) +
              "; expected host:port, [ipv6]:port or unix:/absolute/path (port 1-65535)");
    return nullptr;
  }

  void read_server(const toml::table& t, ServerConfig& s) {
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
    read_int(t, "max_client_conn", path, 1, std::numeric_limits<uint32_t>::max(),
             s.max_client_conn);
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

  void read_metrics(const toml::table& t, Config& cfg) {
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

  void read_tls(const toml::table& t, Config& cfg) {
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

  void read_listener(const toml::table& t, const std::string& path, Config& cfg) {
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

  void read_user(const toml::table& t, const std::string& path, Config& cfg) {
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

  void read_pool(const toml::table& t, const std::string& path, Config& cfg) {
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
    const bool any_primary =
        std::any_of(p.backends.begin(), p.backends.end(),
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
  void read_auth_query(const toml::table& t, const std::string& path, PoolConfig& p) {
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

  void read_backends(const toml::table& t, const std::string& path, PoolConfig& p) {
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

  // user / password / database of [health] or [health.<protocol>].
  void read_health_login(const toml::table& t, const std::string& path, HealthConfig::Login& out,
                         bool nested) {
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

  void read_health(const toml::table& t, Config& cfg) {
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
  void read_peers(const toml::table& t, Config& cfg) {
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

  void read_admin(const toml::table& t, Config& cfg) {
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

  void check_default_pools() {
    for (const auto& [node, key] : default_pool_nodes_) {
      const std::string& name = node->get();
      if (!pool_names_.contains(name)) {
        error(*node, key, "names no pool: " + quoted(name));
      }
    }
  }

  std::string file_;
  std::vector<ConfigError> errors_;
  std::map<std::string, std::string> listen_seen_, users_seen_, pools_seen_;
  std::set<std::string> pool_names_;
  std::vector<std::pair<const toml::value<std::string>*, std::string>> default_pool_nodes_;
};

}  // namespace

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
