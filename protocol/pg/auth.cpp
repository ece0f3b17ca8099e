// PostgreSQL password authentication over OpenSSL's libcrypto: SHA-256 and
// HMAC under SCRAM-SHA-256, SCRAM verifiers, base64, nonces, and md5. The
// SCRAM exchanges themselves are scram_server.cpp and scram_client.cpp, the
// syntax of their messages scram_message.cpp.
//
// Everything that parses peer input here reports failure through its return
// value and an error string; nothing throws on bad input (std::string may
// still throw std::bad_alloc like anywhere else).
#include "protocol/pg/auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <array>
#include <charconv>
#include <climits>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <utility>

#include "protocol/pg/auth_internal.h"
#include "protocol/pg/saslprep.h"

namespace sqlmux::pg::auth {

namespace detail {
namespace {

// SHA-256 fetched once: OpenSSL 3's one-shot HMAC()/SHA256() look the
// algorithm up on every call, which cost more than the hashing itself
// (48k of the 112k instructions of a client login).
const EVP_MD* sha256_md() {
  static EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  return md;
}

struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};

// One digest context per thread, reused.
EVP_MD_CTX* md_ctx() {
  thread_local std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  return ctx.get();
}

bool digest(std::initializer_list<std::pair<const uint8_t*, size_t>> parts, Key& out) {
  EVP_MD_CTX* ctx = md_ctx();
  const EVP_MD* md = sha256_md();
  if (ctx == nullptr || md == nullptr || EVP_DigestInit_ex(ctx, md, nullptr) != 1) return false;
  for (const auto& [p, n] : parts) {
    if (n > 0 && EVP_DigestUpdate(ctx, p, n) != 1) return false;
  }
  unsigned int len = 0;
  return EVP_DigestFinal_ex(ctx, out.data(), &len) == 1 && len == kKeyLen;
}

}  // namespace

bool sha256(const uint8_t* data, size_t len, Key& out) {
  return digest({{data, len}}, out);
}

// HMAC-SHA-256 (RFC 2104) over the shared digest context.
bool hmac_sha256(const uint8_t* key, size_t key_len, std::string_view data, Key& out) {
  constexpr size_t kBlock = 64;
  std::array<uint8_t, kBlock> k{};
  if (key_len > kBlock) {
    Key hashed;
    if (!sha256(key, key_len, hashed)) return false;
    std::memcpy(k.data(), hashed.data(), hashed.size());
    OPENSSL_cleanse(hashed.data(), hashed.size());
  } else if (key_len > 0) {
    std::memcpy(k.data(), key, key_len);
  }
  std::array<uint8_t, kBlock> pad{};
  for (size_t i = 0; i < kBlock; ++i) pad[i] = k[i] ^ 0x36;
  Key inner;
  bool ok = digest({{pad.data(), kBlock}, {bytes(data), data.size()}}, inner);
  for (size_t i = 0; i < kBlock; ++i) pad[i] = k[i] ^ 0x5c;
  ok = ok && digest({{pad.data(), kBlock}, {inner.data(), inner.size()}}, out);
  OPENSSL_cleanse(k.data(), k.size());
  OPENSSL_cleanse(pad.data(), pad.size());
  OPENSSL_cleanse(inner.data(), inner.size());
  return ok;
}

void cleanse(Key& k) {
  OPENSSL_cleanse(k.data(), k.size());
}

// SaltedPassword = PBKDF2-HMAC-SHA256(SASLprep(password), salt, iterations),
// with the raw bytes where SASLprep does not apply (see saslprep.h).
bool salted_password(std::string_view raw, std::string_view salt, int iterations, Key& out) {
  const std::string password = scram_password(raw);
  if (iterations <= 0 || password.size() > INT_MAX || salt.size() > INT_MAX) return false;
  return PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()), bytes(salt),
                           static_cast<int>(salt.size()), iterations, EVP_sha256(),
                           static_cast<int>(kKeyLen), out.data()) == 1;
}

bool decode_key(std::string_view b64, Key& out) {
  auto raw = base64_decode(b64);
  if (!raw || raw->size() != kKeyLen) return false;
  std::memcpy(out.data(), raw->data(), kKeyLen);
  return true;
}

}  // namespace detail

using namespace detail;  // Key, sha256, ... (auth_internal.h)

namespace {

constexpr size_t kNonceRawLen = 18;
constexpr std::string_view kVerifierPrefix = "SCRAM-SHA-256$";

std::string hex_lower(const uint8_t* p, size_t n) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(n * 2);
  for (size_t i = 0; i < n; ++i) {
    out.push_back(kHex[p[i] >> 4]);
    out.push_back(kHex[p[i] & 0x0F]);
  }
  return out;
}

// "md5" + hex(md5(data)); empty on a libcrypto failure.
std::string md5_prefixed_hex(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(bytes(data), data.size(), digest, &len, EVP_md5(), nullptr) != 1 || len != 16) {
    return {};
  }
  return "md5" + hex_lower(digest, len);
}

constexpr char kB64Alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int b64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

}  // namespace

// ---------------------------------------------------------------------------
// base64 (RFC 4648, standard alphabet, padded). Decoding is strict: length a
// multiple of 4, padding only at the end, no whitespace, unused bits zero.

std::string base64_encode(std::string_view raw) {
  std::string out;
  out.reserve((raw.size() + 2) / 3 * 4);
  const auto* p = reinterpret_cast<const unsigned char*>(raw.data());
  size_t i = 0;
  for (; i + 3 <= raw.size(); i += 3) {
    uint32_t v = (uint32_t{p[i]} << 16) | (uint32_t{p[i + 1]} << 8) | p[i + 2];
    out.push_back(kB64Alphabet[(v >> 18) & 0x3F]);
    out.push_back(kB64Alphabet[(v >> 12) & 0x3F]);
    out.push_back(kB64Alphabet[(v >> 6) & 0x3F]);
    out.push_back(kB64Alphabet[v & 0x3F]);
  }
  size_t rest = raw.size() - i;
  if (rest == 1) {
    uint32_t v = uint32_t{p[i]} << 16;
    out.push_back(kB64Alphabet[(v >> 18) & 0x3F]);
    out.push_back(kB64Alphabet[(v >> 12) & 0x3F]);
    out.append("==");
  } else if (rest == 2) {
    uint32_t v = (uint32_t{p[i]} << 16) | (uint32_t{p[i + 1]} << 8);
    out.push_back(kB64Alphabet[(v >> 18) & 0x3F]);
    out.push_back(kB64Alphabet[(v >> 12) & 0x3F]);
    out.push_back(kB64Alphabet[(v >> 6) & 0x3F]);
    out.push_back('=');
  }
  return out;
}

std::optional<std::string> base64_decode(std::string_view b64) {
  if (b64.size() % 4 != 0) return std::nullopt;
  std::string out;
  out.reserve(b64.size() / 4 * 3);
  for (size_t i = 0; i < b64.size(); i += 4) {
    const bool last = i + 4 == b64.size();
    int a = b64_value(b64[i]);
    int b = b64_value(b64[i + 1]);
    if (a < 0 || b < 0) return std::nullopt;
    char c3 = b64[i + 2];
    char c4 = b64[i + 3];
    if (last && c3 == '=' && c4 == '=') {
      if ((b & 0x0F) != 0) return std::nullopt;
      out.push_back(static_cast<char>((a << 2) | (b >> 4)));
      break;
    }
    int c = b64_value(c3);
    if (c < 0) return std::nullopt;
    if (last && c4 == '=') {
      if ((c & 0x03) != 0) return std::nullopt;
      out.push_back(static_cast<char>((a << 2) | (b >> 4)));
      out.push_back(static_cast<char>(((b & 0x0F) << 4) | (c >> 2)));
      break;
    }
    int d = b64_value(c4);
    if (d < 0) return std::nullopt;
    out.push_back(static_cast<char>((a << 2) | (b >> 4)));
    out.push_back(static_cast<char>(((b & 0x0F) << 4) | (c >> 2)));
    out.push_back(static_cast<char>(((c & 0x03) << 6) | d));
  }
  return out;
}

// ---------------------------------------------------------------------------
// Primitives

bool constant_time_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

bool random_bytes(uint8_t* out, size_t n) {
  while (n > 0) {
    int chunk = n > static_cast<size_t>(INT_MAX) ? INT_MAX : static_cast<int>(n);
    if (RAND_bytes(out, chunk) != 1) return false;
    out += chunk;
    n -= static_cast<size_t>(chunk);
  }
  return true;
}

std::string make_nonce() {
  uint8_t raw[kNonceRawLen];
  if (!random_bytes(raw, sizeof raw)) return {};  // rejected by ScramServer
  return base64_encode({reinterpret_cast<const char*>(raw), sizeof raw});
}

// ---------------------------------------------------------------------------
// Verifiers

std::optional<ScramVerifier> parse_scram_verifier(std::string_view text) {
  if (text.substr(0, kVerifierPrefix.size()) != kVerifierPrefix) return std::nullopt;
  std::string_view rest = text.substr(kVerifierPrefix.size());
  size_t dollar = rest.find('$');
  if (dollar == std::string_view::npos) return std::nullopt;
  std::string_view params = rest.substr(0, dollar);  // <iter>:<salt>
  std::string_view keys = rest.substr(dollar + 1);   // <stored>:<server>
  size_t c1 = params.find(':');
  size_t c2 = keys.find(':');
  if (c1 == std::string_view::npos || c2 == std::string_view::npos) return std::nullopt;

  ScramVerifier v;
  if (!parse_iterations(params.substr(0, c1), v.iterations)) return std::nullopt;
  // Base64 never contains ':' or '$', so stray separators fail decoding.
  auto salt = base64_decode(params.substr(c1 + 1));
  if (!salt || salt->empty()) return std::nullopt;
  v.salt = std::move(*salt);
  if (!decode_key(keys.substr(0, c2), v.stored_key)) return std::nullopt;
  if (!decode_key(keys.substr(c2 + 1), v.server_key)) return std::nullopt;
  return v;
}

std::string format_scram_verifier(const ScramVerifier& v) {
  std::string out(kVerifierPrefix);
  out += std::to_string(v.iterations);
  out += ':';
  out += base64_encode(v.salt);
  out += '$';
  out += base64_encode(as_view(v.stored_key));
  out += ':';
  out += base64_encode(as_view(v.server_key));
  return out;
}

// On a libcrypto failure or iterations <= 0 the result has iterations == 0,
// which parse_scram_verifier and ScramServer both refuse.
ScramVerifier make_scram_verifier(std::string_view password, std::string_view salt,
                                  int iterations) {
  ScramVerifier v;
  v.salt = std::string(salt);
  Key salted{};
  Key client_key{};
  bool ok = salted_password(password, salt, iterations, salted) &&
            hmac_sha256(salted.data(), salted.size(), "Client Key", client_key) &&
            sha256(client_key.data(), client_key.size(), v.stored_key) &&
            hmac_sha256(salted.data(), salted.size(), "Server Key", v.server_key);
  cleanse(salted);
  cleanse(client_key);
  if (!ok) {
    v.stored_key.fill(0);
    v.server_key.fill(0);
    return v;
  }
  v.iterations = iterations;
  return v;
}

// ---------------------------------------------------------------------------
// md5

std::string md5_password_hash(std::string_view password, std::string_view user) {
  std::string data;
  data.reserve(password.size() + user.size());
  data.append(password).append(user);
  std::string out = md5_prefixed_hex(data);
  OPENSSL_cleanse(data.data(), data.size());
  return out;
}

// The hex part is stored_md5_hash without its "md5" prefix (a bare 32-digit
// hex string is taken as is).
std::string md5_salted_response(std::string_view stored_md5_hash, const uint8_t salt[4]) {
  std::string_view hex = stored_md5_hash;
  if (hex.substr(0, 3) == "md5") hex.remove_prefix(3);
  std::string data(hex);
  data.append(reinterpret_cast<const char*>(salt), 4);
  return md5_prefixed_hex(data);
}

bool is_md5_hash(std::string_view s) {
  if (s.size() != 35 || s.substr(0, 3) != "md5") return false;
  for (char c : s.substr(3)) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace sqlmux::pg::auth
