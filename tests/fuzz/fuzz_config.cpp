// libFuzzer target: the TOML configuration loader (config/config.cpp).
//
// The whole input is a configuration file for load_string, and is also given
// as text to parse_duration and parse_address.
//
// load_string must report every problem as a ConfigError: it catches
// toml++'s parse errors itself. Nothing here catches exceptions, so one that
// escapes the loader (std::terminate, reported by libFuzzer as a deadly
// signal) is a bug in the loader.
//
// Invariants (a failure traps):
// - a config is returned exactly when there are no errors, every error has
//   the source name and a message, and errors are sorted by position;
// - a returned config satisfies the documented constraints (listeners,
//   backends, min_idle <= size, unique user names, ...);
// - parse_duration / parse_address results are in range and parse again to
//   the same value when formatted.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "config/config.h"

using namespace sqlmux::config;

namespace {

void check(bool ok) {
  if (!ok) {
    __builtin_trap();
  }
}

void check_address(const Address& a) {
  if (a.kind == Address::Kind::Unix) {
    check(!a.unix_path.empty() && a.unix_path[0] == '/' && a.unix_path.size() <= 107);
    check(a.text == "unix:" + a.unix_path);
  } else {
    check(!a.host.empty() && a.port >= 1);
  }
}

void fuzz_load(std::string_view text) {
  LoadResult r = load_string(text, "fuzz.toml");
  check(r.config.has_value() == r.errors.empty());
  for (size_t i = 0; i < r.errors.size(); ++i) {
    const ConfigError& e = r.errors[i];
    check(e.file == "fuzz.toml" && !e.message.empty());
    check(e.line >= 0 && e.column >= 0);
    check(!e.to_string().empty());
    if (i > 0) {
      const ConfigError& p = r.errors[i - 1];
      check(p.line < e.line || (p.line == e.line && p.column <= e.column));
    }
  }
  if (!r.config) {
    return;
  }
  const Config& c = *r.config;
  check(c.source == "fuzz.toml");
  check(c.server.workers >= 0 && c.server.workers <= 256);
  check(c.server.max_client_conn >= 1);
  check(c.server.shutdown_timeout.count() >= 0);
  check(!c.listeners.empty());
  std::set<std::string> listen;
  for (const ListenerConfig& l : c.listeners) {
    check_address(l.listen);
    check(listen.insert(l.listen.text).second);
  }
  std::set<std::string> users;
  for (const UserConfig& u : c.users) {
    check(!u.name.empty() && users.insert(u.name).second);
    check(c.find_user(u.name) == &u);
    check(u.auth == AuthMethod::Trust || !u.password.empty());
    if (!u.default_pool.empty()) {
      bool found = false;
      for (const PoolConfig& p : c.pools) {
        found = found || p.name == u.default_pool;
      }
      check(found);
    }
  }
  std::set<std::pair<int, std::string>> pools;
  for (const PoolConfig& p : c.pools) {
    check(!p.name.empty() && !p.database.empty());
    check(pools.insert({static_cast<int>(p.protocol), p.name}).second);
    check(c.find_pool(p.name, p.protocol) == &p);
    check(p.size >= 1 && p.min_idle <= p.size);
    check(!p.password || p.user);
    check(!p.backends.empty());
    for (const BackendConfig& b : p.backends) {
      check_address(b.address);
      check(b.address.kind == Address::Kind::Tcp || p.protocol == Protocol::Postgres);
      check(b.weight >= 1);
      check(b.role == "primary" || b.role == "replica");
    }
    for (Duration d : {p.query_wait_timeout, p.server_idle_timeout, p.server_lifetime,
                       p.server_connect_timeout}) {
      check(d.count() >= 0);
    }
    (void)to_string(p.mode);
  }
}

void fuzz_duration(std::string_view text) {
  std::optional<Duration> d = parse_duration(text);
  if (!d) {
    return;
  }
  check(d->count() >= 0);
  std::optional<Duration> again = parse_duration(std::to_string(d->count()) + "ms");
  check(again && *again == *d);
}

void fuzz_address(std::string_view text) {
  std::optional<Address> a = parse_address(text);
  if (!a) {
    return;
  }
  check(a->text == text);
  check_address(*a);
  std::string formatted;
  if (a->kind == Address::Kind::Unix) {
    formatted = "unix:" + a->unix_path;
  } else if (a->host.find(':') != std::string::npos) {
    formatted = "[" + a->host + "]:" + std::to_string(a->port);
  } else {
    formatted = a->host + ":" + std::to_string(a->port);
  }
  std::optional<Address> b = parse_address(formatted);
  check(b && b->kind == a->kind && b->host == a->host && b->port == a->port &&
        b->unix_path == a->unix_path);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  fuzz_load(text);
  fuzz_duration(text);
  fuzz_address(text);
  return 0;
}
