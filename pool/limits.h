// Counts against a cap per key (a user's client connections,
// max_user_client_connections; server connections per database and per
// server user, max_db_connections and max_user_connections) as policy: no
// locks, no clocks. The owner (daemon/core/directory) holds its mutex
// around every call.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace sqlmux::pool {

class KeyedLimit {
 public:
  // Counts one more for `key` unless that would exceed `cap` (0: no cap).
  // False (nothing counted) when over.
  [[nodiscard]] bool try_add(std::string_view key, uint32_t cap);
  // One of `key`'s counted ones ended; a key at zero is forgotten.
  void remove(std::string_view key);
  [[nodiscard]] uint32_t count(std::string_view key) const;
  // Keys with a count above zero.
  [[nodiscard]] size_t keys() const { return counts_.size(); }

 private:
  std::map<std::string, uint32_t, std::less<>> counts_;
};

// Which of the server connection caps a pool shares with others.
enum CapBits : uint8_t { kCapNone = 0, kCapDb = 1, kCapUser = 2 };

// Server connections (open or connecting) counted under both caps at once:
// per database (a [[pool]] entry, all its per-user pools) and per server
// user (all pools). A connection counts under both or neither.
class ServerCaps {
 public:
  struct Keys {
    std::string_view db;
    uint32_t db_cap = 0;  // 0: no cap
    std::string_view user;
    uint32_t user_cap = 0;
  };
  // One more connection unless a cap is full; kCapNone when counted, else
  // the caps that are full (nothing counted).
  [[nodiscard]] uint8_t try_take(const Keys& k);
  // A connection counted by try_take() ended.
  void give_back(std::string_view db, std::string_view user);
  [[nodiscard]] uint32_t db_count(std::string_view db) const { return db_.count(db); }
  [[nodiscard]] uint32_t user_count(std::string_view user) const { return user_.count(user); }

 private:
  KeyedLimit db_;
  KeyedLimit user_;
};

// A pool that could give up an idle server connection to a pool waiting at
// a cap they share.
struct EvictionCandidate {
  size_t idle = 0;                    // its idle server connections
  uint64_t oldest_idle_since_ms = 0;  // when its longest-idle one became idle
};
// The candidate whose idle connection has been idle longest (the least
// needed; of equals, the one with more idle), or -1 when none has one.
[[nodiscard]] int pick_eviction(const std::vector<EvictionCandidate>& candidates);

}  // namespace sqlmux::pool
