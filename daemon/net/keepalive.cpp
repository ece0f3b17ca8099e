#include "daemon/net/keepalive.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

namespace sqlmux::net {

bool set_keepalive(int fd, const Keepalive& k) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return false;
  if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6) return true;
  const int on = k.on ? 1 : 0;
  bool ok = setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on) == 0;
  if (!k.on) return ok;
  if (k.idle_s > 0) {
    ok = setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &k.idle_s, sizeof k.idle_s) == 0 && ok;
  }
  if (k.interval_s > 0) {
    ok = setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &k.interval_s, sizeof k.interval_s) == 0 && ok;
  }
  if (k.count > 0) {
    ok = setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &k.count, sizeof k.count) == 0 && ok;
  }
  return ok;
}

}  // namespace sqlmux::net
