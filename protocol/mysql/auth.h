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

// A cleartext password as caching_sha2_password sends it over TLS: the
// password and a NUL.
[[nodiscard]] std::string cleartext_password_packet(std::string_view password);

// Constant-time comparison (different lengths compare unequal).
[[nodiscard]] bool constant_time_equal(std::string_view a, std::string_view b);

}  // namespace sqlmux::my::auth
