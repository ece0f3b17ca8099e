#include "protocol/pg/server_login.h"

namespace sqlmux::pg {

namespace {
// Authentication request codes ('R').
constexpr int32_t kAuthOk = 0;
constexpr int32_t kAuthCleartext = 3;
constexpr int32_t kAuthMd5 = 5;
constexpr int32_t kAuthSasl = 10;
constexpr int32_t kAuthSaslContinue = 11;
constexpr int32_t kAuthSaslFinal = 12;
constexpr std::string_view kScram = "SCRAM-SHA-256";

// The mechanisms of AuthenticationSASL: C strings ending with an empty one.
bool offers_scram(std::string_view rest) {
  while (!rest.empty()) {
    const size_t nul = rest.find('\0');
    if (nul == std::string_view::npos) return false;
    if (nul == 0) return false;  // the list ended without it
    if (rest.substr(0, nul) == kScram) return true;
    rest.remove_prefix(nul + 1);
  }
  return false;
}
}  // namespace

std::string_view to_string(LoginError e) {
  switch (e) {
    case LoginError::None:
      return "none";
    case LoginError::ServerError:
      return "server_error";
    case LoginError::SaltMismatch:
      return "salt_mismatch";
    case LoginError::KeyMismatch:
      return "key_mismatch";
    case LoginError::BadServerSignature:
      return "bad_server_signature";
    case LoginError::UnsupportedAuth:
      return "unsupported_auth";
    case LoginError::ProtocolError:
      return "protocol_error";
    case LoginError::Crypto:
      return "crypto_failure";
  }
  return "unknown";
}

ServerLogin::ServerLogin(std::string user, std::string database, LoginSecret secret,
                         std::string nonce)
    : user_(std::move(user)),
      database_(std::move(database)),
      secret_(std::move(secret)),
      nonce_(std::move(nonce)) {}

ServerLogin::~ServerLogin() {
  auth::wipe(secret_.client_key);
}

void ServerLogin::start(std::string& out) const {
  put_startup(out, {{"user", user_}, {"database", database_}});
}

ServerLogin::Step ServerLogin::fail(LoginError e, std::string text) {
  state_ = State::Failed;
  error_ = e;
  error_text_ = std::move(text);
  auth::wipe(secret_.client_key);
  return Step::Failed;
}

ServerLogin::Step ServerLogin::on_message(char type, std::string_view body, std::string& out) {
  if (state_ == State::Failed || state_ == State::Done) {
    return fail(LoginError::ProtocolError, "message after the login ended");
  }
  switch (type) {
    case 'E': {
      ErrorFields e;
      if (!parse_error_fields(body, e)) {
        return fail(LoginError::ProtocolError, "malformed ErrorResponse from the server");
      }
      server_error_ = e;
      return fail(LoginError::ServerError,
                  !e.message.empty() ? e.message
                                     : "the server refused the login (SQLSTATE " +
                                           (e.sqlstate.empty() ? "none" : e.sqlstate) + ")");
    }
    case 'N':
      return Step::Continue;  // a NoticeResponse: nothing to do
    case 'R':
      return on_auth(body, out);
    default:
      break;
  }
  if (state_ != State::Ok) {
    return fail(LoginError::ProtocolError,
                std::string("unexpected message type '") + type + "' during authentication");
  }
  switch (type) {
    case 'S': {
      std::string_view name;
      std::string_view value;
      if (!parse_parameter_status(body, name, value)) {
        return fail(LoginError::ProtocolError, "malformed ParameterStatus from the server");
      }
      params_.emplace_back(name, value);
      return Step::Continue;
    }
    case 'K':
      if (!parse_backend_key_data(body, pid_, key_)) {
        return fail(LoginError::ProtocolError, "malformed BackendKeyData from the server");
      }
      return Step::Continue;
    case 'Z': {
      char st = 0;
      if (!parse_ready_for_query(body, st)) {
        return fail(LoginError::ProtocolError, "malformed ReadyForQuery from the server");
      }
      state_ = State::Done;
      return Step::Ready;
    }
    case 'v':  // NegotiateProtocolVersion: we asked for 3.0 and no options
    default:
      return fail(LoginError::ProtocolError,
                  std::string("unexpected message type '") + type + "' after AuthenticationOk");
  }
}

ServerLogin::Step ServerLogin::on_auth(std::string_view body, std::string& out) {
  int32_t code = 0;
  std::string_view rest;
  if (!parse_authentication(body, code, rest)) {
    return fail(LoginError::ProtocolError, "malformed authentication request from the server");
  }
  const bool scram = secret_.kind == LoginSecret::Kind::ScramKey;
  if (code == kAuthOk) {
    if (state_ == State::SaslContinue || state_ == State::SaslFinal) {
      // AuthenticationOk before the server proved itself (SCRAM): refused
      // as libpq refuses it.
      return fail(LoginError::BadServerSignature,
                  "the server ended the SCRAM exchange without its signature");
    }
    if (state_ == State::Ok) {
      return fail(LoginError::ProtocolError, "AuthenticationOk twice from the server");
    }
    auth::wipe(secret_.client_key);
    state_ = State::Ok;
    return Step::Continue;
  }
  switch (state_) {
    case State::Auth:
      if (code == kAuthSasl) {
        if (!offers_scram(rest)) {
          return fail(LoginError::UnsupportedAuth,
                      "the server offers no SASL mechanism sqlmux speaks (SCRAM-SHA-256)");
        }
        if (!scram) {
          return fail(LoginError::UnsupportedAuth,
                      "the server asks for SCRAM-SHA-256 but the [[user]] password is an md5 "
                      "hash; store the user's SCRAM verifier from pg_authid instead");
        }
        if (!auth::client_key_matches(secret_.client_key, secret_.verifier)) {
          return fail(LoginError::KeyMismatch,
                      "no client key for the [[user]] verifier (a client must log in with it "
                      "first)");
        }
        client_first_bare_ = "n=,r=" + nonce_;
        put_sasl_initial_response(out, kScram, "n,," + client_first_bare_);
        state_ = State::SaslContinue;
        return Step::Continue;
      }
      if (code == kAuthMd5) {
        if (rest.size() != 4) {
          return fail(LoginError::ProtocolError, "malformed AuthenticationMD5Password");
        }
        if (scram) {
          return fail(LoginError::UnsupportedAuth,
                      "the server asks for md5 but the [[user]] password is a SCRAM verifier, "
                      "from which no md5 response can be made");
        }
        const auto* salt = reinterpret_cast<const uint8_t*>(rest.data());
        put_password(out, auth::md5_salted_response(secret_.md5, salt));
        state_ = State::Md5Sent;  // only AuthenticationOk (or an error) may follow
        return Step::Continue;
      }
      if (code == kAuthCleartext) {
        return fail(LoginError::UnsupportedAuth,
                    "the server asks for a cleartext password, which sqlmux does not have "
                    "(the [[user]] password is a hash)");
      }
      return fail(LoginError::UnsupportedAuth,
                  "the server asks for authentication method " + std::to_string(code) +
                      ", which sqlmux cannot answer with a hashed [[user]] password");
    case State::SaslContinue: {
      if (code != kAuthSaslContinue) break;
      auth::ScramKeyFinal fin;
      const auth::ScramKeyError e = auth::scram_client_final_from_key(
          secret_.client_key, secret_.verifier, client_first_bare_, rest, fin);
      auth::wipe(secret_.client_key);
      switch (e) {
        case auth::ScramKeyError::None:
          break;
        case auth::ScramKeyError::SaltMismatch:
          return fail(LoginError::SaltMismatch,
                      "the server's SCRAM salt or iteration count differs from the [[user]] "
                      "verifier's: copy the user's current rolpassword from pg_authid");
        case auth::ScramKeyError::KeyMismatch:
          return fail(LoginError::KeyMismatch, "the client key does not match the verifier");
        case auth::ScramKeyError::Crypto:
          return fail(LoginError::Crypto, "SCRAM computation failed");
        case auth::ScramKeyError::Malformed:
        case auth::ScramKeyError::BadSignature:
          return fail(LoginError::ProtocolError, "malformed SCRAM server-first-message");
      }
      expected_signature_ = fin.expected_server_signature;
      put_sasl_response(out, fin.message);
      state_ = State::SaslFinal;
      return Step::Continue;
    }
    case State::SaslFinal:
      if (code != kAuthSaslFinal || !scram) break;
      if (auth::scram_check_server_final(rest, expected_signature_) != auth::ScramKeyError::None) {
        return fail(LoginError::BadServerSignature,
                    "the server's SCRAM signature is wrong (it does not hold the verifier)");
      }
      state_ = State::ScramDone;  // AuthenticationOk next
      return Step::Continue;
    case State::Md5Sent:
    case State::ScramDone:
    case State::Ok:
    case State::Done:
    case State::Failed:
      break;
  }
  return fail(LoginError::ProtocolError,
              "unexpected authentication request " + std::to_string(code) + " from the server");
}

}  // namespace sqlmux::pg
