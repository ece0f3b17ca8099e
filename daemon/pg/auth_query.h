// auth_query (README "auth_query"): a user's SCRAM verifier or md5 hash
// looked up on the server, as the pool's auth_user, through libpq driven
// non-blocking on the worker's loop (the loop never waits for the server).
// The part both protocols share (result, completion, polling) is
// daemon/core/auth_lookup; what lookups found is kept in
// daemon/core/auth_query_cache.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "config/config.h"
#include "daemon/core/auth_lookup.h"
#include "daemon/core/auth_query_cache.h"

struct pg_conn;

namespace sqlmux {

class PgAuthQuery final : public AuthLookup {
 public:
  // Looks `user` up for pool `pc`. `done` is called once, after the server
  // connection is closed (from start() itself when it cannot begin), unless
  // the lookup is destroyed first; the lookup may be destroyed from `done`.
  PgAuthQuery(uv_loop_t* loop, const config::PoolConfig& pc, std::string user, Done done);
  ~PgAuthQuery() override;
  void start();

 private:
  void on_poll(int status, int events) override;
  void on_io();
  void drive_connect();
  void send_query();
  void read_result();
  void watch(int events);
  void close() override;

  const std::string host_, port_, database_, auth_user_, query_, user_, server_tls_, server_tls_ca_;
  const std::optional<std::string> auth_password_;
  pg_conn* pg_ = nullptr;
  bool connecting_ = true;
};

}  // namespace sqlmux
