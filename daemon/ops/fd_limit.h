// The open file limit (RLIMIT_NOFILE) against what the configuration needs:
// every client, every server connection, the listeners and sqlmux's own
// descriptors. Checked at startup and on reload (README "Operations").
#pragma once

#include <cstdint>
#include <string>

#include "config/config.h"

namespace sqlmux::fd_limit {

struct Need {
  uint64_t clients = 0;    // max_client_conn
  uint64_t servers = 0;    // pool sizes (per user for pools without a fixed login)
  uint64_t listeners = 0;  // listeners, the console, the metrics endpoint
  uint64_t overhead = 0;   // loops, health checks, spare descriptors, stdio
  [[nodiscard]] uint64_t total() const { return clients + servers + listeners + overhead; }
  // "max_client_conn 10000 + server connections 20 + listeners 2 + overhead 40"
  [[nodiscard]] std::string text() const;
};

[[nodiscard]] Need estimate(const config::Config& c, int workers);

// Raises the soft limit (up to the hard one) when it is below what `c`
// needs, logs that, and warns when it stays below. Returns the soft limit
// in force afterwards. `when`: "startup" or "reload".
uint64_t ensure(const config::Config& c, int workers, const char* when);

}  // namespace sqlmux::fd_limit
