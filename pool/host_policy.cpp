#include "pool/host_policy.h"

namespace sqlmux::pool {

std::string_view to_string(Role r) {
  return r == Role::Replica ? "replica" : "primary";
}

std::string_view to_string(Health h) {
  switch (h) {
    case Health::Unchecked:
      return "unchecked";
    case Health::Up:
      return "up";
    case Health::Down:
      return "down";
  }
  return "unknown";
}

Role parse_role(std::string_view configured) {
  return configured == "replica" ? Role::Replica : Role::Primary;
}

Health HealthCounter::record(bool ok, uint32_t fall, uint32_t rise) {
  if (ok) {
    fails_ = 0;
    ++oks_;
    if (health_ == Health::Unchecked || (health_ == Health::Down && oks_ >= rise)) {
      health_ = Health::Up;
    }
  } else {
    oks_ = 0;
    ++fails_;
    if (health_ != Health::Down && fails_ >= fall) {
      health_ = Health::Down;
    }
  }
  return health_;
}

bool serves(Role role, config::Route route, bool replica_available) {
  switch (route) {
    case config::Route::Any:
      return true;
    case config::Route::Primary:
      return role == Role::Primary;
    case config::Route::Replica:
      return role == Role::Replica || !replica_available;
  }
  return false;
}

int pick_host(const std::vector<HostChoice>& hosts, config::Route route, uint64_t exclude) {
  auto open = [&](size_t i) { return hosts[i].usable && (i >= 64 || (exclude >> i & 1) == 0); };
  bool replica = false;
  for (size_t i = 0; i < hosts.size(); ++i) {
    replica = replica || (open(i) && hosts[i].role == Role::Replica);
  }
  int best = -1;
  for (size_t i = 0; i < hosts.size(); ++i) {
    if (!open(i) || !serves(hosts[i].role, route, replica)) {
      continue;
    }
    if (best < 0) {
      best = static_cast<int>(i);
      continue;
    }
    const HostChoice& a = hosts[i];
    const HostChoice& b = hosts[static_cast<size_t>(best)];
    // a.load / a.weight < b.load / b.weight, without division.
    if (static_cast<uint64_t>(a.load) * (b.weight == 0 ? 1 : b.weight) <
        static_cast<uint64_t>(b.load) * (a.weight == 0 ? 1 : a.weight)) {
      best = static_cast<int>(i);
    }
  }
  return best;
}

}  // namespace sqlmux::pool
