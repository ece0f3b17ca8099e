// SCRAM passthrough: PgBackend's own login to the server (see backend.h),
// for a pool without `user` whose [[user]] password is a SCRAM verifier (the
// ClientKey comes from a logged-in client's proof) or an md5 hash. The
// messages are pg::ServerLogin's; this file does the socket (with TLS as
// server_tls says: SSLRequest, then the handshake as the client over
// Conn's memory-BIO session) and hands the result to the rest of PgBackend
// as the libpq path does (connected()).
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "daemon/core/directory.h"
#include "daemon/core/log.h"
#include "daemon/core/pool.h"
#include "daemon/core/worker.h"
#include "daemon/net/tls.h"
#include "daemon/pg/backend.h"
#include "daemon/pg/protocol.h"

namespace sqlmux {

namespace {
constexpr size_t kReadChunk = 16 * 1024;
constexpr uint32_t kMaxLoginMessage = 64 * 1024;
constexpr int kCancelTimeoutMs = 5000;

// The server's address: a TCP host, or a Unix socket in a directory (as
// libpq takes it: dir/.s.PGSQL.<port>; a path naming the socket is kept).
bool resolve(const config::Address& addr, PgNativeCancel& out, std::string& error) {
  const uint16_t port = addr.port == 0 ? pg::kDefaultPort : addr.port;
  if (addr.kind == config::Address::Kind::Unix) {
    std::string path = addr.unix_path;
    const size_t slash = path.rfind('/');
    const std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
    if (base.rfind(".s.PGSQL.", 0) != 0) path += "/.s.PGSQL." + std::to_string(port);
    sockaddr_un un{};
    if (path.size() >= sizeof un.sun_path) {
      error = "Unix socket path too long: " + path;
      return false;
    }
    un.sun_family = AF_UNIX;
    std::memcpy(un.sun_path, path.c_str(), path.size() + 1);
    std::memcpy(&out.addr, &un, sizeof un);
    out.addr_len = sizeof un;
    return true;
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const std::string port_s = std::to_string(port);
  if (int rc = ::getaddrinfo(addr.host.c_str(), port_s.c_str(), &hints, &res);
      rc != 0 || res == nullptr) {
    error = std::string("cannot resolve ") + addr.host + ": " + gai_strerror(rc);
    return false;
  }
  std::memcpy(&out.addr, res->ai_addr, res->ai_addrlen);
  out.addr_len = res->ai_addrlen;
  ::freeaddrinfo(res);
  return true;
}
}  // namespace

std::optional<pg::LoginSecret> PgBackend::passthrough_secret(Worker& w, Pool& pool,
                                                             std::string& error) {
  if (!pool.logs_in_as_client()) return std::nullopt;
  const User* user = w.directory().find_user(pool.backend_user());
  const auto* secrets =
      user != nullptr ? static_cast<const PgSecrets*>(user->secrets_for(config::Protocol::Postgres))
                      : nullptr;
  PgSecrets looked_up;  // auth_query: what the pool's user logged in against
  if (user == nullptr && pg_state(pool).looked_up(looked_up.scram, looked_up.md5)) {
    secrets = &looked_up;
  }
  if (secrets == nullptr || (user != nullptr && !user->plaintext.empty())) return std::nullopt;
  pg::LoginSecret s;
  if (secrets->scram) {
    s.kind = pg::LoginSecret::Kind::ScramKey;
    s.verifier = *secrets->scram;
    auto key = pg_state(pool).client_key();
    if (!key || !pg::auth::client_key_matches(*key, s.verifier)) {
      error = "SCRAM passthrough for user \"" + pool.backend_user() +
              "\" has no client key: it comes from a connected client's login with the "
              "user's password";
      return std::nullopt;
    }
    s.client_key = *key;
    pg::auth::wipe(*key);
  } else if (!secrets->md5.empty()) {
    s.kind = pg::LoginSecret::Kind::Md5Hash;
    s.md5 = secrets->md5;
  } else {
    return std::nullopt;  // auth = "trust" without a password: libpq, no password
  }
  return s;
}

PgBackend* PgBackend::connect_native(Worker& w, Pool& pool, PoolHost& where, uint64_t for_client,
                                     uint64_t tried, pg::LoginSecret secret, std::string& error) {
  PgNativeCancel target;
  if (!resolve(where.address, target, error)) return nullptr;
  const int family = reinterpret_cast<const sockaddr*>(&target.addr)->sa_family;
  int fd = ::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error = strerror(errno);
    return nullptr;
  }
  if (family != AF_UNIX) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    (void)net::set_keepalive(fd, w.keepalive());
  }
  const int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&target.addr), target.addr_len);
  const int err = errno;
  if (rc != 0 && err != EINPROGRESS && err != EAGAIN) {
    error = strerror(err);
    ::close(fd);
    return nullptr;
  }
  auto* b = new PgBackend(w, pool, nullptr, fd, for_client, true);
  b->native_addr_ = target;
  b->native_ = std::make_unique<pg::ServerLogin>(pool.backend_user(), pool.cfg().database,
                                                 std::move(secret), pg::auth::make_nonce());
  pg::auth::wipe(secret.client_key);
  // TLS as libpq does it: an SSLRequest first over TCP, never on a Unix socket.
  if (pool.cfg().server_tls != "disable" && where.address.kind != config::Address::Kind::Unix) {
    b->native_tls_host_ = where.address.host;
  }
  // Writable = connected (or failed: SO_ERROR says).
  if (!b->start_connecting(where, tried)) {
    error.clear();  // handled: connect_failed told the pool and the client
    return nullptr;
  }
  return b;
}

void PgBackend::native_failed(const std::string& why) {
  native_.reset();  // wipes the key
  connect_failed(why);
}

void PgBackend::native_writable() {
  if (native_sent_startup_) {
    want_write(false);
    return;
  }
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  if (err != 0) {
    native_failed(strerror(err));
    return;
  }
  native_sent_startup_ = true;
  want_write(false);
  want_read(true);
  if (!native_tls_host_.empty()) {
    std::string req;
    pg::put_ssl_request(req);
    native_ssl_wait_ = true;
    send(req.data(), req.size());
    return;
  }
  native_send_startup();
}

void PgBackend::native_send_startup() {
  std::string out;
  native_->start(out);
  send(out.data(), out.size());  // over TLS: held until its handshake is done
}

// The server's one-byte answer to the SSLRequest (in_ holds what was read).
void PgBackend::native_ssl_answer() {
  const config::PoolConfig& cfg = pool_.cfg();
  const uint8_t answer = in_.data()[0];
  in_.consume(1);
  native_ssl_wait_ = false;
  if (answer == 'N') {
    if (cfg.server_tls != "prefer") {
      native_failed("server_tls = \"" + cfg.server_tls +
                    "\" but the server does not support TLS (it answered the SSLRequest with N)");
      return;
    }
    native_send_startup();
    return;
  }
  if (answer != 'S') {
    native_failed(answer == 'E' ? "the server answered the SSLRequest with an error"
                                : "invalid answer to the SSLRequest from the server");
    return;
  }
  if (!in_.empty()) {
    // Bytes behind the 'S' came unencrypted: not the server's (CVE-2021-23222).
    native_failed("the server sent unencrypted data after accepting the SSLRequest");
    return;
  }
  std::string error;
  tls::Ctx ctx = tls::make_client_ctx(cfg.server_tls, cfg.server_tls_ca, error);
  if (!ctx ||
      !start_tls_client(ctx.get(), native_tls_host_, cfg.server_tls == "verify-full", error)) {
    native_failed("TLS: " + error);
    return;
  }
  native_send_startup();
}

void PgBackend::native_readable() {
  switch (read_into(in_, kReadChunk)) {
    case ReadResult::Data:
      break;
    case ReadResult::Again:
      return;
    case ReadResult::Eof:
      native_failed("server closed the connection during login");
      return;
    case ReadResult::Error:
      native_failed(tls() && last_errno_ == EPROTO ? "TLS: " + tls_error()
                                                   : std::string(strerror(last_errno_)));
      return;
  }
  if (native_ssl_wait_) {
    native_ssl_answer();
    if (!native_ || closing() || in_.empty()) return;
  }
  while (native_ && !closing()) {
    pg::Message m;
    size_t used = 0;
    switch (pg::decode_message(in_.data(), in_.size(), kMaxLoginMessage, m, used)) {
      case pg::Decode::NeedMore:
        return;
      case pg::Decode::Malformed:
        native_failed("invalid message from the server during login");
        return;
      case pg::Decode::Complete:
        break;
    }
    std::string out;
    const pg::ServerLogin::Step st = native_->on_message(m.type, m.body, out);
    in_.consume(used);
    if (!out.empty()) send(out.data(), out.size());
    switch (st) {
      case pg::ServerLogin::Step::Continue:
        break;
      case pg::ServerLogin::Step::Ready:
        native_connected();
        return;
      case pg::ServerLogin::Step::Failed: {
        const std::string what = native_->error_text();
        const pg::LoginError e = native_->error();
        if (e == pg::LoginError::SaltMismatch) {
          LOG_WARN(
              "SCRAM passthrough for user \"%s\" (pool %s): the server's salt or iteration "
              "count is not the [[user]] verifier's; copy rolpassword from pg_authid again",
              pool_.backend_user().c_str(), pool_.label().c_str());
        }
        native_failed(e == pg::LoginError::ServerError
                          ? what
                          : "SCRAM passthrough login failed (" + std::string(pg::to_string(e)) +
                                "): " + what);
        return;
      }
    }
  }
}

void PgBackend::native_connected() {
  pid_ = native_->pid();
  native_addr_.pid = native_->pid();
  native_addr_.key = native_->key();
  native_cancel_ = std::make_shared<const PgNativeCancel>(native_addr_);
  for (const auto& [name, value] : native_->params()) params_.set(name, value, true);
  native_.reset();
  native_ready_ = true;
  want_write(false);
  want_read(true);
  connect_succeeded();
}

bool send_native_cancel(const PgNativeCancel& c, char* err, size_t err_len) {
  const int family = reinterpret_cast<const sockaddr*>(&c.addr)->sa_family;
  int fd = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    std::snprintf(err, err_len, "socket: %s", strerror(errno));
    return false;
  }
  timeval tv{kCancelTimeoutMs / 1000, 0};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string msg;
  pg::put_cancel_request(msg, c.pid, c.key);
  bool ok = ::connect(fd, reinterpret_cast<const sockaddr*>(&c.addr), c.addr_len) == 0 &&
            ::send(fd, msg.data(), msg.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(msg.size());
  if (!ok) {
    std::snprintf(err, err_len, "cancel: %s", strerror(errno));
  } else {
    // As PQcancel: wait for the server to close its end.
    char buf[16];
    (void)::recv(fd, buf, sizeof buf, 0);
  }
  ::close(fd);
  return ok;
}

}  // namespace sqlmux
