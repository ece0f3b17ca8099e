// MySQL / MariaDB command packets. See command.h.
#include "protocol/mysql/command.h"

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
