#include "daemon/net/tls.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <climits>

namespace sqlmux::tls {

std::string last_error() {
  std::string out;
  char buf[256];
  while (unsigned long e = ERR_get_error()) {
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) {
      out += "; ";
    }
    out += buf;
  }
  return out.empty() ? "unknown TLS error" : out;
}

Ctx make_server_ctx(const config::TlsConfig& cfg, std::string& error) {
  Ctx ctx(SSL_CTX_new(TLS_server_method()));
  if (!ctx) {
    error = last_error();
    return nullptr;
  }
  SSL_CTX_set_min_proto_version(ctx.get(),
                                cfg.min_version == "1.3" ? TLS1_3_VERSION : TLS1_2_VERSION);
  SSL_CTX_set_options(ctx.get(), SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_ENABLE_PARTIAL_WRITE);
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), cfg.cert.c_str()) != 1) {
    error = "tls.cert " + cfg.cert + ": " + last_error();
    return nullptr;
  }
  if (SSL_CTX_use_PrivateKey_file(ctx.get(), cfg.key.c_str(), SSL_FILETYPE_PEM) != 1) {
    error = "tls.key " + cfg.key + ": " + last_error();
    return nullptr;
  }
  if (SSL_CTX_check_private_key(ctx.get()) != 1) {
    error = "tls.key " + cfg.key + " does not match tls.cert " + cfg.cert;
    return nullptr;
  }
  if (!cfg.ciphers.empty() && SSL_CTX_set_cipher_list(ctx.get(), cfg.ciphers.c_str()) != 1) {
    error = "tls.ciphers: " + last_error();
    return nullptr;
  }
  if (cfg.ca) {
    if (SSL_CTX_load_verify_locations(ctx.get(), cfg.ca->c_str(), nullptr) != 1) {
      error = "tls.ca " + *cfg.ca + ": " + last_error();
      return nullptr;
    }
    // A client certificate is asked for and, when one is sent, verified.
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(cfg.ca->c_str());
    if (names != nullptr) {
      SSL_CTX_set_client_CA_list(ctx.get(), names);
    }
  }
  return ctx;
}

Ctx make_client_ctx(const std::string& mode, const std::string& ca, std::string& error) {
  Ctx ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) {
    error = last_error();
    return nullptr;
  }
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  SSL_CTX_set_options(ctx.get(), SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_ENABLE_PARTIAL_WRITE);
  const bool verify =
      mode == "verify-ca" || mode == "verify-full" || (mode == "require" && !ca.empty());
  if (verify) {
    if (ca.empty()) {
      error = "server_tls = \"" + mode + "\" needs server_tls_ca";
      return nullptr;
    }
    if (SSL_CTX_load_verify_locations(ctx.get(), ca.c_str(), nullptr) != 1) {
      error = "server_tls_ca " + ca + ": " + last_error();
      return nullptr;
    }
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  } else {
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
  }
  return ctx;
}

Session::Session(SSL_CTX* ctx) {
  make(ctx);
  if (ssl_ != nullptr) SSL_set_accept_state(ssl_);
}

Session::Session(SSL_CTX* ctx, const std::string& server_name, bool verify_host) {
  make(ctx);
  if (ssl_ == nullptr) return;
  SSL_set_connect_state(ssl_);
  in6_addr a6{};
  in_addr a4{};
  const bool is_ip = inet_pton(AF_INET, server_name.c_str(), &a4) == 1 ||
                     inet_pton(AF_INET6, server_name.c_str(), &a6) == 1;
  if (!is_ip && !server_name.empty()) {
    (void)SSL_set_tlsext_host_name(ssl_, server_name.c_str());
  }
  if (verify_host) {
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    const int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, server_name.c_str())
                         : X509_VERIFY_PARAM_set1_host(param, server_name.c_str(), 0);
    if (ok != 1) {
      error_ = "cannot check the host name " + server_name;
      SSL_free(ssl_);
      ssl_ = nullptr;
    }
  }
}

Session::Status Session::start_handshake() {
  const int k = SSL_do_handshake(ssl_);
  if (k == 1) return Status::Ok;
  switch (SSL_get_error(ssl_, k)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
      return Status::Again;
    default:
      error_ = last_error();
      return Status::Failed;
  }
}

void Session::make(SSL_CTX* ctx) {
  ssl_ = SSL_new(ctx);
  if (ssl_ == nullptr) {
    error_ = last_error();
    return;
  }
  in_ = BIO_new(BIO_s_mem());
  out_ = BIO_new(BIO_s_mem());
  if (in_ == nullptr || out_ == nullptr) {
    BIO_free(in_);
    BIO_free(out_);
    SSL_free(ssl_);
    ssl_ = nullptr;
    error_ = "out of memory";
    return;
  }
  BIO_set_mem_eof_return(in_, -1);  // empty means "more to come", not EOF
  SSL_set_bio(ssl_, in_, out_);
}

Session::~Session() {
  if (ssl_ != nullptr) {
    SSL_free(ssl_);
  }
}

bool Session::feed(const uint8_t* p, size_t n) {
  while (n > 0) {
    const int k = BIO_write(in_, p, static_cast<int>(std::min<size_t>(n, INT_MAX)));
    if (k <= 0) {
      error_ = "out of memory";
      return false;
    }
    p += k;
    n -= static_cast<size_t>(k);
  }
  return true;
}

Session::Status Session::read(uint8_t* dst, size_t cap, size_t& n) {
  n = 0;
  const int k = SSL_read(ssl_, dst, static_cast<int>(std::min<size_t>(cap, INT_MAX)));
  if (k > 0) {
    n = static_cast<size_t>(k);
    return Status::Ok;
  }
  switch (SSL_get_error(ssl_, k)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
      return Status::Again;
    case SSL_ERROR_ZERO_RETURN:
      return Status::Closed;
    default:
      error_ = last_error();
      if (const long v = SSL_get_verify_result(ssl_); v != X509_V_OK) {
        error_ += std::string(" (") + X509_verify_cert_error_string(v) + ")";
      }
      return Status::Failed;
  }
}

Session::Status Session::write(const uint8_t* p, size_t n) {
  while (n > 0) {
    const int k = SSL_write(ssl_, p, static_cast<int>(std::min<size_t>(n, INT_MAX)));
    if (k <= 0) {
      error_ = last_error();
      return Status::Failed;  // memory BIOs never ask to wait
    }
    p += k;
    n -= static_cast<size_t>(k);
  }
  return Status::Ok;
}

void Session::take_output(std::string& out) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(out_, &data);
  if (n <= 0) {
    return;
  }
  out.append(data, static_cast<size_t>(n));
  (void)BIO_reset(out_);
}

bool Session::handshake_done() const {
  return SSL_is_init_finished(ssl_) == 1;
}

std::string Session::version() const {
  return SSL_get_version(ssl_);
}

}  // namespace sqlmux::tls
