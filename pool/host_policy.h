// Backend hosts as policy: the up/down state machine that health checks
// drive (fall / rise), and which host serves a pool's next connection or
// transaction (route, role, weight, load). No sockets, no clocks.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "config/config.h"

namespace sqlmux::pool {

enum class Role : uint8_t { Primary, Replica };
enum class Health : uint8_t { Unchecked, Up, Down };
[[nodiscard]] std::string_view to_string(Role r);
[[nodiscard]] std::string_view to_string(Health h);
// "primary" / "replica" as configured (anything else reads as primary).
[[nodiscard]] Role parse_role(std::string_view configured);

// Consecutive outcomes of one host's checks. An unchecked host is up after
// its first success; an up (or unchecked) host is down after `fall`
// failures in a row; a down host is up after `rise` successes in a row.
class HealthCounter {
 public:
  // Records one outcome; returns the health after it.
  Health record(bool ok, uint32_t fall, uint32_t rise);
  [[nodiscard]] Health health() const { return health_; }
  [[nodiscard]] uint32_t failures_in_row() const { return fails_; }

 private:
  Health health_ = Health::Unchecked;
  uint32_t fails_ = 0;
  uint32_t oks_ = 0;
};

// One host as a pool sees it when it chooses.
struct HostChoice {
  Role role = Role::Primary;  // observed when health checks ran, else configured
  bool usable = true;         // not down, not disabled by hand
  uint32_t load = 0;          // connections (to open one) or active transactions
  uint32_t weight = 1;        // >= 1
};

// Whether a host of `role` serves `route` at all, given whether any usable
// replica remains (a replica route falls back to primaries without one).
[[nodiscard]] bool serves(Role role, config::Route route, bool replica_available);

// The host for the next connection or transaction: among usable hosts not
// in `exclude` (bit i = host i) that serve the route, the one with the
// least load per weight (the first of equals). -1 when none.
[[nodiscard]] int pick_host(const std::vector<HostChoice>& hosts, config::Route route,
                            uint64_t exclude = 0);

}  // namespace sqlmux::pool
