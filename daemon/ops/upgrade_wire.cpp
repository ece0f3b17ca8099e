#include "daemon/ops/upgrade_wire.h"

namespace sqlmux::upgrade {

namespace {

constexpr std::string_view kHeader = "sqlmux-handover 1\n";

bool kind_of(std::string_view s, SocketKind& out) {
  for (SocketKind k :
       {SocketKind::Listener, SocketKind::Admin, SocketKind::Metrics, SocketKind::Upgrade}) {
    if (s == to_string(k)) {
      out = k;
      return true;
    }
  }
  return false;
}

bool writable(const SocketDesc& d) {
  if (d.address.empty() || d.address.size() > kMaxAddress) return false;
  if (d.address.find_first_of(std::string_view("\n\0", 2)) != std::string::npos) return false;
  if (d.kind == SocketKind::Listener) return d.protocol == "postgres" || d.protocol == "mysql";
  return d.protocol == "-";
}

// "<prefix> <pid>\n" with 1 <= pid <= INT32_MAX; else 0.
int32_t decode_pid_line(std::string_view msg, std::string_view prefix) {
  if (msg.size() < prefix.size() + 3 || msg.substr(0, prefix.size()) != prefix ||
      msg[prefix.size()] != ' ' || msg.back() != '\n') {
    return 0;
  }
  std::string_view digits = msg.substr(prefix.size() + 1, msg.size() - prefix.size() - 2);
  // Canonical decimal only: no sign, no leading zero.
  if (digits.empty() || digits.size() > 10 || digits[0] == '0') return 0;
  int64_t v = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return 0;
    v = v * 10 + (c - '0');
  }
  if (v < 1 || v > INT32_MAX) return 0;
  return static_cast<int32_t>(v);
}

constexpr std::string_view kClientHeader = "sqlmux-client 1\n";
constexpr std::string_view kMyClientHeader = "sqlmux-myclient 1\n";
constexpr uint32_t kNoStatement = 0xFFFFFFFF;  // MySQL's "the last prepared"

// "<prefix> <id>\n" with 1 <= id < 2^63, canonical decimal; else 0.
uint64_t decode_id_line(std::string_view msg, std::string_view prefix) {
  if (msg.size() < prefix.size() + 3 || msg.substr(0, prefix.size()) != prefix ||
      msg[prefix.size()] != ' ' || msg.back() != '\n') {
    return 0;
  }
  std::string_view digits = msg.substr(prefix.size() + 1, msg.size() - prefix.size() - 2);
  if (digits.empty() || digits.size() > 18 || digits[0] == '0') return 0;
  uint64_t v = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return 0;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  return v;
}

void put_u32(std::string& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out += static_cast<char>((v >> shift) & 0xff);
}
void put_u64(std::string& out, uint64_t v) {
  put_u32(out, static_cast<uint32_t>(v >> 32));
  put_u32(out, static_cast<uint32_t>(v));
}
void put_str(std::string& out, std::string_view s) {
  put_u32(out, static_cast<uint32_t>(s.size()));
  out += s;
}

// A name: not empty, at most kMaxName bytes, no NUL.
bool good_name(std::string_view s) {
  return !s.empty() && s.size() <= kMaxName && s.find('\0') == std::string_view::npos;
}

// Reads fields off the front of a record; every length is checked
// against what is left.
class Reader {
 public:
  explicit Reader(std::string_view s) : s_(s) {}
  bool u32(uint32_t& v) {
    if (s_.size() < 4) return false;
    v = 0;
    for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(s_[i]);
    s_.remove_prefix(4);
    return true;
  }
  bool u64(uint64_t& v) {
    uint32_t hi = 0;
    uint32_t lo = 0;
    if (!u32(hi) || !u32(lo)) return false;
    v = (static_cast<uint64_t>(hi) << 32) | lo;
    return true;
  }
  bool u16(uint16_t& v) {
    if (s_.size() < 2) return false;
    v = static_cast<uint16_t>((static_cast<uint8_t>(s_[0]) << 8) | static_cast<uint8_t>(s_[1]));
    s_.remove_prefix(2);
    return true;
  }
  bool u8(uint8_t& v) {
    if (s_.empty()) return false;
    v = static_cast<uint8_t>(s_[0]);
    s_.remove_prefix(1);
    return true;
  }
  bool str(std::string& out) {
    uint32_t n = 0;
    if (!u32(n) || n > s_.size()) return false;
    out.assign(s_.substr(0, n));
    s_.remove_prefix(n);
    return true;
  }
  // A flag byte (0 or 1), then the string when it is 1. False when
  // truncated; `bad` when the flag is neither.
  bool opt_str(std::optional<std::string>& out, bool& bad) {
    uint8_t flag = 0;
    if (!u8(flag)) return false;
    if (flag > 1) {
      bad = true;
      return true;
    }
    if (flag == 0) return true;
    out.emplace();
    return str(*out);
  }
  [[nodiscard]] size_t left() const { return s_.size(); }

 private:
  std::string_view s_;
};

void put_u16(std::string& out, uint16_t v) {
  out += static_cast<char>(v >> 8);
  out += static_cast<char>(v & 0xff);
}
void put_opt_str(std::string& out, const std::optional<std::string>& s) {
  out += static_cast<char>(s ? 1 : 0);
  if (s) put_str(out, *s);
}

// A string that may be empty: at most kMaxName bytes, no NUL.
bool good_text(std::string_view s) {
  return s.size() <= kMaxName && s.find('\0') == std::string_view::npos;
}
bool good_opt_text(const std::optional<std::string>& s) {
  return !s || good_text(*s);
}

// Whether a MySQL client's state can be written (and is accepted when
// read): what MyClient would hold after a login and its commands.
ClientWireError check_my(const MyClientState& m) {
  if (m.vars.size() > kMaxClientParams || m.statements.size() > kMaxClientStatements) {
    return ClientWireError::TooMany;
  }
  if (m.thread_id == 0 || m.scramble.size() > kMaxScramble || !good_text(m.login_db) ||
      !good_text(m.application) || !good_opt_text(m.schema) ||
      !good_opt_text(m.results_collation) || m.next_statement == 0) {
    return ClientWireError::BadField;
  }
  for (const auto& [name, value] : m.vars) {
    if (!good_name(name) || value.size() > kMaxMessage || value.find('\0') != std::string::npos) {
      return ClientWireError::BadField;
    }
  }
  // Ids ascending, each below the next one to be given; the last prepared
  // one among them (or none).
  uint32_t prev = 0;
  bool last_found = m.last_statement == 0;
  for (const auto& st : m.statements) {
    if (st.id <= prev || st.id >= m.next_statement || st.id == kNoStatement ||
        st.sql.size() > kMaxMessage || !good_opt_text(st.schema) ||
        (!st.param_types.empty() && st.param_types.size() != st.num_params)) {
      return ClientWireError::BadField;
    }
    prev = st.id;
    if (st.id == m.last_statement) last_found = true;
  }
  return last_found ? ClientWireError::None : ClientWireError::BadField;
}

ClientWireError read_my_client(Reader& r, MyClientState& m) {
  bool bad = false;
  if (!r.u32(m.thread_id) || !r.u32(m.thread_counter) || !r.u64(m.caps) || !r.u8(m.charset) ||
      !r.str(m.scramble) || !r.str(m.login_db) || !r.str(m.application) ||
      !r.opt_str(m.schema, bad) || !r.opt_str(m.results_collation, bad)) {
    return ClientWireError::Truncated;
  }
  if (bad) return ClientWireError::BadField;
  uint32_t n = 0;
  if (!r.u32(n)) return ClientWireError::Truncated;
  if (n > kMaxClientParams) return ClientWireError::TooMany;
  for (uint32_t i = 0; i < n; ++i) {
    std::pair<std::string, std::string> v;
    if (!r.str(v.first) || !r.str(v.second)) return ClientWireError::Truncated;
    m.vars.push_back(std::move(v));
  }
  if (!r.u32(m.next_statement) || !r.u32(m.last_statement) || !r.u32(n)) {
    return ClientWireError::Truncated;
  }
  if (n > kMaxClientStatements) return ClientWireError::TooMany;
  for (uint32_t i = 0; i < n; ++i) {
    MyStatementState st;
    uint16_t types = 0;
    if (!r.u32(st.id) || !r.str(st.sql) || !r.opt_str(st.schema, bad) || !r.u16(st.num_params) ||
        !r.u16(st.num_columns) || !r.u16(types)) {
      return ClientWireError::Truncated;
    }
    if (bad) return ClientWireError::BadField;
    if (types > r.left() / 2) return ClientWireError::Truncated;
    st.param_types.resize(types);
    for (uint16_t& t : st.param_types) (void)r.u16(t);
    m.statements.push_back(std::move(st));
  }
  if (r.left() != 0) return ClientWireError::Trailing;
  return check_my(m);
}

std::string encode_my_client(const ClientState& c) {
  const MyClientState& m = *c.mysql;
  if (check_my(m) != ClientWireError::None) return {};
  std::string out(kMyClientHeader);
  put_u64(out, c.id);
  put_str(out, c.pool);
  put_str(out, c.user);
  put_str(out, c.database);
  put_u32(out, m.thread_id);
  put_u32(out, m.thread_counter);
  put_u64(out, m.caps);
  out += static_cast<char>(m.charset);
  put_str(out, m.scramble);
  put_str(out, m.login_db);
  put_str(out, m.application);
  put_opt_str(out, m.schema);
  put_opt_str(out, m.results_collation);
  put_u32(out, static_cast<uint32_t>(m.vars.size()));
  for (const auto& [name, value] : m.vars) {
    put_str(out, name);
    put_str(out, value);
    if (out.size() > kMaxMessage) return {};
  }
  put_u32(out, m.next_statement);
  put_u32(out, m.last_statement);
  put_u32(out, static_cast<uint32_t>(m.statements.size()));
  for (const auto& st : m.statements) {
    put_u32(out, st.id);
    put_str(out, st.sql);
    put_opt_str(out, st.schema);
    put_u16(out, st.num_params);
    put_u16(out, st.num_columns);
    put_u16(out, static_cast<uint16_t>(st.param_types.size()));
    for (uint16_t t : st.param_types) put_u16(out, t);
    if (out.size() > kMaxMessage) return {};
  }
  return out;
}

ClientWireError read_pg_client(Reader& r, ClientState& c) {
  uint32_t pid = 0;
  uint32_t key = 0;
  uint8_t describes = 0;
  if (!r.u32(pid) || !r.u32(key) || !r.u8(describes)) return ClientWireError::Truncated;
  if (describes > 1) return ClientWireError::BadField;
  c.cancel_pid = static_cast<int32_t>(pid);
  c.cancel_key = static_cast<int32_t>(key);
  c.describes_portals = describes == 1;
  uint32_t n = 0;
  if (!r.u32(n)) return ClientWireError::Truncated;
  if (n > kMaxClientParams) return ClientWireError::TooMany;
  for (uint32_t i = 0; i < n; ++i) {
    ClientParam p;
    uint8_t reported = 0;
    if (!r.str(p.name) || !r.str(p.value) || !r.u8(reported)) return ClientWireError::Truncated;
    if (!good_name(p.name) || p.value.find('\0') != std::string::npos || reported > 1) {
      return ClientWireError::BadField;
    }
    p.reported = reported == 1;
    c.params.push_back(std::move(p));
  }
  if (!r.u32(n)) return ClientWireError::Truncated;
  if (n > kMaxClientStatements) return ClientWireError::TooMany;
  for (uint32_t i = 0; i < n; ++i) {
    ClientStatement st;
    uint32_t types = 0;
    if (!r.str(st.name) || !r.str(st.query) || !r.u32(types)) return ClientWireError::Truncated;
    if (!good_name(st.name) || st.query.find('\0') != std::string::npos) {
      return ClientWireError::BadField;
    }
    if (types > kMaxParamTypes) return ClientWireError::TooMany;
    if (types > r.left() / 4) return ClientWireError::Truncated;
    st.param_types.resize(types);
    for (uint32_t& t : st.param_types) (void)r.u32(t);
    c.statements.push_back(std::move(st));
  }
  return r.left() == 0 ? ClientWireError::None : ClientWireError::Trailing;
}

}  // namespace

std::string_view to_string(ClientWireError e) {
  switch (e) {
    case ClientWireError::None:
      return "none";
    case ClientWireError::BadHeader:
      return "bad_header";
    case ClientWireError::Truncated:
      return "truncated";
    case ClientWireError::BadField:
      return "bad_field";
    case ClientWireError::TooMany:
      return "too_many";
    case ClientWireError::Trailing:
      return "trailing";
    case ClientWireError::NoSocket:
      return "no_socket";
  }
  return "?";
}

std::string encode_client(const ClientState& c) {
  if (c.id == 0 || c.id > kMaxClientId || !good_name(c.pool) || !good_name(c.user) ||
      !good_name(c.database)) {
    return {};
  }
  if (c.mysql) {
    // The PostgreSQL fields are not part of a MySQL record.
    if (!(c.cancel_pid == 0 && c.cancel_key == 0 && c.describes_portals && c.params.empty() &&
          c.statements.empty())) {
      return {};
    }
    return encode_my_client(c);
  }
  if (c.params.size() > kMaxClientParams || c.statements.size() > kMaxClientStatements) {
    return {};
  }
  std::string out(kClientHeader);
  put_u64(out, c.id);
  put_str(out, c.pool);
  put_str(out, c.user);
  put_str(out, c.database);
  put_u32(out, static_cast<uint32_t>(c.cancel_pid));
  put_u32(out, static_cast<uint32_t>(c.cancel_key));
  out += static_cast<char>(c.describes_portals ? 1 : 0);
  put_u32(out, static_cast<uint32_t>(c.params.size()));
  for (const auto& p : c.params) {
    if (!good_name(p.name) || p.value.find('\0') != std::string::npos ||
        p.value.size() > kMaxMessage) {
      return {};
    }
    put_str(out, p.name);
    put_str(out, p.value);
    out += static_cast<char>(p.reported ? 1 : 0);
    if (out.size() > kMaxMessage) return {};
  }
  put_u32(out, static_cast<uint32_t>(c.statements.size()));
  for (const auto& st : c.statements) {
    if (!good_name(st.name) || st.query.find('\0') != std::string::npos ||
        st.query.size() > kMaxMessage || st.param_types.size() > kMaxParamTypes) {
      return {};
    }
    put_str(out, st.name);
    put_str(out, st.query);
    put_u32(out, static_cast<uint32_t>(st.param_types.size()));
    for (uint32_t t : st.param_types) put_u32(out, t);
    if (out.size() > kMaxMessage) return {};
  }
  return out;
}

ClientWireError decode_client(std::string_view msg, size_t fds, ClientState& out) {
  out = ClientState{};
  const bool pg = msg.substr(0, kClientHeader.size()) == kClientHeader;
  const bool my = msg.substr(0, kMyClientHeader.size()) == kMyClientHeader;
  if (msg.size() > kMaxMessage || (!pg && !my)) return ClientWireError::BadHeader;
  Reader r(msg.substr(pg ? kClientHeader.size() : kMyClientHeader.size()));
  ClientWireError e = ClientWireError::None;
  if (!r.u64(out.id) || !r.str(out.pool) || !r.str(out.user) || !r.str(out.database)) {
    e = ClientWireError::Truncated;
  } else if (out.id == 0 || out.id > kMaxClientId || !good_name(out.pool) || !good_name(out.user) ||
             !good_name(out.database)) {
    e = ClientWireError::BadField;
  } else if (pg) {
    e = read_pg_client(r, out);
  } else {
    out.mysql.emplace();
    e = read_my_client(r, *out.mysql);
  }
  if (e != ClientWireError::None) {
    out = ClientState{};
    return e;
  }
  if (fds != 1) {
    out = ClientState{};
    return ClientWireError::NoSocket;
  }
  return ClientWireError::None;
}

std::string encode_adopted(uint64_t id) {
  return "adopted " + std::to_string(id) + "\n";
}
std::string encode_refused(uint64_t id) {
  return "refused " + std::to_string(id) + "\n";
}
bool decode_adopted(std::string_view msg, uint64_t& id) {
  id = decode_id_line(msg, "adopted");
  return id != 0;
}
bool decode_refused(std::string_view msg, uint64_t& id) {
  id = decode_id_line(msg, "refused");
  return id != 0;
}
std::string encode_end() {
  return "end\n";
}
bool decode_end(std::string_view msg) {
  return msg == "end\n";
}

std::string_view to_string(SocketKind k) {
  switch (k) {
    case SocketKind::Listener:
      return "listener";
    case SocketKind::Admin:
      return "admin";
    case SocketKind::Metrics:
      return "metrics";
    case SocketKind::Upgrade:
      return "upgrade";
  }
  return "?";
}

std::string_view to_string(WireError e) {
  switch (e) {
    case WireError::None:
      return "none";
    case WireError::BadHeader:
      return "bad_header";
    case WireError::BadLine:
      return "bad_line";
    case WireError::BadKind:
      return "bad_kind";
    case WireError::TooMany:
      return "too_many";
    case WireError::CountMismatch:
      return "count_mismatch";
  }
  return "?";
}

std::string encode_offer(const std::vector<SocketDesc>& socks) {
  if (socks.size() > kMaxSockets) return {};
  std::string out(kHeader);
  for (const auto& d : socks) {
    if (!writable(d)) return {};
    out += to_string(d.kind);
    out += ' ';
    out += d.protocol;
    out += ' ';
    out += d.address;
    out += '\n';
  }
  return out;
}

WireError decode_offer(std::string_view msg, size_t fds, std::vector<SocketDesc>& out) {
  out.clear();
  if (msg.size() > kMaxMessage || msg.substr(0, kHeader.size()) != kHeader) {
    return WireError::BadHeader;
  }
  msg.remove_prefix(kHeader.size());
  while (!msg.empty()) {
    const size_t eol = msg.find('\n');
    if (eol == std::string_view::npos) return WireError::BadLine;
    const std::string_view line = msg.substr(0, eol);
    msg.remove_prefix(eol + 1);
    if (out.size() == kMaxSockets) return WireError::TooMany;
    const size_t sp1 = line.find(' ');
    const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
    if (sp2 == std::string_view::npos) return WireError::BadLine;
    SocketDesc d;
    if (!kind_of(line.substr(0, sp1), d.kind)) return WireError::BadKind;
    d.protocol = std::string(line.substr(sp1 + 1, sp2 - sp1 - 1));
    d.address = std::string(line.substr(sp2 + 1));
    if (d.address.empty() || d.address.size() > kMaxAddress ||
        d.address.find('\0') != std::string::npos) {
      return WireError::BadLine;
    }
    if (!writable(d)) return WireError::BadKind;
    out.push_back(std::move(d));
  }
  if (out.size() != fds) return WireError::CountMismatch;
  return WireError::None;
}

std::string encode_go(int32_t pid) {
  return "go " + std::to_string(pid) + "\n";
}
std::string encode_done(int32_t pid) {
  return "done " + std::to_string(pid) + "\n";
}
int32_t decode_go(std::string_view msg) {
  return decode_pid_line(msg, "go");
}
int32_t decode_done(std::string_view msg) {
  return decode_pid_line(msg, "done");
}

}  // namespace sqlmux::upgrade
