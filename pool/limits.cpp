#include "pool/limits.h"

namespace sqlmux::pool {

bool KeyedLimit::try_add(std::string_view key, uint32_t cap) {
  auto it = counts_.find(key);
  const uint32_t now = it == counts_.end() ? 0 : it->second;
  if (cap != 0 && now >= cap) return false;
  if (it == counts_.end()) {
    counts_.emplace(std::string(key), 1);
  } else {
    ++it->second;
  }
  return true;
}

void KeyedLimit::remove(std::string_view key) {
  auto it = counts_.find(key);
  if (it == counts_.end()) return;
  if (--it->second == 0) counts_.erase(it);
}

uint32_t KeyedLimit::count(std::string_view key) const {
  auto it = counts_.find(key);
  return it == counts_.end() ? 0 : it->second;
}

}  // namespace sqlmux::pool
