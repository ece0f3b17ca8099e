#include "daemon/ops/upgrade_socket.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "daemon/core/log.h"

namespace sqlmux::upgrade {

namespace {

bool address_of(const std::string& path, sockaddr_un& sa, std::string& err) {
  sa = {};
  sa.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof sa.sun_path) {
    err = "path too long";
    return false;
  }
  std::memcpy(sa.sun_path, path.data(), path.size());
  return true;
}

void close_all(std::vector<int>& fds) {
  for (int fd : fds) ::close(fd);
  fds.clear();
}

}  // namespace

int listen_socket(const std::string& path, std::string& err) {
  sockaddr_un sa{};
  if (!address_of(path, sa, err)) return -1;
  struct stat st {};
  if (::stat(sa.sun_path, &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(sa.sun_path);
  int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    err = strerror(errno);
    return -1;
  }
  // The socket file is created 0600 from the start: the listeners are
  // for our user only.
  const mode_t old = ::umask(0177);
  const int rc = ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  ::umask(old);
  if (rc != 0 || ::listen(fd, 4) != 0) {
    err = strerror(errno);
    ::close(fd);
    return -1;
  }
  return fd;
}

int accept_peer(int lfd, int& peer_pid) {
  for (;;) {
    int fd = ::accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return -1;
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
        (cred.uid != ::geteuid() && cred.uid != 0)) {
      LOG_WARN("upgrade socket: connection from uid %u (pid %d) refused: not our user",
               static_cast<unsigned>(cred.uid), static_cast<int>(cred.pid));
      ::close(fd);
      continue;
    }
    peer_pid = cred.pid;
    return fd;
  }
}

int connect_socket(const std::string& path, int timeout_ms, std::string& err) {
  sockaddr_un sa{};
  if (!address_of(path, sa, err)) return -1;
  int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    err = strerror(errno);
    return -1;
  }
  timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  (void)::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  (void)::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    err = strerror(errno);
    ::close(fd);
    return -1;
  }
  return fd;
}

bool send_packet(int fd, std::string_view msg, const std::vector<int>& fds, std::string& err) {
  if (fds.size() > kMaxSockets) {
    err = "too many descriptors";
    return false;
  }
  iovec iov{const_cast<char*>(msg.data()), msg.size()};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(int) * kMaxSockets)];
  if (!fds.empty()) {
    std::memset(ctl, 0, sizeof ctl);
    mh.msg_control = ctl;
    mh.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  ssize_t n;
  do {
    n = ::sendmsg(fd, &mh, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n != static_cast<ssize_t>(msg.size())) {
    err = n < 0 ? strerror(errno) : "short send";
    return false;
  }
  return true;
}

bool recv_packet(int fd, std::string& msg, std::vector<int>& fds, std::string& err) {
  msg.assign(kMaxMessage, '\0');
  fds.clear();
  iovec iov{msg.data(), msg.size()};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(int) * kMaxSockets)];
  mh.msg_control = ctl;
  mh.msg_controllen = sizeof ctl;
  ssize_t n;
  do {
    n = ::recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    err = errno == EAGAIN || errno == EWOULDBLOCK ? "timed out" : strerror(errno);
    msg.clear();
    return false;
  }
  for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c != nullptr; c = CMSG_NXTHDR(&mh, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int one;
      std::memcpy(&one, CMSG_DATA(c) + i * sizeof(int), sizeof one);
      fds.push_back(one);
    }
  }
  msg.resize(static_cast<size_t>(n));
  if (n == 0) {
    err = "closed";
    close_all(fds);
    return false;
  }
  if ((mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0) {
    err = "message or descriptors truncated";
    close_all(fds);
    return false;
  }
  return true;
}

}  // namespace sqlmux::upgrade
