// SCRAM passthrough: the ClientKey recovered from a client's proof, and
// sqlmux's own login to the server with it (protocol/pg/server_login.h),
// played against sqlmux's SCRAM server side standing in for PostgreSQL.
#include "protocol/pg/server_login.h"

#include <catch2/catch.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "protocol/pg/auth.h"
#include "protocol/pg/codec.h"

using namespace sqlmux::pg;
using namespace sqlmux::pg::auth;

namespace {

constexpr const char* kPassword = "correct horse";

std::string salt_a() {
  return "0123456789abcdef";
}

// Logs a client in to a ScramServer with the password; returns the
// ClientKey the server recovered.
ScramKey recover_key(const ScramVerifier& v, std::string_view password) {
  ScramServer server(v, make_nonce());
  const std::string bare = "n=,r=" + make_nonce();
  std::string server_first;
  std::string err;
  REQUIRE(server.handle_client_first("n,," + bare, server_first, err));
  auto final_msg = scram_client_final(password, bare, server_first);
  REQUIRE(final_msg);
  std::string server_final;
  REQUIRE(server.handle_client_final(*final_msg, server_final, err));
  REQUIRE(server.client_key());
  return *server.client_key();
}

// The messages in `out` (frontend messages: type byte and length).
std::vector<Message> split(const std::string& out, std::vector<std::string>& storage) {
  std::vector<Message> msgs;
  size_t off = 0;
  while (off < out.size()) {
    Message m;
    size_t used = 0;
    REQUIRE(decode_message(reinterpret_cast<const uint8_t*>(out.data()) + off, out.size() - off,
                           kMaxMessageLen, m, used) == Decode::Complete);
    storage.emplace_back(m.body);
    msgs.push_back(m);
    off += used;
  }
  return msgs;
}

// Body of an 'R' message with `code` and `rest`.
std::string auth_body(int32_t code, std::string_view rest) {
  std::string b;
  for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<char>((code >> s) & 0xff));
  b.append(rest);
  return b;
}

std::string sasl_mechs() {
  return std::string("SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0", 34);
}

// Feeds the welcome after AuthenticationOk; returns the last step.
ServerLogin::Step welcome(ServerLogin& login) {
  std::string out;
  std::string body;
  REQUIRE(login.on_message('R', auth_body(0, ""), out) == ServerLogin::Step::Continue);
  std::string ps = std::string("TimeZone\0UTC\0", 13);
  REQUIRE(login.on_message('S', ps, out) == ServerLogin::Step::Continue);
  std::string kd = auth_body(4242, "") + auth_body(77, "");
  REQUIRE(login.on_message('K', kd, out) == ServerLogin::Step::Continue);
  auto st = login.on_message('Z', "I", out);
  CHECK(out.empty());
  return st;
}

struct Exchange {
  ServerLogin::Step step = ServerLogin::Step::Continue;
  bool server_accepted = false;
};

// Plays the SCRAM exchange between `login` and a server holding `server_v`;
// `tamper` alters the server-final-message.
Exchange play_scram(ServerLogin& login, const ScramVerifier& server_v, bool tamper = false) {
  Exchange ex;
  ScramServer server(server_v, make_nonce());
  std::string out;
  std::vector<std::string> storage;
  ex.step = login.on_message('R', auth_body(10, sasl_mechs()), out);
  if (ex.step != ServerLogin::Step::Continue) return ex;
  auto msgs = split(out, storage);
  REQUIRE(msgs.size() == 1);
  REQUIRE(msgs[0].type == 'p');
  std::string_view mech;
  std::string_view data;
  REQUIRE(parse_sasl_initial_response(msgs[0].body, mech, data));
  CHECK(mech == "SCRAM-SHA-256");
  std::string server_first;
  std::string err;
  REQUIRE(server.handle_client_first(data, server_first, err));
  out.clear();
  ex.step = login.on_message('R', auth_body(11, server_first), out);
  if (ex.step != ServerLogin::Step::Continue) return ex;
  storage.clear();
  msgs = split(out, storage);
  REQUIRE(msgs.size() == 1);
  std::string server_final;
  ex.server_accepted = server.handle_client_final(msgs[0].body, server_final, err);
  REQUIRE(ex.server_accepted);
  if (tamper) server_final[3] = server_final[3] == 'A' ? 'B' : 'A';
  out.clear();
  ex.step = login.on_message('R', auth_body(12, server_final), out);
  CHECK(out.empty());
  return ex;
}

LoginSecret scram_secret(const ScramVerifier& v, const ScramKey& key) {
  LoginSecret s;
  s.kind = LoginSecret::Kind::ScramKey;
  s.verifier = v;
  s.client_key = key;
  return s;
}

}  // namespace

TEST_CASE("ScramServer recovers the client's ClientKey", "[pg][auth][passthrough]") {
  const ScramVerifier v = make_scram_verifier(kPassword, salt_a(), 4096);
  const ScramKey k1 = recover_key(v, kPassword);
  CHECK(client_key_matches(k1, v));
  // The ClientKey is a function of the password and salt: a second login
  // (other nonces) recovers the same one.
  CHECK(recover_key(v, kPassword) == k1);

  // A wrong password: no key.
  ScramServer server(v, make_nonce());
  const std::string bare = "n=,r=abcdef";
  std::string server_first;
  std::string err;
  REQUIRE(server.handle_client_first("n,," + bare, server_first, err));
  auto wrong = scram_client_final("wrong", bare, server_first);
  REQUIRE(wrong);
  std::string server_final;
  CHECK_FALSE(server.handle_client_final(*wrong, server_final, err));
  CHECK_FALSE(server.client_key());
}

TEST_CASE("scram_client_key: a cleartext password's ClientKey", "[pg][auth][passthrough]") {
  const ScramVerifier v = make_scram_verifier(kPassword, salt_a(), 4096);
  auto k = scram_client_key(kPassword, v);
  REQUIRE(k);
  CHECK(*k == recover_key(v, kPassword));  // what a SCRAM proof gives
  CHECK_FALSE(scram_client_key("wrong", v));
}

TEST_CASE("ServerLogin logs in with a recovered ClientKey", "[pg][passthrough]") {
  const ScramVerifier v = make_scram_verifier(kPassword, salt_a(), 4096);
  const ScramKey key = recover_key(v, kPassword);
  ServerLogin login("alice", "app", scram_secret(v, key), make_nonce());
  std::string start;
  login.start(start);
  std::vector<std::string> storage;
  REQUIRE(start.size() > 8);
  CHECK(start.find(std::string("user\0alice\0", 11)) != std::string::npos);
  CHECK(start.find(std::string("database\0app\0", 13)) != std::string::npos);

  Exchange ex = play_scram(login, v);
  CHECK(ex.server_accepted);  // the server took the proof made from the key alone
  REQUIRE(ex.step == ServerLogin::Step::Continue);
  CHECK(welcome(login) == ServerLogin::Step::Ready);
  CHECK(login.error() == LoginError::None);
  CHECK(login.pid() == 4242);
  CHECK(login.key() == 77);
  REQUIRE(login.params().size() == 1);
  CHECK(login.params()[0].first == "TimeZone");
  CHECK(login.params()[0].second == "UTC");
}

TEST_CASE("ServerLogin refuses a server whose salt differs", "[pg][passthrough]") {
  const ScramVerifier v = make_scram_verifier(kPassword, salt_a(), 4096);
  const ScramKey key = recover_key(v, kPassword);
  SECTION("other salt") {
    ServerLogin login("alice", "app", scram_secret(v, key), make_nonce());
    Exchange ex = play_scram(login, make_scram_verifier(kPassword, "fedcba9876543210", 4096));
    CHECK(ex.step == ServerLogin::Step::Failed);
    CHECK(login.error() == LoginError::SaltMismatch);
    CHECK(login.error_text().find("pg_authid") != std::string::npos);
  }
  SECTION("other iteration count") {
    ServerLogin login("alice", "app", scram_secret(v, key), make_nonce());
    Exchange ex = play_scram(login, make_scram_verifier(kPassword, salt_a(), 4097));
    CHECK(ex.step == ServerLogin::Step::Failed);
    CHECK(login.error() == LoginError::SaltMismatch);
  }
}

TEST_CASE("ServerLogin checks the server's signature", "[pg][passthrough]") {
  const ScramVerifier v = make_scram_verifier(kPassword, salt_a(), 4096);
  const ScramKey key = recover_key(v, kPassword);
  SECTION("tampered server-final-message") {
    ServerLogin login("alice", "app", scram_secret(v, key), make_nonce());
    Exchange ex = play_scram(login, v, /*tamper=*/true);
    CHECK(ex.step == ServerLogin::Step::Failed);
    CHECK(login.error() == LoginError::BadServerSignature);
  }
  SECTION("AuthenticationOk without the SCRAM final message") {
    ServerLogin login("alice", "app", scram_secret(v, key), make_nonce());
    std::string out;
    REQUIRE(login.on_message('R', auth_body(10, sasl_mechs()), out) == ServerLogin::Step::Continue);
    CHECK(login.on_message('R', auth_body(0, ""), out) == ServerLogin::Step::Failed);
    CHECK(login.error() == LoginError::BadServerSignature);
  }
}

TEST_CASE("ServerLogin refuses a key that is not the verifier's", "[pg][passthrough]") {
  const ScramVerifier v = make_scram_verifier(kPassword, salt_a(), 4096);
  ScramKey key = recover_key(v, kPassword);
  key[0] ^= 1;
  ServerLogin login("alice", "app", scram_secret(v, key), make_nonce());
  std::string out;
  CHECK(login.on_message('R', auth_body(10, sasl_mechs()), out) == ServerLogin::Step::Failed);
  CHECK(login.error() == LoginError::KeyMismatch);
  CHECK(out.empty());
}

TEST_CASE("ServerLogin answers md5 with a stored md5 hash", "[pg][passthrough]") {
  LoginSecret s;
  s.kind = LoginSecret::Kind::Md5Hash;
  s.md5 = md5_password_hash("pw", "bob");
  ServerLogin login("bob", "app", s, make_nonce());
  const uint8_t salt[4] = {1, 2, 3, 4};
  std::string out;
  REQUIRE(login.on_message('R', auth_body(5, std::string_view("\x01\x02\x03\x04", 4)), out) ==
          ServerLogin::Step::Continue);
  std::vector<std::string> storage;
  auto msgs = split(out, storage);
  REQUIRE(msgs.size() == 1);
  std::string_view pw;
  REQUIRE(parse_password(msgs[0].body, pw));
  // What PostgreSQL expects of a client that knows the password "pw".
  CHECK(pw == md5_salted_response(md5_password_hash("pw", "bob"), salt));
  CHECK(welcome(login) == ServerLogin::Step::Ready);

  SECTION("an md5 hash cannot answer SCRAM") {
    ServerLogin l2("bob", "app", s, make_nonce());
    std::string o2;
    CHECK(l2.on_message('R', auth_body(10, sasl_mechs()), o2) == ServerLogin::Step::Failed);
    CHECK(l2.error() == LoginError::UnsupportedAuth);
  }
}

TEST_CASE("ServerLogin: trust, errors, cleartext, stray messages", "[pg][passthrough]") {
  const ScramVerifier v = make_scram_verifier(kPassword, salt_a(), 4096);
  const ScramKey key = recover_key(v, kPassword);
  SECTION("trust: AuthenticationOk at once") {
    ServerLogin login("alice", "app", scram_secret(v, key), make_nonce());
    CHECK(welcome(login) == ServerLogin::Step::Ready);
  }
  SECTION("ErrorResponse") {
    ServerLogin login("alice", "app", scram_secret(v, key), make_nonce());
    std::string e;
    ErrorFields f;
    f.severity = "FATAL";
    f.sqlstate = "28P01";
    f.message = "password authentication failed for user \"alice\"";
    put_error(e, f);
    std::string out;
    CHECK(login.on_message('E', std::string_view(e).substr(5), out) == ServerLogin::Step::Failed);
    CHECK(login.error() == LoginError::ServerError);
    CHECK(login.server_error().sqlstate == "28P01");
  }
  SECTION("ErrorResponse without a message still says why") {
    ServerLogin login("alice", "app", scram_secret(v, key), make_nonce());
    std::string out;
    CHECK(login.on_message('E', std::string("SFATAL\0C28P01\0\0", 15), out) ==
          ServerLogin::Step::Failed);
    CHECK(login.error_text() == "the server refused the login (SQLSTATE 28P01)");
  }
  SECTION("cleartext") {
    ServerLogin login("alice", "app", scram_secret(v, key), make_nonce());
    std::string out;
    CHECK(login.on_message('R', auth_body(3, ""), out) == ServerLogin::Step::Failed);
    CHECK(login.error() == LoginError::UnsupportedAuth);
  }
  SECTION("no SCRAM-SHA-256 on offer") {
    ServerLogin login("alice", "app", scram_secret(v, key), make_nonce());
    std::string out;
    CHECK(login.on_message('R', auth_body(10, std::string("OTHER\0\0", 7)), out) ==
          ServerLogin::Step::Failed);
    CHECK(login.error() == LoginError::UnsupportedAuth);
  }
  SECTION("ReadyForQuery before AuthenticationOk") {
    ServerLogin login("alice", "app", scram_secret(v, key), make_nonce());
    std::string out;
    CHECK(login.on_message('Z', "I", out) == ServerLogin::Step::Failed);
    CHECK(login.error() == LoginError::ProtocolError);
  }
  SECTION("malformed server-first-message") {
    ServerLogin login("alice", "app", scram_secret(v, key), make_nonce());
    std::string out;
    REQUIRE(login.on_message('R', auth_body(10, sasl_mechs()), out) == ServerLogin::Step::Continue);
    CHECK(login.on_message('R', auth_body(11, "r=zzz,s=AAAA,i=1"), out) ==
          ServerLogin::Step::Failed);
    CHECK(login.error() == LoginError::ProtocolError);
  }
}
