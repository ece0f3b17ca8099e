// Socket activation (sd_listen_fds(3)): listening sockets passed by systemd
// (LISTEN_FDS / LISTEN_PID, e.g. from sqlmux.socket) serve the configured
// listeners whose address they are bound to.
#pragma once

#include <string>
#include <vector>

#include "config/config.h"

namespace sqlmux::sd {

class PassedSockets {
 public:
  // Takes the sockets passed to this process and unsets LISTEN_PID,
  // LISTEN_FDS and LISTEN_FDNAMES (so that no child inherits them). Empty
  // when the process was not socket-activated.
  static PassedSockets from_environment();

  PassedSockets() = default;
  PassedSockets(const PassedSockets&) = delete;
  PassedSockets& operator=(const PassedSockets&) = delete;
  PassedSockets(PassedSockets&& o) noexcept : socks_(std::move(o.socks_)) { o.socks_.clear(); }
  PassedSockets& operator=(PassedSockets&&) = delete;
  // Closes the sockets nobody took (close_unused()).
  ~PassedSockets();

  // The passed listening stream socket bound to `addr` (same family, address
  // and port, or the same unix path), made non-blocking and close-on-exec;
  // the caller owns it. -1 when none matches. `how` gets "fd N, NAME".
  [[nodiscard]] int take(const config::Address& addr, std::string& how);
  // Logs and closes every passed socket that no listener took.
  void close_unused();
  [[nodiscard]] bool empty() const { return socks_.empty(); }

 private:
  struct Sock {
    int fd;
    std::string name;  // LISTEN_FDNAMES entry (FileDescriptorName=)
  };
  std::vector<Sock> socks_;
};

// Whether `fd` is a listening stream socket bound to `addr`: for TCP the
// same family, address and port as one of the addresses `addr` resolves to
// (as the daemon resolves it to bind), for unix the same path.
[[nodiscard]] bool socket_matches(int fd, const config::Address& addr);

// "127.0.0.1:6432", "[::1]:6432", "unix:/run/x/.s.PGSQL.6432": the local
// address of a socket, for log lines.
[[nodiscard]] std::string describe_local_address(int fd);

}  // namespace sqlmux::sd
