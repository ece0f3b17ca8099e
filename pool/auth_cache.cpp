#include "pool/auth_cache.h"

namespace sqlmux::pool {

std::optional<AuthCache::Entry> AuthCache::fresh(std::string_view key, uint64_t now_ms,
                                                 uint64_t ttl_ms) const {
  auto it = entries_.find(key);
  if (it == entries_.end()) return std::nullopt;
  // A clock that went back leaves the entry as old as it was.
  const uint64_t age = now_ms >= it->second.fetched_ms ? now_ms - it->second.fetched_ms : 0;
  if (age >= ttl_ms) return std::nullopt;
  return it->second;
}

void AuthCache::put(const std::string& key, std::optional<std::string> secret, uint64_t now_ms) {
  auto it = entries_.find(key);
  if (it == entries_.end() && entries_.size() >= capacity_) {
    auto oldest = entries_.begin();
    for (auto e = entries_.begin(); e != entries_.end(); ++e) {
      if (e->second.fetched_ms < oldest->second.fetched_ms) oldest = e;
    }
    entries_.erase(oldest);
  }
  Entry& e = entries_[key];
  e.secret = std::move(secret);
  e.fetched_ms = now_ms;
}

bool AuthCache::drop_if_older(std::string_view key, uint64_t now_ms, uint64_t min_age_ms) {
  auto it = entries_.find(key);
  if (it == entries_.end()) return false;
  const uint64_t age = now_ms >= it->second.fetched_ms ? now_ms - it->second.fetched_ms : 0;
  if (age < min_age_ms) return false;
  entries_.erase(it);
  return true;
}

}  // namespace sqlmux::pool
