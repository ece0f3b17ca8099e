// auth_query for MySQL / MariaDB pools (README "auth_query"): a user's
// mysql_native_password hash looked up on the server, as the pool's
// auth_user, through MariaDB Connector/C's non-blocking calls driven by a
// uv_poll on the worker's loop (the loop never waits for the server). The
// part both protocols share (result, completion, polling) is
// daemon/core/auth_lookup; the cache of what lookups found is
// daemon/core/auth_query_cache.
#pragma once

#include <uv.h>

#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "config/config.h"
#include "daemon/core/auth_lookup.h"

struct st_mysql;
struct st_mysql_res;

namespace sqlmux {

// The query with its first `?` outside quotes replaced by `quoted_user`
// (the user name, escaped and in quotes); none when there is no `?`.
[[nodiscard]] std::optional<std::string> my_bind_user(std::string_view query,
                                                      std::string_view quoted_user);

class MyAuthQuery final : public AuthLookup {
 public:
  // Looks `user` up for pool `pc`. `done` is called once (from start()
  // itself when it cannot begin), unless the lookup is destroyed first; the
  // lookup may be destroyed from `done`.
  MyAuthQuery(uv_loop_t* loop, const config::PoolConfig& pc, std::string user, Done done);
  ~MyAuthQuery() override;
  void start();

 private:
  enum class Stage { Connect, Query, Store };
  void on_poll(int status, int events) override;
  void on_io(int uv_events);
  void step(int wait);  // the MYSQL_WAIT_* of the last *_start / *_cont; 0: done
  void connected(const st_mysql* ret);
  void queried(int err);
  void stored(st_mysql_res* res);
  void close() override;

  // Connector/C keeps pointers to these strings while it connects.
  const std::string host_, auth_user_, query_, user_;
  const unsigned port_;
  const std::optional<std::string> auth_password_;
  st_mysql* my_ = nullptr;
  Stage stage_ = Stage::Connect;
  std::string sql_;  // query_ with the user bound
};

}  // namespace sqlmux
