#include "daemon/core/auth_query_cache.h"

#include <uv.h>

#include <utility>

namespace sqlmux {

namespace {
uint64_t now_ms() {
  return uv_hrtime() / 1000000;
}
}  // namespace

std::string AuthQueryCache::key(const config::PoolConfig& pc, std::string_view user) {
  std::string k = config::qualified_name(pc);
  k += '\0';
  k += pc.auth_user.value_or("");
  k += '\0';
  k += user;
  return k;
}

std::optional<pool::AuthCache::Entry> AuthQueryCache::fresh(const std::string& key,
                                                            uint64_t ttl_ms) {
  std::lock_guard<std::mutex> lk(mu_);
  return cache_.fresh(key, now_ms(), ttl_ms);
}

void AuthQueryCache::put(const std::string& key, std::optional<std::string> secret) {
  std::lock_guard<std::mutex> lk(mu_);
  cache_.put(key, std::move(secret), now_ms());
}

bool AuthQueryCache::drop_after_failure(const std::string& key) {
  std::lock_guard<std::mutex> lk(mu_);
  return cache_.drop_if_older(key, now_ms(), kRefreshMinAgeMs);
}

}  // namespace sqlmux
