// TCP keepalive on a connected socket (clients and server connections):
// a peer that vanished without a FIN (a cable pulled, a NAT entry dropped,
// a VM frozen) is found and its connection closed by the kernel.
#pragma once

namespace sqlmux::net {

struct Keepalive {
  bool on = true;
  int idle_s = 0;      // TCP_KEEPIDLE; 0: the system's default
  int interval_s = 0;  // TCP_KEEPINTVL; 0: the system's default
  int count = 0;       // TCP_KEEPCNT; 0: the system's default
};

// Sets the options on `fd`; a unix socket is left alone. False when the
// kernel refused one (the connection works anyway).
[[nodiscard]] bool set_keepalive(int fd, const Keepalive& k);

}  // namespace sqlmux::net
