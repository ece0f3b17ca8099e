// MySQL / MariaDB server responses. See response.h.
#include "protocol/mysql/response.h"

#include <utility>

#include "protocol/mysql/handshake.h"

namespace sqlmux::my {

namespace {

bool read_ok_head(Reader& r, uint64_t caps, size_t size, uint8_t& header, uint64_t& affected,
                  uint64_t& insert_id, uint16_t& status, uint16_t& warnings) {
  if (!r.u8(header)) {
    return false;
  }
  if (header == kEofHeader) {
    if ((caps & cap::kDeprecateEof) == 0 || size >= kMaxChunk) {
      return false;
    }
  } else if (header != kOkHeader) {
    return false;
  }
  if (!r.lenenc(affected) || !r.lenenc(insert_id)) {
    return false;
  }
  status = 0;
  warnings = 0;
  if ((caps & cap::kProtocol41) != 0) {
    return r.u16(status) && r.u16(warnings);
  }
  if ((caps & cap::kTransactions) != 0) {
    return r.u16(status);
  }
  return true;
}

// One lenenc string filling a whole tracker entry.
bool entry_string(std::string_view entry, std::string& out) {
  Reader e(entry);
  std::string_view v;
  if (!e.lenenc_str(v) || !e.at_end()) {
    return false;
  }
  out.assign(v);
  return true;
}

void put_entry(Writer& w, SessionTrack type, std::string_view data) {
  w.u8(static_cast<uint8_t>(type));
  w.lenenc_str(data);
}

std::string lenenc_string(std::string_view s) {
  std::string out;
  Writer(out).lenenc_str(s);
  return out;
}

}  // namespace

std::string_view to_string(SessionTrack t) {
  switch (t) {
    case SessionTrack::SystemVariables:
      return "SESSION_TRACK_SYSTEM_VARIABLES";
    case SessionTrack::Schema:
      return "SESSION_TRACK_SCHEMA";
    case SessionTrack::StateChange:
      return "SESSION_TRACK_STATE_CHANGE";
    case SessionTrack::Gtids:
      return "SESSION_TRACK_GTIDS";
    case SessionTrack::TransactionCharacteristics:
      return "SESSION_TRACK_TRANSACTION_CHARACTERISTICS";
    case SessionTrack::TransactionState:
      return "SESSION_TRACK_TRANSACTION_STATE";
  }
  return "SESSION_TRACK_UNKNOWN";
}

// --- Session state ----------------------------------------------------------------

bool decode_session_state(std::string_view data, SessionState& out) {
  Reader r(data);
  SessionState s;
  while (!r.at_end()) {
    uint8_t type = 0;
    std::string_view entry;
    if (!r.u8(type) || !r.lenenc_str(entry)) {
      return false;
    }
    switch (static_cast<SessionTrack>(type)) {
      case SessionTrack::SystemVariables: {
        Reader e(entry);
        std::string_view name;
        std::string_view value;
        if (!e.lenenc_str(name) || !e.lenenc_str(value) || !e.at_end()) {
          return false;
        }
        s.system_variables.emplace_back(std::string(name), std::string(value));
        break;
      }
      case SessionTrack::Schema: {
        std::string v;
        if (!entry_string(entry, v)) {
          return false;
        }
        s.schema = std::move(v);
        break;
      }
      case SessionTrack::StateChange: {
        // The one exception: a bare '1' (or '0'), not a lenenc string
        // (MySQL's client asserts the entry length is 1; MariaDB sends so).
        if (entry.size() != 1) {
          return false;
        }
        s.state_changed = entry[0] == '1';
        break;
      }
      case SessionTrack::Gtids: {
        Reader e(entry);
        uint8_t spec = 0;
        std::string_view v;
        if (!e.u8(spec) || !e.lenenc_str(v) || !e.at_end()) {
          return false;
        }
        s.gtids_encoding = spec;
        s.gtids = std::string(v);
        break;
      }
      case SessionTrack::TransactionCharacteristics: {
        std::string v;
        if (!entry_string(entry, v)) {
          return false;
        }
        s.transaction_characteristics = std::move(v);
        break;
      }
      case SessionTrack::TransactionState: {
        std::string v;
        if (!entry_string(entry, v)) {
          return false;
        }
        s.transaction_state = std::move(v);
        break;
      }
      default:
        ++s.unknown_entries;  // skipped by its length
        break;
    }
  }
  out = std::move(s);
  return true;
}

void encode_session_state(std::string& out, const SessionState& s) {
  Writer w(out);
  for (const auto& [name, value] : s.system_variables) {
    std::string entry;
    Writer e(entry);
    e.lenenc_str(name);
    e.lenenc_str(value);
    put_entry(w, SessionTrack::SystemVariables, entry);
  }
  if (s.schema) {
    put_entry(w, SessionTrack::Schema, lenenc_string(*s.schema));
  }
  if (s.state_changed) {
    put_entry(w, SessionTrack::StateChange, *s.state_changed ? "1" : "0");
  }
  if (s.gtids) {
    std::string entry;
    Writer e(entry);
    e.u8(s.gtids_encoding);
    e.lenenc_str(*s.gtids);
    put_entry(w, SessionTrack::Gtids, entry);
  }
  if (s.transaction_state) {
    put_entry(w, SessionTrack::TransactionState, lenenc_string(*s.transaction_state));
  }
  if (s.transaction_characteristics) {
    put_entry(w, SessionTrack::TransactionCharacteristics,
              lenenc_string(*s.transaction_characteristics));
  }
}

// --- OK / ERR / EOF ------------------------------------------------------------------

bool decode_ok_status(std::string_view payload, uint64_t caps, uint16_t& status,
                      uint16_t& warnings) {
  Reader r(payload);
  uint8_t header = 0;
  uint64_t affected = 0;
  uint64_t insert_id = 0;
  return read_ok_head(r, caps, payload.size(), header, affected, insert_id, status, warnings);
}

bool decode_ok(std::string_view payload, uint64_t caps, OkPacket& out) {
  Reader r(payload);
  OkPacket ok;
  if (!read_ok_head(r, caps, payload.size(), ok.header, ok.affected_rows, ok.last_insert_id,
                    ok.status, ok.warnings)) {
    return false;
  }
  if ((caps & cap::kSessionTrack) != 0) {
    if (!r.at_end()) {
      std::string_view info;
      if (!r.lenenc_str(info)) {
        return false;
      }
      ok.info.assign(info);
    }
    if (!r.at_end() && (ok.status & status::kSessionStateChanged) != 0) {
      std::string_view state;
      if (!r.lenenc_str(state) || !decode_session_state(state, ok.session_state)) {
        return false;
      }
      ok.has_session_state = true;
    }
    if (!r.at_end()) {
      return false;
    }
  } else {
    std::string_view info;
    if (!r.rest(info)) {
      return false;
    }
    ok.info.assign(info);
  }
  out = std::move(ok);
  return true;
}

void encode_ok(std::string& out, const OkPacket& ok, uint64_t caps) {
  Writer w(out);
  w.u8(ok.header == kEofHeader ? kEofHeader : kOkHeader);
  w.lenenc(ok.affected_rows);
  w.lenenc(ok.last_insert_id);
  if ((caps & cap::kProtocol41) != 0) {
    w.u16(ok.status);
    w.u16(ok.warnings);
  } else if ((caps & cap::kTransactions) != 0) {
    w.u16(ok.status);
  }
  if ((caps & cap::kSessionTrack) != 0) {
    const bool state = ok.has_session_state && (ok.status & status::kSessionStateChanged) != 0;
    if (!ok.info.empty() || state) {
      w.lenenc_str(ok.info);
    }
    if (state) {
      std::string data;
      encode_session_state(data, ok.session_state);
      w.lenenc_str(data);
    }
  } else {
    w.bytes(ok.info);
  }
}

bool decode_err(std::string_view payload, ErrPacket& out) {
  Reader r(payload);
  uint8_t header = 0;
  ErrPacket e;
  if (!r.u8(header) || header != kErrHeader || !r.u16(e.code)) {
    return false;
  }
  uint8_t marker = 0;
  if (r.peek(marker) && marker == '#') {
    std::string_view state;
    if (!r.skip(1) || !r.bytes(5, state)) {
      return false;
    }
    e.sqlstate.assign(state);
  }
  std::string_view msg;
  if (!r.rest(msg)) {
    return false;
  }
  e.message.assign(msg);
  out = std::move(e);
  return true;
}

void encode_err(std::string& out, const ErrPacket& e) {
  Writer w(out);
  w.u8(kErrHeader);
  w.u16(e.code);
  if (!e.sqlstate.empty()) {
    std::string state = e.sqlstate.substr(0, 5);
    state.resize(5, '0');
    w.u8('#');
    w.bytes(state);
  }
  w.bytes(e.message);
}

void encode_err(std::string& out, ErrorCode code, std::string_view message) {
  encode_err(out, ErrPacket{static_cast<uint16_t>(code), std::string(sqlstate(code)),
                            std::string(message)});
}

bool is_eof(std::string_view payload) {
  return !payload.empty() && static_cast<uint8_t>(payload[0]) == kEofHeader && payload.size() < 9;
}

bool decode_eof(std::string_view payload, EofPacket& out) {
  if (!is_eof(payload) || payload.size() != 5) {
    return false;
  }
  Reader r(payload.substr(1));
  EofPacket e;
  if (!r.u16(e.warnings) || !r.u16(e.status)) {
    return false;
  }
  out = e;
  return true;
}

void encode_eof(std::string& out, const EofPacket& e) {
  Writer w(out);
  w.u8(kEofHeader);
  w.u16(e.warnings);
  w.u16(e.status);
}

bool is_result_terminator(std::string_view payload, uint64_t caps) {
  if (payload.empty() || static_cast<uint8_t>(payload[0]) != kEofHeader) {
    return false;
  }
  return (caps & cap::kDeprecateEof) != 0 ? payload.size() < kMaxChunk : payload.size() < 9;
}

bool eof_to_ok_terminator(std::string_view eof_payload, std::string& out) {
  EofPacket e;
  if (!decode_eof(eof_payload, e)) {
    return false;
  }
  OkPacket ok;
  ok.header = kEofHeader;
  ok.status = e.status;
  ok.warnings = e.warnings;
  encode_ok(out, ok, cap::kProtocol41);
  return true;
}

bool ok_terminator_to_eof(std::string_view ok_payload, uint64_t caps, std::string& out) {
  if (ok_payload.empty() || static_cast<uint8_t>(ok_payload[0]) != kEofHeader) {
    return false;
  }
  EofPacket e;
  if (!decode_ok_status(ok_payload, caps | cap::kDeprecateEof, e.status, e.warnings)) {
    return false;
  }
  encode_eof(out, e);
  return true;
}

// --- Column definitions, PREPARE_OK ---------------------------------------------------

bool decode_column_def(std::string_view payload, uint64_t caps, ColumnDef& out) {
  Reader r(payload);
  ColumnDef c;
  std::string_view s[6];
  for (auto& v : s) {
    if (!r.lenenc_str(v)) {
      return false;
    }
  }
  if ((caps & cap::kMariaExtendedMetadata) != 0) {
    std::string_view ext;
    if (!r.lenenc_str(ext)) {
      return false;
    }
    c.extended_metadata.assign(ext);
  }
  uint64_t fixed = 0;
  uint16_t filler = 0;
  if (!r.lenenc(fixed) || fixed != 0x0C || !r.u16(c.charset) || !r.u32(c.length) || !r.u8(c.type) ||
      !r.u16(c.flags) || !r.u8(c.decimals) || !r.u16(filler)) {
    return false;
  }
  if (!r.at_end()) {  // COM_FIELD_LIST: default value
    std::optional<std::string_view> def;
    if (!r.lenenc_str_or_null(def) || !r.at_end()) {
      return false;
    }
    if (def) {
      c.default_value = std::string(*def);
    }
  }
  c.catalog.assign(s[0]);
  c.schema.assign(s[1]);
  c.table.assign(s[2]);
  c.org_table.assign(s[3]);
  c.name.assign(s[4]);
  c.org_name.assign(s[5]);
  out = std::move(c);
  return true;
}

void encode_column_def(std::string& out, const ColumnDef& c, uint64_t caps) {
  Writer w(out);
  w.lenenc_str(c.catalog);
  w.lenenc_str(c.schema);
  w.lenenc_str(c.table);
  w.lenenc_str(c.org_table);
  w.lenenc_str(c.name);
  w.lenenc_str(c.org_name);
  if ((caps & cap::kMariaExtendedMetadata) != 0) {
    w.lenenc_str(c.extended_metadata);
  }
  w.lenenc(0x0C);
  w.u16(c.charset);
  w.u32(c.length);
  w.u8(c.type);
  w.u16(c.flags);
  w.u8(c.decimals);
  w.u16(0);
  if (c.default_value) {
    w.lenenc_str(*c.default_value);
  }
}

bool column_def_extended_span(std::string_view payload, uint64_t caps, size_t& at, size_t& len) {
  // Lengths are only skipped, as Reader::lenenc_str reads them: NULL
  // (0xFB) and 0xFF are no string, and none may run past the end.
  const auto* p = reinterpret_cast<const uint8_t*>(payload.data());
  const size_t n = payload.size();
  const int fields = (caps & cap::kMariaExtendedMetadata) != 0 ? 7 : 6;
  size_t i = 0;
  size_t field_at = 0;
  for (int f = 0; f < fields; ++f) {
    field_at = i;
    if (i >= n) {
      return false;
    }
    const uint8_t first = p[i++];
    uint64_t v = first;
    size_t w = 0;
    if (first >= 0xFB) {
      if (first == 0xFB || first == 0xFF) {
        return false;
      }
      w = first == 0xFC ? 2 : first == 0xFD ? 3 : 8;
      if (n - i < w) {
        return false;
      }
      v = 0;
      for (size_t k = 0; k < w; ++k) {
        v |= static_cast<uint64_t>(p[i + k]) << (8 * k);
      }
      i += w;
    }
    if (v > n - i) {
      return false;
    }
    i += static_cast<size_t>(v);
  }
  if (fields == 7) {
    at = field_at;
    len = i - field_at;
  } else {
    at = i;
    len = 0;
  }
  return true;
}

bool reshape_column_def(std::string_view payload, uint64_t from_caps, uint64_t to_caps,
                        std::string& out) {
  const bool from_ext = (from_caps & cap::kMariaExtendedMetadata) != 0;
  const bool to_ext = (to_caps & cap::kMariaExtendedMetadata) != 0;
  size_t at = 0;
  size_t len = 0;
  if (from_ext == to_ext || !column_def_extended_span(payload, from_caps, at, len)) {
    return false;
  }
  out.assign(payload.data(), at);
  if (to_ext) {
    out.push_back('\0');  // an empty extended-metadata field
  }
  out.append(payload.data() + at + len, payload.size() - at - len);
  return true;
}

bool decode_prepare_ok(std::string_view payload, PrepareOk& out) {
  Reader r(payload);
  uint8_t header = 0;
  uint8_t filler = 0;
  PrepareOk p;
  if (!r.u8(header) || header != kOkHeader || !r.u32(p.statement_id) || !r.u16(p.num_columns) ||
      !r.u16(p.num_params) || !r.u8(filler)) {
    return false;
  }
  if (!r.at_end() && !r.u16(p.warnings)) {
    return false;
  }
  if (r.remaining() > 1) {
    return false;  // MySQL 8 may add metadata_follows
  }
  out = p;
  return true;
}

void encode_prepare_ok(std::string& out, const PrepareOk& p) {
  Writer w(out);
  w.u8(kOkHeader);
  w.u32(p.statement_id);
  w.u16(p.num_columns);
  w.u16(p.num_params);
  w.u8(0);
  w.u16(p.warnings);
}

std::optional<uint64_t> rows_matched(std::string_view info) {
  constexpr std::string_view kPrefix = "Rows matched: ";
  if (info.substr(0, kPrefix.size()) != kPrefix) {
    return std::nullopt;
  }
  uint64_t n = 0;
  size_t i = kPrefix.size();
  const size_t start = i;
  while (i < info.size() && info[i] >= '0' && info[i] <= '9' && i - start < 20) {
    const uint64_t digit = static_cast<uint64_t>(info[i] - '0');
    if (n > (UINT64_MAX - digit) / 10) {
      return std::nullopt;
    }
    n = n * 10 + digit;
    ++i;
  }
  if (i == start || (i < info.size() && info[i] != ' ')) {
    return std::nullopt;
  }
  return n;
}

}  // namespace sqlmux::my
