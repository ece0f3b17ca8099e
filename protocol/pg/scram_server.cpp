// SCRAM-SHA-256 server side (RFC 5802 / RFC 7677 as PostgreSQL does it, no
// channel binding): ScramServer checks a client's proof against a verifier
// and recovers its ClientKey for SCRAM passthrough.
//
// Everything that parses peer input here reports failure through its return
// value and an error string; nothing throws on bad input (std::string may
// still throw std::bad_alloc like anywhere else).
#include <openssl/crypto.h>

#include <string>
#include <utility>

#include "protocol/pg/auth.h"
#include "protocol/pg/auth_internal.h"

namespace sqlmux::pg::auth {

using namespace detail;  // Key, hmac_sha256, Fields, ... (auth_internal.h)

ScramServer::ScramServer(ScramVerifier verifier, std::string server_nonce)
    : v_(std::move(verifier)), server_nonce_(std::move(server_nonce)) {}

ScramServer::~ScramServer() {
  if (client_key_) cleanse(*client_key_);
}

bool ScramServer::handle_client_first(std::string_view client_first, std::string& server_first,
                                      std::string& error) {
  if (!client_first_bare_.empty()) {
    error = "SCRAM exchange: client-first-message already received";
    return false;
  }
  if (v_.iterations <= 0 || v_.salt.empty()) {
    error = "SCRAM exchange: no usable SCRAM verifier";
    return false;
  }
  if (server_nonce_.empty() || !is_scram_printable(server_nonce_)) {
    error = "SCRAM exchange: invalid server nonce";
    return false;
  }
  if (!check_message_basics(client_first, error, "client-first-message")) return false;

  // gs2-header = gs2-cbind-flag "," [ authzid ] ","
  Fields f(client_first);
  std::string_view field;
  (void)f.next(field);  // a non-empty message has at least one field
  if (!field.empty() && field[0] == 'p') {
    // We advertise only SCRAM-SHA-256, never -PLUS.
    error = "channel binding not supported";
    return false;
  }
  if (field != "n" && field != "y") {
    error = "malformed SCRAM message: unexpected channel-binding flag in client-first-message";
    return false;
  }
  if (!f.next(field)) {
    error = "malformed SCRAM message: client-first-message ends inside the gs2 header";
    return false;
  }
  if (!field.empty()) {
    if (field[0] == 'a') {
      // PostgreSQL refuses any authzid.
      error = "client uses authorization identity, but it is not supported";
    } else {
      error = "malformed SCRAM message: unexpected attribute in gs2 header";
    }
    return false;
  }
  if (!f.more()) {
    error = "malformed SCRAM message: client-first-message has no client-first-message-bare";
    return false;
  }
  const size_t bare_start = f.pos();

  // client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]
  std::string_view user_field;
  (void)f.next(user_field);
  if (!user_field.empty() && user_field[0] == 'm') {
    error = "client requires an unsupported SCRAM extension";
    return false;
  }
  char name = 0;
  std::string_view username;  // ignored, as PostgreSQL does (the startup packet's user counts)
  if (!parse_attr(user_field, 'n', name, username, error)) return false;

  std::string_view client_nonce;
  if (!read_attr(f, 'r', client_nonce, error, "client-first-message")) return false;
  if (client_nonce.empty() || !is_scram_printable(client_nonce)) {
    error = "malformed SCRAM message: client nonce is not printable";
    return false;
  }
  // Optional extensions: must be well-formed, are otherwise ignored.
  while (f.next(field)) {
    std::string_view ignored;
    if (!parse_attr(field, 0, name, ignored, error)) return false;
  }

  std::string combined = std::string(client_nonce) + server_nonce_;
  std::string reply =
      "r=" + combined + ",s=" + base64_encode(v_.salt) + ",i=" + std::to_string(v_.iterations);

  gs2_header_ = std::string(client_first.substr(0, bare_start));
  client_first_bare_ = std::string(client_first.substr(bare_start));
  combined_nonce_ = std::move(combined);
  server_first_ = reply;
  server_first = std::move(reply);
  return true;
}

bool ScramServer::handle_client_final(std::string_view client_final, std::string& server_final,
                                      std::string& error) {
  if (server_first_.empty()) {
    error = client_first_bare_.empty()
                ? "SCRAM exchange: client-final-message before client-first-message"
                : "SCRAM exchange: exchange already finished";
    return false;
  }
  // One attempt per exchange: whatever happens below, the exchange is over.
  const std::string server_first = std::move(server_first_);
  server_first_.clear();

  if (!check_message_basics(client_final, error, "client-final-message")) return false;

  // client-final-message-without-proof = channel-binding "," nonce ["," extensions]
  // client-final-message = client-final-message-without-proof "," proof
  Fields f(client_final);
  std::string_view cbind;
  if (!read_attr(f, 'c', cbind, error, "client-final-message")) return false;
  if (cbind != base64_encode(gs2_header_)) {
    error = "unexpected SCRAM channel-binding attribute in client-final-message";
    return false;
  }
  std::string_view nonce;
  if (!read_attr(f, 'r', nonce, error, "client-final-message")) return false;
  if (nonce != combined_nonce_) {
    error = "invalid SCRAM response: nonce does not match";
    return false;
  }
  // Skip extensions up to the proof, which must be the last attribute.
  std::string_view field;
  std::string_view proof_b64;
  size_t proof_start = 0;
  for (;;) {
    proof_start = f.pos();
    if (!f.next(field)) {
      error = "malformed SCRAM message: client-final-message has no proof";
      return false;
    }
    char name = 0;
    std::string_view value;
    if (!parse_attr(field, 0, name, value, error)) return false;
    if (name == 'p') {
      proof_b64 = value;
      break;
    }
  }
  if (f.more()) {
    error = "malformed SCRAM message: garbage at end of client-final-message";
    return false;
  }
  auto proof = base64_decode(proof_b64);
  if (!proof || proof->size() != kKeyLen) {
    error = "malformed SCRAM message: malformed proof in client-final-message";
    return false;
  }
  // proof_start >= 1: the proof follows at least "c=...,r=...,".
  std::string_view without_proof = client_final.substr(0, proof_start - 1);

  std::string auth_message;
  auth_message.reserve(client_first_bare_.size() + server_first.size() + without_proof.size() + 2);
  auth_message.append(client_first_bare_).append(",").append(server_first).append(",");
  auth_message.append(without_proof);

  Key client_signature{};
  Key client_key{};
  Key computed_stored{};
  if (!hmac_sha256(v_.stored_key.data(), v_.stored_key.size(), auth_message, client_signature)) {
    error = "SCRAM exchange: HMAC failed";
    return false;
  }
  for (size_t i = 0; i < kKeyLen; ++i) {
    client_key[i] = static_cast<uint8_t>(static_cast<uint8_t>((*proof)[i]) ^ client_signature[i]);
  }
  bool hashed = sha256(client_key.data(), client_key.size(), computed_stored);
  if (!hashed) {
    cleanse(client_key);
    error = "SCRAM exchange: SHA-256 failed";
    return false;
  }
  if (CRYPTO_memcmp(computed_stored.data(), v_.stored_key.data(), kKeyLen) != 0) {
    cleanse(client_key);
    error = "password authentication failed: SCRAM client proof does not match";
    return false;
  }
  client_key_ = client_key;
  cleanse(client_key);

  Key server_signature{};
  if (!hmac_sha256(v_.server_key.data(), v_.server_key.size(), auth_message, server_signature)) {
    error = "SCRAM exchange: HMAC failed";
    return false;
  }
  server_final = "v=" + base64_encode(as_view(server_signature));
  authenticated_ = true;
  return true;
}

}  // namespace sqlmux::pg::auth
