// sqlmux's own login to a PostgreSQL server, for SCRAM passthrough: the
// StartupMessage, the authentication exchange (SCRAM-SHA-256 from a client's
// recovered ClientKey, without channel binding; md5 from a stored md5 hash;
// none when the server trusts), then AuthenticationOk, ParameterStatus,
// BackendKeyData and ReadyForQuery. Pure: whole backend messages in, bytes
// to send out; the caller does the I/O (daemon/pg/backend_native.cpp).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "protocol/pg/auth.h"
#include "protocol/pg/codec.h"

namespace sqlmux::pg {

// What the login logs in with.
struct LoginSecret {
  enum class Kind { ScramKey, Md5Hash };
  Kind kind = Kind::ScramKey;
  auth::ScramVerifier verifier;  // ScramKey: the [[user]] verifier
  auth::ScramKey client_key{};   // ScramKey: the client's recovered ClientKey
  std::string md5;               // Md5Hash: "md5" + 32 hex
};

enum class LoginError {
  None,
  ServerError,         // the server sent an ErrorResponse (server_error says)
  SaltMismatch,        // the server's SCRAM salt/iterations are not the verifier's
  KeyMismatch,         // the ClientKey does not belong to the verifier
  BadServerSignature,  // the server did not prove it knows the verifier
  UnsupportedAuth,     // an authentication method the secret cannot answer
  ProtocolError,       // a malformed or unexpected message
  Crypto,              // libcrypto failed
};
[[nodiscard]] std::string_view to_string(LoginError e);

class ServerLogin {
 public:
  // nonce: the client nonce (auth::make_nonce()).
  ServerLogin(std::string user, std::string database, LoginSecret secret, std::string nonce);
  ~ServerLogin();
  ServerLogin(const ServerLogin&) = delete;
  ServerLogin& operator=(const ServerLogin&) = delete;

  // The StartupMessage.
  void start(std::string& out) const;

  enum class Step { Continue, Ready, Failed };
  // One whole backend message (type, body without the header). Appends to
  // `out` what to send. Ready after ReadyForQuery; Failed with error().
  [[nodiscard]] Step on_message(char type, std::string_view body, std::string& out);

  [[nodiscard]] LoginError error() const { return error_; }
  // Why, in words (for the log and the client); never holds a secret.
  [[nodiscard]] const std::string& error_text() const { return error_text_; }
  [[nodiscard]] const ErrorFields& server_error() const { return server_error_; }
  // Filled by the time on_message returns Ready.
  [[nodiscard]] int32_t pid() const { return pid_; }
  [[nodiscard]] int32_t key() const { return key_; }
  [[nodiscard]] const std::vector<std::pair<std::string, std::string>>& params() const {
    return params_;
  }

 private:
  enum class State { Auth, SaslContinue, SaslFinal, Md5Sent, ScramDone, Ok, Done, Failed };
  Step fail(LoginError e, std::string text);
  Step on_auth(std::string_view body, std::string& out);

  std::string user_;
  std::string database_;
  LoginSecret secret_;
  std::string nonce_;
  State state_ = State::Auth;
  std::string client_first_bare_;
  auth::ScramKey expected_signature_{};
  LoginError error_ = LoginError::None;
  std::string error_text_;
  ErrorFields server_error_;
  int32_t pid_ = 0;
  int32_t key_ = 0;
  std::vector<std::pair<std::string, std::string>> params_;
};

}  // namespace sqlmux::pg
