// libFuzzer target: MySQL authentication as sqlmux's client side reads it
// (protocol/mysql/auth.cpp): the stored native hash, a client's
// mysql_native_password reply against it, and the server side of
// caching_sha2_password's full authentication (FullAuth).
//
// Input: byte 0 = mode (bit 0: TLS, bit 1: sqlmux has an RSA key); the
// rest is split at the byte 0xFF into client packets fed to one FullAuth in
// turn (scramble 0x01..0x14). The whole input also goes through
// parse_native_hash and, as a 20-byte reply, recover_native_sha1.
//
// Invariants (a failure traps):
// - parse_native_hash accepts exactly "*" + 40 hex digits, and what it
//   reads prints back as the same hash (case aside);
// - recover_native_sha1 gives a value only for the honest reply: SHA1 of
//   the result is the stored hash, and native_response_from_sha1 of it
//   equals the reply it came from;
// - FullAuth: over TLS a Password is the packet without its one trailing
//   NUL; over plaintext a Password comes only after SendPublicKey, and the
//   key is sent at most once and only with a key; without a key nothing
//   but Insecure or Malformed comes back over plaintext;
// - the honest RSA client (rsa_encrypt_password with the key sent) is read
//   back as its password.
#include <openssl/encoder.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include <cctype>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/mysql/auth.h"

using namespace sqlmux::my::auth;

namespace {

void check(bool ok) {
  if (!ok) {
    __builtin_trap();
  }
}

std::string scramble() {
  std::string s;
  for (int i = 1; i <= 20; ++i) s.push_back(static_cast<char>(i));
  return s;
}

// One 1024-bit key for the whole run (key generation is slow).
const std::string& private_pem() {
  static const std::string pem = [] {
    EVP_PKEY* key = EVP_RSA_gen(1024);
    check(key != nullptr);
    OSSL_ENCODER_CTX* ctx =
        OSSL_ENCODER_CTX_new_for_pkey(key, EVP_PKEY_KEYPAIR, "PEM", "PrivateKeyInfo", nullptr);
    unsigned char* data = nullptr;
    size_t len = 0;
    check(ctx != nullptr && OSSL_ENCODER_to_data(ctx, &data, &len) == 1);
    std::string out(reinterpret_cast<char*>(data), len);
    OPENSSL_free(data);
    OSSL_ENCODER_CTX_free(ctx);
    EVP_PKEY_free(key);
    return out;
  }();
  return pem;
}

const std::string& public_pem() {
  static const std::string pem = *rsa_public_key_pem(private_pem());
  return pem;
}

void native_hash(std::string_view in) {
  const auto h = parse_native_hash(in);
  bool shape = in.size() == 41 && in[0] == '*';
  for (size_t i = 1; shape && i < in.size(); ++i) {
    shape = std::isxdigit(static_cast<unsigned char>(in[i])) != 0;
  }
  check(h.has_value() == shape);
  if (h) {
    static const char kHex[] = "0123456789ABCDEF";
    std::string back = "*";
    for (uint8_t b : *h) {
      back.push_back(kHex[b >> 4]);
      back.push_back(kHex[b & 0xf]);
    }
    for (size_t i = 0; i < in.size(); ++i) {
      check(std::toupper(static_cast<unsigned char>(in[i])) == back[i]);
    }
  }
  // The stored hash of "pw"; a 20-byte reply recovers only when honest.
  const std::string s = scramble();
  const auto stored = native_password_hash("pw");
  const std::string reply(in.substr(0, 20));
  const auto sha1 = recover_native_sha1(stored, s, reply);
  check(sha1.has_value() == (reply == native_password_response("pw", s)));
  if (sha1) {
    check(native_response_from_sha1(*sha1, s) == reply);
  }
}

void full_auth(uint8_t mode, std::string_view rest) {
  const bool secure = (mode & 1) != 0;
  const bool keyed = (mode & 2) != 0;
  const std::string s = scramble();
  FullAuth fa(s, secure, keyed ? std::string_view(private_pem()) : std::string_view(),
              keyed ? std::string_view(public_pem()) : std::string_view());
  bool key_sent = false;
  std::string out;
  size_t start = 0;
  while (start <= rest.size()) {
    size_t end = rest.find('\xff', start);
    if (end == std::string_view::npos) end = rest.size();
    const std::string_view packet = rest.substr(start, end - start);
    const FullAuth::Step step = fa.feed(packet, out);
    switch (step) {
      case FullAuth::Step::SendPublicKey:
        check(!secure && keyed && !key_sent && out == public_pem());
        key_sent = true;
        break;
      case FullAuth::Step::Password:
        if (secure) {
          check(!packet.empty() && packet.back() == '\0' &&
                out == packet.substr(0, packet.size() - 1));
        } else {
          check(keyed && key_sent);
        }
        break;
      case FullAuth::Step::Insecure:
      case FullAuth::Step::Malformed:
        check(out.empty());
        break;
    }
    if (!secure && !keyed) {
      check(step == FullAuth::Step::Insecure || step == FullAuth::Step::Malformed);
    }
    start = end + 1;
  }
  if (!secure && keyed && key_sent) {
    // The honest client after the key.
    const std::string pw(rest.substr(0, 40));
    if (pw.find('\0') == std::string::npos) {
      const auto ct = rsa_encrypt_password(pw, s, public_pem());
      check(ct.has_value());
      check(fa.feed(*ct, out) == FullAuth::Step::Password && out == pw);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  native_hash(in);
  if (size > 0) {
    full_auth(data[0], in.substr(1));
  }
  return 0;
}
