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

uint8_t ServerCaps::try_take(const Keys& k) {
  uint8_t full = kCapNone;
  if (k.db_cap != 0 && db_.count(k.db) >= k.db_cap) full |= kCapDb;
  if (k.user_cap != 0 && user_.count(k.user) >= k.user_cap) full |= kCapUser;
  if (full != kCapNone) return full;
  static_cast<void>(db_.try_add(k.db, 0));
  static_cast<void>(user_.try_add(k.user, 0));
  return kCapNone;
}

void ServerCaps::give_back(std::string_view db, std::string_view user) {
  db_.remove(db);
  user_.remove(user);
}

int pick_eviction(const std::vector<EvictionCandidate>& candidates) {
  int best = -1;
  for (size_t i = 0; i < candidates.size(); ++i) {
    const EvictionCandidate& c = candidates[i];
    if (c.idle == 0) continue;
    if (best >= 0) {
      const EvictionCandidate& b = candidates[static_cast<size_t>(best)];
      if (c.oldest_idle_since_ms > b.oldest_idle_since_ms) continue;
      if (c.oldest_idle_since_ms == b.oldest_idle_since_ms && c.idle <= b.idle) continue;
    }
    best = static_cast<int>(i);
  }
  return best;
}

}  // namespace sqlmux::pool
