// A non-blocking socket driven by a libuv poll handle on one thread's loop
// (net/loop.h).
//
// Bytes are sent straight from the caller's memory when nothing is queued;
// only what the kernel does not take is copied into out_. The poll handle's
// memory is freed in its close callback, and the Conn itself is deleted
// only from on_closed(), which runs from that callback.
#pragma once

#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "daemon/net/buffer.h"
#include "daemon/net/tls.h"

namespace sqlmux {

class EventLoop;
namespace metrics {
class Counter;
}

class Conn {
 public:
  Conn(EventLoop& l, int fd, bool owns_fd);
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;
  virtual ~Conn();

  [[nodiscard]] int fd() const { return fd_; }
  [[nodiscard]] bool closing() const { return closing_; }
  [[nodiscard]] bool attached() const { return poll_ != nullptr; }

  // Starts polling on the worker's loop (reading on).
  [[nodiscard]] bool attach();
  // Stops polling and frees the handle; the fd stays open. `then` runs from
  // the close callback (the Conn may then move to another worker).
  void detach(void (*then)(Conn*));
  // Moves to another loop (detached: after detach(), before attach()).
  void set_loop(EventLoop& l) { loop_ = &l; }
  // Replaces the fd being polled (libpq may switch sockets while connecting).
  [[nodiscard]] bool rebind(int fd);

  // Idempotent. Closes the handle, then the fd when owned; on_closed() runs
  // from the close callback.
  void close();

  void want_read(bool on);
  // Poll for writability even with nothing queued (libpq connect phase).
  void want_write(bool on);
  [[nodiscard]] bool reading() const { return want_read_; }

  // False once the socket failed; the failure is reported through
  // on_io_error() from the worker's deferred queue, never re-entrantly.
  bool send(const void* p, size_t n);
  [[nodiscard]] size_t queued() const { return out_.size(); }
  // Between cork() and uncork() (nestable), send() only queues; uncork()
  // sends everything in one system call. close() uncorks first.
  void cork() { ++cork_depth_; }
  void uncork();

  // From now on the bytes on this socket are TLS, sqlmux being the server:
  // send() and read_into() carry plaintext. False when no session could be
  // made (see tls_error()).
  [[nodiscard]] bool start_tls(SSL_CTX* ctx);
  // The same with ciphertext already read off the socket as plaintext (a
  // MySQL client sends its ClientHello right behind the SSLRequest): it is
  // the session's first input. A read_into() then goes on with it.
  [[nodiscard]] bool start_tls(SSL_CTX* ctx, const uint8_t* received, size_t n);
  // From now on the bytes on this socket are TLS, sqlmux being the client
  // (a MySQL server connection): the ClientHello goes out at once; what
  // send() is given waits for the handshake. A failed handshake shows as a
  // read_into() Error with last_errno_ EPROTO (see tls_error()). False
  // (with `error`) when it could not start: the connection stays without TLS.
  [[nodiscard]] bool start_tls_client(SSL_CTX* ctx, const std::string& server_name,
                                      bool verify_host, std::string& error);
  [[nodiscard]] bool tls() const { return tls_ != nullptr || ext_ssl_ != nullptr; }
  // Relays through a TLS session another library set up on this socket
  // (libpq's, to a server): SSL_read / SSL_write on the socket. Not owned.
  void use_ssl(SSL* ssl);
  [[nodiscard]] std::string tls_error() const { return tls_ ? tls_->error() : std::string(); }
  [[nodiscard]] std::string tls_version() const { return tls_ ? tls_->version() : std::string(); }

  enum class ReadResult { Data, Again, Eof, Error };
  [[nodiscard]] ReadResult read_into(Buffer& b, size_t max);
  // Counters of bytes received and sent (metrics; nullptr: not counted).
  void count_bytes(metrics::Counter* in, metrics::Counter* out) {
    bytes_in_ = in;
    bytes_out_ = out;
  }

  // Called by the worker's deferred queue.
  void report_io_error();
  void report_closed_detached() { on_closed(); }

 protected:
  virtual void on_readable() = 0;
  virtual void on_writable() {}       // everything queued was sent
  virtual void on_poll_writable() {}  // want_write() was on and the socket is writable
  virtual void on_io_error(int err) = 0;
  virtual void on_closed() = 0;

  EventLoop* loop_;
  int fd_;
  Buffer in_;
  Buffer out_;
  int last_errno_ = 0;

 private:
  static void poll_cb(uv_poll_t* h, int status, int events);
  void flush();
  // One non-blocking send: the bytes the kernel took (0 when full, or on a
  // failure, which marks the connection failed and defers its report).
  size_t send_now(const uint8_t* p, size_t n);
  // send() after counting: the bytes as they go on the wire.
  bool send_raw(const uint8_t* p, size_t n);
  // TLS: encrypts plaintext and sends the records; sends pending output.
  bool tls_encrypt(const uint8_t* p, size_t n);
  bool tls_flush_output();
  // Encrypts and sends the plaintext held for the handshake or a cork.
  bool tls_send_held();
  ReadResult tls_read(Buffer& b, size_t max);
  ReadResult ext_ssl_read(Buffer& b, size_t max);
  // One non-blocking write of p[0..n) to the socket, or through ext_ssl_.
  ssize_t write_some(const uint8_t* p, size_t n);
  void update_poll();

  uv_poll_t* poll_ = nullptr;
  std::unique_ptr<tls::Session> tls_;
  SSL* ext_ssl_ = nullptr;
  std::string tls_plain_;   // plaintext held while corked or before the handshake is done
  std::string tls_cipher_;  // scratch: records on their way to send_raw()
  int cork_depth_ = 0;
  metrics::Counter* bytes_in_ = nullptr;
  metrics::Counter* bytes_out_ = nullptr;
  bool owns_fd_;
  bool closing_ = false;
  bool failed_ = false;
  bool want_read_ = true;
  bool want_write_ = false;
  int events_ = 0;
};

}  // namespace sqlmux
