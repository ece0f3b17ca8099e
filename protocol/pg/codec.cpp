// PostgreSQL v3 wire protocol codec. See codec.h.
//
// Everything that reads peer bytes goes through Reader (bounds-checked) or
// through load_be32 on a range whose size was checked first. Lengths are
// compared against their limits before they are used for anything.
#include "protocol/pg/codec.h"

#include <array>
#include <cstring>

namespace sqlmux::pg {

namespace {

uint32_t load_be32(const uint8_t* p) {
  return (static_cast<uint32_t>(p[0]) << 24) | (static_cast<uint32_t>(p[1]) << 16) |
         (static_cast<uint32_t>(p[2]) << 8) | static_cast<uint32_t>(p[3]);
}

void store_be32(char* p, uint32_t v) {
  p[0] = static_cast<char>((v >> 24) & 0xff);
  p[1] = static_cast<char>((v >> 16) & 0xff);
  p[2] = static_cast<char>((v >> 8) & 0xff);
  p[3] = static_cast<char>(v & 0xff);
}

// A typed message with an empty body (length 4).
void put_empty(std::string& out, char type) {
  Writer w(out);
  w.begin(type);
  w.end();
}

void put_auth_code(std::string& out, int32_t code, std::string_view rest) {
  Writer w(out);
  w.begin('R');
  w.i32(code);
  w.bytes(rest);
  w.end();
}

void put_error_like(std::string& out, char type, const ErrorFields& e) {
  Writer w(out);
  w.begin(type);
  w.u8('S');
  w.cstr(e.severity);
  w.u8('V');
  w.cstr(e.severity);
  w.u8('C');
  w.cstr(e.sqlstate);
  w.u8('M');
  w.cstr(e.message);
  if (!e.detail.empty()) {
    w.u8('D');
    w.cstr(e.detail);
  }
  if (!e.hint.empty()) {
    w.u8('H');
    w.cstr(e.hint);
  }
  if (!e.routine.empty()) {
    w.u8('R');
    w.cstr(e.routine);
  }
  w.u8(0);
  w.end();
}

// A body that is exactly one C string.
bool parse_single_cstr(std::string_view body, std::string_view& s) {
  Reader r(body);
  std::string_view v;
  if (!r.cstr(v) || !r.at_end()) {
    return false;
  }
  s = v;
  return true;
}

// Peer bytes for an error message: at most 64 of them, non-printable ones
// as '?'.
std::string printable(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 64)) {
    out.push_back(c >= 0x20 && c < 0x7f ? c : '?');
  }
  if (s.size() > 64) {
    out += "...";
  }
  return out;
}

std::string length_reason(uint32_t len, uint32_t max_len) {
  if (len < 4) {
    return "invalid message length " + std::to_string(len) + " (minimum is 4)";
  }
  return "message length " + std::to_string(len) + " exceeds the maximum of " +
         std::to_string(max_len);
}

}  // namespace

std::string_view to_string(Decode d) {
  switch (d) {
    case Decode::Complete:
      return "complete";
    case Decode::NeedMore:
      return "need-more";
    case Decode::Malformed:
      return "malformed";
  }
  return "unknown";
}

// --- Reader ------------------------------------------------------------------

bool Reader::u8(uint8_t& v) {
  if (!ok_ || remaining() < 1) {
    ok_ = false;
    return false;
  }
  v = *p_++;
  return true;
}

bool Reader::u16(uint16_t& v) {
  if (!ok_ || remaining() < 2) {
    ok_ = false;
    return false;
  }
  v = static_cast<uint16_t>((static_cast<uint16_t>(p_[0]) << 8) | p_[1]);
  p_ += 2;
  return true;
}

bool Reader::i16(int16_t& v) {
  uint16_t u = 0;
  if (!u16(u)) {
    return false;
  }
  v = static_cast<int16_t>(u);
  return true;
}

bool Reader::i32(int32_t& v) {
  if (!ok_ || remaining() < 4) {
    ok_ = false;
    return false;
  }
  v = static_cast<int32_t>(load_be32(p_));
  p_ += 4;
  return true;
}

bool Reader::cstr(std::string_view& v) {
  if (!ok_) {
    return false;
  }
  const size_t n = remaining();
  if (n == 0) {
    ok_ = false;
    return false;
  }
  const void* nul = std::memchr(p_, 0, n);
  if (nul == nullptr) {
    ok_ = false;
    return false;
  }
  const size_t len = static_cast<size_t>(static_cast<const uint8_t*>(nul) - p_);
  v = std::string_view(reinterpret_cast<const char*>(p_), len);
  p_ += len + 1;
  return true;
}

bool Reader::bytes(size_t n, std::string_view& v) {
  if (!ok_ || n > remaining()) {
    ok_ = false;
    return false;
  }
  v = std::string_view(reinterpret_cast<const char*>(p_), n);
  p_ += n;
  return true;
}

// --- Writer ------------------------------------------------------------------

void Writer::begin(char type) {
  out_.push_back(type);
  begin_untyped();
}

void Writer::begin_untyped() {
  len_pos_ = out_.size();
  out_.append(4, '\0');
  open_ = true;
}

void Writer::u8(uint8_t v) {
  out_.push_back(static_cast<char>(v));
}

void Writer::u16(uint16_t v) {
  out_.push_back(static_cast<char>((v >> 8) & 0xff));
  out_.push_back(static_cast<char>(v & 0xff));
}

void Writer::i16(int16_t v) {
  u16(static_cast<uint16_t>(v));
}

void Writer::i32(int32_t v) {
  char b[4];
  store_be32(b, static_cast<uint32_t>(v));
  out_.append(b, 4);
}

void Writer::cstr(std::string_view s) {
  out_.append(s.data(), s.size());
  out_.push_back('\0');
}

void Writer::bytes(std::string_view s) {
  out_.append(s.data(), s.size());
}

void Writer::end() {
  if (!open_) {
    return;
  }
  open_ = false;
  const size_t len = out_.size() - len_pos_;
  store_be32(&out_[len_pos_], static_cast<uint32_t>(len));
}

// --- Typed messages ------------------------------------------------------------

Decode decode_message(const uint8_t* p, size_t n, uint32_t max_len, Message& out,
                      size_t& consumed) {
  consumed = 0;
  Header h;
  const Decode d = peek_header(p, n, max_len, h);
  if (d != Decode::Complete) {
    return d;
  }
  if (n < h.total()) {
    return Decode::NeedMore;
  }
  out.type = h.type;
  out.body = std::string_view(reinterpret_cast<const char*>(p + 5), h.body_len());
  consumed = h.total();
  return Decode::Complete;
}

// --- Startup phase ---------------------------------------------------------------

const std::string* StartupPacket::param(std::string_view name) const {
  for (const auto& [k, v] : params) {
    if (k == name) {
      return &v;
    }
  }
  return nullptr;
}

Decode decode_startup(const uint8_t* p, size_t n, StartupPacket& out, size_t& consumed,
                      std::string& error) {
  consumed = 0;
  if (n < 4) {
    return Decode::NeedMore;
  }
  const uint32_t len = load_be32(p);
  if (len < 8) {
    error = "invalid startup packet length " + std::to_string(len) + " (minimum is 8)";
    return Decode::Malformed;
  }
  if (len > kMaxStartupLen) {
    error = "startup packet length " + std::to_string(len) + " exceeds the maximum of " +
            std::to_string(kMaxStartupLen);
    return Decode::Malformed;
  }
  if (n < len) {
    return Decode::NeedMore;
  }

  const uint32_t ucode = load_be32(p + 4);
  const auto code = static_cast<int32_t>(ucode);
  const uint32_t major = ucode >> 16;
  StartupPacket pkt;

  auto fixed_len = [&](uint32_t want, const char* what) {
    if (len == want) {
      return true;
    }
    error = std::string(what) + " has length " + std::to_string(len) + ", expected " +
            std::to_string(want);
    return false;
  };

  switch (code) {
    case kSslRequestCode:
      if (!fixed_len(8, "SSLRequest")) {
        return Decode::Malformed;
      }
      pkt.kind = StartupKind::SslRequest;
      break;
    case kGssEncRequestCode:
      if (!fixed_len(8, "GSSENCRequest")) {
        return Decode::Malformed;
      }
      pkt.kind = StartupKind::GssEncRequest;
      break;
    case kCancelRequestCode:
      if (!fixed_len(16, "CancelRequest")) {
        return Decode::Malformed;
      }
      pkt.kind = StartupKind::Cancel;
      pkt.cancel_pid = static_cast<int32_t>(load_be32(p + 8));
      pkt.cancel_key = static_cast<int32_t>(load_be32(p + 12));
      break;
    case kPeerKillRequestCode:
      // Framed here; its fields and MAC are checked by pool/peer_kill.
      pkt.kind = StartupKind::PeerKill;
      pkt.peer_request.assign(reinterpret_cast<const char*>(p), len);
      break;
    default:
      // Major 0 is no protocol at all; major 1234 is the range reserved for
      // special request codes, and this one is none we know.
      if (major == 0 || major == 1234) {
        error = "invalid startup packet code " + std::to_string(ucode);
        return Decode::Malformed;
      }
      pkt.kind = StartupKind::Startup;
      pkt.protocol = code;
      if (major != 3) {
        break;  // the caller rejects the version
      }
      {
        Reader r(p + 8, len - 8);
        for (;;) {
          std::string_view name;
          std::string_view value;
          if (!r.cstr(name)) {
            error = "startup packet parameters are not terminated";
            return Decode::Malformed;
          }
          if (name.empty()) {
            break;
          }
          if (!r.cstr(value)) {
            error = "startup packet parameter \"" + printable(name) + "\" has no value";
            return Decode::Malformed;
          }
          bool replaced = false;
          for (auto& [k, v] : pkt.params) {
            if (k == name) {  // PostgreSQL keeps the last value
              v.assign(value);
              replaced = true;
              break;
            }
          }
          if (!replaced) {
            pkt.params.emplace_back(std::string(name), std::string(value));
          }
        }
        if (!r.at_end()) {
          error = "invalid startup packet layout: expected terminator as last byte";
          return Decode::Malformed;
        }
      }
      break;
  }
  out = std::move(pkt);
  consumed = len;
  return Decode::Complete;
}

bool startup_rejected_silently(const uint8_t* p, size_t n) {
  if (n < 4) {
    return true;  // not even a length: nothing PostgreSQL would answer
  }
  const uint32_t len = load_be32(p);
  if (len < 8 || len > kMaxStartupLen) {
    return true;
  }
  if (n < 8) return false;
  const auto code = static_cast<int32_t>(load_be32(p + 4));
  return code == kCancelRequestCode || code == kPeerKillRequestCode;
}

// --- Builders: backend -> client ---------------------------------------------------

void put_auth_ok(std::string& out) {
  put_auth_code(out, 0, {});
}

void put_auth_cleartext(std::string& out) {
  put_auth_code(out, 3, {});
}

void put_auth_md5(std::string& out, const uint8_t salt[4]) {
  put_auth_code(out, 5, std::string_view(reinterpret_cast<const char*>(salt), 4));
}

void put_auth_sasl(std::string& out, const std::vector<std::string_view>& mechanisms) {
  Writer w(out);
  w.begin('R');
  w.i32(10);
  for (std::string_view m : mechanisms) {
    w.cstr(m);
  }
  w.u8(0);
  w.end();
}

void put_auth_sasl_continue(std::string& out, std::string_view data) {
  put_auth_code(out, 11, data);
}

void put_auth_sasl_final(std::string& out, std::string_view data) {
  put_auth_code(out, 12, data);
}

void put_parameter_status(std::string& out, std::string_view name, std::string_view value) {
  Writer w(out);
  w.begin('S');
  w.cstr(name);
  w.cstr(value);
  w.end();
}

void put_backend_key_data(std::string& out, int32_t pid, int32_t key) {
  Writer w(out);
  w.begin('K');
  w.i32(pid);
  w.i32(key);
  w.end();
}

void put_ready_for_query(std::string& out, char status) {
  Writer w(out);
  w.begin('Z');
  w.u8(static_cast<uint8_t>(status));
  w.end();
}

void put_error(std::string& out, const ErrorFields& e) {
  put_error_like(out, 'E', e);
}

void put_notice(std::string& out, const ErrorFields& e) {
  put_error_like(out, 'N', e);
}

void put_command_complete(std::string& out, std::string_view tag) {
  Writer w(out);
  w.begin('C');
  w.cstr(tag);
  w.end();
}

void put_notification(std::string& out, int32_t pid, std::string_view channel,
                      std::string_view payload) {
  Writer w(out);
  w.begin('A');
  w.i32(pid);
  w.cstr(channel);
  w.cstr(payload);
  w.end();
}

void put_parse(std::string& out, std::string_view name, std::string_view query,
               const std::vector<uint32_t>& param_types) {
  Writer w(out);
  w.begin('P');
  w.cstr(name);
  w.cstr(query);
  w.u16(static_cast<uint16_t>(param_types.size()));
  for (uint32_t t : param_types) w.i32(static_cast<int32_t>(t));
  w.end();
}

void put_close(std::string& out, char kind, std::string_view name) {
  Writer w(out);
  w.begin('C');
  w.u8(static_cast<uint8_t>(kind));
  w.cstr(name);
  w.end();
}

void put_describe(std::string& out, char kind, std::string_view name) {
  Writer w(out);
  w.begin('D');
  w.u8(static_cast<uint8_t>(kind));
  w.cstr(name);
  w.end();
}

void put_empty_query(std::string& out) {
  put_empty(out, 'I');
}

// --- Builders: client -> backend ----------------------------------------------------

void put_query(std::string& out, std::string_view sql) {
  Writer w(out);
  w.begin('Q');
  w.cstr(sql);
  w.end();
}

void put_sync(std::string& out) {
  put_empty(out, 'S');
}

void put_terminate(std::string& out) {
  put_empty(out, 'X');
}

void put_startup(std::string& out, const std::vector<std::pair<std::string, std::string>>& params) {
  Writer w(out);
  w.begin_untyped();
  w.i32(kProtocolV3);
  for (const auto& [k, v] : params) {
    w.cstr(k);
    w.cstr(v);
  }
  w.u8(0);
  w.end();
}

void put_ssl_request(std::string& out) {
  Writer w(out);
  w.begin_untyped();
  w.i32(kSslRequestCode);
  w.end();
}

void put_cancel_request(std::string& out, int32_t pid, int32_t key) {
  Writer w(out);
  w.begin_untyped();
  w.i32(kCancelRequestCode);
  w.i32(pid);
  w.i32(key);
  w.end();
}

void put_password(std::string& out, std::string_view password) {
  Writer w(out);
  w.begin('p');
  w.cstr(password);
  w.end();
}

void put_sasl_initial_response(std::string& out, std::string_view mechanism,
                               std::string_view data) {
  Writer w(out);
  w.begin('p');
  w.cstr(mechanism);
  w.i32(static_cast<int32_t>(data.size()));
  w.bytes(data);
  w.end();
}

void put_sasl_response(std::string& out, std::string_view data) {
  Writer w(out);
  w.begin('p');
  w.bytes(data);
  w.end();
}

// --- Body parsers ---------------------------------------------------------------------

bool parse_error_fields(std::string_view body, ErrorFields& out) {
  Reader r(body);
  ErrorFields f;
  f.severity.clear();
  f.sqlstate.clear();
  bool have_v = false;
  for (;;) {
    uint8_t code = 0;
    if (!r.u8(code)) {
      return false;  // no terminating zero byte
    }
    if (code == 0) {
      break;
    }
    std::string_view value;
    if (!r.cstr(value)) {
      return false;
    }
    switch (code) {
      case 'S':
        if (!have_v) {
          f.severity.assign(value);
        }
        break;
      case 'V':
        f.severity.assign(value);
        have_v = true;
        break;
      case 'C':
        f.sqlstate.assign(value);
        break;
      case 'M':
        f.message.assign(value);
        break;
      case 'D':
        f.detail.assign(value);
        break;
      case 'H':
        f.hint.assign(value);
        break;
      default:
        break;  // other fields (P, W, F, L, R, ...) are ignored
    }
  }
  if (!r.at_end()) {
    return false;
  }
  out = std::move(f);
  return true;
}

bool parse_parameter_status(std::string_view body, std::string_view& name,
                            std::string_view& value) {
  Reader r(body);
  std::string_view n;
  std::string_view v;
  if (!r.cstr(n) || !r.cstr(v) || !r.at_end()) {
    return false;
  }
  name = n;
  value = v;
  return true;
}

bool parse_ready_for_query(std::string_view body, char& status) {
  if (body.size() != 1) {
    return false;
  }
  const char s = body[0];
  if (s != 'I' && s != 'T' && s != 'E') {
    return false;
  }
  status = s;
  return true;
}

bool parse_backend_key_data(std::string_view body, int32_t& pid, int32_t& key) {
  if (body.size() != 8) {
    return false;
  }
  Reader r(body);
  int32_t a = 0;
  int32_t b = 0;
  if (!r.i32(a) || !r.i32(b)) {
    return false;
  }
  pid = a;
  key = b;
  return true;
}

bool parse_query(std::string_view body, std::string_view& sql) {
  return parse_single_cstr(body, sql);
}

bool parse_password(std::string_view body, std::string_view& password) {
  return parse_single_cstr(body, password);
}

bool parse_sasl_initial_response(std::string_view body, std::string_view& mechanism,
                                 std::string_view& data) {
  Reader r(body);
  std::string_view mech;
  int32_t len = 0;
  if (!r.cstr(mech) || !r.i32(len)) {
    return false;
  }
  std::string_view d;  // stays empty for length -1 (no initial response)
  if (len < -1) {
    return false;
  }
  if (len >= 0 && !r.bytes(static_cast<size_t>(len), d)) {
    return false;
  }
  if (!r.at_end()) {
    return false;
  }
  mechanism = mech;
  data = d;
  return true;
}

bool parse_authentication(std::string_view body, int32_t& code, std::string_view& rest) {
  Reader r(body);
  int32_t c = 0;
  if (!r.i32(c)) {
    return false;
  }
  code = c;
  rest = body.substr(4);
  return true;
}

bool parse_parse(std::string_view body, std::string_view& name, std::string_view& query,
                 std::vector<uint32_t>& param_types) {
  Reader r(body);
  std::string_view n;
  std::string_view q;
  uint16_t count = 0;  // unsigned, as PostgreSQL's pq_getmsgint(msg, 2)
  if (!r.cstr(n) || !r.cstr(q) || !r.u16(count)) {
    return false;
  }
  // The count must fit in what is left before anything is allocated.
  if (static_cast<size_t>(count) * 4 != r.remaining()) {
    return false;
  }
  std::vector<uint32_t> types;
  types.reserve(static_cast<size_t>(count));
  for (size_t i = 0; i < count; ++i) {
    int32_t oid = 0;
    if (!r.i32(oid)) {
      return false;
    }
    types.push_back(static_cast<uint32_t>(oid));
  }
  if (!r.at_end()) {
    return false;
  }
  name = n;
  query = q;
  param_types = std::move(types);
  return true;
}

bool parse_bind_names(std::string_view body, std::string_view& portal,
                      std::string_view& statement) {
  Reader r(body);
  std::string_view p;
  std::string_view s;
  if (!r.cstr(p) || !r.cstr(s)) {
    return false;
  }
  portal = p;
  statement = s;
  return true;
}

bool parse_close_or_describe(std::string_view body, char& kind, std::string_view& name) {
  Reader r(body);
  uint8_t k = 0;
  std::string_view n;
  if (!r.u8(k)) {
    return false;
  }
  if (k != 'S' && k != 'P') {
    return false;
  }
  if (!r.cstr(n) || !r.at_end()) {
    return false;
  }
  kind = static_cast<char>(k);
  name = n;
  return true;
}

bool parse_command_complete(std::string_view body, std::string_view& tag) {
  return parse_single_cstr(body, tag);
}

// --- Names ------------------------------------------------------------------------------

namespace {

struct NamedType {
  char type;
  std::string_view name;
};

constexpr NamedType kFrontendNames[] = {
    {'B', "Bind"},         {'C', "Close"},     {'d', "CopyData"},        {'c', "CopyDone"},
    {'f', "CopyFail"},     {'D', "Describe"},  {'E', "Execute"},         {'H', "Flush"},
    {'F', "FunctionCall"}, {'P', "Parse"},     {'p', "PasswordMessage"}, {'Q', "Query"},
    {'S', "Sync"},         {'X', "Terminate"},
};

constexpr NamedType kBackendNames[] = {
    {'R', "Authentication"},
    {'K', "BackendKeyData"},
    {'2', "BindComplete"},
    {'3', "CloseComplete"},
    {'C', "CommandComplete"},
    {'d', "CopyData"},
    {'c', "CopyDone"},
    {'G', "CopyInResponse"},
    {'H', "CopyOutResponse"},
    {'W', "CopyBothResponse"},
    {'D', "DataRow"},
    {'I', "EmptyQueryResponse"},
    {'E', "ErrorResponse"},
    {'V', "FunctionCallResponse"},
    {'v', "NegotiateProtocolVersion"},
    {'n', "NoData"},
    {'N', "NoticeResponse"},
    {'A', "NotificationResponse"},
    {'t', "ParameterDescription"},
    {'S', "ParameterStatus"},
    {'1', "ParseComplete"},
    {'s', "PortalSuspended"},
    {'Z', "ReadyForQuery"},
    {'T', "RowDescription"},
};

template <size_t N>
std::string_view lookup_name(const NamedType (&table)[N], char type) {
  for (const auto& e : table) {
    if (e.type == type) {
      return e.name;
    }
  }
  return "Unknown";
}

}  // namespace

std::string_view frontend_message_name(char type) {
  return lookup_name(kFrontendNames, type);
}

// The frontend types after login (a table: every client message is checked).
constexpr std::array<bool, 256> kSessionTypes = [] {
  std::array<bool, 256> t{};
  for (const auto& e : kFrontendNames) t[static_cast<unsigned char>(e.type)] = e.type != 'p';
  return t;
}();

bool is_session_message_type(char type) {
  return kSessionTypes[static_cast<unsigned char>(type)];
}

std::string_view backend_message_name(char type) {
  return lookup_name(kBackendNames, type);
}

// --- StreamDecoder ------------------------------------------------------------------------

Decode StreamDecoder::feed(const uint8_t* p, size_t n) {
  if (failed_) {
    return Decode::Malformed;
  }
  if (n > 0) {
    buf_.append(reinterpret_cast<const char*>(p), n);
  }

  const auto* base = reinterpret_cast<const uint8_t*>(buf_.data());
  size_t off = 0;
  for (;;) {
    Message msg;
    size_t consumed = 0;
    const Decode d = decode_message(base + off, buf_.size() - off, max_len_, msg, consumed);
    if (d == Decode::NeedMore) {
      break;
    }
    if (d == Decode::Malformed) {
      failed_ = true;
      const uint32_t len = load_be32(base + off + 1);  // peek_header saw >= 5 bytes
      buf_.clear();
      buf_.shrink_to_fit();
      cb_.on_malformed(length_reason(len, max_len_));
      return Decode::Malformed;
    }
    off += consumed;
    cb_.on_message(msg);
  }
  buf_.erase(0, off);
  return buf_.empty() ? Decode::Complete : Decode::NeedMore;
}

}  // namespace sqlmux::pg
