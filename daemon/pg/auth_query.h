// auth_query (README "auth_query"): a user's SCRAM verifier or md5 hash
// looked up on the server, as the pool's auth_user, through libpq driven
// non-blocking on the worker's loop (the loop never waits for the server).
// What lookups found is kept in daemon/core/auth_query_cache.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "config/config.h"
#include "daemon/core/auth_query_cache.h"

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

}  // namespace sqlmux
