// MySQL / MariaDB connection phase: the server greeting (HandshakeV10), the
// client's HandshakeResponse41 and SSLRequest, AuthSwitchRequest,
// AuthMoreData and the caching_sha2_password status bytes.
//
// Every decoder takes one whole payload (see packet.h for framing),
// returns false on anything it cannot read fully, and fills `out` only on
// success. Encoders append a payload (no header) to `out`.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "protocol/mysql/packet.h"

namespace sqlmux::my {

inline constexpr uint8_t kProtocolVersion10 = 10;
inline constexpr size_t kScrambleLen = 20;
// MariaDB 10+ prefixes its version with "5.5.5-" so that old MySQL clients,
// which only read the major version, do not mistake it for 10 (< 5).
inline constexpr std::string_view kMariaDbVersionPrefix = "5.5.5-";

inline constexpr std::string_view kNativePassword = "mysql_native_password";
inline constexpr std::string_view kCachingSha2Password = "caching_sha2_password";
inline constexpr std::string_view kSha256Password = "sha256_password";
inline constexpr std::string_view kClearPassword = "mysql_clear_password";
inline constexpr std::string_view kEd25519 = "client_ed25519";

// HandshakeV10, the server's first packet.
struct Greeting {
  uint8_t protocol_version = kProtocolVersion10;
  std::string server_version;  // as sent, "5.5.5-" prefix included
  uint32_t connection_id = 0;
  // The auth plugin data (scramble), both parts joined, without the NUL
  // that terminates part 2: normally 20 bytes.
  std::string scramble;
  uint64_t capabilities = 0;  // low 32 bits + MariaDB's extended ones (high 32)
  uint8_t charset = 0;
  uint16_t status = 0;
  std::string auth_plugin;  // empty without CLIENT_PLUGIN_AUTH
};

// Decodes a greeting. Requires protocol 10 and at least the 4.1 layout
// (charset, status, upper capabilities), and CLIENT_PROTOCOL_41. A
// protocol-9 greeting or an ERR packet (0xFF: the server refuses the
// connection before the handshake) is rejected: check the first byte.
[[nodiscard]] bool decode_greeting(std::string_view payload, Greeting& out);
// Encodes a greeting: part 1 of the scramble is its first 8 bytes, part 2
// the rest followed by a NUL (padded to 12 bytes when shorter).
void encode_greeting(std::string& out, const Greeting& g);

// The server version without MariaDB's "5.5.5-" prefix (for display).
[[nodiscard]] std::string_view display_version(std::string_view server_version);
// True when the version string carries the MariaDB "5.5.5-" prefix or
// names MariaDB.
[[nodiscard]] bool is_mariadb_version(std::string_view server_version);
// The version string to advertise to clients for a backend version: a
// MariaDB 10+ version keeps (or regains) the "5.5.5-" prefix; anything else
// is returned as is.
[[nodiscard]] std::string advertised_version(std::string_view server_version);

// HandshakeResponse41, the client's answer.
struct HandshakeResponse {
  uint64_t capabilities = 0;  // low 32 + MariaDB extended (only when CLIENT_MYSQL is clear)
  uint32_t max_packet = 0;
  uint8_t charset = 0;
  std::string username;
  std::string auth_response;
  std::string database;                                         // with CLIENT_CONNECT_WITH_DB
  std::string auth_plugin;                                      // with CLIENT_PLUGIN_AUTH
  std::vector<std::pair<std::string, std::string>> attributes;  // with CLIENT_CONNECT_ATTRS
  uint8_t zstd_level = 0;  // with CLIENT_ZSTD_COMPRESSION_ALGORITHM (MySQL 8)

  [[nodiscard]] const std::string* attribute(std::string_view key) const;
};

// The length of an SSLRequest payload: caps, max packet, charset, filler.
inline constexpr size_t kSslRequestLen = 32;

// True for an SSLRequest: exactly 32 bytes with CLIENT_SSL set. A full
// HandshakeResponse41 is always longer (it has at least the username NUL).
[[nodiscard]] bool is_ssl_request(std::string_view payload);

// Decodes a HandshakeResponse41. Requires CLIENT_PROTOCOL_41. The auth
// response is read as lenenc (PLUGIN_AUTH_LENENC_CLIENT_DATA), 1-byte length
// (SECURE_CONNECTION) or NUL-terminated, by the capabilities. Fields after
// it that the flags announce but the packet leaves out (older clients) are
// left empty; bytes after the last announced field make it malformed.
[[nodiscard]] bool decode_handshake_response(std::string_view payload, HandshakeResponse& out);
// Encodes a HandshakeResponse41 with the encodings its capabilities select.
// With SECURE_CONNECTION (and no lenenc) an auth response over 255 bytes is
// cut to 255; callers that need longer set PLUGIN_AUTH_LENENC_CLIENT_DATA.
void encode_handshake_response(std::string& out, const HandshakeResponse& r);

// SSLRequest: the first 32 bytes of a HandshakeResponse41.
struct SslRequest {
  uint64_t capabilities = 0;
  uint32_t max_packet = 0;
  uint8_t charset = 0;
};
[[nodiscard]] bool decode_ssl_request(std::string_view payload, SslRequest& out);
void encode_ssl_request(std::string& out, const SslRequest& r);

// --- TLS in the connection phase --------------------------------------------------

// A server's (sqlmux's listener's) reading of a client's first packet
// (sequence id 1), or of its first packet inside TLS (sequence id 2).
enum class LoginPacket {
  StartTls,       // an SSLRequest: the TLS handshake follows on the socket
  Login,          // a HandshakeResponse41, decoded
  Malformed,      // neither (or an SSLRequest without CLIENT_PROTOCOL_41)
  TlsNotOffered,  // an SSLRequest to a greeting without CLIENT_SSL
  TlsTwice,       // an SSLRequest inside TLS
  TlsRequired,    // a plaintext HandshakeResponse where TLS is required
};
[[nodiscard]] std::string_view to_string(LoginPacket p);
// What the listener offered and where the connection is.
struct ListenerTls {
  bool offered = false;   // the greeting had CLIENT_SSL
  bool required = false;  // a login must come over TLS
  bool active = false;    // the TLS handshake has begun on this connection
};
// Reads `payload` by `tls`; `response` is filled for Login only.
[[nodiscard]] LoginPacket read_login_packet(std::string_view payload, const ListenerTls& tls,
                                            HandshakeResponse& response);
// ER_SECURE_TRANSPORT_REQUIRED's text (MySQL's, SQLSTATE HY000).
inline constexpr std::string_view kSecureTransportRequired =
    "Connections using insecure transport are prohibited while --require_secure_transport=ON.";

// A client's (sqlmux's server connection's) choice after the greeting, by
// its server_tls mode as libpq reads sslmode.
enum class ServerTls { Disable, Prefer, Require };  // verify-ca / verify-full: Require
enum class ServerTlsStep {
  Plain,     // HandshakeResponse41 with sequence id 1
  StartTls,  // SSLRequest (seq 1), the TLS handshake, then the response (seq 2)
  Refuse,    // TLS is required and the server does not offer CLIENT_SSL
};
[[nodiscard]] std::string_view to_string(ServerTlsStep s);
[[nodiscard]] ServerTlsStep server_tls_step(uint64_t greeting_caps, ServerTls mode);
// "disable" / "prefer" / "require" / "verify-ca" / "verify-full"; false
// for anything else.
[[nodiscard]] bool parse_server_tls(std::string_view mode, ServerTls& out);

// --- Authentication exchange -------------------------------------------------

inline constexpr uint8_t kOkHeader = 0x00;
inline constexpr uint8_t kAuthMoreDataHeader = 0x01;
inline constexpr uint8_t kLocalInfileHeader = 0xFB;
inline constexpr uint8_t kEofHeader = 0xFE;  // also AuthSwitchRequest
inline constexpr uint8_t kErrHeader = 0xFF;

// 0xFE + plugin name (NUL-terminated) + plugin data (the rest; for the
// password plugins the 20-byte scramble and a NUL). A bare 0xFE is the old
// switch to mysql_old_password: plugin and data come back empty.
struct AuthSwitchRequest {
  std::string plugin;
  std::string data;
};
[[nodiscard]] bool decode_auth_switch(std::string_view payload, AuthSwitchRequest& out);
void encode_auth_switch(std::string& out, const AuthSwitchRequest& r);

// 0x01 + data.
[[nodiscard]] bool decode_auth_more_data(std::string_view payload, std::string_view& data);
void encode_auth_more_data(std::string& out, std::string_view data);

// caching_sha2_password: the byte in the server's AuthMoreData, and the
// client's request for the server's RSA public key.
enum class CachingSha2Status : uint8_t {
  RequestPublicKey = 0x02,  // client -> server, a one-byte packet
  FastAuthSuccess = 0x03,   // server: the cache matched; an OK follows
  PerformFullAuth = 0x04,   // server: send the password (TLS) or RSA-encrypt it
};
[[nodiscard]] std::string_view to_string(CachingSha2Status s);
// Reads a server AuthMoreData that carries exactly one status byte 3 or 4.
[[nodiscard]] bool decode_caching_sha2_status(std::string_view payload, CachingSha2Status& out);

// --- COM_CHANGE_USER ---------------------------------------------------------------

// A client's COM_CHANGE_USER (the command byte included in the payload).
// `caps` are the capabilities negotiated at login: they say how the auth
// response is framed and which optional fields may follow. The response is
// computed with the scramble of the connection's greeting.
struct ChangeUser {
  std::string username;
  std::string auth_response;
  std::string database;
  uint16_t charset = 0;     // 0 when absent
  std::string auth_plugin;  // empty when absent
  std::vector<std::pair<std::string, std::string>> attributes;
  bool operator==(const ChangeUser&) const = default;
};
[[nodiscard]] bool decode_change_user(std::string_view payload, uint64_t caps, ChangeUser& out);
void encode_change_user(std::string& out, const ChangeUser& c, uint64_t caps);

}  // namespace sqlmux::my
