// The socket side of an online upgrade (README "Upgrade procedure"; the
// messages are in upgrade_wire.h): the running process's listening socket
// on [server] upgrade_socket, and packets with descriptors over it.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "daemon/ops/upgrade_wire.h"

namespace sqlmux::upgrade {

// A listening SOCK_SEQPACKET unix socket on `path` (mode 0600; a stale
// socket file there is replaced), non-blocking and close-on-exec; -1 with
// `err` when it cannot be opened.
[[nodiscard]] int listen_socket(const std::string& path, std::string& err);

// Accepts one connection on `lfd` (non-blocking, close-on-exec); -1 when
// none is waiting. Connections from another user than ours (or root) are
// closed and logged. `peer_pid` gets the peer's pid.
[[nodiscard]] int accept_peer(int lfd, int& peer_pid);

// Connects to `path` (blocking, with send and receive timeouts of
// `timeout_ms`); -1 with `err`.
[[nodiscard]] int connect_socket(const std::string& path, int timeout_ms, std::string& err);

// Sends one packet `msg` with `fds` attached; false with `err`.
[[nodiscard]] bool send_packet(int fd, std::string_view msg, const std::vector<int>& fds,
                               std::string& err);

// Receives one packet into `msg` and the descriptors it carried into `fds`
// (close-on-exec; the caller owns them, also when false is returned they
// are closed). False with `err` on error, timeout, truncation or end of
// stream ("closed").
[[nodiscard]] bool recv_packet(int fd, std::string& msg, std::vector<int>& fds, std::string& err);

}  // namespace sqlmux::upgrade
