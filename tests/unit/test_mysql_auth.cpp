// mysql_auth: mysql_native_password against responses computed by pymysql
// in captured MariaDB logins, caching_sha2_password against values computed
// here with OpenSSL directly and a Python hashlib vector, RSA-OAEP with a
// key generated in the test, scramble generation.
#include "protocol/mysql/auth.h"

#include <openssl/core_names.h>
#include <openssl/encoder.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <catch2/catch.hpp>
#include <cctype>
#include <memory>
#include <string>

#include "daemon/mysql/auth_query.h"
#include "daemon/mysql/protocol.h"
#include "daemon/pg/protocol.h"
#include "protocol/mysql/handshake.h"
#include "tests/unit/test_mysql_fixtures.h"

using namespace sqlmux::my;
using sqlmux::my::testing::real;
using sqlmux::my::testing::real_one;

namespace {

std::string hex(std::string_view s) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (char c : s) {
    out.push_back(kHex[static_cast<uint8_t>(c) >> 4]);
    out.push_back(kHex[static_cast<uint8_t>(c) & 0xf]);
  }
  return out;
}

std::string digest(const EVP_MD* md, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  REQUIRE(EVP_Digest(data.data(), data.size(), out, &len, md, nullptr) == 1);
  return {reinterpret_cast<const char*>(out), len};
}

std::string xor_str(std::string_view a, std::string_view b) {
  std::string out(a);
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<char>(out[i] ^ b[i]);
  return out;
}

std::string scramble_1_to_20() {
  std::string s;
  for (int i = 1; i <= 20; ++i) s.push_back(static_cast<char>(i));
  return s;
}

struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;

std::string pem_of(EVP_PKEY* key, int selection, const char* structure) {
  OSSL_ENCODER_CTX* ctx = OSSL_ENCODER_CTX_new_for_pkey(key, selection, "PEM", structure, nullptr);
  REQUIRE(ctx != nullptr);
  unsigned char* data = nullptr;
  size_t len = 0;
  const int ok = OSSL_ENCODER_to_data(ctx, &data, &len);
  OSSL_ENCODER_CTX_free(ctx);
  REQUIRE(ok == 1);
  std::string out(reinterpret_cast<char*>(data), len);
  OPENSSL_free(data);
  return out;
}

Pkey rsa_key() {
  static EVP_PKEY* key = EVP_RSA_gen(2048);
  REQUIRE(key != nullptr);
  EVP_PKEY_up_ref(key);
  return Pkey(key);
}

}  // namespace

TEST_CASE("mysql_auth: native password matches pymysql in real logins", "[mysql]") {
  // The client in tests/unit/mysql_capture.py computed these responses with
  // pymysql's scramble_native_password, and MariaDB accepted them.
  for (const char* session : {"de", "eof"}) {
    INFO(session);
    Greeting g;
    REQUIRE(decode_greeting(real_one(session, "greeting", 'S'), g));
    HandshakeResponse h;
    REQUIRE(decode_handshake_response(real_one(session, "handshake_response", 'C'), h));
    CHECK(auth::native_password_response("secret", g.scramble) == h.auth_response);
    CHECK(auth::verify_native_password("secret", g.scramble, h.auth_response));
    CHECK_FALSE(auth::verify_native_password("Secret", g.scramble, h.auth_response));
    CHECK(auth::verify_native_password_hash(auth::native_password_hash("secret"), g.scramble,
                                            h.auth_response));
    CHECK_FALSE(auth::verify_native_password_hash(auth::native_password_hash("other"), g.scramble,
                                                  h.auth_response));
  }
  // After an AuthSwitchRequest: the scramble is its data without the NUL.
  AuthSwitchRequest a;
  REQUIRE(decode_auth_switch(real("switch", "login_result", 'S').at(0)->wire.substr(4), a));
  const std::string_view resp = real_one("switch", "auth_switch_response", 'C');
  CHECK(auth::native_password_response("secret", a.data) == resp);  // cut to 20 bytes
  CHECK(auth::verify_native_password("secret", a.data.substr(0, 20), resp));
  // The denied login used "wrong".
  Greeting g;
  HandshakeResponse h;
  REQUIRE(decode_greeting(real_one("denied", "greeting", 'S'), g));
  REQUIRE(decode_handshake_response(real_one("denied", "handshake_response", 'C'), h));
  CHECK(auth::native_password_response("wrong", g.scramble) == h.auth_response);
  CHECK_FALSE(auth::verify_native_password("secret", g.scramble, h.auth_response));
}

TEST_CASE("mysql_auth: native password vectors", "[mysql]") {
  // Python: hashlib.sha1 as in the formula, scramble bytes 1..20.
  const std::string s = scramble_1_to_20();
  CHECK(hex(auth::native_password_response("secret", s)) ==
        "b32bb3a583e1340c0a1108d58b1be49781ad8c2f");
  // Recomputed here with OpenSSL's digests directly.
  const std::string stage1 = digest(EVP_sha1(), "secret");
  const std::string stage2 = digest(EVP_sha1(), stage1);
  const std::string expected = xor_str(stage1, digest(EVP_sha1(), s + stage2));
  CHECK(auth::native_password_response("secret", s) == expected);
  // PASSWORD('secret') as MySQL/MariaDB store it.
  CHECK(auth::native_password_hash_text("secret") == "*14E65567ABDB5135D0CFD9A70B3032C179A49EE7");
  // Empty password: empty response, and only an empty response verifies.
  CHECK(auth::native_password_response("", s).empty());
  CHECK(auth::verify_native_password("", s, ""));
  CHECK_FALSE(auth::verify_native_password("", s, expected));
  CHECK_FALSE(auth::verify_native_password("secret", s, ""));
  CHECK_FALSE(auth::verify_native_password_hash(auth::native_password_hash("secret"), s, "short"));
}

TEST_CASE("mysql_auth: caching_sha2_password fast path", "[mysql]") {
  const std::string s = scramble_1_to_20();
  // Python hashlib vector.
  CHECK(hex(auth::caching_sha2_response("secret", s)) ==
        "746ebe205d56a0707acb3e796e834e0dd7b1d61743b26bd5202c7a623230c7c9");
  // OpenSSL directly: XOR(SHA256(pw), SHA256(SHA256(SHA256(pw)) + scramble)).
  for (const char* pw : {"secret", "p", "a much longer password with spaces and ünïcödé"}) {
    INFO(pw);
    const std::string d1 = digest(EVP_sha256(), pw);
    const std::string d2 = digest(EVP_sha256(), d1);
    const std::string expected = xor_str(d1, digest(EVP_sha256(), d2 + s));
    const std::string got = auth::caching_sha2_response(pw, s);
    CHECK(got.size() == 32);
    CHECK(got == expected);
    CHECK(auth::verify_caching_sha2(pw, s, got));
    CHECK_FALSE(auth::verify_caching_sha2("nope", s, got));
    std::string flipped = got;
    flipped[31] = static_cast<char>(flipped[31] ^ 1);
    CHECK_FALSE(auth::verify_caching_sha2(pw, s, flipped));
  }
  CHECK(auth::caching_sha2_response("", s).empty());
  CHECK(auth::verify_caching_sha2("", s, ""));
  // A scramble with the AuthSwitch NUL appended gives the same answer.
  CHECK(auth::caching_sha2_response("secret", s + '\0') ==
        auth::caching_sha2_response("secret", s));
}

TEST_CASE("mysql_auth: RSA full authentication", "[mysql]") {
  Pkey key = rsa_key();
  const std::string pub = pem_of(key.get(), EVP_PKEY_PUBLIC_KEY, "SubjectPublicKeyInfo");
  const std::string pub_pkcs1 = pem_of(key.get(), EVP_PKEY_PUBLIC_KEY, "type-specific");
  const std::string priv = pem_of(key.get(), EVP_PKEY_KEYPAIR, "PrivateKeyInfo");
  REQUIRE(pub.find("BEGIN PUBLIC KEY") != std::string::npos);
  REQUIRE(pub_pkcs1.find("BEGIN RSA PUBLIC KEY") != std::string::npos);
  const std::string s = scramble_1_to_20();

  for (const std::string* pem : {&pub, &pub_pkcs1}) {
    const auto ct = auth::rsa_encrypt_password("secret", s, *pem);
    REQUIRE(ct.has_value());
    CHECK(ct->size() == 256);
    // The server side gives the password back.
    const auto pw = auth::rsa_decrypt_password(*ct, s, priv);
    REQUIRE(pw.has_value());
    CHECK(*pw == "secret");
    // Decrypted independently: OAEP(SHA-1) of ("secret\0" XOR scramble).
    EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_pkey(nullptr, key.get(), nullptr);
    REQUIRE(ctx != nullptr);
    REQUIRE(EVP_PKEY_decrypt_init(ctx) == 1);
    REQUIRE(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) > 0);
    unsigned char out[512];
    size_t len = sizeof out;
    REQUIRE(EVP_PKEY_decrypt(ctx, out, &len, reinterpret_cast<const unsigned char*>(ct->data()),
                             ct->size()) == 1);
    EVP_PKEY_CTX_free(ctx);
    const std::string plain(reinterpret_cast<char*>(out), len);
    CHECK(plain == xor_str(std::string("secret") + '\0', s));
  }
  // OAEP is randomised: two encryptions differ.
  CHECK(*auth::rsa_encrypt_password("secret", s, pub) !=
        *auth::rsa_encrypt_password("secret", s, pub));
  // A password longer than the scramble wraps around it.
  const std::string longpw(45, 'x');
  const auto ct = auth::rsa_encrypt_password(longpw, s, pub);
  REQUIRE(ct.has_value());
  CHECK(auth::rsa_decrypt_password(*ct, s, priv) == std::optional<std::string>(longpw));
  // Wrong scramble: not the password.
  std::string other = s;
  other[0] = 'z';
  CHECK(auth::rsa_decrypt_password(*ct, other, priv) != std::optional<std::string>(longpw));
  // Bad keys and ciphertexts.
  CHECK_FALSE(auth::rsa_encrypt_password("secret", s, "not a key").has_value());
  CHECK_FALSE(auth::rsa_encrypt_password("secret", s, "").has_value());
  CHECK_FALSE(auth::rsa_decrypt_password(*ct, s, pub).has_value());  // public key only
  CHECK_FALSE(auth::rsa_decrypt_password("garbage", s, priv).has_value());
  std::string tampered = *ct;
  tampered[10] = static_cast<char>(tampered[10] ^ 0x40);
  CHECK_FALSE(auth::rsa_decrypt_password(tampered, s, priv).has_value());
  // Too long for one RSA block.
  CHECK_FALSE(auth::rsa_encrypt_password(std::string(300, 'x'), s, pub).has_value());
  CHECK(auth::cleartext_password_packet("pw") == std::string("pw") + '\0');
}

TEST_CASE("mysql_auth: scramble generation", "[mysql]") {
  const auto a = auth::make_scramble();
  const auto b = auth::make_scramble();
  REQUIRE(a.has_value());
  REQUIRE(b.has_value());
  CHECK(a->size() == 20);
  CHECK(*a != *b);
  for (int i = 0; i < 200; ++i) {
    const auto s = auth::make_scramble();
    REQUIRE(s.has_value());
    for (char c : *s) {
      CHECK(c != '\0');
      CHECK(c != '$');
      CHECK(static_cast<uint8_t>(c) < 0x80);
    }
  }
  // A greeting with a fresh scramble round-trips.
  Greeting g;
  g.server_version = "5.5.5-10.11.0-MariaDB";
  g.scramble = *a;
  g.capabilities = cap::kProtocol41 | cap::kSecureConnection | cap::kPluginAuth;
  g.auth_plugin = std::string(kNativePassword);
  std::string wire;
  encode_greeting(wire, g);
  Greeting back;
  REQUIRE(decode_greeting(wire, back));
  CHECK(back.scramble == *a);
  CHECK(auth::constant_time_equal("abc", "abc"));
  CHECK_FALSE(auth::constant_time_equal("abc", "abd"));
  CHECK_FALSE(auth::constant_time_equal("abc", "ab"));
  CHECK(auth::constant_time_equal("", ""));
}

// Vectors computed with Python's hashlib for the password "hunter2" and the
// scramble 0x01..0x14:
//   stage1 = sha1(b"hunter2"), stage2 = sha1(stage1),
//   reply  = stage1 XOR sha1(scramble + stage2).
TEST_CASE("mysql_auth: native hash passthrough vectors", "[mysql]") {
  const std::string s = scramble_1_to_20();
  const std::string stored_text = "*58815970BE77B3720276F63DB198B1FA42E5CC02";
  const auto stored = auth::parse_native_hash(stored_text);
  REQUIRE(stored.has_value());
  CHECK(auth::native_password_hash_text("hunter2") == stored_text);
  // Lowercase hex is the same hash.
  std::string lower = stored_text;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  CHECK(auth::parse_native_hash(lower) == stored);
  const std::string reply = auth::native_password_response("hunter2", s);
  CHECK(hex(reply) == "be2cbec13fd268cf921774da8dde99447d699455");
  CHECK(auth::verify_native_password_hash(*stored, s, reply));

  // The reply carries SHA1(password).
  const auto sha1 = auth::recover_native_sha1(*stored, s, reply);
  REQUIRE(sha1.has_value());
  CHECK(hex(std::string_view(reinterpret_cast<const char*>(sha1->data()), 20)) ==
        "f3bbbd66a63d4bf1747940578ec3d0103530e21d");
  // ... with which sqlmux answers another scramble as the password would.
  std::string other = s;
  other[3] = 'Q';
  CHECK(auth::native_response_from_sha1(*sha1, other) ==
        auth::native_password_response("hunter2", other));
  const auto cred = auth::Credential::from_sha1(*sha1);
  CHECK_FALSE(cred.has_password());
  CHECK(cred.native_response(other) == auth::native_password_response("hunter2", other));
  const auto copy = cred;  // NOLINT(performance-unnecessary-copy-initialization)
  CHECK(copy.native_response(s) == reply);
  CHECK(auth::Credential::from_password("hunter2").native_response(s) == reply);
  CHECK(auth::Credential().empty());
  CHECK(auth::Credential().native_response(s).empty());

  // A wrong password, a short or long reply, another scramble: nothing.
  CHECK_FALSE(auth::recover_native_sha1(*stored, s, auth::native_password_response("hunter3", s)));
  CHECK_FALSE(auth::recover_native_sha1(*stored, s, reply.substr(0, 19)));
  CHECK_FALSE(auth::recover_native_sha1(*stored, s, reply + "x"));
  CHECK_FALSE(auth::recover_native_sha1(*stored, s, ""));
  CHECK_FALSE(auth::recover_native_sha1(*stored, other, reply));

  // Not a native hash.
  CHECK_FALSE(auth::parse_native_hash(stored_text.substr(1)));
  CHECK_FALSE(auth::parse_native_hash(stored_text + "0"));
  CHECK_FALSE(auth::parse_native_hash("*58815970BE77B3720276F63DB198B1FA42E5CC0G"));
  CHECK_FALSE(auth::parse_native_hash("hunter2"));
  CHECK_FALSE(auth::parse_native_hash(""));
}

TEST_CASE("mysql_auth: caching_sha2 full authentication, server side", "[mysql]") {
  Pkey key = rsa_key();
  const std::string priv = pem_of(key.get(), EVP_PKEY_KEYPAIR, "PrivateKeyInfo");
  const auto pub = auth::rsa_public_key_pem(priv);
  REQUIRE(pub.has_value());
  CHECK(pub->find("BEGIN PUBLIC KEY") != std::string::npos);
  CHECK(*pub == pem_of(key.get(), EVP_PKEY_PUBLIC_KEY, "SubjectPublicKeyInfo"));
  CHECK_FALSE(auth::rsa_public_key_pem(*pub).has_value());  // no private half
  CHECK_FALSE(auth::rsa_public_key_pem("junk").has_value());
  const std::string s = scramble_1_to_20();
  std::string out;
  using Step = auth::FullAuth::Step;

  SECTION("TLS: the password in clear") {
    auth::FullAuth fa(s, true, "", "");
    CHECK(fa.feed(std::string("secret") + '\0', out) == Step::Password);
    CHECK(out == "secret");
    CHECK(fa.feed(std::string(1, '\0'), out) == Step::Password);
    CHECK(out.empty());
    CHECK(fa.feed("secret", out) == Step::Malformed);  // no NUL
    CHECK(fa.feed(std::string("se\0cret\0", 8), out) == Step::Malformed);
    CHECK(fa.feed("", out) == Step::Malformed);
  }
  SECTION("plaintext with a key: key request, then RSA") {
    auth::FullAuth fa(s, false, priv, *pub);
    CHECK(fa.feed("\x02", out) == Step::SendPublicKey);
    CHECK(out == *pub);
    const auto ct = auth::rsa_encrypt_password("secret", s, out);
    REQUIRE(ct.has_value());
    CHECK(fa.feed(*ct, out) == Step::Password);
    CHECK(out == "secret");
    CHECK(fa.feed("\x02", out) == Step::Malformed);  // asked twice
    CHECK(fa.feed("garbage", out) == Step::Malformed);
  }
  SECTION("plaintext: cleartext before the key, or no key at all") {
    auth::FullAuth fa(s, false, priv, *pub);
    CHECK(fa.feed(std::string("secret") + '\0', out) == Step::Insecure);
    auth::FullAuth nokey(s, false, "", "");
    CHECK(nokey.feed("\x02", out) == Step::Insecure);
    CHECK(nokey.feed(std::string("secret") + '\0', out) == Step::Insecure);
  }
}

// A [[user]] holding a MySQL native hash: MySQL logins check against it,
// PostgreSQL logins have nothing to check (the hash text is not a password).
TEST_CASE("mysql_auth: user secrets from a native hash", "[mysql]") {
  sqlmux::config::UserConfig u;
  u.name = "ptuser";
  u.password = "*58815970BE77B3720276F63DB198B1FA42E5CC02";
  const sqlmux::MyProtocol my;
  const auto ms = my.derive_secrets(u);
  const auto* m = dynamic_cast<const sqlmux::MySecrets*>(ms.get());
  REQUIRE(m != nullptr);
  REQUIRE(m->native_hash.has_value());
  CHECK(*m->native_hash == auth::native_password_hash("hunter2"));
  CHECK(m->server_login_needs_client());
  const sqlmux::PgProtocol pg;
  const auto ps = pg.derive_secrets(u);
  const auto* p = dynamic_cast<const sqlmux::PgSecrets*>(ps.get());
  REQUIRE(p != nullptr);
  CHECK_FALSE(p->scram.has_value());
  CHECK(p->md5.empty());
  // A plaintext password: no hash, server logins need no client.
  u.password = "hunter2";
  const auto plain = my.derive_secrets(u);
  CHECK_FALSE(dynamic_cast<const sqlmux::MySecrets&>(*plain).native_hash.has_value());
  CHECK_FALSE(plain->server_login_needs_client());
}

TEST_CASE("mysql auth_query: the user is bound to the first ? outside quotes") {
  using sqlmux::my_bind_user;
  CHECK(*my_bind_user("SELECT a FROM mysql.user WHERE user = ? LIMIT 1", "'bob'") ==
        "SELECT a FROM mysql.user WHERE user = 'bob' LIMIT 1");
  CHECK(*my_bind_user("SELECT '?', \"?\", `?` FROM t WHERE u = ?", "'x'") ==
        "SELECT '?', \"?\", `?` FROM t WHERE u = 'x'");
  CHECK(*my_bind_user("SELECT 'it\\'s ?' FROM t WHERE u = ?", "'x'") ==
        "SELECT 'it\\'s ?' FROM t WHERE u = 'x'");
  CHECK_FALSE(my_bind_user("SELECT a FROM t WHERE u = '?'", "'x'"));
}
