#include "protocol/pg/auth.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <string>
#include <vector>

using namespace sqlmux::pg::auth;

namespace {

// RFC 7677, section 3.
constexpr const char* kRfcPassword = "pencil";
constexpr const char* kRfcClientFirst = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
constexpr const char* kRfcClientFirstBare = "n=user,r=rOprNGfwEbeRWgbNEkqO";
constexpr const char* kRfcServerNonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
constexpr const char* kRfcSaltB64 = "W22ZaJ0SNY7soEsUEjb6gQ==";
constexpr const char* kRfcServerFirst =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
constexpr const char* kRfcClientFinal =
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
constexpr const char* kRfcServerFinal = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
constexpr const char* kRfcNonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";

// Produced by PostgreSQL 15 on this machine (initdb; postgres --single;
// SET password_encryption='scram-sha-256'; CREATE ROLE app PASSWORD 'apppass';
// SELECT rolpassword FROM pg_authid).
constexpr const char* kPg15Verifier =
    "SCRAM-SHA-256$4096:HcgE46TRrBWkzs26PT09Ww==$egWSrGTs/QAoqL0TXoRwtKNzGT21OPdOi9VZkMBgxg0=:"
    "Ztfm1EQSfdGzy4CtNVg5MfeH92wInA7QKkpwr+ZMf3g=";
// Same role with password_encryption='md5'; equals `printf '%s' apppassapp | md5sum`.
constexpr const char* kPg15Md5 = "md5240aeccb7a1d859a99844d012bfe74cc";

ScramVerifier rfc_verifier() {
  auto salt = base64_decode(kRfcSaltB64);
  REQUIRE(salt.has_value());
  return make_scram_verifier(kRfcPassword, *salt, 4096);
}

// A server that has seen the RFC client-first-message.
ScramServer rfc_server_after_first() {
  ScramServer server(rfc_verifier(), kRfcServerNonce);
  std::string server_first, error;
  REQUIRE(server.handle_client_first(kRfcClientFirst, server_first, error));
  REQUIRE(server_first == kRfcServerFirst);
  return server;
}

// Runs a client-first-message through a fresh server; expects rejection.
std::string first_error(const std::string& client_first) {
  ScramServer server(rfc_verifier(), kRfcServerNonce);
  std::string server_first, error;
  CHECK_FALSE(server.handle_client_first(client_first, server_first, error));
  CHECK_FALSE(error.empty());
  CHECK(server_first.empty());
  CHECK_FALSE(server.authenticated());
  return error;
}

// Runs a client-final-message after the RFC first exchange; expects rejection.
std::string final_error(const std::string& client_final) {
  ScramServer server = rfc_server_after_first();
  std::string server_final, error;
  CHECK_FALSE(server.handle_client_final(client_final, server_final, error));
  CHECK_FALSE(error.empty());
  CHECK(server_final.empty());
  CHECK_FALSE(server.authenticated());
  return error;
}

std::string rfc_final_without_proof() {
  return std::string("c=biws,r=") + kRfcNonce;
}

// A SCRAM client proof computed directly with libcrypto, independently of
// pg_auth.cpp's helpers; returns base64.
std::string independent_proof(const std::string& password, const std::string& salt_b64,
                              int iterations, const std::string& auth_message) {
  unsigned char salt[64];
  int salt_len = EVP_DecodeBlock(salt, reinterpret_cast<const unsigned char*>(salt_b64.data()),
                                 static_cast<int>(salt_b64.size()));
  REQUIRE(salt_len > 0);
  salt_len -= static_cast<int>(std::count(salt_b64.begin(), salt_b64.end(), '='));
  unsigned char salted[32], client_key[32], stored_key[32], sig[32], proof[32];
  unsigned int len = 0;
  REQUIRE(PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()), salt, salt_len,
                            iterations, EVP_sha256(), 32, salted) == 1);
  REQUIRE(HMAC(EVP_sha256(), salted, 32, reinterpret_cast<const unsigned char*>("Client Key"), 10,
               client_key, &len) != nullptr);
  REQUIRE(SHA256(client_key, 32, stored_key) != nullptr);
  REQUIRE(HMAC(EVP_sha256(), stored_key, 32,
               reinterpret_cast<const unsigned char*>(auth_message.data()), auth_message.size(),
               sig, &len) != nullptr);
  for (int i = 0; i < 32; ++i) proof[i] = client_key[i] ^ sig[i];
  unsigned char out[64];
  int n = EVP_EncodeBlock(out, proof, 32);
  return std::string(reinterpret_cast<char*>(out), static_cast<size_t>(n));
}

}  // namespace

TEST_CASE("SCRAM: RFC 7677 test vector, server side", "[pg_auth][scram]") {
  ScramServer server(rfc_verifier(), kRfcServerNonce);
  std::string server_first, server_final, error;
  REQUIRE(server.handle_client_first(kRfcClientFirst, server_first, error));
  CHECK(server_first == kRfcServerFirst);
  CHECK_FALSE(server.authenticated());
  REQUIRE(server.handle_client_final(kRfcClientFinal, server_final, error));
  CHECK(server_final == kRfcServerFinal);
  CHECK(server.authenticated());
}

TEST_CASE("SCRAM: RFC 7677 test vector, client side", "[pg_auth][scram]") {
  auto final = scram_client_final(kRfcPassword, kRfcClientFirstBare, kRfcServerFirst);
  REQUIRE(final.has_value());
  CHECK(*final == kRfcClientFinal);
  // The test's own independent client agrees with the RFC too.
  CHECK(independent_proof(kRfcPassword, kRfcSaltB64, 4096,
                          std::string(kRfcClientFirstBare) + "," + kRfcServerFirst + "," +
                              rfc_final_without_proof()) ==
        "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
}

TEST_CASE("SCRAM: verifier format/parse round trip", "[pg_auth][scram]") {
  ScramVerifier v = make_scram_verifier("s3cret", "0123456789abcdef", 4096);
  REQUIRE(v.iterations == 4096);
  std::string text = format_scram_verifier(v);
  CHECK(text.rfind("SCRAM-SHA-256$4096:", 0) == 0);
  auto parsed = parse_scram_verifier(text);
  REQUIRE(parsed.has_value());
  CHECK(parsed->iterations == v.iterations);
  CHECK(parsed->salt == v.salt);
  CHECK(parsed->stored_key == v.stored_key);
  CHECK(parsed->server_key == v.server_key);
  CHECK(format_scram_verifier(*parsed) == text);

  // Different salt or iterations give different keys.
  ScramVerifier other = make_scram_verifier("s3cret", "0123456789abcdeF", 4096);
  CHECK(other.stored_key != v.stored_key);
  ScramVerifier fewer = make_scram_verifier("s3cret", "0123456789abcdef", 4095);
  CHECK(fewer.stored_key != v.stored_key);
}

TEST_CASE("SCRAM: RFC 7677 keys in rolpassword form", "[pg_auth][scram]") {
  // StoredKey/ServerKey for user/pencil as PostgreSQL would store them,
  // computed independently with Python's hashlib/hmac.
  ScramVerifier v = rfc_verifier();
  CHECK(format_scram_verifier(v) ==
        "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"
        "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
        "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=");
}

TEST_CASE("SCRAM: verifier produced by PostgreSQL 15", "[pg_auth][scram]") {
  auto v = parse_scram_verifier(kPg15Verifier);
  REQUIRE(v.has_value());
  CHECK(v->iterations == 4096);
  CHECK(v->salt.size() == 16);
  CHECK(format_scram_verifier(*v) == kPg15Verifier);

  // Our derivation reproduces PostgreSQL's keys from the same salt.
  ScramVerifier mine = make_scram_verifier("apppass", v->salt, v->iterations);
  CHECK(mine.stored_key == v->stored_key);
  CHECK(mine.server_key == v->server_key);

  // And a full exchange against it works with the right password only.
  std::string nonce = make_nonce();
  for (const char* password : {"apppass", "apppasS"}) {
    ScramServer server(*v, nonce);
    std::string client_first = "n,,n=,r=clientNonce123";
    std::string server_first, server_final, error;
    REQUIRE(server.handle_client_first(client_first, server_first, error));
    auto final = scram_client_final(password, client_first.substr(3), server_first);
    REQUIRE(final.has_value());
    bool ok = server.handle_client_final(*final, server_final, error);
    CHECK(ok == (std::string(password) == "apppass"));
    CHECK(server.authenticated() == ok);
  }
}

TEST_CASE("SCRAM: malformed verifiers are rejected", "[pg_auth][scram]") {
  const std::string good = kPg15Verifier;
  REQUIRE(parse_scram_verifier(good).has_value());
  const std::vector<std::string> bad = {
      "",
      "SCRAM-SHA-256$",
      "SCRAM-SHA-1$4096:HcgE46TRrBWkzs26PT09Ww==$egWSrGTs/QAoqL0TXoRwtKNzGT21OPdOi9VZkMBgxg0=:"
      "Ztfm1EQSfdGzy4CtNVg5MfeH92wInA7QKkpwr+ZMf3g=",
      "scram-sha-256$4096:HcgE46TRrBWkzs26PT09Ww==$egWSrGTs/QAoqL0TXoRwtKNzGT21OPdOi9VZkMBgxg0=:"
      "Ztfm1EQSfdGzy4CtNVg5MfeH92wInA7QKkpwr+ZMf3g=",
      // iterations: zero, negative, signed, non-numeric, overflowing, empty
      "SCRAM-SHA-256$0:HcgE46TRrBWkzs26PT09Ww==$egWSrGTs/QAoqL0TXoRwtKNzGT21OPdOi9VZkMBgxg0=:"
      "Ztfm1EQSfdGzy4CtNVg5MfeH92wInA7QKkpwr+ZMf3g=",
      "SCRAM-SHA-256$-1:HcgE46TRrBWkzs26PT09Ww==$egWSrGTs/QAoqL0TXoRwtKNzGT21OPdOi9VZkMBgxg0=:"
      "Ztfm1EQSfdGzy4CtNVg5MfeH92wInA7QKkpwr+ZMf3g=",
      "SCRAM-SHA-256$+4096:HcgE46TRrBWkzs26PT09Ww==$egWSrGTs/QAoqL0TXoRwtKNzGT21OPdOi9VZkMBgxg0=:"
      "Ztfm1EQSfdGzy4CtNVg5MfeH92wInA7QKkpwr+ZMf3g=",
      "SCRAM-SHA-256$40x6:HcgE46TRrBWkzs26PT09Ww==$egWSrGTs/QAoqL0TXoRwtKNzGT21OPdOi9VZkMBgxg0=:"
      "Ztfm1EQSfdGzy4CtNVg5MfeH92wInA7QKkpwr+ZMf3g=",
      "SCRAM-SHA-256$99999999999:HcgE46TRrBWkzs26PT09Ww==$egWSrGTs/"
      "QAoqL0TXoRwtKNzGT21OPdOi9VZkMBgxg0=:Ztfm1EQSfdGzy4CtNVg5MfeH92wInA7QKkpwr+ZMf3g=",
      "SCRAM-SHA-256$:HcgE46TRrBWkzs26PT09Ww==$egWSrGTs/QAoqL0TXoRwtKNzGT21OPdOi9VZkMBgxg0=:"
      "Ztfm1EQSfdGzy4CtNVg5MfeH92wInA7QKkpwr+ZMf3g=",
      // empty salt, bad salt
      "SCRAM-SHA-256$4096:$egWSrGTs/QAoqL0TXoRwtKNzGT21OPdOi9VZkMBgxg0=:"
      "Ztfm1EQSfdGzy4CtNVg5MfeH92wInA7QKkpwr+ZMf3g=",
      "SCRAM-SHA-256$4096:HcgE46TRrBWkzs26PT09Ww=$egWSrGTs/QAoqL0TXoRwtKNzGT21OPdOi9VZkMBgxg0=:"
      "Ztfm1EQSfdGzy4CtNVg5MfeH92wInA7QKkpwr+ZMf3g=",
      // keys: short, missing, extra separators, trailing garbage
      "SCRAM-SHA-256$4096:HcgE46TRrBWkzs26PT09Ww==$egWSrGTs/QAoqL0TXoRwtKNzGT21OPdOi9VZkMBg:"
      "Ztfm1EQSfdGzy4CtNVg5MfeH92wInA7QKkpwr+ZMf3g=",
      "SCRAM-SHA-256$4096:HcgE46TRrBWkzs26PT09Ww==$egWSrGTs/QAoqL0TXoRwtKNzGT21OPdOi9VZkMBgxg0=",
      "SCRAM-SHA-256$4096:HcgE46TRrBWkzs26PT09Ww==$egWSrGTs/QAoqL0TXoRwtKNzGT21OPdOi9VZkMBgxg0=:",
      "SCRAM-SHA-256$4096:HcgE46TRrBWkzs26PT09Ww==",
      "SCRAM-SHA-256$4096$HcgE46TRrBWkzs26PT09Ww==$egWSrGTs/QAoqL0TXoRwtKNzGT21OPdOi9VZkMBgxg0=:"
      "Ztfm1EQSfdGzy4CtNVg5MfeH92wInA7QKkpwr+ZMf3g=",
      good + "x",
      good + ":",
      good + "$",
      "md5240aeccb7a1d859a99844d012bfe74cc",
      "apppass",
  };
  for (const auto& s : bad) {
    INFO(s);
    CHECK_FALSE(parse_scram_verifier(s).has_value());
  }
  // Every truncation of a good verifier fails cleanly.
  for (size_t n = 0; n < good.size(); ++n) {
    INFO(n);
    CHECK_FALSE(parse_scram_verifier(good.substr(0, n)).has_value());
  }
}

TEST_CASE("SCRAM: make_scram_verifier edge cases", "[pg_auth][scram]") {
  CHECK(make_scram_verifier("pw", "salt", 0).iterations == 0);
  CHECK(make_scram_verifier("pw", "salt", -5).iterations == 0);
  ScramVerifier one = make_scram_verifier("", "salt", 1);
  CHECK(one.iterations == 1);
  // A verifier that failed to build cannot be used for an exchange.
  ScramServer server(make_scram_verifier("pw", "salt", 0), make_nonce());
  std::string out, error;
  CHECK_FALSE(server.handle_client_first("n,,n=,r=abc", out, error));
  CHECK_FALSE(error.empty());
}

TEST_CASE("SCRAM: wrong password is rejected", "[pg_auth][scram]") {
  ScramServer server = rfc_server_after_first();
  auto final = scram_client_final("pencil2", kRfcClientFirstBare, kRfcServerFirst);
  REQUIRE(final.has_value());
  std::string server_final, error;
  CHECK_FALSE(server.handle_client_final(*final, server_final, error));
  CHECK(error.find("password authentication failed") != std::string::npos);
  CHECK(server_final.empty());
  CHECK_FALSE(server.authenticated());
  // The exchange is over: even the right proof is refused now.
  CHECK_FALSE(server.handle_client_final(kRfcClientFinal, server_final, error));
  CHECK_FALSE(server.authenticated());
}

TEST_CASE("SCRAM: full exchange with random nonce and y,, header", "[pg_auth][scram]") {
  ScramVerifier v = make_scram_verifier("hunter2", "NaCl-NaCl-NaCl!", 4096);
  std::string nonce = make_nonce();
  REQUIRE(nonce.size() == 24);
  ScramServer server(v, nonce);
  std::string client_first = "y,,n=someone,r=fyko+d2lbbFgONRv9qkxdawL";
  std::string server_first, server_final, error;
  REQUIRE(server.handle_client_first(client_first, server_first, error));
  CHECK(server_first.rfind("r=fyko+d2lbbFgONRv9qkxdawL" + nonce + ",s=", 0) == 0);
  auto final = scram_client_final("hunter2", client_first.substr(3), server_first, "y,,");
  REQUIRE(final.has_value());
  CHECK(final->rfind("c=eSws,", 0) == 0);
  REQUIRE(server.handle_client_final(*final, server_final, error));
  CHECK(server.authenticated());
  CHECK(server_final.rfind("v=", 0) == 0);
  CHECK(base64_decode(server_final.substr(2)).value_or("").size() == 32);

  // c= must repeat the header the client actually sent.
  ScramServer server2(v, nonce);
  REQUIRE(server2.handle_client_first(client_first, server_first, error));
  auto wrong_cb = scram_client_final("hunter2", client_first.substr(3), server_first, "n,,");
  REQUIRE(wrong_cb.has_value());
  CHECK_FALSE(server2.handle_client_final(*wrong_cb, server_final, error));
  CHECK(error.find("channel-binding") != std::string::npos);
  CHECK_FALSE(server2.authenticated());
}

TEST_CASE("SCRAM: extensions in client messages", "[pg_auth][scram]") {
  // Optional extensions after the client nonce are ignored (as PostgreSQL does).
  {
    ScramServer server(rfc_verifier(), kRfcServerNonce);
    std::string server_first, error;
    REQUIRE(server.handle_client_first(std::string(kRfcClientFirst) + ",x=whatever", server_first,
                                       error));
    CHECK(server_first == kRfcServerFirst);
  }
  // Extensions before p= in the final message are skipped but belong to the
  // AuthMessage: the RFC proof does not cover them...
  CHECK(final_error(rfc_final_without_proof() +
                    ",x=ext,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .find("password authentication failed") != std::string::npos);
  // ... while a proof computed over them is accepted.
  {
    ScramServer server = rfc_server_after_first();
    std::string without_proof = rfc_final_without_proof() + ",x=ext,y=";
    std::string auth_message =
        std::string(kRfcClientFirstBare) + "," + kRfcServerFirst + "," + without_proof;
    std::string final =
        without_proof + ",p=" + independent_proof(kRfcPassword, kRfcSaltB64, 4096, auth_message);
    std::string server_final, error;
    REQUIRE(server.handle_client_final(final, server_final, error));
    CHECK(server.authenticated());
  }
}

TEST_CASE("SCRAM: bad client-first-messages are rejected", "[pg_auth][scram]") {
  CHECK(first_error("p=tls-server-end-point,,n=user,r=abc") == "channel binding not supported");
  CHECK(first_error("p,,n=user,r=abc") == "channel binding not supported");
  CHECK(first_error("n,a=admin,n=user,r=abc").find("authorization identity") != std::string::npos);
  CHECK(first_error("n,a=,n=user,r=abc").find("authorization identity") != std::string::npos);
  CHECK(first_error("n,,m=foo,n=user,r=abc").find("extension") != std::string::npos);

  const std::vector<std::string> bad = {
      "",
      ",",
      ",,",
      "n",
      "n,",
      "n,,",
      "n,,,",
      "x,,n=user,r=abc",
      "N,,n=user,r=abc",
      "nn,,n=user,r=abc",
      "n,x,n=user,r=abc",
      "n,,r=abc",
      "n,,n=user",
      "n,,n=user,",
      "n,,n=user,r=",
      "n,,n=user,r=abc,",
      "n,,n=user,r=abc,,",
      "n,,n=user,r=abc,1=x",
      "n,,n=user,r=abc,x",
      "n,,n=user,x=abc",
      "n,,user,r=abc",
      "n,,n=user,r=ab c",
      "n,,n=user,r=ab\x7f",
      "n,,n=user,r=\xc3\xa9t\xc3\xa9",
      std::string("n,,n=user,r=ab\0c", 16),
      std::string("n,,n=us\0er,r=abc", 16),
      "garbage",
      "\xff\xfe\xfd",
      std::string(70000, 'a'),
      "n,,n=user,r=" + std::string(70000, 'a'),
  };
  for (const auto& msg : bad) {
    INFO(msg.substr(0, 80));
    first_error(msg);
  }
  // Every truncation of a valid message that cuts into the gs2 header or the
  // nonce attribute fails; those that keep a non-empty nonce succeed.
  const std::string good = kRfcClientFirst;
  for (size_t n = 0; n <= good.size(); ++n) {
    ScramServer server(rfc_verifier(), kRfcServerNonce);
    std::string server_first, error;
    bool ok = server.handle_client_first(good.substr(0, n), server_first, error);
    INFO(good.substr(0, n));
    CHECK(ok == (n > good.find("r=") + 2));
    CHECK(ok == error.empty());
  }
}

TEST_CASE("SCRAM: state machine misuse", "[pg_auth][scram]") {
  {
    ScramServer server(rfc_verifier(), kRfcServerNonce);
    std::string out, error;
    CHECK_FALSE(server.handle_client_final(kRfcClientFinal, out, error));
    CHECK_FALSE(error.empty());
    CHECK_FALSE(server.authenticated());
  }
  {
    ScramServer server = rfc_server_after_first();
    std::string out, error;
    CHECK_FALSE(server.handle_client_first(kRfcClientFirst, out, error));
    CHECK_FALSE(error.empty());
    // The exchange still completes.
    REQUIRE(server.handle_client_final(kRfcClientFinal, out, error));
    CHECK(out == kRfcServerFinal);
    // A replayed final message is refused.
    std::string again;
    CHECK_FALSE(server.handle_client_final(kRfcClientFinal, again, error));
    CHECK(again.empty());
    CHECK(server.authenticated());
  }
  {
    // Bad server nonces are refused rather than sent.
    for (const char* nonce : {"", "a,b", "a b"}) {
      ScramServer server(rfc_verifier(), nonce);
      std::string out, error;
      CHECK_FALSE(server.handle_client_first(kRfcClientFirst, out, error));
      CHECK_FALSE(error.empty());
    }
  }
}

TEST_CASE("SCRAM: bad client-final-messages are rejected", "[pg_auth][scram]") {
  const std::string r = std::string("r=") + kRfcNonce;
  const std::string p = "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";

  // Tampered nonce: changed server part, changed client part, missing server
  // part, extra characters.
  CHECK(final_error("c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k1," + p)
            .find("nonce") != std::string::npos);
  CHECK(final_error("c=biws,r=rOprNGfwEbeRWgbNEkqP%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0," + p)
            .find("nonce") != std::string::npos);
  CHECK(final_error("c=biws,r=rOprNGfwEbeRWgbNEkqO," + p).find("nonce") != std::string::npos);
  CHECK(final_error("c=biws," + r + "x," + p).find("nonce") != std::string::npos);

  // Channel binding data.
  CHECK(final_error("c=eSws," + r + "," + p).find("channel-binding") != std::string::npos);
  CHECK(final_error("c=cD10bHMtc2VydmVyLWVuZC1wb2ludCws," + r + "," + p).find("channel-binding") !=
        std::string::npos);
  CHECK(final_error("c=," + r + "," + p).find("channel-binding") != std::string::npos);

  // Proof problems.
  CHECK(
      final_error("c=biws," + r + ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ").find("proof") !=
      std::string::npos);  // bad base64 (no padding)
  CHECK(final_error("c=biws," + r + ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=AAAA")
            .find("proof") != std::string::npos);  // overlong
  CHECK(final_error("c=biws," + r + ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7And===")
            .find("proof") != std::string::npos);
  CHECK(final_error("c=biws," + r + ",p=" + base64_encode(std::string(31, 'x'))).find("proof") !=
        std::string::npos);  // short
  CHECK(final_error("c=biws," + r + ",p=" + base64_encode(std::string(33, 'x'))).find("proof") !=
        std::string::npos);  // overlong
  CHECK(final_error("c=biws," + r + ",p=" + base64_encode(std::string(1000, 'x'))).find("proof") !=
        std::string::npos);  // much too long
  CHECK(final_error("c=biws," + r + ",p=").find("proof") != std::string::npos);
  CHECK(final_error("c=biws," + r + ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7And!Q=")
            .find("proof") != std::string::npos);
  CHECK(final_error("c=biws," + r).find("proof") != std::string::npos);
  CHECK(final_error("c=biws," + r + ",x=1").find("proof") != std::string::npos);
  // A different but well-formed proof fails verification.
  CHECK(final_error("c=biws," + r + ",p=" + base64_encode(std::string(32, 'x')))
            .find("password authentication failed") != std::string::npos);
  // Proof must be last.
  CHECK(final_error(std::string(kRfcClientFinal) + ",x=1").find("garbage") != std::string::npos);
  CHECK(final_error(std::string(kRfcClientFinal) + ",").find("garbage") != std::string::npos);

  const std::vector<std::string> bad = {
      "",
      ",",
      "garbage",
      "c=biws",
      "c=biws,",
      r + "," + p,
      "c=biws," + p,
      p,
      "r=x,c=biws," + p,
      "c=biws," + r + ",," + p,
      "c=biws," + r + ",1=2," + p,
      "c=biws," + r + ",=," + p,
      "c=biws," + r + ",xx=1," + p,
      "c=biws,," + r + "," + p,
      std::string(kRfcClientFinal).substr(0, 20) + std::string(1, '\0') +
          std::string(kRfcClientFinal).substr(20),
      std::string(kRfcClientFinal) + std::string(1, '\0'),
      std::string(70000, ','),
      "c=biws," + r + "," + std::string(70000, 'x') + "," + p,
      "\xff\xff\xff\xff",
  };
  for (const auto& msg : bad) {
    INFO(msg.substr(0, 80));
    final_error(msg);
  }
  // Every strict truncation of the RFC final message is refused.
  const std::string good = kRfcClientFinal;
  for (size_t n = 0; n < good.size(); ++n) {
    INFO(good.substr(0, n));
    final_error(good.substr(0, n));
  }
}

TEST_CASE("SCRAM: scram_client_final rejects bad server-first-messages", "[pg_auth][scram]") {
  const std::vector<std::string> bad = {
      "",
      "garbage",
      "r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",     // no server part
      "r=XOprNGfwEbeRWgbNEkqOabc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",  // not our nonce
      "r=rOprNGfwEbeRWgbNEkqOabc,s=,i=4096",
      "r=rOprNGfwEbeRWgbNEkqOabc,s=W22ZaJ0SNY7soEsUEjb6gQ=,i=4096",
      "r=rOprNGfwEbeRWgbNEkqOabc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0",
      "r=rOprNGfwEbeRWgbNEkqOabc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=-1",
      "r=rOprNGfwEbeRWgbNEkqOabc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=x",
      "r=rOprNGfwEbeRWgbNEkqOabc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,",
      "r=rOprNGfwEbeRWgbNEkqOabc,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,x=1",
      "r=rOprNGfwEbeRWgbNEkqOabc,s=W22ZaJ0SNY7soEsUEjb6gQ==",
      "s=W22ZaJ0SNY7soEsUEjb6gQ==,r=rOprNGfwEbeRWgbNEkqOabc,i=4096",
      "r=rOprNGfwEbeRWgbNEkqOa c,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
  };
  for (const auto& msg : bad) {
    INFO(msg);
    CHECK_FALSE(scram_client_final("pencil", kRfcClientFirstBare, msg).has_value());
  }
  CHECK_FALSE(scram_client_final("pencil", "r=abc", kRfcServerFirst).has_value());
  CHECK_FALSE(scram_client_final("pencil", "n=user", kRfcServerFirst).has_value());
  CHECK_FALSE(scram_client_final("pencil", "", kRfcServerFirst).has_value());
}

TEST_CASE("md5: password hash matches PostgreSQL", "[pg_auth][md5]") {
  // `printf '%s' apppassapp | md5sum` = 240aeccb7a1d859a99844d012bfe74cc, and
  // PostgreSQL 15 stored the same for role app / password apppass.
  CHECK(md5_password_hash("apppass", "app") == kPg15Md5);
  // `printf '%s' postgres | md5sum` (empty password, user "postgres")
  CHECK(md5_password_hash("", "postgres") == "md5e8a48653851e28c69d0506508fb27fc5");
  CHECK(is_md5_hash(md5_password_hash("x", "y")));
}

TEST_CASE("md5: salted response", "[pg_auth][md5]") {
  // "md5" + md5("240aeccb7a1d859a99844d012bfe74cc" + salt), computed with
  // Python's hashlib.
  const uint8_t salt1[4] = {0x01, 0x02, 0x03, 0x04};
  const uint8_t salt2[4] = {0xde, 0xad, 0xbe, 0xef};
  CHECK(md5_salted_response(kPg15Md5, salt1) == "md57c4ce2f1a9027aaf50bdd78df96acb9c");
  CHECK(md5_salted_response(kPg15Md5, salt2) == "md5d4de3f14d7866eb748e01459803a826d");
  // What a client computes from the plaintext equals what the server computes
  // from the stored hash.
  CHECK(md5_salted_response(md5_password_hash("apppass", "app"), salt2) ==
        md5_salted_response(kPg15Md5, salt2));
  CHECK(md5_salted_response(kPg15Md5, salt1) != md5_salted_response(kPg15Md5, salt2));
  // Degenerate input does not crash.
  CHECK(is_md5_hash(md5_salted_response("", salt1)));
  CHECK(is_md5_hash(md5_salted_response("md", salt1)));
}

TEST_CASE("md5: is_md5_hash", "[pg_auth][md5]") {
  CHECK(is_md5_hash("md5240aeccb7a1d859a99844d012bfe74cc"));
  CHECK(is_md5_hash("md500000000000000000000000000000000"));
  CHECK_FALSE(is_md5_hash(""));
  CHECK_FALSE(is_md5_hash("md5"));
  CHECK_FALSE(is_md5_hash("md5240aeccb7a1d859a99844d012bfe74c"));    // 31 digits
  CHECK_FALSE(is_md5_hash("md5240aeccb7a1d859a99844d012bfe74cc0"));  // 33 digits
  CHECK_FALSE(is_md5_hash("md5240AECCB7A1D859A99844D012BFE74CC"));   // uppercase
  CHECK_FALSE(is_md5_hash("MD5240aeccb7a1d859a99844d012bfe74cc"));
  CHECK_FALSE(is_md5_hash("md5240aeccb7a1d859a99844d012bfe74cg"));
  CHECK_FALSE(is_md5_hash("xyz240aeccb7a1d859a99844d012bfe74cc"));
  CHECK_FALSE(is_md5_hash(std::string("md5240aeccb7a1d859a99844d012bfe74c\0", 35)));
  CHECK_FALSE(is_md5_hash(kPg15Verifier));
  CHECK_FALSE(is_md5_hash("apppass"));
}

TEST_CASE("base64: RFC 4648 vectors and round trip", "[pg_auth][base64]") {
  const std::vector<std::pair<std::string, std::string>> vectors = {
      {"", ""},
      {"f", "Zg=="},
      {"fo", "Zm8="},
      {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="},
      {"fooba", "Zm9vYmE="},
      {"foobar", "Zm9vYmFy"},
      {"n,,", "biws"},
      {"y,,", "eSws"},
  };
  for (const auto& [raw, b64] : vectors) {
    CHECK(base64_encode(raw) == b64);
    auto back = base64_decode(b64);
    REQUIRE(back.has_value());
    CHECK(*back == raw);
  }
  // All byte values, all lengths up to 300.
  std::string all;
  for (int i = 0; i < 300; ++i) all.push_back(static_cast<char>((i * 7 + 3) & 0xFF));
  for (size_t n = 0; n <= all.size(); ++n) {
    std::string raw = all.substr(0, n);
    std::string enc = base64_encode(raw);
    CHECK(enc.size() == (n + 2) / 3 * 4);
    auto dec = base64_decode(enc);
    REQUIRE(dec.has_value());
    CHECK(*dec == raw);
  }
}

TEST_CASE("base64: bad inputs are rejected", "[pg_auth][base64]") {
  const std::vector<std::string> bad = {
      "Z",
      "Zg",
      "Zg=",
      "Zm9",
      "Zm9vY",
      "=",
      "==",
      "===",
      "====",
      "Z===",
      "=Zg=",
      "Zg==Zg==",
      "Zm=v",
      "Zm9v=",
      "Zm9v====",
      "Zm9v\n",
      " Zm9v",
      "Zm 9v",
      "Zm9v\r\n",
      "Zm-_",
      "Zm9\xff",
      "Zh==",  // non-zero unused bits
      "Zm9=",  // non-zero unused bits
      std::string("Zm\0v", 4),
  };
  for (const auto& s : bad) {
    INFO(s);
    CHECK_FALSE(base64_decode(s).has_value());
  }
}

TEST_CASE("constant_time_equal", "[pg_auth]") {
  CHECK(constant_time_equal("", ""));
  CHECK(constant_time_equal("abc", "abc"));
  CHECK(constant_time_equal(std::string("a\0b", 3), std::string("a\0b", 3)));
  CHECK_FALSE(constant_time_equal("abc", "abd"));
  CHECK_FALSE(constant_time_equal("abc", "ab"));
  CHECK_FALSE(constant_time_equal("", "a"));
  CHECK_FALSE(constant_time_equal(std::string("a\0b", 3), std::string("a\0c", 3)));
  CHECK_FALSE(constant_time_equal("xbc", "abc"));
}

TEST_CASE("random_bytes and make_nonce", "[pg_auth]") {
  uint8_t a[32] = {};
  uint8_t b[32] = {};
  REQUIRE(random_bytes(a, sizeof a));
  REQUIRE(random_bytes(b, sizeof b));
  CHECK(std::string(reinterpret_cast<char*>(a), 32) != std::string(reinterpret_cast<char*>(b), 32));
  CHECK(random_bytes(a, 0));

  std::string n1 = make_nonce();
  std::string n2 = make_nonce();
  CHECK(n1.size() == 24);
  CHECK(n1 != n2);
  for (char c : n1) {
    CHECK(c > 0x20);
    CHECK(c < 0x7F);
    CHECK(c != ',');
  }
  CHECK(base64_decode(n1).value_or("").size() == 18);
}
