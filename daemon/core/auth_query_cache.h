// What auth_query lookups found (README "auth_query"), per pool, auth_user
// and user, shared by the workers of a protocol; thread-safe. Times are
// uv_hrtime in milliseconds. The lookups themselves are the protocols'
// (daemon/pg/auth_query, daemon/mysql/auth_query).
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "config/config.h"
#include "pool/auth_cache.h"

namespace sqlmux {

class AuthQueryCache {
 public:
  static constexpr size_t kCapacity = 10000;
  // A failed login drops an entry at least this old (pool::AuthCache::drop_if_older).
  static constexpr uint64_t kRefreshMinAgeMs = 2000;

  [[nodiscard]] static std::string key(const config::PoolConfig& pc, std::string_view user);
  [[nodiscard]] std::optional<pool::AuthCache::Entry> fresh(const std::string& key,
                                                            uint64_t ttl_ms);
  void put(const std::string& key, std::optional<std::string> secret);
  bool drop_after_failure(const std::string& key);

 private:
  std::mutex mu_;
  pool::AuthCache cache_{kCapacity};  // under mu_
};

}  // namespace sqlmux
