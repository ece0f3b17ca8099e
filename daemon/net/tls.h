// TLS with OpenSSL for sockets sqlmux drives itself: a server-side context
// from [tls], and a memory-BIO session that never blocks an event loop
// (ciphertext goes through the connection's own socket code).
#pragma once

#include <openssl/ssl.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "config/config.h"

namespace sqlmux::tls {

struct CtxDeleter {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
using Ctx = std::unique_ptr<SSL_CTX, CtxDeleter>;

// The context clients' TLS sessions use; nullptr with `error` set when a
// file cannot be used (wrong key for the certificate, unreadable, ...).
[[nodiscard]] Ctx make_server_ctx(const config::TlsConfig& cfg, std::string& error);

// OpenSSL's error queue as one line (and emptied).
[[nodiscard]] std::string last_error();

// One TLS session over memory BIOs: feed() what the socket delivered,
// read() plaintext, write() plaintext, and take_output() the ciphertext
// to send (handshake records included).
class Session {
 public:
  enum class Status { Ok, Again, Closed, Failed };
  explicit Session(SSL_CTX* ctx);  // server side
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  [[nodiscard]] bool valid() const { return ssl_ != nullptr; }

  [[nodiscard]] bool feed(const uint8_t* p, size_t n);
  // Plaintext into dst (at most cap bytes); n = bytes read. Again: needs
  // more ciphertext; Closed: the peer's close_notify; Failed: see error().
  [[nodiscard]] Status read(uint8_t* dst, size_t cap, size_t& n);
  [[nodiscard]] Status write(const uint8_t* p, size_t n);
  // Ciphertext waiting to go out; appends to `out`.
  void take_output(std::string& out);
  [[nodiscard]] bool handshake_done() const;
  [[nodiscard]] const std::string& error() const { return error_; }
  [[nodiscard]] std::string version() const;

 private:
  SSL* ssl_ = nullptr;
  BIO* in_ = nullptr;   // network -> SSL (owned by ssl_)
  BIO* out_ = nullptr;  // SSL -> network (owned by ssl_)
  std::string error_;
};

}  // namespace sqlmux::tls
