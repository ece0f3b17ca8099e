// SCRAM-SHA-256 (RFC 5802 / RFC 7677, server side as PostgreSQL does it, no
// channel binding) and md5 password authentication over OpenSSL's libcrypto.
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

#include "protocol/pg/saslprep.h"

namespace sqlmux::pg::auth {

namespace {

constexpr size_t kKeyLen = 32;  // SHA-256 output
constexpr size_t kNonceRawLen = 18;
// PostgreSQL caps a SASLResponse at PG_MAX_AUTH_TOKEN_LENGTH (65535); a SCRAM
// message longer than that is garbage whatever it contains.
constexpr size_t kMaxScramMessage = 65535;
constexpr std::string_view kVerifierPrefix = "SCRAM-SHA-256$";

using Key = std::array<uint8_t, kKeyLen>;

// A non-null pointer for empty inputs: some OpenSSL entry points dislike
// (nullptr, 0).
const uint8_t kEmpty[1] = {0};

const uint8_t* bytes(std::string_view s) {
  return s.empty() ? kEmpty : reinterpret_cast<const uint8_t*>(s.data());
}

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

std::string_view as_view(const Key& k) {
  return {reinterpret_cast<const char*>(k.data()), k.size()};
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

// printable = %x21-2B / %x2D-7E (RFC 5802): printable ASCII except ','.
bool is_scram_printable(std::string_view s) {
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (c < 0x21 || c > 0x7E || c == ',') return false;
  }
  return true;
}

// Walks the comma-separated fields of a SCRAM message. A message "a,b," has
// three fields, the last one empty, so a trailing comma is caught by the
// attribute check of whoever reads that empty field.
class Fields {
 public:
  explicit Fields(std::string_view s) : s_(s) {}

  // The next field; false when the message is exhausted.
  bool next(std::string_view& field) {
    if (done_) return false;
    size_t comma = s_.find(',', pos_);
    if (comma == std::string_view::npos) {
      field = s_.substr(pos_);
      pos_ = s_.size();
      done_ = true;
    } else {
      field = s_.substr(pos_, comma - pos_);
      pos_ = comma + 1;
    }
    return true;
  }
  [[nodiscard]] bool more() const { return !done_; }
  // Offset of the next field's first byte.
  [[nodiscard]] size_t pos() const { return pos_; }

 private:
  std::string_view s_;
  size_t pos_ = 0;
  bool done_ = false;
};

bool is_alpha(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

// attr-val = ALPHA "=" value. `expected` == 0 accepts any attribute name.
bool parse_attr(std::string_view field, char expected, char& name, std::string_view& value,
                std::string& error) {
  if (field.empty()) {
    error = expected != 0 ? std::string("malformed SCRAM message: expected attribute \"") +
                                expected + "\", found end of field"
                          : "malformed SCRAM message: attribute expected, found empty field";
    return false;
  }
  if (!is_alpha(field[0]) || field.size() < 2 || field[1] != '=') {
    error = "malformed SCRAM message: invalid attribute syntax";
    return false;
  }
  if (expected != 0 && field[0] != expected) {
    error = std::string("malformed SCRAM message: expected attribute \"") + expected +
            "\", found \"" + field[0] + "\"";
    return false;
  }
  name = field[0];
  value = field.substr(2);
  return true;
}

// Reads the next field as attribute `expected`; `what` names the message for
// the error when the field is missing.
bool read_attr(Fields& f, char expected, std::string_view& value, std::string& error,
               const char* what) {
  std::string_view field;
  if (!f.next(field)) {
    error = std::string("malformed SCRAM message: ") + what + " ends before attribute \"" +
            expected + "\"";
    return false;
  }
  char name = 0;
  return parse_attr(field, expected, name, value, error);
}

bool check_message_basics(std::string_view msg, std::string& error, const char* what) {
  if (msg.empty()) {
    error = std::string("malformed SCRAM message: empty ") + what;
    return false;
  }
  if (msg.size() > kMaxScramMessage) {
    error = std::string("malformed SCRAM message: ") + what + " too long";
    return false;
  }
  if (msg.find('\0') != std::string_view::npos) {
    error = std::string("malformed SCRAM message: ") + what + " contains a NUL byte";
    return false;
  }
  return true;
}

// Strictly positive decimal int, digits only.
bool parse_iterations(std::string_view s, int& out) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  int v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size() || v <= 0) return false;
  out = v;
  return true;
}

bool decode_key(std::string_view b64, Key& out) {
  auto raw = base64_decode(b64);
  if (!raw || raw->size() != kKeyLen) return false;
  std::memcpy(out.data(), raw->data(), kKeyLen);
  return true;
}

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
// ScramServer

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

// ---------------------------------------------------------------------------
// SCRAM client side

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
