// MySQL / MariaDB connection phase packets. See handshake.h.
#include "protocol/mysql/handshake.h"

#include <algorithm>

namespace sqlmux::my {

namespace {

// CLIENT_CONNECT_ATTRS: a length-encoded block of key/value string pairs
// (HandshakeResponse41 and COM_CHANGE_USER).
bool read_connect_attrs(Reader& r, std::vector<std::pair<std::string, std::string>>& out) {
  uint64_t total = 0;
  std::string_view block;
  if (!r.lenenc(total) || total > r.remaining() || !r.bytes(static_cast<size_t>(total), block)) {
    return false;
  }
  Reader a(block);
  while (!a.at_end()) {
    std::string_view k;
    std::string_view v;
    if (!a.lenenc_str(k) || !a.lenenc_str(v)) {
      return false;
    }
    out.emplace_back(std::string(k), std::string(v));
  }
  return true;
}

void write_connect_attrs(Writer& w, const std::vector<std::pair<std::string, std::string>>& attrs) {
  std::string block;
  Writer b(block);
  for (const auto& [k, v] : attrs) {
    b.lenenc_str(k);
    b.lenenc_str(v);
  }
  w.lenenc_str(block);
}

// The reserved bytes of a greeting: 10, of which MariaDB uses the last 4
// for its extended capabilities.
constexpr size_t kGreetingReserved = 10;
// The filler of a HandshakeResponse41 / SSLRequest: 23, of which MariaDB
// uses the last 4 likewise.
constexpr size_t kResponseFiller = 23;
constexpr size_t kMariaCapsLen = 4;

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

// The fixed head shared by HandshakeResponse41 and SSLRequest.
bool read_response_head(Reader& r, uint64_t& caps, uint32_t& max_packet, uint8_t& charset) {
  uint32_t lo = 0;
  uint32_t ext = 0;
  if (!r.u32(lo) || !r.u32(max_packet) || !r.u8(charset) ||
      !r.skip(kResponseFiller - kMariaCapsLen) || !r.u32(ext)) {
    return false;
  }
  caps = lo;
  if ((lo & cap::kMysql) == 0) {
    caps |= static_cast<uint64_t>(ext) << 32;
  }
  return (caps & cap::kProtocol41) != 0;
}

void write_response_head(Writer& w, uint64_t caps, uint32_t max_packet, uint8_t charset) {
  w.u32(static_cast<uint32_t>(caps));
  w.u32(max_packet);
  w.u8(charset);
  w.zeros(kResponseFiller - kMariaCapsLen);
  w.u32((caps & cap::kMysql) == 0 ? static_cast<uint32_t>(caps >> 32) : 0);
}

}  // namespace

// --- Greeting ---------------------------------------------------------------------

bool decode_greeting(std::string_view payload, Greeting& out) {
  Reader r(payload);
  Greeting g;
  std::string_view version;
  std::string_view part1;
  uint8_t filler = 0;
  uint16_t caps_lo = 0;
  uint16_t caps_hi = 0;
  uint8_t auth_len = 0;
  std::string_view reserved;
  if (!r.u8(g.protocol_version) || g.protocol_version != kProtocolVersion10 || !r.cstr(version) ||
      !r.u32(g.connection_id) || !r.bytes(8, part1) || !r.u8(filler) || !r.u16(caps_lo)) {
    return false;
  }
  // Pre-4.1 servers may stop here; sqlmux requires the 4.1 layout.
  if (!r.u8(g.charset) || !r.u16(g.status) || !r.u16(caps_hi) || !r.u8(auth_len) ||
      !r.bytes(kGreetingReserved, reserved)) {
    return false;
  }
  g.capabilities = static_cast<uint64_t>(caps_lo) | (static_cast<uint64_t>(caps_hi) << 16);
  if ((g.capabilities & cap::kProtocol41) == 0) {
    return false;
  }
  if ((g.capabilities & cap::kMysql) == 0) {
    Reader ext(reserved.substr(kGreetingReserved - kMariaCapsLen));
    uint32_t maria = 0;
    if (!ext.u32(maria)) {
      return false;
    }
    g.capabilities |= static_cast<uint64_t>(maria) << 32;
  }
  g.server_version.assign(version);
  g.scramble.assign(part1);
  if ((g.capabilities & cap::kSecureConnection) != 0) {
    const size_t len = std::max<size_t>(13, auth_len > 8 ? static_cast<size_t>(auth_len) - 8 : 0);
    std::string_view part2;
    if (!r.bytes(len, part2)) {
      return false;
    }
    if (!part2.empty() && part2.back() == '\0') {
      part2.remove_suffix(1);
    }
    g.scramble.append(part2);
  }
  if ((g.capabilities & cap::kPluginAuth) != 0) {
    std::string_view plugin;
    if (r.remaining() > 0 && !r.cstr(plugin)) {
      return false;  // not NUL-terminated
    }
    g.auth_plugin.assign(plugin);
  }
  if (!r.at_end()) {
    return false;
  }
  out = std::move(g);
  return true;
}

void encode_greeting(std::string& out, const Greeting& g) {
  Writer w(out);
  w.u8(g.protocol_version);
  w.cstr(g.server_version);
  w.u32(g.connection_id);
  std::string part1 = g.scramble.substr(0, 8);
  part1.resize(8, '\0');
  w.bytes(part1);
  w.u8(0);
  const uint64_t caps = g.capabilities;
  w.u16(static_cast<uint16_t>(caps & 0xffff));
  w.u8(g.charset);
  w.u16(g.status);
  w.u16(static_cast<uint16_t>((caps >> 16) & 0xffff));
  std::string part2 = g.scramble.size() > 8 ? g.scramble.substr(8) : std::string();
  if (part2.size() < 12) {
    part2.resize(12, '\0');
  }
  const bool plugin_auth = (caps & cap::kPluginAuth) != 0;
  // Without PLUGIN_AUTH the length byte is 0 and readers take 13 bytes.
  part2.resize(plugin_auth ? std::min<size_t>(part2.size(), 255 - 9) : 12);
  w.u8(plugin_auth ? static_cast<uint8_t>(8 + part2.size() + 1) : 0);
  w.zeros(kGreetingReserved - kMariaCapsLen);
  w.u32((caps & cap::kMysql) == 0 ? static_cast<uint32_t>(caps >> 32) : 0);
  if ((caps & cap::kSecureConnection) != 0) {
    w.cstr(part2);
  }
  if (plugin_auth) {
    w.cstr(g.auth_plugin);
  }
}

std::string_view display_version(std::string_view server_version) {
  if (starts_with(server_version, kMariaDbVersionPrefix)) {
    server_version.remove_prefix(kMariaDbVersionPrefix.size());
  }
  return server_version;
}

bool is_mariadb_version(std::string_view server_version) {
  return starts_with(server_version, kMariaDbVersionPrefix) ||
         server_version.find("MariaDB") != std::string_view::npos;
}

std::string advertised_version(std::string_view server_version) {
  if (starts_with(server_version, kMariaDbVersionPrefix) ||
      server_version.find("MariaDB") == std::string_view::npos) {
    return std::string(server_version);
  }
  // MariaDB without the prefix: add it back when the major version is
  // 10 or more, as the server itself does.
  unsigned major = 0;
  size_t i = 0;
  while (i < server_version.size() && i < 4 && server_version[i] >= '0' &&
         server_version[i] <= '9') {
    major = major * 10 + static_cast<unsigned>(server_version[i] - '0');
    ++i;
  }
  if (i > 0 && major >= 10) {
    return std::string(kMariaDbVersionPrefix) + std::string(server_version);
  }
  return std::string(server_version);
}

// --- HandshakeResponse41 ------------------------------------------------------------

const std::string* HandshakeResponse::attribute(std::string_view key) const {
  for (const auto& [k, v] : attributes) {
    if (k == key) {
      return &v;
    }
  }
  return nullptr;
}

bool is_ssl_request(std::string_view payload) {
  if (payload.size() != kSslRequestLen) {
    return false;
  }
  Reader r(payload);
  uint32_t lo = 0;
  return r.u32(lo) && (lo & cap::kSsl) != 0;
}

bool decode_ssl_request(std::string_view payload, SslRequest& out) {
  if (!is_ssl_request(payload)) {
    return false;
  }
  Reader r(payload);
  SslRequest s;
  if (!read_response_head(r, s.capabilities, s.max_packet, s.charset) || !r.at_end()) {
    return false;
  }
  out = s;
  return true;
}

void encode_ssl_request(std::string& out, const SslRequest& s) {
  Writer w(out);
  write_response_head(w, s.capabilities | cap::kSsl, s.max_packet, s.charset);
}

bool decode_handshake_response(std::string_view payload, HandshakeResponse& out) {
  if (payload.size() <= kSslRequestLen) {
    return false;  // SSLRequest or truncated
  }
  Reader r(payload);
  HandshakeResponse h;
  if (!read_response_head(r, h.capabilities, h.max_packet, h.charset)) {
    return false;
  }
  const uint64_t caps = h.capabilities;
  std::string_view user;
  std::string_view auth;
  if (!r.cstr(user)) {
    return false;
  }
  if ((caps & cap::kPluginAuthLenencData) != 0) {
    if (!r.lenenc_str(auth)) {
      return false;
    }
  } else if ((caps & cap::kSecureConnection) != 0) {
    uint8_t len = 0;
    if (!r.u8(len) || !r.bytes(len, auth)) {
      return false;
    }
  } else {
    if (!r.cstr(auth)) {
      return false;
    }
  }
  h.username.assign(user);
  h.auth_response.assign(auth);
  // Older clients stop after the fields they have; what is left out is empty.
  if (!r.at_end() && (caps & cap::kConnectWithDb) != 0) {
    std::string_view db;
    if (!r.cstr(db)) {
      return false;
    }
    h.database.assign(db);
  }
  if (!r.at_end() && (caps & cap::kPluginAuth) != 0) {
    std::string_view plugin;
    if (!r.cstr(plugin)) {
      return false;
    }
    h.auth_plugin.assign(plugin);
  }
  if (!r.at_end() && (caps & cap::kConnectAttrs) != 0 && !read_connect_attrs(r, h.attributes)) {
    return false;
  }
  if (!r.at_end() && (caps & cap::kZstdCompression) != 0) {
    if (!r.u8(h.zstd_level)) {
      return false;
    }
  }
  if (!r.at_end()) {
    return false;
  }
  out = std::move(h);
  return true;
}

void encode_handshake_response(std::string& out, const HandshakeResponse& h) {
  Writer w(out);
  const uint64_t caps = h.capabilities;
  write_response_head(w, caps, h.max_packet, h.charset);
  w.cstr(h.username);
  if ((caps & cap::kPluginAuthLenencData) != 0) {
    w.lenenc_str(h.auth_response);
  } else if ((caps & cap::kSecureConnection) != 0) {
    const std::string_view auth = std::string_view(h.auth_response).substr(0, 255);
    w.u8(static_cast<uint8_t>(auth.size()));
    w.bytes(auth);
  } else {
    w.cstr(h.auth_response);
  }
  if ((caps & cap::kConnectWithDb) != 0) {
    w.cstr(h.database);
  }
  if ((caps & cap::kPluginAuth) != 0) {
    w.cstr(h.auth_plugin);
  }
  if ((caps & cap::kConnectAttrs) != 0) {
    write_connect_attrs(w, h.attributes);
  }
  if ((caps & cap::kZstdCompression) != 0) {
    w.u8(h.zstd_level);
  }
}

// --- TLS in the connection phase ------------------------------------------------------

std::string_view to_string(LoginPacket p) {
  switch (p) {
    case LoginPacket::StartTls:
      return "start_tls";
    case LoginPacket::Login:
      return "login";
    case LoginPacket::Malformed:
      return "malformed";
    case LoginPacket::TlsNotOffered:
      return "tls_not_offered";
    case LoginPacket::TlsTwice:
      return "tls_twice";
    case LoginPacket::TlsRequired:
      return "tls_required";
  }
  return "unknown";
}

LoginPacket read_login_packet(std::string_view payload, const ListenerTls& tls,
                              HandshakeResponse& response) {
  if (is_ssl_request(payload)) {
    if (!tls.offered) return LoginPacket::TlsNotOffered;
    if (tls.active) return LoginPacket::TlsTwice;
    SslRequest s;
    return decode_ssl_request(payload, s) ? LoginPacket::StartTls : LoginPacket::Malformed;
  }
  // Checked before decoding: a plaintext login's contents are not looked at.
  if (tls.required && !tls.active) return LoginPacket::TlsRequired;
  return decode_handshake_response(payload, response) ? LoginPacket::Login : LoginPacket::Malformed;
}

std::string_view to_string(ServerTlsStep s) {
  switch (s) {
    case ServerTlsStep::Plain:
      return "plain";
    case ServerTlsStep::StartTls:
      return "start_tls";
    case ServerTlsStep::Refuse:
      return "refuse";
  }
  return "unknown";
}

ServerTlsStep server_tls_step(uint64_t greeting_caps, ServerTls mode) {
  const bool offered = (greeting_caps & cap::kSsl) != 0;
  switch (mode) {
    case ServerTls::Disable:
      return ServerTlsStep::Plain;
    case ServerTls::Prefer:
      return offered ? ServerTlsStep::StartTls : ServerTlsStep::Plain;
    case ServerTls::Require:
      return offered ? ServerTlsStep::StartTls : ServerTlsStep::Refuse;
  }
  return ServerTlsStep::Refuse;
}

bool parse_server_tls(std::string_view mode, ServerTls& out) {
  if (mode == "disable") {
    out = ServerTls::Disable;
  } else if (mode == "prefer") {
    out = ServerTls::Prefer;
  } else if (mode == "require" || mode == "verify-ca" || mode == "verify-full") {
    out = ServerTls::Require;
  } else {
    return false;
  }
  return true;
}

// --- Authentication exchange -----------------------------------------------------------

bool decode_auth_switch(std::string_view payload, AuthSwitchRequest& out) {
  Reader r(payload);
  uint8_t header = 0;
  if (!r.u8(header) || header != kEofHeader) {
    return false;
  }
  AuthSwitchRequest a;
  if (!r.at_end()) {
    std::string_view plugin;
    std::string_view data;
    if (!r.cstr(plugin) || !r.rest(data)) {
      return false;
    }
    a.plugin.assign(plugin);
    a.data.assign(data);
  }
  out = std::move(a);
  return true;
}

void encode_auth_switch(std::string& out, const AuthSwitchRequest& a) {
  Writer w(out);
  w.u8(kEofHeader);
  if (!a.plugin.empty() || !a.data.empty()) {
    w.cstr(a.plugin);
    w.bytes(a.data);
  }
}

bool decode_auth_more_data(std::string_view payload, std::string_view& data) {
  if (payload.empty() || static_cast<uint8_t>(payload[0]) != kAuthMoreDataHeader) {
    return false;
  }
  data = payload.substr(1);
  return true;
}

void encode_auth_more_data(std::string& out, std::string_view data) {
  Writer w(out);
  w.u8(kAuthMoreDataHeader);
  w.bytes(data);
}

std::string_view to_string(CachingSha2Status s) {
  switch (s) {
    case CachingSha2Status::RequestPublicKey:
      return "request-public-key";
    case CachingSha2Status::FastAuthSuccess:
      return "fast-auth-success";
    case CachingSha2Status::PerformFullAuth:
      return "perform-full-authentication";
  }
  return "unknown";
}

bool decode_caching_sha2_status(std::string_view payload, CachingSha2Status& out) {
  std::string_view data;
  if (!decode_auth_more_data(payload, data) || data.size() != 1) {
    return false;
  }
  const auto b = static_cast<uint8_t>(data[0]);
  if (b != static_cast<uint8_t>(CachingSha2Status::FastAuthSuccess) &&
      b != static_cast<uint8_t>(CachingSha2Status::PerformFullAuth)) {
    return false;
  }
  out = static_cast<CachingSha2Status>(b);
  return true;
}

bool decode_change_user(std::string_view payload, uint64_t caps, ChangeUser& out) {
  Reader r(payload);
  uint8_t cmd = 0;
  if (!r.u8(cmd) || cmd != static_cast<uint8_t>(Command::ChangeUser)) {
    return false;
  }
  ChangeUser c;
  std::string_view user;
  std::string_view auth;
  std::string_view db;
  if (!r.cstr(user)) {
    return false;
  }
  if ((caps & cap::kSecureConnection) != 0) {
    uint8_t len = 0;
    if (!r.u8(len) || !r.bytes(len, auth)) {
      return false;
    }
  } else if (!r.cstr(auth)) {
    return false;
  }
  if (!r.cstr(db)) {
    return false;
  }
  c.username.assign(user);
  c.auth_response.assign(auth);
  c.database.assign(db);
  if (!r.at_end() && !r.u16(c.charset)) {
    return false;
  }
  if (!r.at_end() && (caps & cap::kPluginAuth) != 0) {
    std::string_view plugin;
    if (!r.cstr(plugin)) {
      return false;
    }
    c.auth_plugin.assign(plugin);
  }
  if (!r.at_end() && (caps & cap::kConnectAttrs) != 0 && !read_connect_attrs(r, c.attributes)) {
    return false;
  }
  if (!r.at_end()) {
    return false;
  }
  out = std::move(c);
  return true;
}

void encode_change_user(std::string& out, const ChangeUser& c, uint64_t caps) {
  Writer w(out);
  w.u8(static_cast<uint8_t>(Command::ChangeUser));
  w.cstr(c.username);
  if ((caps & cap::kSecureConnection) != 0) {
    w.u8(static_cast<uint8_t>(std::min<size_t>(c.auth_response.size(), 255)));
    w.bytes(std::string_view(c.auth_response).substr(0, 255));
  } else {
    w.cstr(c.auth_response);
  }
  w.cstr(c.database);
  w.u16(c.charset);
  if ((caps & cap::kPluginAuth) != 0) {
    w.cstr(c.auth_plugin);
  }
  if ((caps & cap::kConnectAttrs) != 0) {
    write_connect_attrs(w, c.attributes);
  }
}

}  // namespace sqlmux::my
