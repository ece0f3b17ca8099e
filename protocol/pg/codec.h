// PostgreSQL v3 wire protocol codec: bytes in, messages out, and back.
//
// Pure: no sockets, no event loop, no pool. Every decoder works on
// (ptr, size), returns Complete / NeedMore / Malformed, and never trusts a
// length field: a length is checked against the caller's maximum before
// anything else, and no read goes past the buffer it was given.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sqlmux::pg {

enum class Decode { Complete, NeedMore, Malformed };
[[nodiscard]] std::string_view to_string(Decode d);

// The largest message PostgreSQL itself accepts (1 GiB).
inline constexpr uint32_t kMaxMessageLen = 1u << 30;
// Startup packets are small; PostgreSQL caps them at 10000 bytes.
inline constexpr uint32_t kMaxStartupLen = 10000;

// The server port of an address that names none.
inline constexpr uint16_t kDefaultPort = 5432;
inline constexpr int32_t kProtocolV3 = 196608;  // 3.0
inline constexpr int32_t kCancelRequestCode = 80877102;
inline constexpr int32_t kSslRequestCode = 80877103;
inline constexpr int32_t kGssEncRequestCode = 80877104;
// sqlmux's own request between the instances of a fleet (a MySQL KILL
// forwarded to the peer that issued the thread id; pool/peer_kill.h reads
// it), in the 1234.xxxx range PostgreSQL keeps for special requests.
inline constexpr int32_t kPeerKillRequestCode = (1234 << 16) | 5901;

// SQLSTATE codes sqlmux sends itself.
namespace sqlstate {
inline constexpr std::string_view kConnectionException = "08000";
inline constexpr std::string_view kUnableToConnect = "08001";
inline constexpr std::string_view kConnectionFailure = "08006";
inline constexpr std::string_view kProtocolViolation = "08P01";
inline constexpr std::string_view kFeatureNotSupported = "0A000";
inline constexpr std::string_view kInvalidTransactionState = "25000";
// PostgreSQL's FATALs for idle_in_transaction_session_timeout (9.6+),
// transaction_timeout (17+) and idle_session_timeout (14+).
inline constexpr std::string_view kIdleInTransactionTimeout = "25P03";
inline constexpr std::string_view kTransactionTimeout = "25P04";
inline constexpr std::string_view kIdleSessionTimeout = "57P05";
inline constexpr std::string_view kInvalidAuthorization = "28000";
inline constexpr std::string_view kInvalidPassword = "28P01";
inline constexpr std::string_view kInvalidCatalogName = "3D000";
inline constexpr std::string_view kOutOfMemory = "53200";
inline constexpr std::string_view kTooManyConnections = "53300";
inline constexpr std::string_view kQueryCanceled = "57014";
inline constexpr std::string_view kAdminShutdown = "57P01";
inline constexpr std::string_view kCannotConnectNow = "57P03";
inline constexpr std::string_view kInternalError = "XX000";
}  // namespace sqlstate

// Bounds-checked cursor over (ptr, size). A failed read sets a sticky
// failure flag and returns false; nothing is read past the end.
class Reader {
 public:
  Reader(const uint8_t* data, size_t size) : p_(data), end_(data + size) {}
  explicit Reader(std::string_view s)
      : Reader(reinterpret_cast<const uint8_t*>(s.data()), s.size()) {}

  [[nodiscard]] bool u8(uint8_t& v);
  [[nodiscard]] bool i16(int16_t& v);
  // Counts (parameters, columns, formats) are unsigned 16-bit: 0..65535.
  [[nodiscard]] bool u16(uint16_t& v);
  [[nodiscard]] bool i32(int32_t& v);
  // A NUL-terminated string; the view excludes the NUL.
  [[nodiscard]] bool cstr(std::string_view& v);
  [[nodiscard]] bool bytes(size_t n, std::string_view& v);
  [[nodiscard]] size_t remaining() const { return static_cast<size_t>(end_ - p_); }
  [[nodiscard]] bool ok() const { return ok_; }
  [[nodiscard]] bool at_end() const { return p_ == end_; }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
  bool ok_ = true;
};

// Appends messages to a byte string. begin() writes the type and a length
// placeholder; end() patches the length. Calls must nest begin/end once.
class Writer {
 public:
  explicit Writer(std::string& out) : out_(out) {}
  void begin(char type);
  void begin_untyped();  // startup-phase packets have no type byte
  void u8(uint8_t v);
  void i16(int16_t v);
  void u16(uint16_t v);
  void i32(int32_t v);
  void cstr(std::string_view s);  // writes s and a NUL
  void bytes(std::string_view s);
  void end();

 private:
  std::string& out_;
  size_t len_pos_ = 0;
  bool open_ = false;
};

// A typed message header: one type byte, then an int32 length that counts
// itself and the body but not the type byte.
struct Header {
  char type = 0;
  uint32_t len = 0;
  [[nodiscard]] size_t total() const { return 1 + static_cast<size_t>(len); }
  [[nodiscard]] size_t body_len() const { return static_cast<size_t>(len) - 4; }
};

// Reads the 5-byte header. NeedMore with fewer than 5 bytes; Malformed when
// len < 4 or len > max_len. (Inline: it runs for every relayed message.)
[[nodiscard]] inline Decode peek_header(const uint8_t* p, size_t n, uint32_t max_len, Header& out) {
  if (n < 5) return Decode::NeedMore;
  const uint32_t len = (static_cast<uint32_t>(p[1]) << 24) | (static_cast<uint32_t>(p[2]) << 16) |
                       (static_cast<uint32_t>(p[3]) << 8) | static_cast<uint32_t>(p[4]);
  if (len < 4 || len > max_len) return Decode::Malformed;
  out.type = static_cast<char>(p[0]);
  out.len = len;
  return Decode::Complete;
}

struct Message {
  char type = 0;
  std::string_view body;  // points into the caller's buffer
};

// A whole typed message; consumed = bytes it takes in the buffer.
[[nodiscard]] Decode decode_message(const uint8_t* p, size_t n, uint32_t max_len, Message& out,
                                    size_t& consumed);

// --- Startup phase (untyped packets) ---------------------------------------

enum class StartupKind { Startup, SslRequest, GssEncRequest, Cancel, PeerKill };

struct StartupPacket {
  StartupKind kind = StartupKind::Startup;
  int32_t protocol = 0;  // for Startup: the requested version (caller rejects != 3.x)
  std::vector<std::pair<std::string, std::string>> params;  // Startup only
  int32_t cancel_pid = 0;                                   // Cancel only
  int32_t cancel_key = 0;                                   // Cancel only
  std::string peer_request;  // PeerKill only: the whole packet, for its own decoder

  [[nodiscard]] const std::string* param(std::string_view name) const;
};

// Decodes one startup-phase packet (at most kMaxStartupLen bytes). A packet
// whose code is a protocol version other than 3.x decodes as Startup with
// that version in `protocol` and no params, so the caller can reject it
// with a clear message. `error` says why a packet is Malformed.
[[nodiscard]] Decode decode_startup(const uint8_t* p, size_t n, StartupPacket& out,
                                    size_t& consumed, std::string& error);

// For a packet decode_startup found Malformed: true when PostgreSQL closes
// without answering (its ProcessStartupPacket: a length outside 8..10000,
// "invalid length of startup packet", or a CancelRequest, which is never
// answered), false when it sends a FATAL (a bad parameter layout, a bad code).
[[nodiscard]] bool startup_rejected_silently(const uint8_t* p, size_t n);

// --- Builders --------------------------------------------------------------

struct ErrorFields {
  std::string severity = "ERROR";  // ERROR | FATAL | PANIC | WARNING | NOTICE ...
  std::string sqlstate = "XX000";
  std::string message;
  std::string detail;   // optional
  std::string hint;     // optional
  std::string routine;  // optional ('R': the server function that raised it)
};

// Backend -> client.
void put_auth_ok(std::string& out);
void put_auth_cleartext(std::string& out);
void put_auth_md5(std::string& out, const uint8_t salt[4]);
void put_auth_sasl(std::string& out, const std::vector<std::string_view>& mechanisms);
void put_auth_sasl_continue(std::string& out, std::string_view data);
void put_auth_sasl_final(std::string& out, std::string_view data);
void put_parameter_status(std::string& out, std::string_view name, std::string_view value);
void put_backend_key_data(std::string& out, int32_t pid, int32_t key);
void put_ready_for_query(std::string& out, char status);
void put_error(std::string& out, const ErrorFields& e);   // 'E'
void put_notice(std::string& out, const ErrorFields& e);  // 'N'
void put_command_complete(std::string& out, std::string_view tag);
// 'A' NotificationResponse: the notifying server process, channel, payload.
void put_notification(std::string& out, int32_t pid, std::string_view channel,
                      std::string_view payload);
void put_empty_query(std::string& out);

// Client -> backend.
void put_query(std::string& out, std::string_view sql);
void put_sync(std::string& out);
void put_terminate(std::string& out);
void put_startup(std::string& out, const std::vector<std::pair<std::string, std::string>>& params);
void put_ssl_request(std::string& out);
void put_cancel_request(std::string& out, int32_t pid, int32_t key);
void put_password(std::string& out, std::string_view password);  // 'p', cleartext or md5
void put_sasl_initial_response(std::string& out, std::string_view mechanism, std::string_view data);
void put_sasl_response(std::string& out, std::string_view data);
// param_types.size() <= 65535 (what parse_parse accepts).
void put_parse(std::string& out, std::string_view name, std::string_view query,
               const std::vector<uint32_t>& param_types);
// 'C' Close / 'D' Describe of a statement ('S') or portal ('P').
void put_close(std::string& out, char kind, std::string_view name);
void put_describe(std::string& out, char kind, std::string_view name);

// --- Body parsers (body = Message::body, without type and length) -----------

[[nodiscard]] bool parse_error_fields(std::string_view body, ErrorFields& out);  // 'E' / 'N'
[[nodiscard]] bool parse_parameter_status(std::string_view body, std::string_view& name,
                                          std::string_view& value);
[[nodiscard]] bool parse_ready_for_query(std::string_view body, char& status);
[[nodiscard]] bool parse_backend_key_data(std::string_view body, int32_t& pid, int32_t& key);
[[nodiscard]] bool parse_query(std::string_view body, std::string_view& sql);
// 'p' as a PasswordMessage (cleartext or md5): one C string.
[[nodiscard]] bool parse_password(std::string_view body, std::string_view& password);
// 'p' as SASLInitialResponse: mechanism, int32 length (-1 = none), data.
[[nodiscard]] bool parse_sasl_initial_response(std::string_view body, std::string_view& mechanism,
                                               std::string_view& data);
// 'R': the int32 auth code, and what follows it.
[[nodiscard]] bool parse_authentication(std::string_view body, int32_t& code,
                                        std::string_view& rest);
// 'P' Parse: statement name, query, parameter type oids (count unsigned:
// up to 65535, as PostgreSQL reads it).
[[nodiscard]] bool parse_parse(std::string_view body, std::string_view& name,
                               std::string_view& query, std::vector<uint32_t>& param_types);
// 'B' Bind: only the portal and statement names (the rest is relayed as is).
[[nodiscard]] bool parse_bind_names(std::string_view body, std::string_view& portal,
                                    std::string_view& statement);
// 'C' Close / 'D' Describe: kind ('S' statement or 'P' portal) and name.
[[nodiscard]] bool parse_close_or_describe(std::string_view body, char& kind,
                                           std::string_view& name);
[[nodiscard]] bool parse_command_complete(std::string_view body, std::string_view& tag);

// Human-readable name of a message type, for logs.
[[nodiscard]] std::string_view frontend_message_name(char type);
// A message type a client may send once logged in (PostgreSQL closes the
// session with FATAL 08P01 on any other, PasswordMessage included).
[[nodiscard]] bool is_session_message_type(char type);
[[nodiscard]] std::string_view backend_message_name(char type);

// --- Stream decoding with callbacks ----------------------------------------

// Receives complete messages from a StreamDecoder.
class MessageCallbacks {
 public:
  virtual ~MessageCallbacks() = default;
  virtual void on_message(const Message& msg) = 0;
  virtual void on_malformed(std::string_view reason) = 0;
};

// Buffers bytes fed in arbitrary pieces and reports each complete typed
// message once. After Malformed it stays failed. Used by tests, fuzz
// targets and tools; the daemon relays from its own buffers using
// peek_header() so that large messages are never held whole.
class StreamDecoder {
 public:
  StreamDecoder(MessageCallbacks& cb, uint32_t max_len = kMaxMessageLen)
      : cb_(cb), max_len_(max_len) {}
  [[nodiscard]] Decode feed(const uint8_t* p, size_t n);
  [[nodiscard]] size_t buffered() const { return buf_.size(); }

 private:
  MessageCallbacks& cb_;
  uint32_t max_len_;
  std::string buf_;
  bool failed_ = false;
};

}  // namespace sqlmux::pg
