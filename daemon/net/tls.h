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

// The context a server connection's TLS session uses (sqlmux the client),
// for a pool's server_tls mode as libpq reads sslmode: "prefer" and
// "require" check nothing unless `ca` is given (then "require" checks the
// chain, as libpq does with a root certificate); "verify-ca" checks the
// chain against `ca`; "verify-full" the host name too (Session's
// `verify_host`). nullptr with `error` set when `ca` cannot be read.
[[nodiscard]] Ctx make_client_ctx(const std::string& mode, const std::string& ca,
                                  std::string& error);

// OpenSSL's error queue as one line (and emptied).
[[nodiscard]] std::string last_error();

// One TLS session over memory BIOs: feed() what the socket delivered,
// read() plaintext, write() plaintext, and take_output() the ciphertext
// to send (handshake records included).
class Session {
 public:
  enum class Status { Ok, Again, Closed, Failed };
  explicit Session(SSL_CTX* ctx);  // server side
  // Client side: `server_name` goes out as SNI (not for an IP address);
  // `verify_host`: the certificate must name it (DNS name or IP address).
  Session(SSL_CTX* ctx, const std::string& server_name, bool verify_host);
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
  // Client side: sends the ClientHello (take_output() has it).
  [[nodiscard]] Status start_handshake();

 private:
  SSL* ssl_ = nullptr;
  BIO* in_ = nullptr;   // network -> SSL (owned by ssl_)
  BIO* out_ = nullptr;  // SSL -> network (owned by ssl_)
  std::string error_;
  void make(SSL_CTX* ctx);
};

}  // namespace sqlmux::tls
