// SCRAM-SHA-256 client side: the client-final-message from a password
// (tests, sqlmux's own logins) or from a recovered ClientKey (SCRAM
// passthrough), and the check of the server's signature.
//
// Everything that parses peer input here reports failure through its return
// value; nothing throws on bad input.
#include <openssl/crypto.h>

#include <string>
#include <utility>

#include "protocol/pg/auth.h"
#include "protocol/pg/auth_internal.h"

namespace sqlmux::pg::auth {

using namespace detail;  // Key, hmac_sha256, Fields, ... (auth_internal.h)

namespace {

// The server-first-message "r=<nonce>,s=<salt>,i=<iterations>" (like libpq,
// nothing may follow) answering our client-first-message-bare "n=...,r=...".
bool parse_server_first(std::string_view client_first_bare, std::string_view server_first,
                        std::string_view& nonce, std::string& salt, int& iterations) {
  std::string error;
  char name = 0;
  std::string_view field;
  Fields cf(client_first_bare);
  std::string_view ignored;
  std::string_view client_nonce;
  if (!cf.next(field) || !parse_attr(field, 'n', name, ignored, error)) return false;
  if (!read_attr(cf, 'r', client_nonce, error, "client-first-message-bare")) return false;
  if (client_nonce.empty()) return false;
  if (server_first.empty() || server_first.size() > kMaxScramMessage ||
      server_first.find('\0') != std::string_view::npos) {
    return false;
  }
  Fields sf(server_first);
  std::string_view salt_b64;
  std::string_view iter_str;
  if (!read_attr(sf, 'r', nonce, error, "server-first-message") ||
      !read_attr(sf, 's', salt_b64, error, "server-first-message") ||
      !read_attr(sf, 'i', iter_str, error, "server-first-message") || sf.more()) {
    return false;
  }
  // The server must extend our nonce with a non-empty part of its own.
  if (nonce.size() <= client_nonce.size() || nonce.substr(0, client_nonce.size()) != client_nonce ||
      !is_scram_printable(nonce)) {
    return false;
  }
  auto raw = base64_decode(salt_b64);
  if (!raw || raw->empty()) return false;
  salt = std::move(*raw);
  return parse_iterations(iter_str, iterations);
}

// client-final-message from ClientKey and StoredKey; server_signature gets
// HMAC(server_key, AuthMessage) when server_key is given.
bool final_from_keys(const Key& client_key, const Key& stored_key, const Key* server_key,
                     std::string_view client_first_bare, std::string_view server_first,
                     std::string_view nonce, std::string_view gs2_header, std::string& message,
                     Key* server_signature) {
  std::string without_proof = "c=" + base64_encode(gs2_header) + ",r=" + std::string(nonce);
  std::string auth_message;
  auth_message.append(client_first_bare).append(",").append(server_first).append(",");
  auth_message.append(without_proof);
  Key client_signature{};
  if (!hmac_sha256(stored_key.data(), stored_key.size(), auth_message, client_signature)) {
    return false;
  }
  if (server_key != nullptr &&
      !hmac_sha256(server_key->data(), server_key->size(), auth_message, *server_signature)) {
    return false;
  }
  Key proof{};
  for (size_t i = 0; i < kKeyLen; ++i) {
    proof[i] = static_cast<uint8_t>(client_key[i] ^ client_signature[i]);
  }
  message = without_proof + ",p=" + base64_encode(as_view(proof));
  return true;
}

}  // namespace

std::optional<std::string> scram_client_final(std::string_view password,
                                              std::string_view client_first_bare,
                                              std::string_view server_first,
                                              std::string_view gs2_header) {
  std::string_view nonce;
  std::string salt;
  int iterations = 0;
  if (!parse_server_first(client_first_bare, server_first, nonce, salt, iterations)) {
    return std::nullopt;
  }
  Key salted{};
  Key client_key{};
  Key stored_key{};
  std::string message;
  bool ok = salted_password(password, salt, iterations, salted) &&
            hmac_sha256(salted.data(), salted.size(), "Client Key", client_key) &&
            sha256(client_key.data(), client_key.size(), stored_key) &&
            final_from_keys(client_key, stored_key, nullptr, client_first_bare, server_first, nonce,
                            gs2_header, message, nullptr);
  cleanse(salted);
  cleanse(client_key);
  if (!ok) return std::nullopt;
  return message;
}

std::string_view to_string(ScramKeyError e) {
  switch (e) {
    case ScramKeyError::None:
      return "none";
    case ScramKeyError::Malformed:
      return "malformed_server_message";
    case ScramKeyError::SaltMismatch:
      return "salt_mismatch";
    case ScramKeyError::KeyMismatch:
      return "key_mismatch";
    case ScramKeyError::BadSignature:
      return "bad_server_signature";
    case ScramKeyError::Crypto:
      return "crypto_failure";
  }
  return "unknown";
}

bool client_key_matches(const ScramKey& client_key, const ScramVerifier& v) {
  Key h{};
  return sha256(client_key.data(), client_key.size(), h) &&
         CRYPTO_memcmp(h.data(), v.stored_key.data(), kKeyLen) == 0;
}

std::optional<ScramKey> scram_client_key(std::string_view password, const ScramVerifier& v) {
  Key salted{};
  Key client_key{};
  const bool ok = salted_password(password, v.salt, v.iterations, salted) &&
                  hmac_sha256(salted.data(), salted.size(), "Client Key", client_key) &&
                  client_key_matches(client_key, v);
  cleanse(salted);
  if (!ok) {
    cleanse(client_key);
    return std::nullopt;
  }
  std::optional<ScramKey> out = client_key;
  cleanse(client_key);
  return out;
}

void wipe(ScramKey& k) {
  cleanse(k);
}

ScramKeyError scram_client_final_from_key(const ScramKey& client_key, const ScramVerifier& v,
                                          std::string_view client_first_bare,
                                          std::string_view server_first, ScramKeyFinal& out,
                                          std::string_view gs2_header) {
  if (!client_key_matches(client_key, v)) return ScramKeyError::KeyMismatch;
  std::string_view nonce;
  std::string salt;
  int iterations = 0;
  if (!parse_server_first(client_first_bare, server_first, nonce, salt, iterations)) {
    return ScramKeyError::Malformed;
  }
  if (iterations != v.iterations || salt != v.salt) return ScramKeyError::SaltMismatch;
  if (!final_from_keys(client_key, v.stored_key, &v.server_key, client_first_bare, server_first,
                       nonce, gs2_header, out.message, &out.expected_server_signature)) {
    return ScramKeyError::Crypto;
  }
  return ScramKeyError::None;
}

ScramKeyError scram_check_server_final(std::string_view server_final, const ScramKey& expected) {
  if (server_final.size() > kMaxScramMessage) return ScramKeyError::BadSignature;
  std::string error;
  Fields f(server_final);
  std::string_view sig_b64;
  if (!read_attr(f, 'v', sig_b64, error, "server-final-message")) {
    return ScramKeyError::BadSignature;
  }
  Key sig{};
  if (!decode_key(sig_b64, sig)) return ScramKeyError::BadSignature;
  // Extensions may follow the signature (RFC 5802); PostgreSQL sends none.
  return CRYPTO_memcmp(sig.data(), expected.data(), kKeyLen) == 0 ? ScramKeyError::None
                                                                  : ScramKeyError::BadSignature;
}

}  // namespace sqlmux::pg::auth
