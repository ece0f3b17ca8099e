// auth_query (README "auth_query"): a user's SCRAM verifier or md5 hash
// looked up on the server, as the pool's auth_user, through libpq driven
// non-blocking on the worker's loop (the loop never waits for the server);
// and the cache of what lookups found, shared by the workers.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "config/config.h"
#include "pool/auth_cache.h"

struct pg_conn;

namespace sqlmux {

class PgAuthQuery {
 public:
  struct Result {
    bool ok = false;                    // the query ran (else `error`)
    std::optional<std::string> secret;  // none: no row, or a NULL password
    std::string error;
  };
  using Done = std::function<void(Result)>;

  // Looks `user` up for pool `pc`. `done` is called once, after the server
  // connection is closed (from start() itself when it cannot begin), unless
  // the lookup is destroyed first; the lookup may be destroyed from `done`.
  PgAuthQuery(uv_loop_t* loop, const config::PoolConfig& pc, std::string user, Done done);
  ~PgAuthQuery();
  PgAuthQuery(const PgAuthQuery&) = delete;
  PgAuthQuery& operator=(const PgAuthQuery&) = delete;
  void start();

 private:
  void on_io();
  void drive_connect();
  void send_query();
  void read_result();
  void watch(int events);
  void close();
  void finish(Result r);
  void fail(const std::string& why);

  uv_loop_t* loop_;
  const std::string host_, port_, database_, auth_user_, query_, user_, server_tls_, server_tls_ca_;
  const std::optional<std::string> auth_password_;
  Done done_;
  pg_conn* pg_ = nullptr;
  uv_poll_t* poll_ = nullptr;
  bool connecting_ = true;
};

// What lookups found, per pool, auth_user and user; thread-safe. Times are
// uv_hrtime in milliseconds.
class PgAuthCache {
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
