#include "daemon/ops/sd_listen.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "daemon/core/log.h"

namespace sqlmux::sd {

namespace {

// Whether the local address of a bound socket (`sa`) equals `ai`.
bool same_inet(const sockaddr_storage& sa, const addrinfo* ai) {
  if (ai->ai_addr == nullptr || ai->ai_addr->sa_family != sa.ss_family) return false;
  if (sa.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&sa);
    const auto* b = reinterpret_cast<const sockaddr_in*>(ai->ai_addr);
    return a->sin_port == b->sin_port && a->sin_addr.s_addr == b->sin_addr.s_addr;
  }
  if (sa.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&sa);
    const auto* b = reinterpret_cast<const sockaddr_in6*>(ai->ai_addr);
    return a->sin6_port == b->sin6_port &&
           std::memcmp(&a->sin6_addr, &b->sin6_addr, sizeof a->sin6_addr) == 0;
  }
  return false;
}

}  // namespace

bool socket_matches(int fd, const config::Address& addr) {
  if (addr.kind == config::Address::Kind::Unix) {
    return sd_is_socket_unix(fd, SOCK_STREAM, 1, addr.unix_path.c_str(), 0) > 0;
  }
  if (sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) <= 0) return false;
  sockaddr_storage sa{};
  socklen_t len = sizeof sa;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) != 0) return false;
  // The same resolution as Server::open_listeners(), so that "*:6432" and
  // host names match what the daemon would have bound itself.
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  std::string port = std::to_string(addr.port);
  const char* host = addr.host.empty() || addr.host == "*" ? nullptr : addr.host.c_str();
  if (::getaddrinfo(host, port.c_str(), &hints, &res) != 0 || res == nullptr) return false;
  bool found = false;
  for (const addrinfo* ai = res; ai != nullptr && !found; ai = ai->ai_next) {
    found = same_inet(sa, ai);
  }
  ::freeaddrinfo(res);
  return found;
}

std::string describe_local_address(int fd) {
  sockaddr_storage sa{};
  socklen_t len = sizeof sa;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) != 0) {
    return std::string("<getsockname: ") + std::strerror(errno) + ">";
  }
  char buf[INET6_ADDRSTRLEN] = {};
  switch (sa.ss_family) {
    case AF_INET: {
      const auto* a = reinterpret_cast<const sockaddr_in*>(&sa);
      ::inet_ntop(AF_INET, &a->sin_addr, buf, sizeof buf);
      return std::string(buf) + ":" + std::to_string(ntohs(a->sin_port));
    }
    case AF_INET6: {
      const auto* a = reinterpret_cast<const sockaddr_in6*>(&sa);
      ::inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof buf);
      std::string out = "[";
      out += buf;
      out += "]:";
      out += std::to_string(ntohs(a->sin6_port));
      return out;
    }
    case AF_UNIX: {
      const auto* a = reinterpret_cast<const sockaddr_un*>(&sa);
      size_t n = len > offsetof(sockaddr_un, sun_path) ? len - offsetof(sockaddr_un, sun_path) : 0;
      if (n == 0) return "unix:<unnamed>";
      if (a->sun_path[0] == '\0') return "unix:@<abstract>";
      return "unix:" + std::string(a->sun_path, strnlen(a->sun_path, n));
    }
    default:
      return "<address family " + std::to_string(sa.ss_family) + ">";
  }
}

PassedSockets PassedSockets::from_environment() {
  PassedSockets out;
  char** names = nullptr;
  int n = sd_listen_fds_with_names(1, &names);
  if (n < 0) {
    LOG_ERROR("socket activation: LISTEN_FDS/LISTEN_FDNAMES are invalid (%s); ignoring them",
              std::strerror(-n));
    return out;
  }
  for (int i = 0; i < n; ++i) {
    std::string name = names != nullptr && names[i] != nullptr ? names[i] : "";
    out.socks_.push_back(Sock{SD_LISTEN_FDS_START + i, name});
  }
  if (names != nullptr) {
    for (int i = 0; i < n; ++i) std::free(names[i]);
    std::free(names);
  }
  if (n > 0) LOG_INFO("socket activation: systemd passed %d socket(s)", n);
  return out;
}

PassedSockets::~PassedSockets() {
  close_unused();
}

int PassedSockets::take(const config::Address& addr, std::string& how) {
  for (auto it = socks_.begin(); it != socks_.end(); ++it) {
    if (!socket_matches(it->fd, addr)) continue;
    int fd = it->fd;
    how = "fd " + std::to_string(fd) + (it->name.empty() ? "" : ", " + it->name);
    socks_.erase(it);
    int fl = ::fcntl(fd, F_GETFL);
    if (fl < 0 || ::fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0 ||
        ::fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
      LOG_ERROR("listener %s: socket from systemd (%s): fcntl: %s", addr.text.c_str(), how.c_str(),
                std::strerror(errno));
      ::close(fd);
      return -1;
    }
    return fd;
  }
  return -1;
}

void PassedSockets::close_unused() {
  for (const Sock& s : socks_) {
    LOG_WARN(
        "socket activation: socket fd %d%s%s (%s) matches no configured listener; closing it "
        "(make ListenStream= in the .socket unit and [[listener]] listen agree)",
        s.fd, s.name.empty() ? "" : ", ", s.name.c_str(), describe_local_address(s.fd).c_str());
    ::close(s.fd);
  }
  socks_.clear();
}

}  // namespace sqlmux::sd
