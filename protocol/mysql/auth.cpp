// MySQL / MariaDB authentication computations. See auth.h.
#include "protocol/mysql/auth.h"

#include <openssl/crypto.h>
#include <openssl/decoder.h>
#include <openssl/encoder.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include <memory>
#include <utility>

namespace sqlmux::my::auth {

namespace {

constexpr size_t kSha1Len = 20;
constexpr size_t kSha256Len = 32;

const unsigned char kEmpty[1] = {0};

const unsigned char* bytes(std::string_view s) {
  return s.empty() ? kEmpty : reinterpret_cast<const unsigned char*>(s.data());
}

// One-shot digest of the concatenation of two parts.
template <size_t N>
bool digest2(const EVP_MD* md, std::string_view a, std::string_view b,
             std::array<uint8_t, N>& out) {
  struct Free {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
  };
  std::unique_ptr<EVP_MD_CTX, Free> ctx(EVP_MD_CTX_new());
  unsigned int len = 0;
  return ctx && md != nullptr && EVP_DigestInit_ex(ctx.get(), md, nullptr) == 1 &&
         EVP_DigestUpdate(ctx.get(), bytes(a), a.size()) == 1 &&
         EVP_DigestUpdate(ctx.get(), bytes(b), b.size()) == 1 &&
         EVP_DigestFinal_ex(ctx.get(), out.data(), &len) == 1 && len == N;
}

template <size_t N>
std::string_view view(const std::array<uint8_t, N>& a) {
  return {reinterpret_cast<const char*>(a.data()), N};
}

template <size_t N>
std::string xor_bytes(const std::array<uint8_t, N>& a, const std::array<uint8_t, N>& b) {
  std::string out(N, '\0');
  for (size_t i = 0; i < N; ++i) {
    out[i] = static_cast<char>(a[i] ^ b[i]);
  }
  return out;
}

template <size_t N>
void cleanse(std::array<uint8_t, N>& a) {
  OPENSSL_cleanse(a.data(), a.size());
}

std::string_view nonce20(std::string_view scramble) {
  return scramble.substr(0, kScrambleLen);
}

struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct PkeyCtxFree {
  void operator()(EVP_PKEY_CTX* c) const { EVP_PKEY_CTX_free(c); }
};
struct DecoderFree {
  void operator()(OSSL_DECODER_CTX* c) const { OSSL_DECODER_CTX_free(c); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;

// An RSA key from PEM (SubjectPublicKeyInfo, PKCS#1 or PKCS#8).
Pkey load_rsa_key(std::string_view pem, int selection) {
  EVP_PKEY* raw = nullptr;
  std::unique_ptr<OSSL_DECODER_CTX, DecoderFree> dctx(
      OSSL_DECODER_CTX_new_for_pkey(&raw, "PEM", nullptr, "RSA", selection, nullptr, nullptr));
  if (!dctx || pem.empty()) {
    return nullptr;
  }
  const auto* data = reinterpret_cast<const unsigned char*>(pem.data());
  size_t len = pem.size();
  if (OSSL_DECODER_from_data(dctx.get(), &data, &len) != 1) {
    EVP_PKEY_free(raw);
    return nullptr;
  }
  return Pkey(raw);
}

// (password + NUL) XOR scramble, the scramble repeated as needed.
std::string xor_with_scramble(std::string_view password_nul, std::string_view scramble) {
  std::string out(password_nul);
  if (scramble.empty()) {
    return out;
  }
  for (size_t i = 0; i < out.size(); ++i) {
    out[i] = static_cast<char>(out[i] ^ scramble[i % scramble.size()]);
  }
  return out;
}

std::optional<std::string> rsa_oaep(EVP_PKEY* key, std::string_view in, bool encrypt) {
  std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, key, nullptr));
  if (!ctx) {
    return std::nullopt;
  }
  const int init = encrypt ? EVP_PKEY_encrypt_init(ctx.get()) : EVP_PKEY_decrypt_init(ctx.get());
  if (init != 1 || EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_OAEP_PADDING) <= 0) {
    return std::nullopt;
  }
  auto run = [&](unsigned char* out, size_t* out_len) {
    return encrypt ? EVP_PKEY_encrypt(ctx.get(), out, out_len, bytes(in), in.size())
                   : EVP_PKEY_decrypt(ctx.get(), out, out_len, bytes(in), in.size());
  };
  size_t len = 0;
  if (run(nullptr, &len) != 1 || len == 0) {
    return std::nullopt;
  }
  std::string out(len, '\0');
  if (run(reinterpret_cast<unsigned char*>(out.data()), &len) != 1) {
    return std::nullopt;
  }
  out.resize(len);
  return out;
}

}  // namespace

bool constant_time_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return false;
  }
  if (a.empty()) {
    return true;
  }
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::optional<std::string> make_scramble() {
  unsigned char raw[kScrambleLen];
  if (RAND_bytes(raw, sizeof raw) != 1) {
    return std::nullopt;
  }
  std::string out(kScrambleLen, '\0');
  for (size_t i = 0; i < kScrambleLen; ++i) {
    auto c = static_cast<unsigned char>(raw[i] & 0x7f);
    if (c == '\0' || c == '$') {
      ++c;
    }
    out[i] = static_cast<char>(c);
  }
  OPENSSL_cleanse(raw, sizeof raw);
  return out;
}

// --- mysql_native_password -----------------------------------------------------------

std::array<uint8_t, 20> native_password_hash(std::string_view password) {
  std::array<uint8_t, kSha1Len> stage1{};
  std::array<uint8_t, kSha1Len> stage2{};
  if (!digest2(EVP_sha1(), password, {}, stage1) ||
      !digest2(EVP_sha1(), view(stage1), {}, stage2)) {
    stage2.fill(0);
  }
  cleanse(stage1);
  return stage2;
}

std::string native_password_hash_text(std::string_view password) {
  static const char kHex[] = "0123456789ABCDEF";
  const auto h = native_password_hash(password);
  std::string out = "*";
  for (uint8_t b : h) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 0xf]);
  }
  return out;
}

std::string native_password_response(std::string_view password, std::string_view scramble) {
  if (password.empty()) {
    return {};
  }
  std::array<uint8_t, kSha1Len> stage1{};
  std::array<uint8_t, kSha1Len> stage2{};
  std::array<uint8_t, kSha1Len> mix{};
  std::string out;
  if (digest2(EVP_sha1(), password, {}, stage1) && digest2(EVP_sha1(), view(stage1), {}, stage2) &&
      digest2(EVP_sha1(), nonce20(scramble), view(stage2), mix)) {
    out = xor_bytes(stage1, mix);
  }
  cleanse(stage1);
  cleanse(stage2);
  cleanse(mix);
  return out;
}

bool verify_native_password(std::string_view password, std::string_view scramble,
                            std::string_view response) {
  const std::string expected = native_password_response(password, scramble);
  if (password.empty()) {
    return response.empty();
  }
  return !expected.empty() && constant_time_equal(expected, response);
}

bool verify_native_password_hash(const std::array<uint8_t, 20>& stored, std::string_view scramble,
                                 std::string_view response) {
  if (response.size() != kSha1Len) {
    return false;
  }
  std::array<uint8_t, kSha1Len> mix{};
  std::array<uint8_t, kSha1Len> candidate{};
  std::array<uint8_t, kSha1Len> check{};
  if (!digest2(EVP_sha1(), nonce20(scramble), view(stored), mix)) {
    return false;
  }
  for (size_t i = 0; i < kSha1Len; ++i) {
    candidate[i] = static_cast<uint8_t>(static_cast<uint8_t>(response[i]) ^ mix[i]);
  }
  const bool ok = digest2(EVP_sha1(), view(candidate), {}, check) &&
                  constant_time_equal(view(check), view(stored));
  cleanse(candidate);
  cleanse(mix);
  return ok;
}

std::optional<std::array<uint8_t, 20>> parse_native_hash(std::string_view text) {
  if (text.size() != 1 + 2 * kSha1Len || text[0] != '*') {
    return std::nullopt;
  }
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  std::array<uint8_t, kSha1Len> out{};
  for (size_t i = 0; i < kSha1Len; ++i) {
    const int hi = nibble(text[1 + 2 * i]);
    const int lo = nibble(text[2 + 2 * i]);
    if (hi < 0 || lo < 0) {
      return std::nullopt;
    }
    out[i] = static_cast<uint8_t>((hi << 4) | lo);
  }
  return out;
}

std::optional<std::array<uint8_t, 20>> recover_native_sha1(const std::array<uint8_t, 20>& stored,
                                                           std::string_view scramble,
                                                           std::string_view response) {
  if (response.size() != kSha1Len) {
    return std::nullopt;
  }
  std::array<uint8_t, kSha1Len> mix{};
  std::array<uint8_t, kSha1Len> candidate{};
  std::array<uint8_t, kSha1Len> check{};
  if (!digest2(EVP_sha1(), nonce20(scramble), view(stored), mix)) {
    return std::nullopt;
  }
  for (size_t i = 0; i < kSha1Len; ++i) {
    candidate[i] = static_cast<uint8_t>(static_cast<uint8_t>(response[i]) ^ mix[i]);
  }
  const bool ok = digest2(EVP_sha1(), view(candidate), {}, check) &&
                  constant_time_equal(view(check), view(stored));
  cleanse(mix);
  if (!ok) {
    cleanse(candidate);
    return std::nullopt;
  }
  return candidate;
}

std::string native_response_from_sha1(const std::array<uint8_t, 20>& sha1,
                                      std::string_view scramble) {
  std::array<uint8_t, kSha1Len> stage2{};
  std::array<uint8_t, kSha1Len> mix{};
  std::string out;
  if (digest2(EVP_sha1(), view(sha1), {}, stage2) &&
      digest2(EVP_sha1(), nonce20(scramble), view(stage2), mix)) {
    out = xor_bytes(sha1, mix);
  }
  cleanse(stage2);
  cleanse(mix);
  return out;
}

// --- caching_sha2_password -----------------------------------------------------------

std::string caching_sha2_response(std::string_view password, std::string_view scramble) {
  if (password.empty()) {
    return {};
  }
  std::array<uint8_t, kSha256Len> stage1{};
  std::array<uint8_t, kSha256Len> stage2{};
  std::array<uint8_t, kSha256Len> mix{};
  std::string out;
  if (digest2(EVP_sha256(), password, {}, stage1) &&
      digest2(EVP_sha256(), view(stage1), {}, stage2) &&
      digest2(EVP_sha256(), view(stage2), nonce20(scramble), mix)) {
    out = xor_bytes(stage1, mix);
  }
  cleanse(stage1);
  cleanse(stage2);
  cleanse(mix);
  return out;
}

bool verify_caching_sha2(std::string_view password, std::string_view scramble,
                         std::string_view response) {
  if (password.empty()) {
    return response.empty();
  }
  const std::string expected = caching_sha2_response(password, scramble);
  return !expected.empty() && constant_time_equal(expected, response);
}

std::optional<std::string> rsa_encrypt_password(std::string_view password,
                                                std::string_view scramble,
                                                std::string_view public_key_pem) {
  Pkey key = load_rsa_key(public_key_pem, EVP_PKEY_PUBLIC_KEY);
  if (!key) {
    return std::nullopt;
  }
  std::string plain(password);
  plain.push_back('\0');
  std::string mixed = xor_with_scramble(plain, nonce20(scramble));
  OPENSSL_cleanse(plain.data(), plain.size());
  auto out = rsa_oaep(key.get(), mixed, true);
  OPENSSL_cleanse(mixed.data(), mixed.size());
  return out;
}

std::optional<std::string> rsa_decrypt_password(std::string_view ciphertext,
                                                std::string_view scramble,
                                                std::string_view private_key_pem) {
  Pkey key = load_rsa_key(private_key_pem, EVP_PKEY_KEYPAIR);
  if (!key) {
    return std::nullopt;
  }
  std::optional<std::string> decrypted = rsa_oaep(key.get(), ciphertext, false);
  if (!decrypted) {
    return std::nullopt;
  }
  std::string mixed = std::move(*decrypted);
  std::string plain = xor_with_scramble(mixed, nonce20(scramble));
  OPENSSL_cleanse(mixed.data(), mixed.size());
  if (plain.empty() || plain.back() != '\0') {
    OPENSSL_cleanse(plain.data(), plain.size());
    return std::nullopt;
  }
  plain.pop_back();
  return plain;
}

std::optional<std::string> rsa_public_key_pem(std::string_view private_key_pem) {
  Pkey key = load_rsa_key(private_key_pem, EVP_PKEY_KEYPAIR);
  if (!key) {
    return std::nullopt;
  }
  struct EncoderFree {
    void operator()(OSSL_ENCODER_CTX* c) const { OSSL_ENCODER_CTX_free(c); }
  };
  std::unique_ptr<OSSL_ENCODER_CTX, EncoderFree> ectx(OSSL_ENCODER_CTX_new_for_pkey(
      key.get(), EVP_PKEY_PUBLIC_KEY, "PEM", "SubjectPublicKeyInfo", nullptr));
  unsigned char* data = nullptr;
  size_t len = 0;
  if (!ectx || OSSL_ENCODER_to_data(ectx.get(), &data, &len) != 1 || data == nullptr) {
    return std::nullopt;
  }
  std::string out(reinterpret_cast<const char*>(data), len);
  OPENSSL_free(data);
  return out;
}

FullAuth::Step FullAuth::feed(std::string_view payload, std::string& out) {
  out.clear();
  if (payload.size() == 1 && payload[0] == '\x02' && !secure_) {
    // A request for the public key (over TLS a one-byte packet 0x02 is a
    // password of one character, not a request).
    if (private_key_.empty() || public_key_.empty() || key_sent_) {
      return private_key_.empty() ? Step::Insecure : Step::Malformed;
    }
    key_sent_ = true;
    out.assign(public_key_);
    return Step::SendPublicKey;
  }
  if (secure_) {
    // The password and its NUL; nothing after the NUL.
    if (payload.empty() || payload.back() != '\0' || payload.find('\0') != payload.size() - 1) {
      return Step::Malformed;
    }
    out.assign(payload.substr(0, payload.size() - 1));
    return Step::Password;
  }
  if (!key_sent_) {
    // A password without asking for the key: cleartext over plaintext,
    // which MySQL refuses as well.
    return Step::Insecure;
  }
  std::optional<std::string> pw = rsa_decrypt_password(payload, scramble_, private_key_);
  if (!pw) {
    return Step::Malformed;
  }
  out.assign(*pw);
  if (!pw->empty()) {
    OPENSSL_cleanse(pw->data(), pw->size());
  }
  return Step::Password;
}

Credential& Credential::operator=(const Credential& o) {
  if (this != &o) {
    clear();
    has_password_ = o.has_password_;
    has_sha1_ = o.has_sha1_;
    password_ = o.password_;
    sha1_ = o.sha1_;
  }
  return *this;
}

Credential Credential::from_password(std::string_view password) {
  Credential c;
  c.has_password_ = true;
  c.password_.assign(password);
  return c;
}

Credential Credential::from_sha1(const std::array<uint8_t, 20>& sha1) {
  Credential c;
  c.has_sha1_ = true;
  c.sha1_ = sha1;
  return c;
}

void Credential::clear() {
  if (!password_.empty()) {
    OPENSSL_cleanse(password_.data(), password_.size());
  }
  password_.clear();
  cleanse(sha1_);
  has_password_ = false;
  has_sha1_ = false;
}

std::string Credential::native_response(std::string_view scramble) const {
  if (has_password_) {
    return native_password_response(password_, scramble);
  }
  if (has_sha1_) {
    return native_response_from_sha1(sha1_, scramble);
  }
  return {};
}

std::string cleartext_password_packet(std::string_view password) {
  std::string out(password);
  out.push_back('\0');
  return out;
}

}  // namespace sqlmux::my::auth
