// auth_query results (README "auth_query"): what the server returned for a
// user - its SCRAM verifier or md5 hash, or that it has none - kept for a
// TTL, so that logins do not each run a query on the server. Pure: the
// caller passes the time and serialises access.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace sqlmux::pool {

class AuthCache {
 public:
  struct Entry {
    std::optional<std::string> secret;  // none: no such user (or a NULL password)
    uint64_t fetched_ms = 0;
  };

  explicit AuthCache(size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {}

  // The entry for `key` when it was fetched less than `ttl_ms` before `now_ms`.
  [[nodiscard]] std::optional<Entry> fresh(std::string_view key, uint64_t now_ms,
                                           uint64_t ttl_ms) const;
  // Stores what a lookup returned. When full, the oldest entry goes first.
  void put(const std::string& key, std::optional<std::string> secret, uint64_t now_ms);
  // After a failed login checked against the entry: drops it when it was
  // fetched at least `min_age_ms` ago, so that the next login looks the user
  // up again (a password changed on the server works before the TTL ends;
  // a client retrying wrong passwords makes at most one lookup per
  // `min_age_ms`). True when dropped.
  bool drop_if_older(std::string_view key, uint64_t now_ms, uint64_t min_age_ms);
  [[nodiscard]] size_t size() const { return entries_.size(); }

 private:
  size_t capacity_;
  std::map<std::string, Entry, std::less<>> entries_;
};

}  // namespace sqlmux::pool
