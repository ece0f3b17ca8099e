// Counts against a cap per key (a user's client connections,
// max_user_client_connections) as policy: no locks, no clocks. The owner
// (daemon/core/directory) holds its mutex around every call.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

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

}  // namespace sqlmux::pool
