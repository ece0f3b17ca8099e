// Socket activation: which passed socket serves which configured listener.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <string>

#include "daemon/ops/sd_listen.h"

using sqlmux::config::Address;
using sqlmux::sd::describe_local_address;
using sqlmux::sd::socket_matches;

namespace {

Address tcp(const std::string& host, uint16_t port) {
  Address a;
  a.kind = Address::Kind::Tcp;
  a.host = host;
  a.port = port;
  a.text = host + ":" + std::to_string(port);
  return a;
}

Address unix_addr(const std::string& path) {
  Address a;
  a.kind = Address::Kind::Unix;
  a.unix_path = path;
  a.text = "unix:" + path;
  return a;
}

// A socket bound to an ephemeral port of `ip` (v4 or v6); listening when asked.
// Returns -1 when the address family is not available here.
int bound(int family, const char* ip, int type, bool listening, uint16_t& port) {
  int fd = ::socket(family, type | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    REQUIRE(inet_pton(AF_INET, ip, &a->sin_addr) == 1);
    len = sizeof *a;
  } else {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    REQUIRE(inet_pton(AF_INET6, ip, &a->sin6_addr) == 1);
    int one = 1;
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    len = sizeof *a;
  }
  if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 ||
      (listening && ::listen(fd, 8) != 0)) {
    ::close(fd);
    return -1;
  }
  len = sizeof ss;
  REQUIRE(getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0);
  port = ntohs(family == AF_INET ? reinterpret_cast<sockaddr_in*>(&ss)->sin_port
                                 : reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  return fd;
}

}  // namespace

TEST_CASE("sd_listen: an IPv4 socket serves the listener with its address and port") {
  uint16_t port = 0;
  int fd = bound(AF_INET, "127.0.0.1", SOCK_STREAM, true, port);
  REQUIRE(fd >= 0);
  CHECK(socket_matches(fd, tcp("127.0.0.1", port)));
  CHECK(socket_matches(fd, tcp("localhost", port)));  // resolved like the daemon's bind
  CHECK_FALSE(socket_matches(fd, tcp("127.0.0.1", static_cast<uint16_t>(port + 1))));
  CHECK_FALSE(socket_matches(fd, tcp("127.0.0.2", port)));
  CHECK_FALSE(socket_matches(fd, tcp("0.0.0.0", port)));
  CHECK_FALSE(socket_matches(fd, tcp("*", port)));
  CHECK_FALSE(socket_matches(fd, unix_addr("/tmp/.s.PGSQL." + std::to_string(port))));
  CHECK(describe_local_address(fd) == "127.0.0.1:" + std::to_string(port));
  ::close(fd);
}

TEST_CASE("sd_listen: a wildcard socket serves \"*\" and 0.0.0.0") {
  uint16_t port = 0;
  int fd = bound(AF_INET, "0.0.0.0", SOCK_STREAM, true, port);
  REQUIRE(fd >= 0);
  CHECK(socket_matches(fd, tcp("*", port)));
  CHECK(socket_matches(fd, tcp("", port)));
  CHECK(socket_matches(fd, tcp("0.0.0.0", port)));
  CHECK_FALSE(socket_matches(fd, tcp("127.0.0.1", port)));
  ::close(fd);
}

TEST_CASE("sd_listen: IPv6") {
  uint16_t port = 0;
  int fd = bound(AF_INET6, "::1", SOCK_STREAM, true, port);
  if (fd < 0) {
    WARN("no IPv6 loopback here; skipped");
    return;
  }
  CHECK(socket_matches(fd, tcp("::1", port)));
  CHECK_FALSE(socket_matches(fd, tcp("127.0.0.1", port)));
  CHECK_FALSE(socket_matches(fd, tcp("::1", static_cast<uint16_t>(port + 1))));
  CHECK(describe_local_address(fd) == "[::1]:" + std::to_string(port));
  ::close(fd);
}

TEST_CASE("sd_listen: not listening, or not a stream socket: never matches") {
  uint16_t port = 0;
  int fd = bound(AF_INET, "127.0.0.1", SOCK_STREAM, false, port);
  REQUIRE(fd >= 0);
  CHECK_FALSE(socket_matches(fd, tcp("127.0.0.1", port)));
  ::close(fd);
  int udp = bound(AF_INET, "127.0.0.1", SOCK_DGRAM, false, port);
  REQUIRE(udp >= 0);
  CHECK_FALSE(socket_matches(udp, tcp("127.0.0.1", port)));
  ::close(udp);
  int nosock = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  REQUIRE(nosock >= 0);
  CHECK_FALSE(socket_matches(nosock, tcp("127.0.0.1", port)));
  ::close(nosock);
}

TEST_CASE("sd_listen: a unix socket serves the listener with its path") {
  char dir[] = "/tmp/smx-unit-XXXXXX";
  REQUIRE(mkdtemp(dir) != nullptr);
  std::string path = std::string(dir) + "/.s.PGSQL.6432";
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::strncpy(sa.sun_path, path.c_str(), sizeof sa.sun_path - 1);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
  REQUIRE(::listen(fd, 8) == 0);
  CHECK(socket_matches(fd, unix_addr(path)));
  CHECK_FALSE(socket_matches(fd, unix_addr(path + "x")));
  CHECK_FALSE(socket_matches(fd, tcp("127.0.0.1", 6432)));
  CHECK(describe_local_address(fd) == "unix:" + path);
  ::close(fd);
  ::unlink(path.c_str());
  ::rmdir(dir);
}
