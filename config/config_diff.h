// What changed between two loaded configurations, and which changes a
// running daemon applies (reload) versus which need a restart.
#pragma once

#include <string>
#include <vector>

#include "config/config.h"

namespace sqlmux::config {

struct PoolChange {
  std::string name;
  std::vector<std::string> applied;  // keys applied to the running pool, e.g. "size"
  std::vector<std::string> restart;  // keys kept at their old value until a restart
};

struct ConfigDiff {
  std::vector<std::string> pools_added;
  std::vector<std::string> pools_removed;
  std::vector<PoolChange> pools_changed;
  std::vector<std::string> users_added;
  std::vector<std::string> users_removed;
  std::vector<std::string> users_changed;
  std::vector<std::string> applied;  // other keys applied live, e.g. "server.max_client_conn"
  std::vector<std::string> restart;  // other keys that need a restart, e.g. "listener"

  [[nodiscard]] bool empty() const;
  // One line: "pools +a -b ~c(size); users +x; applied: ...; needs restart: ..."
  [[nodiscard]] std::string summary() const;
};

// Pools are matched by protocol and name ("name", or "mysql/name").
[[nodiscard]] ConfigDiff diff(const Config& before, const Config& after);

// The configuration a running pool takes on reload: `after`, except the
// keys that need a restart (mode, user, password), which keep `before`'s.
[[nodiscard]] PoolConfig live_pool_config(const PoolConfig& before, const PoolConfig& after);

}  // namespace sqlmux::config
