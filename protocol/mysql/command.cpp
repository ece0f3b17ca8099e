// MySQL / MariaDB command packets. See command.h.
#include "protocol/mysql/command.h"

#include <cstdint>
#include <string>

namespace sqlmux::my {

bool decode_command(std::string_view payload, uint8_t& command, std::string_view& arg) {
  if (payload.empty()) {
    return false;
  }
  command = static_cast<uint8_t>(payload[0]);
  arg = payload.substr(1);
  return true;
}

void encode_command(std::string& out, Command c, std::string_view arg) {
  Writer w(out);
  w.u8(static_cast<uint8_t>(c));
  w.bytes(arg);
}

bool decode_stmt_execute(std::string_view payload, uint16_t num_params, StmtExecute& out) {
  Reader r(payload);
  uint8_t command = 0;
  StmtExecute e;
  if (!r.u8(command) || command != static_cast<uint8_t>(Command::StmtExecute) ||
      !r.u32(e.statement_id) || !r.u8(e.flags) || !r.u32(e.iterations)) {
    return false;
  }
  if (num_params > 0) {
    const size_t bitmap_len = (static_cast<size_t>(num_params) + 7) / 8;
    std::string_view bitmap;
    uint8_t bound = 0;
    if (!r.bytes(bitmap_len, bitmap) || !r.u8(bound) || bound > 1) {
      return false;
    }
    const unsigned used = num_params % 8;
    if (used != 0 && (static_cast<uint8_t>(bitmap.back()) >> used) != 0) {
      return false;
    }
    e.null_bitmap.assign(bitmap);
    e.new_params_bound = bound == 1;
    if (e.new_params_bound) {
      // Two bytes per parameter: checked against what is left first.
      if (r.remaining() / 2 < num_params) {
        return false;
      }
      e.types.resize(num_params);
      for (auto& t : e.types) {
        if (!r.u8(t.type) || !r.u8(t.flags)) {
          return false;
        }
      }
    }
  }
  std::string_view values;
  if (!r.rest(values)) {
    return false;
  }
  e.values.assign(values);
  out = std::move(e);
  return true;
}

void encode_stmt_execute(std::string& out, const StmtExecute& e) {
  Writer w(out);
  w.u8(static_cast<uint8_t>(Command::StmtExecute));
  w.u32(e.statement_id);
  w.u8(e.flags);
  w.u32(e.iterations);
  if (!e.null_bitmap.empty()) {
    w.bytes(e.null_bitmap);
    w.u8(e.new_params_bound ? 1 : 0);
    if (e.new_params_bound) {
      for (const auto& t : e.types) {
        w.u8(t.type);
        w.u8(t.flags);
      }
    }
  }
  w.bytes(e.values);
}

bool bind_param_types(std::string_view payload, uint16_t num_params,
                      const std::vector<ParamType>& types, std::string& out) {
  StmtExecute e;
  if (!decode_stmt_execute(payload, num_params, e)) {
    return false;
  }
  if (num_params == 0 || e.new_params_bound) {
    out.assign(payload);
    return true;
  }
  if (types.size() != num_params) {
    return false;
  }
  const size_t head = kExecuteHeadLen + e.null_bitmap.size();
  out.clear();
  out.reserve(payload.size() + 2 * types.size());
  out.append(payload.substr(0, head));
  out.push_back('\x01');
  for (const auto& t : types) {
    out.push_back(static_cast<char>(t.type));
    out.push_back(static_cast<char>(t.flags));
  }
  out.append(payload.substr(head + 1));
  return true;
}

bool has_statement_id(uint8_t command) {
  switch (static_cast<Command>(command)) {
    case Command::StmtExecute:
    case Command::StmtClose:
    case Command::StmtReset:
    case Command::StmtSendLongData:
    case Command::StmtFetch:
    case Command::StmtBulkExecute:
      return true;
    default:
      return false;
  }
}

bool statement_id_of(std::string_view payload, uint32_t& id) {
  if (payload.size() < kStatementIdOffset + 4 ||
      !has_statement_id(static_cast<uint8_t>(payload[0]))) {
    return false;
  }
  Reader r(payload.substr(kStatementIdOffset, 4));
  return r.u32(id);
}

bool rewrite_statement_id(uint8_t* payload, size_t n, uint32_t new_id) {
  if (payload == nullptr || n < kStatementIdOffset + 4 || !has_statement_id(payload[0])) {
    return false;
  }
  for (size_t i = 0; i < 4; ++i) {
    payload[kStatementIdOffset + i] = static_cast<uint8_t>((new_id >> (8 * i)) & 0xff);
  }
  return true;
}

bool rewrite_statement_id(std::string& payload, uint32_t new_id) {
  return rewrite_statement_id(reinterpret_cast<uint8_t*>(payload.data()), payload.size(), new_id);
}

namespace {
void put_id_command(std::string& out, Command c, uint32_t id) {
  Writer w(out);
  w.u8(static_cast<uint8_t>(c));
  w.u32(id);
}
}  // namespace

void encode_stmt_close(std::string& out, uint32_t id) {
  put_id_command(out, Command::StmtClose, id);
}

void encode_stmt_reset(std::string& out, uint32_t id) {
  put_id_command(out, Command::StmtReset, id);
}

void encode_stmt_fetch(std::string& out, uint32_t id, uint32_t rows) {
  put_id_command(out, Command::StmtFetch, id);
  Writer(out).u32(rows);
}

void encode_stmt_send_long_data(std::string& out, uint32_t id, uint16_t param,
                                std::string_view data) {
  put_id_command(out, Command::StmtSendLongData, id);
  Writer w(out);
  w.u16(param);
  w.bytes(data);
}

}  // namespace sqlmux::my

// --- statements a proxy answers itself ---------------------------------------

namespace sqlmux::my {

namespace {

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
bool is_word_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '$';
}
bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i];
    if (x >= 'a' && x <= 'z') x = static_cast<char>(x - 'a' + 'A');
    if (x != b[i]) return false;  // b is upper case
  }
  return true;
}

// Whitespace and comments: /* */ (not MySQL's executable /*! */, which is
// code), "-- " to the end of the line, # to the end of the line. False for
// an unterminated /* comment.
bool skip_blank(std::string_view s, size_t& i) {
  while (i < s.size()) {
    const char c = s[i];
    if (is_space(c)) {
      ++i;
    } else if (c == '#' || (c == '-' && i + 1 < s.size() && s[i + 1] == '-' &&
                            (i + 2 == s.size() || static_cast<unsigned char>(s[i + 2]) <= ' '))) {
      while (i < s.size() && s[i] != '\n') ++i;
    } else if (c == '/' && i + 1 < s.size() && s[i + 1] == '*') {
      if (i + 2 < s.size() && (s[i + 2] == '!' || s[i + 2] == 'M')) return true;  // code
      const size_t end = s.find("*/", i + 2);
      if (end == std::string_view::npos) return false;
      i = end + 2;
    } else {
      return true;
    }
  }
  return true;
}

std::string_view word_at(std::string_view s, size_t& i) {
  const size_t b = i;
  while (i < s.size() && is_word_char(s[i])) ++i;
  return s.substr(b, i - b);
}

// The next word after blanks (empty at a punctuation mark or the end).
std::string_view next_word(std::string_view s, size_t& i) {
  if (!skip_blank(s, i)) return {};
  return word_at(s, i);
}

bool next_char(std::string_view s, size_t& i, char c) {
  if (!skip_blank(s, i) || i >= s.size() || s[i] != c) return false;
  ++i;
  return true;
}

// An optional ';', then only blanks to the end.
bool at_statement_end(std::string_view s, size_t i) {
  if (!skip_blank(s, i)) return false;
  if (i < s.size() && s[i] == ';') {
    ++i;
    if (!skip_blank(s, i)) return false;
  }
  return i == s.size();
}

bool all_digits(std::string_view w) {
  if (w.empty()) return false;
  for (char c : w) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

}  // namespace

KillParse parse_kill(std::string_view sql, KillStatement& kill) {
  size_t i = 0;
  if (!iequals(next_word(sql, i), "KILL")) return KillParse::NotKill;
  KillStatement k;
  std::string_view w = next_word(sql, i);
  if (iequals(w, "HARD") || iequals(w, "SOFT")) w = next_word(sql, i);
  if (iequals(w, "QUERY")) {
    k.query_only = true;
    w = next_word(sql, i);
  } else if (iequals(w, "CONNECTION")) {
    w = next_word(sql, i);
  }
  if (all_digits(w)) {
    uint64_t v = 0;
    for (char c : w) {
      const auto d = static_cast<uint64_t>(c - '0');
      v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d;  // saturates: no such thread
    }
    k.id = v;
  } else if (iequals(w, "CONNECTION_ID")) {
    if (!next_char(sql, i, '(') || !next_char(sql, i, ')')) return KillParse::Unsupported;
    k.own = true;
  } else {
    return KillParse::Unsupported;  // USER, QUERY ID, an expression
  }
  if (!at_statement_end(sql, i)) return KillParse::Unsupported;
  kill = k;
  return KillParse::Kill;
}

bool rewrite_connection_id(std::string_view sql, uint32_t id, std::string& out) {
  size_t i = 0;
  if (!iequals(next_word(sql, i), "SELECT")) return false;
  if (!skip_blank(sql, i)) return false;
  const size_t call_begin = i;
  if (!iequals(word_at(sql, i), "CONNECTION_ID")) return false;
  if (!next_char(sql, i, '(') || !next_char(sql, i, ')')) return false;
  const size_t call_end = i;
  bool alias = false;
  if (!skip_blank(sql, i)) return false;
  std::string_view w = word_at(sql, i);
  if (iequals(w, "AS")) {
    if (!skip_blank(sql, i)) return false;
    w = word_at(sql, i);
    if (w.empty()) {
      // A quoted alias.
      if (i >= sql.size()) return false;
      const char q = sql[i];
      if (q != '`' && q != '\'' && q != '"') return false;
      const size_t close = sql.find(q, i + 1);
      if (close == std::string_view::npos || close == i + 1) return false;
      i = close + 1;
    }
    alias = true;
  } else if (!w.empty()) {
    alias = true;
  } else if (i < sql.size() && (sql[i] == '`' || sql[i] == '"' || sql[i] == '\'')) {
    const char q = sql[i];
    const size_t close = sql.find(q, i + 1);
    if (close == std::string_view::npos || close == i + 1) return false;
    i = close + 1;
    alias = true;
  }
  if (!at_statement_end(sql, i)) return false;
  // The column is named as the call was written, as the server names it.
  std::string_view name = sql.substr(call_begin, call_end - call_begin);
  for (char c : name) {
    if (!is_word_char(c) && c != '(' && c != ')' && c != ' ') {
      name = "CONNECTION_ID()";  // comments or line breaks inside
      break;
    }
  }
  out.clear();
  out.append(sql.substr(0, call_begin));
  out.append(std::to_string(id));
  if (!alias) {
    out.append(" AS `");
    out.append(name);
    out.append("`");
  }
  out.append(sql.substr(call_end));
  return true;
}

}  // namespace sqlmux::my
