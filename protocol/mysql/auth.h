// MySQL / MariaDB authentication computations over OpenSSL's libcrypto:
// mysql_native_password and caching_sha2_password (fast path and RSA full
// authentication), and scramble generation. Pure computation; no I/O.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sqlmux::my::auth {

inline constexpr size_t kScrambleLen = 20;

// A fresh 20-byte scramble as servers make it: random bytes cut to 7 bits,
// never NUL or '$'. nullopt when the random generator fails.
[[nodiscard]] std::optional<std::string> make_scramble();

// --- mysql_native_password ---------------------------------------------------------

// SHA1(password) XOR SHA1(scramble + SHA1(SHA1(password))): 20 bytes, or
// empty for an empty password (the client sends nothing then). `scramble`
// is the 20-byte nonce (a trailing NUL from an AuthSwitchRequest must be
// removed first; longer input is cut to 20 bytes).
[[nodiscard]] std::string native_password_response(std::string_view password,
                                                   std::string_view scramble);
// Checks a client's response against a plaintext password.
[[nodiscard]] bool verify_native_password(std::string_view password, std::string_view scramble,
                                          std::string_view response);
// SHA1(SHA1(password)): the stored form ("*" + uppercase hex in mysql.user).
[[nodiscard]] std::array<uint8_t, 20> native_password_hash(std::string_view password);
[[nodiscard]] std::string native_password_hash_text(std::string_view password);
// Checks a response against the stored SHA1(SHA1(password)) (as the server
// does): SHA1(response XOR SHA1(scramble + stored)) must equal stored.
[[nodiscard]] bool verify_native_password_hash(const std::array<uint8_t, 20>& stored,
                                               std::string_view scramble,
                                               std::string_view response);

// The stored form as text: "*" and 40 hex digits (either case), as in
// mysql.user.authentication_string. nullopt for anything else.
[[nodiscard]] std::optional<std::array<uint8_t, 20>> parse_native_hash(std::string_view text);
// Checks a client's response against the stored SHA1(SHA1(password)) and
// gives back what it carries, SHA1(password) (response XOR SHA1(scramble +
// stored)); nullopt when the check fails. The caller keeps the result only
// while it needs it (cleanse) and never logs it.
[[nodiscard]] std::optional<std::array<uint8_t, 20>> recover_native_sha1(
    const std::array<uint8_t, 20>& stored, std::string_view scramble, std::string_view response);
// native_password_response() from SHA1(password) instead of the password.
[[nodiscard]] std::string native_response_from_sha1(const std::array<uint8_t, 20>& sha1,
                                                    std::string_view scramble);

// --- caching_sha2_password ---------------------------------------------------------

// XOR(SHA256(password), SHA256(SHA256(SHA256(password)) + scramble)): 32
// bytes, or empty for an empty password.
[[nodiscard]] std::string caching_sha2_response(std::string_view password,
                                                std::string_view scramble);
[[nodiscard]] bool verify_caching_sha2(std::string_view password, std::string_view scramble,
                                       std::string_view response);

// Full authentication without TLS: (password + NUL) XOR scramble (repeated),
// encrypted with the server's RSA public key (PEM, "PUBLIC KEY" or "RSA
// PUBLIC KEY") using OAEP padding (SHA-1, as the servers use). nullopt on a
// bad key or an OpenSSL failure.
[[nodiscard]] std::optional<std::string> rsa_encrypt_password(std::string_view password,
                                                              std::string_view scramble,
                                                              std::string_view public_key_pem);
// The server side: decrypts with the private key (PEM) and undoes the XOR;
// returns the password without its NUL. nullopt when decryption fails or
// the result is not NUL-terminated.
[[nodiscard]] std::optional<std::string> rsa_decrypt_password(std::string_view ciphertext,
                                                              std::string_view scramble,
                                                              std::string_view private_key_pem);

// The public half (SubjectPublicKeyInfo PEM) of an RSA private key (PEM),
// as a server sends it to a client's request; nullopt for a key that is
// not RSA or not readable.
[[nodiscard]] std::optional<std::string> rsa_public_key_pem(std::string_view private_key_pem);

// The server side of caching_sha2_password's full authentication, after
// it answered perform_full_authentication (0x01 0x04). Over TLS the client
// sends its password and a NUL; over plaintext it asks for the public key
// (one byte 0x02) and then sends the password RSA-encrypted
// (rsa_encrypt_password). feed() takes each client packet's payload.
class FullAuth {
 public:
  enum class Step {
    SendPublicKey,  // `out` is the public key PEM: send it in AuthMoreData
    Password,       // `out` is the client's password (cleanse it when done)
    Insecure,       // cleartext over plaintext, or a key request without a key
    Malformed,      // not a password packet, or an undecryptable one
  };
  // `secure`: the connection is TLS. Without it `private_key_pem` (empty:
  // none) decrypts and `public_key_pem` is sent; both are borrowed.
  FullAuth(std::string_view scramble, bool secure, std::string_view private_key_pem,
           std::string_view public_key_pem)
      : scramble_(scramble.substr(0, kScrambleLen)),
        secure_(secure),
        private_key_(private_key_pem),
        public_key_(public_key_pem) {}
  [[nodiscard]] Step feed(std::string_view payload, std::string& out);

 private:
  std::string scramble_;
  bool secure_;
  std::string_view private_key_;
  std::string_view public_key_;
  bool key_sent_ = false;
};

// What sqlmux logs in to a server with on a client's behalf: the password,
// or only SHA1(password) (recovered from a mysql_native_password login
// against a stored hash), which answers mysql_native_password alone.
// Cleansed when destroyed or replaced.
class Credential {
 public:
  Credential() = default;
  Credential(const Credential& o) { *this = o; }
  Credential& operator=(const Credential& o);
  ~Credential() { clear(); }
  [[nodiscard]] static Credential from_password(std::string_view password);
  [[nodiscard]] static Credential from_sha1(const std::array<uint8_t, 20>& sha1);
  void clear();
  [[nodiscard]] bool empty() const { return !has_password_ && !has_sha1_; }
  [[nodiscard]] bool has_password() const { return has_password_; }
  [[nodiscard]] const std::string& password() const { return password_; }
  // mysql_native_password's answer to `scramble` (empty for an empty password).
  [[nodiscard]] std::string native_response(std::string_view scramble) const;

 private:
  bool has_password_ = false;
  bool has_sha1_ = false;
  std::string password_;
  std::array<uint8_t, 20> sha1_{};
};

// A cleartext password as caching_sha2_password sends it over TLS: the
// password and a NUL.
[[nodiscard]] std::string cleartext_password_packet(std::string_view password);

// Constant-time comparison (different lengths compare unequal).
[[nodiscard]] bool constant_time_equal(std::string_view a, std::string_view b);

}  // namespace sqlmux::my::auth
