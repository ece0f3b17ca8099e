#include "daemon/net/conn.h"

#include <cassert>

#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <openssl/err.h>

#include <algorithm>
#include <cerrno>

#include "daemon/net/loop.h"
#include "daemon/ops/metrics.h"

namespace sqlmux {

namespace {
// send() and recv() through syscall(): glibc's wrappers are cancellation
// points, which in a multi-threaded process switch asynchronous
// cancellation on and off around every call (~60 instructions each, four
// calls per relayed transaction). sqlmux never cancels a thread.
ssize_t sys_send(int fd, const void* p, size_t n, int flags) {
  return ::syscall(SYS_sendto, fd, p, n, flags, nullptr, 0);
}
ssize_t sys_recv(int fd, void* p, size_t n, int flags) {
  return ::syscall(SYS_recvfrom, fd, p, n, flags, nullptr, nullptr);
}
}  // namespace

Conn::Conn(EventLoop& l, int fd, bool owns_fd) : loop_(&l), fd_(fd), owns_fd_(owns_fd) {}

Conn::~Conn() {
  assert(poll_ == nullptr);
  if (owns_fd_ && fd_ >= 0) ::close(fd_);
}

bool Conn::attach() {
  assert(poll_ == nullptr);
  poll_ = new uv_poll_t;
  if (uv_poll_init_socket(loop_->loop(), poll_, fd_) != 0) {
    delete poll_;
    poll_ = nullptr;
    return false;
  }
  poll_->data = this;
  events_ = 0;
  update_poll();
  return true;
}

void Conn::detach(void (*then)(Conn*)) {
  assert(poll_ != nullptr && !closing_);
  uv_poll_stop(poll_);
  struct Ctx {
    Conn* conn;
    void (*then)(Conn*);
  };
  poll_->data = new Ctx{this, then};
  uv_close(reinterpret_cast<uv_handle_t*>(poll_), [](uv_handle_t* h) {
    auto* ctx = static_cast<Ctx*>(h->data);
    Conn* c = ctx->conn;
    auto* then_fn = ctx->then;
    delete ctx;
    delete reinterpret_cast<uv_poll_t*>(h);
    then_fn(c);
  });
  poll_ = nullptr;
}

bool Conn::rebind(int fd) {
  if (poll_ != nullptr) {
    uv_poll_stop(poll_);
    uv_close(reinterpret_cast<uv_handle_t*>(poll_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
    poll_ = nullptr;
  }
  fd_ = fd;
  return attach();
}

void Conn::close() {
  if (closing_) return;
  if (cork_depth_ > 0) {
    cork_depth_ = 1;
    uncork();  // what was queued (a FATAL, say) goes out before the close
  }
  closing_ = true;
  if (poll_ == nullptr) {
    // Not attached (e.g. between workers): finish on the next loop turn.
    loop_->defer_close(this);
    return;
  }
  uv_poll_stop(poll_);
  uv_close(reinterpret_cast<uv_handle_t*>(poll_), [](uv_handle_t* h) {
    auto* c = static_cast<Conn*>(h->data);
    delete reinterpret_cast<uv_poll_t*>(h);
    c->poll_ = nullptr;
    c->on_closed();
  });
}

void Conn::want_read(bool on) {
  if (want_read_ == on) return;
  want_read_ = on;
  update_poll();
}

void Conn::want_write(bool on) {
  if (want_write_ == on) return;
  want_write_ = on;
  update_poll();
}

void Conn::update_poll() {
  if (poll_ == nullptr || closing_) return;
  int ev = 0;
  if (want_read_) ev |= UV_READABLE;
  if (want_write_ || !out_.empty()) ev |= UV_WRITABLE;
  if (ev == events_) return;
  events_ = ev;
  if (ev == 0) {
    uv_poll_stop(poll_);
  } else {
    uv_poll_start(poll_, ev, &Conn::poll_cb);
  }
}

ssize_t Conn::write_some(const uint8_t* p, size_t n) {
  if (ext_ssl_ != nullptr) {
    ERR_clear_error();
    const int k = SSL_write(ext_ssl_, p, static_cast<int>(std::min<size_t>(n, 1u << 30)));
    if (k > 0) return k;
    const int e = SSL_get_error(ext_ssl_, k);
    errno = e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ ? EAGAIN
            : e == SSL_ERROR_SYSCALL && errno != 0                ? errno
                                                                  : EPROTO;
    return -1;
  }
  ssize_t w;
  do {
    w = sys_send(fd_, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
  } while (w < 0 && errno == EINTR);
  return w;
}

void Conn::use_ssl(SSL* ssl) {
  ext_ssl_ = ssl;
  // Unsent bytes stay at the front of out_, which may move and grow.
  SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
}

size_t Conn::send_now(const uint8_t* p, size_t n) {
  const ssize_t w = write_some(p, n);
  if (w >= 0) return static_cast<size_t>(w);
  if (errno != EAGAIN && errno != EWOULDBLOCK) {
    last_errno_ = errno;
    failed_ = true;
    loop_->defer_error(this);
  }
  return 0;
}

bool Conn::send(const void* p, size_t n) {
  if (failed_ || closing_) return false;
  if (n == 0) return true;
  if (bytes_out_ != nullptr) bytes_out_->add(n);
  const auto* bytes = static_cast<const uint8_t*>(p);
  if (tls_ != nullptr) {
    if (cork_depth_ > 0 || !tls_->handshake_done()) {
      tls_plain_.append(reinterpret_cast<const char*>(bytes), n);
      return true;
    }
    return tls_encrypt(bytes, n);
  }
  return send_raw(bytes, n);
}

bool Conn::send_raw(const uint8_t* bytes, size_t n) {
  if (failed_ || closing_) return false;
  if (n == 0) return true;
  if (cork_depth_ > 0 && tls_ == nullptr) {
    out_.append(bytes, n);
    return true;
  }
  if (out_.empty()) {
    const size_t w = send_now(bytes, n);
    if (failed_) return false;
    bytes += w;
    n -= w;
    if (n == 0) return true;
  }
  out_.append(bytes, n);
  update_poll();
  return true;
}

void Conn::uncork() {
  assert(cork_depth_ > 0);
  if (tls_ != nullptr) {
    if (--cork_depth_ > 0 || failed_ || closing_) return;
    (void)tls_send_held();
    return;
  }
  if (--cork_depth_ > 0 || out_.empty() || failed_ || closing_) return;
  out_.consume(send_now(out_.data(), out_.size()));
  if (failed_) return;
  out_.shrink_if_empty();
  update_poll();
}

void Conn::flush() {
  while (!out_.empty()) {
    ssize_t w = write_some(out_.data(), out_.size());
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      last_errno_ = errno;
      failed_ = true;
      loop_->defer_error(this);
      return;
    }
    out_.consume(static_cast<size_t>(w));
  }
  out_.shrink_if_empty();
  update_poll();
  on_writable();
}

bool Conn::start_tls(SSL_CTX* ctx) {
  assert(tls_ == nullptr);
  tls_ = std::make_unique<tls::Session>(ctx);
  return tls_->valid();
}

bool Conn::start_tls(SSL_CTX* ctx, const uint8_t* received, size_t n) {
  if (!start_tls(ctx)) return false;
  return n == 0 || tls_->feed(received, n);
}

bool Conn::start_tls_client(SSL_CTX* ctx, const std::string& server_name, bool verify_host,
                            std::string& error) {
  assert(tls_ == nullptr);
  auto session = std::make_unique<tls::Session>(ctx, server_name, verify_host);
  // Only a usable session is kept: send() on the way out must not meet one
  // without an SSL object.
  if (!session->valid() || session->start_handshake() == tls::Session::Status::Failed) {
    error = session->error();
    return false;
  }
  tls_ = std::move(session);
  if (!tls_flush_output()) {
    error = "cannot send the ClientHello";
    return false;
  }
  return true;
}

bool Conn::tls_encrypt(const uint8_t* p, size_t n) {
  if (tls_->write(p, n) != tls::Session::Status::Ok) {
    last_errno_ = EPROTO;
    failed_ = true;
    loop_->defer_error(this);
    return false;
  }
  return tls_flush_output();
}

bool Conn::tls_send_held() {
  if (!tls_->handshake_done() || tls_plain_.empty()) return true;
  std::string plain;
  plain.swap(tls_plain_);
  return tls_encrypt(reinterpret_cast<const uint8_t*>(plain.data()), plain.size());
}

bool Conn::tls_flush_output() {
  tls_cipher_.clear();
  tls_->take_output(tls_cipher_);
  const bool ok =
      send_raw(reinterpret_cast<const uint8_t*>(tls_cipher_.data()), tls_cipher_.size());
  if (tls_cipher_.capacity() > size_t{64} * 1024) {
    std::string().swap(tls_cipher_);
  }
  return ok;
}

Conn::ReadResult Conn::tls_read(Buffer& b, size_t max) {
  uint8_t raw[16 * 1024];
  ssize_t r;
  do {
    r = sys_recv(fd_, raw, sizeof raw, MSG_DONTWAIT);
  } while (r < 0 && errno == EINTR);
  bool eof = false;
  if (r > 0) {
    if (!tls_->feed(raw, static_cast<size_t>(r))) {
      last_errno_ = ENOMEM;
      return ReadResult::Error;
    }
  } else if (r == 0) {
    eof = true;
  } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
    last_errno_ = errno;
    return ReadResult::Error;
  }
  size_t got = 0;
  for (;;) {
    uint8_t* dst = b.reserve(max);
    size_t n = 0;
    const tls::Session::Status st = tls_->read(dst, max, n);
    if (st == tls::Session::Status::Ok) {
      b.commit(n);
      got += n;
      continue;
    }
    if (st == tls::Session::Status::Again) break;
    if (st == tls::Session::Status::Closed) {
      eof = true;
      break;
    }
    (void)tls_flush_output();  // the alert, if any
    b.shrink_if_empty();
    last_errno_ = EPROTO;
    return ReadResult::Error;
  }
  // Handshake records, and what waited for the handshake to finish.
  if (!tls_flush_output()) return ReadResult::Error;
  if (cork_depth_ == 0 && !tls_send_held()) return ReadResult::Error;
  if (got > 0) {
    if (bytes_in_ != nullptr) bytes_in_->add(got);
    return ReadResult::Data;
  }
  b.shrink_if_empty();
  return eof ? ReadResult::Eof : ReadResult::Again;
}

Conn::ReadResult Conn::ext_ssl_read(Buffer& b, size_t max) {
  // Until OpenSSL needs the socket again: nothing may stay decrypted inside
  // it, since the poll handle only sees the socket.
  size_t got = 0;
  bool eof = false;
  for (;;) {
    uint8_t* dst = b.reserve(max);
    ERR_clear_error();
    errno = 0;
    const int k = SSL_read(ext_ssl_, dst, static_cast<int>(std::min<size_t>(max, 1u << 30)));
    if (k > 0) {
      b.commit(static_cast<size_t>(k));
      got += static_cast<size_t>(k);
      continue;
    }
    const int e = SSL_get_error(ext_ssl_, k);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) break;
    if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && errno == 0)) {
      eof = true;  // close_notify, or the peer closed the socket
      break;
    }
    last_errno_ = e == SSL_ERROR_SYSCALL ? errno : EPROTO;
    b.shrink_if_empty();
    return got > 0 ? ReadResult::Data : ReadResult::Error;
  }
  if (got > 0) {
    if (bytes_in_ != nullptr) bytes_in_->add(got);
    return ReadResult::Data;  // an EOF right behind it shows at the next read
  }
  b.shrink_if_empty();
  return eof ? ReadResult::Eof : ReadResult::Again;
}

Conn::ReadResult Conn::read_into(Buffer& b, size_t max) {
  if (tls_ != nullptr) return tls_read(b, max);
  if (ext_ssl_ != nullptr) return ext_ssl_read(b, max);
  uint8_t* dst = b.reserve(max);
  ssize_t r;
  do {
    r = sys_recv(fd_, dst, max, MSG_DONTWAIT);
  } while (r < 0 && errno == EINTR);
  if (r > 0) {
    b.commit(static_cast<size_t>(r));
    if (bytes_in_ != nullptr) bytes_in_->add(static_cast<uint64_t>(r));
    return ReadResult::Data;
  }
  // Nothing came: storage reserved for this read goes straight back to the
  // thread's block cache (10,000 clients closing at once must not each hold
  // a fresh block until their close callbacks run).
  b.shrink_if_empty();
  if (r == 0) return ReadResult::Eof;
  if (errno == EAGAIN || errno == EWOULDBLOCK) return ReadResult::Again;
  last_errno_ = errno;
  return ReadResult::Error;
}

void Conn::report_io_error() {
  if (!closing_) on_io_error(last_errno_);
}

void Conn::poll_cb(uv_poll_t* h, int status, int events) {
  auto* c = static_cast<Conn*>(h->data);
  if (c->closing_) return;
  if (status < 0) {
    c->last_errno_ = -status;
    c->failed_ = true;
    c->on_io_error(-status);
    return;
  }
  if ((events & UV_WRITABLE) != 0) {
    if (!c->out_.empty()) c->flush();
    if (c->closing_) return;
    if (c->want_write_) c->on_poll_writable();
    if (c->closing_) return;
  }
  if ((events & UV_READABLE) != 0 && c->want_read_) c->on_readable();
}

}  // namespace sqlmux
