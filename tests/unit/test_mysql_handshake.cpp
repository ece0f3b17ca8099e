// mysql_handshake: greeting, HandshakeResponse41, SSLRequest, auth switch
// and more-data packets, against MariaDB 10.11 captures and hand-made
// variants; round trips; truncation.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "protocol/mysql/handshake.h"
#include "protocol/mysql/response.h"
#include "tests/unit/test_mysql_fixtures.h"

using namespace sqlmux::my;
using sqlmux::my::testing::bytes;
using sqlmux::my::testing::ExactBuf;
using sqlmux::my::testing::real;
using sqlmux::my::testing::real_one;

namespace {

constexpr uint64_t kMariaServerCaps = 0x1d'81fff7feull;

HandshakeResponse sample_response(uint64_t caps) {
  HandshakeResponse h;
  h.capabilities = caps | cap::kProtocol41;
  h.max_packet = 1u << 24;
  h.charset = 45;
  h.username = "app";
  h.auth_response = bytes({0x01, 0x00, 0xfe, 0xff, 0x20});
  if ((caps & cap::kConnectWithDb) != 0) h.database = "shop";
  if ((caps & cap::kPluginAuth) != 0) h.auth_plugin = "mysql_native_password";
  if ((caps & cap::kConnectAttrs) != 0) {
    h.attributes = {{"_client_name", "t"}, {"_os", "Linux"}, {"empty", ""}};
  }
  if ((caps & cap::kZstdCompression) != 0) h.zstd_level = 3;
  return h;
}

bool same(const HandshakeResponse& a, const HandshakeResponse& b) {
  return a.capabilities == b.capabilities && a.max_packet == b.max_packet &&
         a.charset == b.charset && a.username == b.username && a.auth_response == b.auth_response &&
         a.database == b.database && a.auth_plugin == b.auth_plugin &&
         a.attributes == b.attributes && a.zstd_level == b.zstd_level;
}

bool same(const Greeting& a, const Greeting& b) {
  return a.protocol_version == b.protocol_version && a.server_version == b.server_version &&
         a.connection_id == b.connection_id && a.scramble == b.scramble &&
         a.capabilities == b.capabilities && a.charset == b.charset && a.status == b.status &&
         a.auth_plugin == b.auth_plugin;
}

}  // namespace

TEST_CASE("mysql_handshake: MariaDB greeting decodes and re-encodes byte for byte", "[mysql]") {
  const auto greetings = real({}, "greeting", 'S');
  for (const char* session : {"de", "eof", "switch", "denied"}) {
    INFO(session);
    const std::string_view payload = real_one(session, "greeting", 'S');
    REQUIRE(payload.size() == 100);
    ExactBuf buf(payload);
    Greeting g;
    REQUIRE(decode_greeting(buf.view(), g));
    CHECK(g.protocol_version == 10);
    CHECK(g.server_version == "5.5.5-10.11.19-MariaDB-0+deb12u1");
    CHECK(display_version(g.server_version) == "10.11.19-MariaDB-0+deb12u1");
    CHECK(advertised_version(g.server_version) == g.server_version);
    CHECK(is_mariadb_version(g.server_version));
    CHECK(g.capabilities == kMariaServerCaps);
    CHECK((g.capabilities & cap::kMysql) == 0);  // MariaDB: extended caps follow
    CHECK((g.capabilities & cap::kMariaProgress) != 0);
    CHECK((g.capabilities & cap::kMariaStmtBulkOperations) != 0);
    CHECK((g.capabilities & cap::kDeprecateEof) != 0);
    CHECK((g.capabilities & cap::kSessionTrack) != 0);
    CHECK(g.charset == 8);
    CHECK(g.status == status::kAutocommit);
    CHECK(g.auth_plugin == kNativePassword);
    REQUIRE(g.scramble.size() == 20);
    // The scramble's two parts sit at fixed offsets after the version.
    const size_t v_end = 1 + g.server_version.size() + 1;
    CHECK(g.scramble.substr(0, 8) == payload.substr(v_end + 4, 8));
    CHECK(g.scramble.substr(8) == payload.substr(v_end + 4 + 8 + 1 + 2 + 1 + 2 + 2 + 1 + 10, 12));
    for (char c : g.scramble) {
      CHECK(c != '\0');
    }
    std::string again;
    encode_greeting(again, g);
    CHECK(again == payload);
  }
  CHECK(greetings.size() == 4);
}

TEST_CASE("mysql_handshake: greeting connection ids differ per session", "[mysql]") {
  Greeting a;
  Greeting b;
  REQUIRE(decode_greeting(real_one("de", "greeting", 'S'), a));
  REQUIRE(decode_greeting(real_one("eof", "greeting", 'S'), b));
  CHECK(a.connection_id == 11);
  CHECK(b.connection_id == 12);
  CHECK(a.scramble != b.scramble);
}

TEST_CASE("mysql_handshake: greeting round trips and variants", "[mysql]") {
  Greeting g;
  g.server_version = "8.0.36";
  g.connection_id = 0xdeadbeef;
  g.scramble = "abcdefghijklmnopqrst";
  g.capabilities = cap::kProtocol41 | cap::kSecureConnection | cap::kPluginAuth |
                   cap::kLongPassword | cap::kDeprecateEof | cap::kSsl | (1ull << 30);
  g.charset = 255;
  g.status = status::kAutocommit;
  g.auth_plugin = "caching_sha2_password";
  std::string wire;
  encode_greeting(wire, g);
  Greeting back;
  REQUIRE(decode_greeting(wire, back));
  CHECK(same(back, g));
  CHECK_FALSE(is_mariadb_version(g.server_version));
  CHECK(advertised_version("8.0.36") == "8.0.36");

  // CLIENT_MYSQL set: the reserved bytes carry no MariaDB capabilities.
  Greeting with_ext = g;
  with_ext.capabilities |= cap::kMariaProgress;
  std::string w2;
  encode_greeting(w2, with_ext);
  REQUIRE(decode_greeting(w2, back));
  CHECK(back.capabilities == g.capabilities);
  // CLIENT_MYSQL clear: they do.
  with_ext.capabilities &= ~cap::kMysql;
  w2.clear();
  encode_greeting(w2, with_ext);
  REQUIRE(decode_greeting(w2, back));
  CHECK(back.capabilities == with_ext.capabilities);

  // Without PLUGIN_AUTH: no plugin name, length byte 0, part 2 still 13 bytes.
  Greeting old = g;
  old.capabilities &= ~cap::kPluginAuth;
  old.auth_plugin.clear();
  std::string w3;
  encode_greeting(w3, old);
  REQUIRE(decode_greeting(w3, back));
  CHECK(same(back, old));

  // The plugin name may lack its NUL? No: sqlmux requires it, but an
  // absent name (packet ends after part 2) is accepted as empty.
  std::string noname = wire.substr(0, wire.size() - g.auth_plugin.size() - 1);
  REQUIRE(decode_greeting(noname, back));
  CHECK(back.auth_plugin.empty());
  std::string unterminated = wire.substr(0, wire.size() - 1);
  CHECK_FALSE(decode_greeting(unterminated, back));
  // Trailing garbage is rejected.
  CHECK_FALSE(decode_greeting(wire + "x", back));
}

TEST_CASE("mysql_handshake: greeting rejections", "[mysql]") {
  const std::string payload(real_one("de", "greeting", 'S'));
  Greeting g;
  // Protocol 9.
  std::string v9 = payload;
  v9[0] = 9;
  CHECK_FALSE(decode_greeting(v9, g));
  // An ERR instead of a greeting ("Host is blocked", no SQLSTATE marker).
  const std::string err = bytes({0xff, 0x69, 0x04}) + "Host 'x' is blocked";
  CHECK_FALSE(decode_greeting(err, g));
  ErrPacket e;
  REQUIRE(decode_err(err, e));
  CHECK(e.code == 1129);
  CHECK(e.sqlstate.empty());
  // Without CLIENT_PROTOCOL_41.
  std::string no41 = payload;
  const size_t caps_at = payload.find('\0', 1) + 1 + 4 + 8 + 1;
  no41[caps_at + 1] = static_cast<char>(no41[caps_at + 1] & ~0x02);
  CHECK_FALSE(decode_greeting(no41, g));
  // Every strict prefix fails or decodes to something else.
  Greeting full;
  REQUIRE(decode_greeting(payload, full));
  for (size_t n = 0; n < payload.size(); ++n) {
    ExactBuf b(payload.substr(0, n));
    Greeting part;
    if (decode_greeting(b.view(), part)) {
      CHECK_FALSE(same(part, full));
    }
  }
}

TEST_CASE("mysql_handshake: version prefix helpers", "[mysql]") {
  CHECK(display_version("5.5.5-10.6.12-MariaDB") == "10.6.12-MariaDB");
  CHECK(display_version("10.6.12-MariaDB") == "10.6.12-MariaDB");
  CHECK(display_version("8.0.36") == "8.0.36");
  CHECK(display_version("5.5.5-") == "");
  CHECK(advertised_version("10.6.12-MariaDB") == "5.5.5-10.6.12-MariaDB");
  CHECK(advertised_version("5.5.5-10.6.12-MariaDB") == "5.5.5-10.6.12-MariaDB");
  CHECK(advertised_version("5.5.68-MariaDB") == "5.5.68-MariaDB");
  CHECK(advertised_version("") == "");
  CHECK(is_mariadb_version("5.5.5-10.6.12-MariaDB-log"));
  CHECK(is_mariadb_version("11.4.2-MariaDB"));
  CHECK_FALSE(is_mariadb_version("8.4.0"));
}

TEST_CASE("mysql_handshake: real HandshakeResponse41 packets", "[mysql]") {
  Greeting g;
  REQUIRE(decode_greeting(real_one("de", "greeting", 'S'), g));
  const std::string_view de = real_one("de", "handshake_response", 'C');
  ExactBuf buf(de);
  HandshakeResponse h;
  REQUIRE(decode_handshake_response(buf.view(), h));
  CHECK(h.capabilities == 0x01bfa288u);
  CHECK((h.capabilities & cap::kPluginAuthLenencData) != 0);
  CHECK((h.capabilities & cap::kDeprecateEof) != 0);
  CHECK(h.max_packet == 16u << 20);
  CHECK(h.charset == 45);
  CHECK(h.username == "app");
  CHECK(h.auth_response.size() == 20);
  CHECK(h.database == "shop");
  CHECK(h.auth_plugin == kNativePassword);
  REQUIRE(h.attributes.size() == 2);
  REQUIRE(h.attribute("_client_name") != nullptr);
  CHECK(*h.attribute("_client_name") == "sqlmux-capture");
  CHECK(*h.attribute("_pid") == "42");
  CHECK(h.attribute("nope") == nullptr);
  CHECK_FALSE(is_ssl_request(de));
  std::string again;
  encode_handshake_response(again, h);
  CHECK(again == de);

  // 1-byte auth length (SECURE_CONNECTION without lenenc), CLIENT_MYSQL set.
  const std::string_view eof = real_one("eof", "handshake_response", 'C');
  REQUIRE(decode_handshake_response(eof, h));
  CHECK((h.capabilities & cap::kPluginAuthLenencData) == 0);
  CHECK((h.capabilities & cap::kMysql) != 0);
  CHECK((h.capabilities & cap::kDeprecateEof) == 0);
  CHECK(h.auth_response.size() == 20);
  CHECK(h.database == "shop");
  CHECK(h.attributes.empty());
  again.clear();
  encode_handshake_response(again, h);
  CHECK(again == eof);

  // A 32-byte auth response (the switch session asked for caching_sha2).
  const std::string_view sw = real_one("switch", "handshake_response", 'C');
  REQUIRE(decode_handshake_response(sw, h));
  CHECK(h.auth_response == std::string(32, '\x01'));
  CHECK(h.auth_plugin == kCachingSha2Password);
  CHECK(h.database.empty());
}

TEST_CASE("mysql_handshake: HandshakeResponse41 encodings round trip", "[mysql]") {
  const uint64_t variants[] = {
      cap::kSecureConnection,
      cap::kSecureConnection | cap::kPluginAuthLenencData,
      0,  // NUL-terminated auth response
      cap::kSecureConnection | cap::kConnectWithDb,
      cap::kSecureConnection | cap::kPluginAuth,
      cap::kSecureConnection | cap::kConnectWithDb | cap::kPluginAuth | cap::kConnectAttrs,
      cap::kPluginAuthLenencData | cap::kConnectWithDb | cap::kPluginAuth | cap::kConnectAttrs |
          cap::kZstdCompression,
      cap::kSecureConnection | cap::kPluginAuth | cap::kMariaProgress,  // CLIENT_MYSQL clear
      cap::kSecureConnection | cap::kPluginAuth | cap::kMysql,
  };
  for (uint64_t caps : variants) {
    INFO(capabilities_to_string(caps));
    HandshakeResponse h = sample_response(caps);
    if (caps == 0) h.auth_response = "plain";  // NUL-terminated: no NUL inside
    std::string wire;
    encode_handshake_response(wire, h);
    ExactBuf buf(wire);
    HandshakeResponse back;
    REQUIRE(decode_handshake_response(buf.view(), back));
    CHECK(same(back, h));
    // Every strict prefix fails or loses something.
    for (size_t n = 0; n < wire.size(); ++n) {
      ExactBuf b(wire.substr(0, n));
      HandshakeResponse part;
      if (decode_handshake_response(b.view(), part)) {
        CHECK_FALSE(same(part, h));
      }
    }
  }
  // A long auth response needs lenenc; with the 1-byte length it is cut.
  HandshakeResponse h = sample_response(cap::kPluginAuthLenencData);
  h.auth_response = std::string(300, 'a');
  std::string wire;
  encode_handshake_response(wire, h);
  HandshakeResponse back;
  REQUIRE(decode_handshake_response(wire, back));
  CHECK(back.auth_response.size() == 300);
  h.capabilities = cap::kProtocol41 | cap::kSecureConnection;
  wire.clear();
  encode_handshake_response(wire, h);
  REQUIRE(decode_handshake_response(wire, back));
  CHECK(back.auth_response.size() == 255);
}

TEST_CASE("mysql_handshake: malformed HandshakeResponse41", "[mysql]") {
  HandshakeResponse h = sample_response(cap::kSecureConnection | cap::kConnectAttrs |
                                        cap::kPluginAuth | cap::kConnectWithDb);
  std::string wire;
  encode_handshake_response(wire, h);
  HandshakeResponse back;
  // Not PROTOCOL_41.
  std::string old = wire;
  old[1] = static_cast<char>(old[1] & ~0x02);
  CHECK_FALSE(decode_handshake_response(old, back));
  // Trailing bytes after the last field.
  CHECK_FALSE(decode_handshake_response(wire + "z", back));
  // Attribute block length beyond the packet.
  HandshakeResponse a = sample_response(cap::kSecureConnection | cap::kConnectAttrs);
  a.attributes = {{"k", "v"}};
  std::string aw;
  encode_handshake_response(aw, a);
  std::string bad = aw;
  bad[bad.size() - 5] = 0x7f;  // the block's lenenc length
  CHECK_FALSE(decode_handshake_response(bad, back));
  // An attribute whose value length overruns the block.
  bad = aw;
  bad[bad.size() - 2] = 0x05;
  CHECK_FALSE(decode_handshake_response(bad, back));
  // Auth length beyond the packet.
  HandshakeResponse s = sample_response(cap::kSecureConnection);
  std::string sw;
  encode_handshake_response(sw, s);
  bad = sw;
  bad[32 + 4] = static_cast<char>(0xf0);
  CHECK_FALSE(decode_handshake_response(bad, back));
  // lenenc auth response starting with 0xFF.
  HandshakeResponse l = sample_response(cap::kPluginAuthLenencData);
  std::string lw;
  encode_handshake_response(lw, l);
  bad = lw;
  bad[32 + 4] = static_cast<char>(0xff);
  CHECK_FALSE(decode_handshake_response(bad, back));
  // The 32-byte SSLRequest is not a response.
  CHECK_FALSE(decode_handshake_response(wire.substr(0, 32), back));
}

TEST_CASE("mysql_handshake: SSLRequest", "[mysql]") {
  SslRequest s;
  s.capabilities = cap::kProtocol41 | cap::kSecureConnection | cap::kPluginAuth;
  s.max_packet = 1u << 24;
  s.charset = 33;
  std::string wire;
  encode_ssl_request(wire, s);
  REQUIRE(wire.size() == kSslRequestLen);
  CHECK(is_ssl_request(wire));
  SslRequest back;
  REQUIRE(decode_ssl_request(wire, back));
  CHECK(back.capabilities == (s.capabilities | cap::kSsl));
  CHECK(back.max_packet == s.max_packet);
  CHECK(back.charset == 33);
  // The first 32 bytes of a full response that asks for SSL are an
  // SSLRequest; the full response is not.
  HandshakeResponse h = sample_response(cap::kSecureConnection | cap::kSsl);
  std::string full;
  encode_handshake_response(full, h);
  CHECK_FALSE(is_ssl_request(full));
  CHECK(is_ssl_request(std::string_view(full).substr(0, 32)));
  // Without CLIENT_SSL, or of another size, it is not one.
  std::string nossl = wire;
  nossl[1] = static_cast<char>(nossl[1] & ~0x08);
  CHECK_FALSE(is_ssl_request(nossl));
  CHECK_FALSE(decode_ssl_request(nossl, back));
  CHECK_FALSE(is_ssl_request(wire.substr(0, 31)));
  CHECK_FALSE(is_ssl_request(wire + '\0'));
  // MariaDB extended caps travel in the last 4 filler bytes.
  SslRequest m = s;
  m.capabilities = (cap::kProtocol41 | cap::kSsl | cap::kMariaProgress) & ~cap::kMysql;
  wire.clear();
  encode_ssl_request(wire, m);
  REQUIRE(decode_ssl_request(wire, back));
  CHECK(back.capabilities == m.capabilities);
  CHECK(static_cast<uint8_t>(wire[28]) == 1);
}

TEST_CASE("mysql_handshake: real AuthSwitchRequest", "[mysql]") {
  const auto results = real("switch", "login_result", 'S');
  REQUIRE(results.size() == 2);
  const std::string_view payload = results[0]->wire.substr(4);
  AuthSwitchRequest a;
  REQUIRE(decode_auth_switch(payload, a));
  CHECK(a.plugin == kNativePassword);
  REQUIRE(a.data.size() == 21);
  CHECK(a.data.back() == '\0');
  Greeting g;
  REQUIRE(decode_greeting(real_one("switch", "greeting", 'S'), g));
  CHECK(a.data.substr(0, 20) == g.scramble);  // MariaDB reuses the greeting's scramble
  std::string again;
  encode_auth_switch(again, a);
  CHECK(again == payload);
  // The following OK ends the login.
  OkPacket ok;
  REQUIRE(decode_ok(results[1]->wire.substr(4), cap::kProtocol41, ok));
  CHECK(ok.status == status::kAutocommit);
}

TEST_CASE("mysql_handshake: auth switch, more data, caching_sha2 status", "[mysql]") {
  AuthSwitchRequest a{"caching_sha2_password", std::string("0123456789abcdefghij") + '\0'};
  std::string wire;
  encode_auth_switch(wire, a);
  AuthSwitchRequest back;
  REQUIRE(decode_auth_switch(wire, back));
  CHECK(back.plugin == a.plugin);
  CHECK(back.data == a.data);
  // The old bare 0xFE switch.
  REQUIRE(decode_auth_switch(bytes({0xfe}), back));
  CHECK(back.plugin.empty());
  CHECK(back.data.empty());
  wire.clear();
  encode_auth_switch(wire, AuthSwitchRequest{});
  CHECK(wire == bytes({0xfe}));
  CHECK_FALSE(decode_auth_switch(bytes({0xfe, 'a', 'b'}), back));  // name without NUL
  CHECK_FALSE(decode_auth_switch(bytes({0x00}), back));
  CHECK_FALSE(decode_auth_switch({}, back));

  std::string more;
  encode_auth_more_data(more, "-----BEGIN PUBLIC KEY-----");
  std::string_view data;
  REQUIRE(decode_auth_more_data(more, data));
  CHECK(data == "-----BEGIN PUBLIC KEY-----");
  CHECK_FALSE(decode_auth_more_data(bytes({0x02}), data));
  CHECK_FALSE(decode_auth_more_data({}, data));

  CachingSha2Status st{};
  REQUIRE(decode_caching_sha2_status(bytes({0x01, 0x03}), st));
  CHECK(st == CachingSha2Status::FastAuthSuccess);
  REQUIRE(decode_caching_sha2_status(bytes({0x01, 0x04}), st));
  CHECK(st == CachingSha2Status::PerformFullAuth);
  CHECK_FALSE(decode_caching_sha2_status(bytes({0x01, 0x02}), st));
  CHECK_FALSE(decode_caching_sha2_status(bytes({0x01, 0x03, 0x00}), st));
  CHECK_FALSE(decode_caching_sha2_status(bytes({0x01}), st));
  CHECK(static_cast<int>(CachingSha2Status::RequestPublicKey) == 2);
  CHECK(to_string(CachingSha2Status::PerformFullAuth) == "perform-full-authentication");
}

TEST_CASE("mysql_handshake: real access denied", "[mysql]") {
  ErrPacket e;
  REQUIRE(decode_err(real_one("denied", "login_result", 'S'), e));
  CHECK(e.code == static_cast<uint16_t>(ErrorCode::AccessDeniedError));
  CHECK(e.sqlstate == sqlstate(ErrorCode::AccessDeniedError));
  CHECK(e.message == "Access denied for user 'app'@'localhost' (using password: YES)");
  std::string again;
  encode_err(again, e);
  CHECK(again == real_one("denied", "login_result", 'S'));
}

TEST_CASE("mysql_handshake: COM_CHANGE_USER round trips, split and truncated", "[mysql]") {
  const uint64_t caps = cap::kProtocol41 | cap::kSecureConnection | cap::kPluginAuth |
                        cap::kConnectAttrs | cap::kConnectWithDb;
  ChangeUser c;
  c.username = "app";
  c.auth_response = std::string(20, '\x11');
  c.database = "appdb";
  c.charset = 45;
  c.auth_plugin = "mysql_native_password";
  c.attributes = {{"_client_name", "libmariadb"}, {"_pid", "42"}};
  std::string w;
  encode_change_user(w, c, caps);
  CHECK(static_cast<uint8_t>(w[0]) == 0x11);
  ChangeUser d;
  REQUIRE(decode_change_user(w, caps, d));
  CHECK(d == c);
  // Every truncation is refused, never read past.
  for (size_t n = 0; n < w.size(); ++n) {
    ChangeUser t;
    INFO("length " << n);
    // A cut right after a complete optional field may still parse; it must
    // then be a prefix of the full packet's fields.
    if (decode_change_user(std::string_view(w).substr(0, n), caps, t)) {
      CHECK(t.username == c.username);
      CHECK(t.database == c.database);
    }
  }
  // An older client: no plugin, no attributes, no charset.
  ChangeUser old;
  old.username = "u";
  old.database = "";
  std::string w2;
  encode_change_user(w2, old, cap::kProtocol41 | cap::kSecureConnection);
  w2.resize(w2.size() - 2);  // drop the charset
  ChangeUser d2;
  REQUIRE(decode_change_user(w2, cap::kProtocol41 | cap::kSecureConnection, d2));
  CHECK(d2.username == "u");
  CHECK(d2.charset == 0);
  // Not a COM_CHANGE_USER; trailing garbage.
  CHECK_FALSE(decode_change_user(std::string("\x03select 1"), caps, d2));
  std::string extra = w + "x";
  CHECK_FALSE(decode_change_user(extra, caps, d2));
  // An auth length past the end.
  std::string bad = std::string("\x11u\0", 3) + std::string(1, '\x50') + "short";
  CHECK_FALSE(decode_change_user(bad, caps, d2));
}

TEST_CASE("mysql_handshake: the listener's reading of the login packet", "[mysql]") {
  SslRequest s;
  s.capabilities = cap::kProtocol41 | cap::kSecureConnection | cap::kPluginAuth;
  s.max_packet = 1u << 24;
  s.charset = 45;
  std::string ssl;
  encode_ssl_request(ssl, s);
  std::string full;
  encode_handshake_response(full,
                            sample_response(cap::kSsl | cap::kSecureConnection | cap::kPluginAuth));
  const ListenerTls none{false, false, false};
  const ListenerTls allow{true, false, false};
  const ListenerTls require{true, true, false};
  const ListenerTls inside{true, true, true};
  HandshakeResponse r;

  SECTION("an SSLRequest starts TLS only where it was offered, once") {
    CHECK(read_login_packet(ssl, allow, r) == LoginPacket::StartTls);
    CHECK(read_login_packet(ssl, require, r) == LoginPacket::StartTls);
    CHECK(read_login_packet(ssl, none, r) == LoginPacket::TlsNotOffered);
    CHECK(read_login_packet(ssl, inside, r) == LoginPacket::TlsTwice);
    CHECK(r.username.empty());
    // Without CLIENT_PROTOCOL_41 it is no SSLRequest sqlmux reads.
    std::string old = ssl;
    old[1] = static_cast<char>(old[1] & ~0x02);  // CLIENT_PROTOCOL_41 is bit 9
    CHECK(read_login_packet(old, allow, r) == LoginPacket::Malformed);
  }
  SECTION("a full response: plaintext refused under require, read otherwise") {
    CHECK(read_login_packet(full, require, r) == LoginPacket::TlsRequired);
    CHECK(r.username.empty());  // not decoded
    CHECK(read_login_packet(full, none, r) == LoginPacket::Login);
    CHECK(r.username == "app");
    HandshakeResponse r2;
    CHECK(read_login_packet(full, inside, r2) == LoginPacket::Login);
    CHECK(r2.username == "app");
    CHECK((r2.capabilities & cap::kSsl) != 0);
  }
  SECTION("anything else is malformed, before or inside TLS") {
    CHECK(read_login_packet(full.substr(0, 33), allow, r) == LoginPacket::Malformed);
    CHECK(read_login_packet(ssl.substr(0, 31), allow, r) == LoginPacket::Malformed);
    CHECK(read_login_packet("", inside, r) == LoginPacket::Malformed);
    CHECK(read_login_packet(full + "x", inside, r) == LoginPacket::Malformed);
    // A truncated SSLRequest on a require listener is refused before it is read.
    CHECK(read_login_packet(ssl.substr(0, 31), require, r) == LoginPacket::TlsRequired);
  }
  CHECK(to_string(LoginPacket::TlsRequired) == "tls_required");
  CHECK(to_string(LoginPacket::StartTls) == "start_tls");
}

TEST_CASE("mysql_handshake: server_tls after the greeting", "[mysql]") {
  const uint64_t with = kMariaServerCaps | cap::kSsl;
  const uint64_t without = kMariaServerCaps & ~cap::kSsl;
  CHECK(server_tls_step(with, ServerTls::Disable) == ServerTlsStep::Plain);
  CHECK(server_tls_step(without, ServerTls::Disable) == ServerTlsStep::Plain);
  CHECK(server_tls_step(with, ServerTls::Prefer) == ServerTlsStep::StartTls);
  CHECK(server_tls_step(without, ServerTls::Prefer) == ServerTlsStep::Plain);
  CHECK(server_tls_step(with, ServerTls::Require) == ServerTlsStep::StartTls);
  CHECK(server_tls_step(without, ServerTls::Require) == ServerTlsStep::Refuse);
  ServerTls m = ServerTls::Disable;
  REQUIRE(parse_server_tls("prefer", m));
  CHECK(m == ServerTls::Prefer);
  for (const char* strict : {"require", "verify-ca", "verify-full"}) {
    m = ServerTls::Disable;
    REQUIRE(parse_server_tls(strict, m));
    CHECK(m == ServerTls::Require);
  }
  REQUIRE(parse_server_tls("disable", m));
  CHECK(m == ServerTls::Disable);
  m = ServerTls::Prefer;
  CHECK_FALSE(parse_server_tls("allow", m));
  CHECK_FALSE(parse_server_tls("", m));
  CHECK(m == ServerTls::Prefer);  // untouched
  CHECK(to_string(ServerTlsStep::Refuse) == "refuse");
  // What the server connection sends first: an SSLRequest the listener
  // side reads as one, with the capabilities of the response that follows.
  SslRequest s;
  s.capabilities = cap::kProtocol41 | cap::kSecureConnection;
  s.max_packet = 1u << 24;
  s.charset = 45;
  std::string wire;
  encode_ssl_request(wire, s);
  REQUIRE(wire.size() == kSslRequestLen);
  HandshakeResponse r;
  CHECK(read_login_packet(wire, ListenerTls{true, false, false}, r) == LoginPacket::StartTls);
}
