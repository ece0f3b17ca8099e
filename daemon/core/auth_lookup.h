// What the auth_query lookups of both protocols share (README "auth_query"):
// their result, the completion called once, the uv_poll on the lookup
// connection's socket, and which of a pool's hosts they ask. Each protocol
// drives its own client library over it (daemon/pg/auth_query: libpq;
// daemon/mysql/auth_query: Connector/C). What lookups found is kept in
// daemon/core/auth_query_cache.
#pragma once

#include <uv.h>

#include <functional>
#include <optional>
#include <string>

#include "config/config.h"

namespace sqlmux {

class AuthLookup {
 public:
  struct Result {
    bool ok = false;                    // the query ran (else `error`)
    std::optional<std::string> secret;  // none: no row, or a NULL secret
    std::string error;
  };
  using Done = std::function<void(Result)>;

  AuthLookup(const AuthLookup&) = delete;
  AuthLookup& operator=(const AuthLookup&) = delete;
  virtual ~AuthLookup();

 protected:
  AuthLookup(uv_loop_t* loop, Done done);

  // The pool's first primary host (the first host when none is primary).
  [[nodiscard]] static const config::Address& lookup_address(const config::PoolConfig& pc);

  // Polls `fd` for `events` (UV_READABLE / UV_WRITABLE), calling on_poll();
  // a new handle when the client library moved to another socket. When the
  // socket cannot be polled: fail() (which may destroy this), false.
  bool poll_socket(int fd, int events);
  // Stops polling; the handle is freed once libuv lets go of it. Before the
  // client library closes the socket.
  void close_poll();
  // close(), then `done` once with `r`. `done` may destroy this: nothing may
  // follow a call to finish() or fail().
  void finish(Result r);
  // finish() with `why` (on one line) as the error.
  void fail(const std::string& why);

  // The socket is ready (`status` < 0: an error on it).
  virtual void on_poll(int status, int events) = 0;
  // close_poll(), then the connection closed; does nothing the second time.
  virtual void close() = 0;

 private:
  uv_loop_t* loop_;
  Done done_;
  uv_poll_t* poll_ = nullptr;
};

}  // namespace sqlmux
