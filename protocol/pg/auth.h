// Server side of PostgreSQL client authentication: SCRAM-SHA-256 (RFC 5802 /
// RFC 7677, no channel binding) and md5. Pure computation over OpenSSL's
// libcrypto; no I/O.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sqlmux::pg::auth {

inline constexpr int kDefaultScramIterations = 4096;

using ScramKey = std::array<uint8_t, 32>;

struct ScramVerifier {
  int iterations = 0;
  std::string salt;  // raw bytes
  ScramKey stored_key{};
  ScramKey server_key{};
};

// "SCRAM-SHA-256$<iter>:<b64 salt>$<b64 StoredKey>:<b64 ServerKey>" (the
// format of pg_authid.rolpassword); nullopt when malformed.
[[nodiscard]] std::optional<ScramVerifier> parse_scram_verifier(std::string_view text);
[[nodiscard]] std::string format_scram_verifier(const ScramVerifier& v);
// Derives a verifier from a plaintext password, SASLprep'd as PostgreSQL
// does (raw bytes when not UTF-8 or refused; see saslprep.h). The client
// side, scram_client_final, prepares its password the same way.
[[nodiscard]] ScramVerifier make_scram_verifier(std::string_view password, std::string_view salt,
                                                int iterations = kDefaultScramIterations);

// One SCRAM-SHA-256 exchange, server side.
class ScramServer {
 public:
  // nonce: the server's part of the nonce, printable ASCII without ','
  // (use make_nonce()).
  ScramServer(ScramVerifier verifier, std::string server_nonce);
  ~ScramServer();
  ScramServer(ScramServer&&) = default;
  ScramServer& operator=(ScramServer&&) = default;

  // client-first-message -> server-first-message. False (with a reason in
  // `error`) for a malformed message or a channel binding it cannot do.
  [[nodiscard]] bool handle_client_first(std::string_view client_first, std::string& server_first,
                                         std::string& error);
  // client-final-message -> server-final-message ("v=..."). False when the
  // message is malformed or the proof is wrong (error says which).
  [[nodiscard]] bool handle_client_final(std::string_view client_final, std::string& server_final,
                                         std::string& error);
  // True once handle_client_final accepted a correct proof.
  [[nodiscard]] bool authenticated() const { return authenticated_; }
  // The client's ClientKey, recovered from its accepted proof
  // (ClientProof XOR HMAC(StoredKey, AuthMessage), H(ClientKey) ==
  // StoredKey checked): what SCRAM passthrough logs in to the server with.
  // nullopt before authenticated(). The object wipes it when destroyed.
  [[nodiscard]] const std::optional<ScramKey>& client_key() const { return client_key_; }

 private:
  ScramVerifier v_;
  std::string server_nonce_;
  std::string client_first_bare_;
  std::string server_first_;
  std::string combined_nonce_;
  std::string gs2_header_;
  bool authenticated_ = false;
  std::optional<ScramKey> client_key_;
};

// SCRAM client side (the test side and sqlmux's own logins when needed):
// given the password and the messages, computes the client-final-message.
[[nodiscard]] std::optional<std::string> scram_client_final(std::string_view password,
                                                            std::string_view client_first_bare,
                                                            std::string_view server_first,
                                                            std::string_view gs2_header = "n,,");

// SCRAM client side from the keys alone (SCRAM passthrough: sqlmux logs in
// to the server as a client whose ClientKey it recovered, see ScramServer::
// client_key()). The server must use the verifier's salt and iteration count
// (it holds the same verifier).
enum class ScramKeyError {
  None,
  Malformed,     // the server-first-message is not valid SCRAM
  SaltMismatch,  // the server's salt or iterations differ from the verifier's
  KeyMismatch,   // H(ClientKey) != the verifier's StoredKey
  BadSignature,  // the server-final-message's signature is wrong (or an e=)
  Crypto,        // libcrypto failed
};
[[nodiscard]] std::string_view to_string(ScramKeyError e);

struct ScramKeyFinal {
  std::string message;                   // client-final-message
  ScramKey expected_server_signature{};  // for scram_check_server_final
};
// client_first_bare: "n=,r=<nonce>" as sent; server_first as received.
[[nodiscard]] ScramKeyError scram_client_final_from_key(
    const ScramKey& client_key, const ScramVerifier& v, std::string_view client_first_bare,
    std::string_view server_first, ScramKeyFinal& out, std::string_view gs2_header = "n,,");
// server-final-message "v=<b64 signature>" checked against the expected one
// (None or BadSignature; "e=<error>" is BadSignature).
[[nodiscard]] ScramKeyError scram_check_server_final(std::string_view server_final,
                                                     const ScramKey& expected);
// H(ClientKey) == StoredKey.
[[nodiscard]] bool client_key_matches(const ScramKey& client_key, const ScramVerifier& v);
// The ClientKey of a cleartext password under the verifier's salt and
// iterations (HMAC(SaltedPassword, "Client Key"), SASLprep'd as
// make_scram_verifier), when it matches the verifier; nullopt otherwise
// (a wrong password).
[[nodiscard]] std::optional<ScramKey> scram_client_key(std::string_view password,
                                                       const ScramVerifier& v);
// Wipes a key (OPENSSL_cleanse).
void wipe(ScramKey& k);

// "md5" + hex(md5(password + user)): the stored form of an md5 password.
[[nodiscard]] std::string md5_password_hash(std::string_view password, std::string_view user);
// What a client sends for AuthenticationMD5Password: "md5" + hex(md5(hex-part
// of the stored hash + salt)).
[[nodiscard]] std::string md5_salted_response(std::string_view stored_md5_hash,
                                              const uint8_t salt[4]);
// True for "md5" followed by 32 lowercase hex digits.
[[nodiscard]] bool is_md5_hash(std::string_view s);

[[nodiscard]] bool constant_time_equal(std::string_view a, std::string_view b);
// Cryptographically random bytes (OpenSSL RAND_bytes); false on failure.
[[nodiscard]] bool random_bytes(uint8_t* out, size_t n);
// 18 random bytes, base64: a fresh server nonce.
[[nodiscard]] std::string make_nonce();

[[nodiscard]] std::string base64_encode(std::string_view raw);
[[nodiscard]] std::optional<std::string> base64_decode(std::string_view b64);

}  // namespace sqlmux::pg::auth
