// libFuzzer target: MySQL connection-phase payloads. The whole input is
// tried as a server greeting, a HandshakeResponse41, an SSLRequest (and
// the listener's TLS-aware reading of a login packet, the server
// connection's server_tls step for a greeting), an AuthSwitchRequest and an
// AuthMoreData. Whatever decodes must re-encode to
// bytes that decode to the same thing, and re-encoding that is stable.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "protocol/mysql/handshake.h"

using namespace sqlmux::my;

namespace {

void check(bool ok) {
  if (!ok) {
    __builtin_trap();
  }
}

bool same(const Greeting& a, const Greeting& b) {
  return a.protocol_version == b.protocol_version && a.server_version == b.server_version &&
         a.connection_id == b.connection_id && a.scramble == b.scramble &&
         a.capabilities == b.capabilities && a.charset == b.charset && a.status == b.status &&
         a.auth_plugin == b.auth_plugin;
}

bool same(const HandshakeResponse& a, const HandshakeResponse& b) {
  return a.capabilities == b.capabilities && a.max_packet == b.max_packet &&
         a.charset == b.charset && a.username == b.username && a.auth_response == b.auth_response &&
         a.database == b.database && a.auth_plugin == b.auth_plugin &&
         a.attributes == b.attributes && a.zstd_level == b.zstd_level;
}

void greeting(std::string_view in) {
  Greeting g1;
  if (!decode_greeting(in, g1)) return;
  check(g1.protocol_version == kProtocolVersion10);
  check((g1.capabilities & cap::kProtocol41) != 0);
  (void)display_version(g1.server_version);
  (void)advertised_version(g1.server_version);
  (void)is_mariadb_version(g1.server_version);
  std::string w1;
  encode_greeting(w1, g1);
  Greeting g2;
  check(decode_greeting(w1, g2));
  // Everything but an odd-sized scramble survives the first round.
  check(g2.server_version == g1.server_version && g2.connection_id == g1.connection_id &&
        g2.capabilities == g1.capabilities && g2.charset == g1.charset && g2.status == g1.status &&
        g2.auth_plugin == g1.auth_plugin);
  check(g2.scramble.substr(0, 8) == g1.scramble.substr(0, 8));
  std::string w2;
  encode_greeting(w2, g2);
  check(w2 == w1);
  Greeting g3;
  check(decode_greeting(w2, g3) && same(g3, g2));
  if (g1.scramble.size() == kScrambleLen && g1.scramble.back() != '\0') {
    check(same(g2, g1));  // the usual 20-byte scramble survives exactly
  }
}

void response(std::string_view in) {
  HandshakeResponse h1;
  if (!decode_handshake_response(in, h1)) return;
  check((h1.capabilities & cap::kProtocol41) != 0);
  check(!is_ssl_request(in));
  (void)h1.attribute("_client_name");
  std::string w1;
  encode_handshake_response(w1, h1);
  HandshakeResponse h2;
  check(decode_handshake_response(w1, h2));
  check(same(h2, h1));
  std::string w2;
  encode_handshake_response(w2, h2);
  check(w2 == w1);
}

void ssl_request(std::string_view in) {
  SslRequest s1;
  const bool is = is_ssl_request(in);
  const bool ok = decode_ssl_request(in, s1);
  check(!ok || is);
  if (!ok) return;
  check(in.size() == kSslRequestLen && (s1.capabilities & cap::kSsl) != 0);
  std::string w1;
  encode_ssl_request(w1, s1);
  check(w1.size() == kSslRequestLen && is_ssl_request(w1));
  SslRequest s2;
  check(decode_ssl_request(w1, s2));
  check(s2.capabilities == s1.capabilities && s2.max_packet == s1.max_packet &&
        s2.charset == s1.charset);
  HandshakeResponse h;
  check(!decode_handshake_response(in, h));
}

// The listener's reading of a login packet in every TLS situation, and the
// server connection's step for a greeting's capabilities: never a Login
// without a decodable response, never StartTls where TLS was not offered
// or is already on, never a plaintext Login where TLS is required.
void login_packet(std::string_view in) {
  for (int bits = 0; bits < 8; ++bits) {
    const ListenerTls t{(bits & 1) != 0, (bits & 2) != 0, (bits & 4) != 0};
    HandshakeResponse r;
    const LoginPacket p = read_login_packet(in, t, r);
    (void)to_string(p);
    HandshakeResponse again;
    switch (p) {
      case LoginPacket::StartTls:
        check(t.offered && !t.active && is_ssl_request(in));
        break;
      case LoginPacket::Login:
        check(!(t.required && !t.active) && decode_handshake_response(in, again) && same(again, r));
        break;
      case LoginPacket::TlsNotOffered:
        check(!t.offered && is_ssl_request(in));
        break;
      case LoginPacket::TlsTwice:
        check(t.offered && t.active && is_ssl_request(in));
        break;
      case LoginPacket::TlsRequired:
        check(t.required && !t.active && !is_ssl_request(in));
        break;
      case LoginPacket::Malformed:
        check(!decode_handshake_response(in, again));
        break;
    }
  }
  Greeting g;
  if (decode_greeting(in, g)) {
    for (ServerTls m : {ServerTls::Disable, ServerTls::Prefer, ServerTls::Require}) {
      const ServerTlsStep s = server_tls_step(g.capabilities, m);
      (void)to_string(s);
      check(s != ServerTlsStep::StartTls || (g.capabilities & cap::kSsl) != 0);
      check(s != ServerTlsStep::Refuse || m == ServerTls::Require);
      check(m != ServerTls::Disable || s == ServerTlsStep::Plain);
    }
  }
  ServerTls m = ServerTls::Disable;
  if (parse_server_tls(in, m)) check(in.size() <= 11);
}

void change_user(std::string_view in) {
  for (uint64_t caps :
       {cap::kProtocol41 | cap::kSecureConnection | cap::kPluginAuth | cap::kConnectAttrs,
        cap::kProtocol41}) {
    ChangeUser c1;
    if (!decode_change_user(in, caps, c1)) continue;
    std::string w;
    encode_change_user(w, c1, caps);
    ChangeUser c2;
    check(decode_change_user(w, caps, c2) && c2.username == c1.username &&
          c2.database == c1.database);
  }
}

void auth_packets(std::string_view in) {
  AuthSwitchRequest a1;
  if (decode_auth_switch(in, a1)) {
    std::string w;
    encode_auth_switch(w, a1);
    AuthSwitchRequest a2;
    check(decode_auth_switch(w, a2) && a2.plugin == a1.plugin && a2.data == a1.data);
    if (!(a1.plugin.empty() && a1.data.empty() && in.size() > 1)) {
      check(w == in);
    }
  }
  std::string_view data;
  if (decode_auth_more_data(in, data)) {
    std::string w;
    encode_auth_more_data(w, data);
    check(w == in);
  }
  CachingSha2Status st{};
  if (decode_caching_sha2_status(in, st)) {
    check(in.size() == 2);
    (void)to_string(st);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  greeting(in);
  response(in);
  ssl_request(in);
  login_packet(in);
  auth_packets(in);
  change_user(in);
  return 0;
}
