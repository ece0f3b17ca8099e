// MySQL / MariaDB response reader and DEPRECATE_EOF translation. See
// reader.h.
#include "protocol/mysql/reader.h"

#include <utility>

#include "protocol/mysql/handshake.h"

namespace sqlmux::my {

// --- Response reader -------------------------------------------------------------------

std::string_view to_string(ResponseKind k) {
  switch (k) {
    case ResponseKind::Query:
      return "query";
    case ResponseKind::Execute:
      return "execute";
    case ResponseKind::Fetch:
      return "fetch";
    case ResponseKind::Prepare:
      return "prepare";
    case ResponseKind::FieldList:
      return "field-list";
    case ResponseKind::Simple:
      return "simple";
    case ResponseKind::Statistics:
      return "statistics";
  }
  return "unknown";
}

bool response_kind_for(uint8_t command, ResponseKind& out) {
  switch (static_cast<Command>(command)) {
    case Command::Query:
      out = ResponseKind::Query;
      return true;
    case Command::StmtExecute:
      out = ResponseKind::Execute;
      return true;
    case Command::StmtFetch:
      out = ResponseKind::Fetch;
      return true;
    case Command::StmtPrepare:
      out = ResponseKind::Prepare;
      return true;
    case Command::FieldList:
      out = ResponseKind::FieldList;
      return true;
    case Command::Statistics:
      out = ResponseKind::Statistics;
      return true;
    case Command::InitDb:
    case Command::Ping:
    case Command::ResetConnection:
    case Command::SetOption:
    case Command::StmtReset:
    case Command::Refresh:
    case Command::ProcessKill:
    case Command::Debug:
    case Command::CreateDb:
    case Command::DropDb:
    case Command::Shutdown:
      out = ResponseKind::Simple;
      return true;
    default:
      return false;
  }
}

std::string_view to_string(PacketRole r) {
  switch (r) {
    case PacketRole::Ok:
      return "ok";
    case PacketRole::Err:
      return "err";
    case PacketRole::Progress:
      return "progress";
    case PacketRole::LocalInfile:
      return "local-infile";
    case PacketRole::ColumnCount:
      return "column-count";
    case PacketRole::ColumnDef:
      return "column-def";
    case PacketRole::ParamDef:
      return "param-def";
    case PacketRole::MetadataEof:
      return "metadata-eof";
    case PacketRole::Row:
      return "row";
    case PacketRole::Terminator:
      return "terminator";
    case PacketRole::PrepareOk:
      return "prepare-ok";
    case PacketRole::Eof:
      return "eof";
    case PacketRole::Text:
      return "text";
  }
  return "unknown";
}

std::string_view to_string(Step s) {
  switch (s) {
    case Step::More:
      return "more";
    case Step::Done:
      return "done";
    case Step::LocalInfile:
      return "local-infile";
    case Step::Malformed:
      return "malformed";
  }
  return "unknown";
}

ResponseReader::ResponseReader(ResponseKind kind, uint64_t caps, uint16_t status)
    : kind_(kind),
      caps_(caps),
      deprecate_eof_((caps & cap::kDeprecateEof) != 0),
      state_(kind == ResponseKind::Fetch       ? State::Rows
             : kind == ResponseKind::FieldList ? State::FieldList
                                               : State::Start),
      status_(status) {}

Step ResponseReader::fail() {
  state_ = State::Failed;
  return Step::Malformed;
}

Step ResponseReader::finish_result(uint16_t st) {
  status_ = st;
  ended_result_ = true;
  const bool multi = kind_ == ResponseKind::Query || kind_ == ResponseKind::Execute;
  if (multi && (st & status::kMoreResultsExist) != 0) {
    state_ = State::Start;
    return Step::More;
  }
  state_ = State::Done;
  return Step::Done;
}

Step ResponseReader::after_columns() {
  last_definition_ = true;
  if (!deprecate_eof_) {
    state_ = State::ColumnsEof;
    return Step::More;
  }
  if (kind_ == ResponseKind::Prepare) {
    state_ = State::Done;
    return Step::Done;
  }
  state_ = State::Rows;
  awaiting_first_row_ = true;
  return Step::More;
}

Step ResponseReader::after_params() {
  last_definition_ = true;
  if (!deprecate_eof_) {
    state_ = State::ParamsEof;
    return Step::More;
  }
  if (prepare_ok_.num_columns > 0) {
    state_ = State::Columns;
    remaining_ = prepare_ok_.num_columns;
    return Step::More;
  }
  state_ = State::Done;
  return Step::Done;
}

Step ResponseReader::start_packet(std::string_view payload, uint8_t first) {
  uint16_t st = 0;
  switch (kind_) {
    case ResponseKind::Query:
    case ResponseKind::Execute: {
      if (first == kOkHeader) {
        if (!decode_ok_status(payload, caps_, st, warnings_)) {
          return fail();
        }
        role_ = PacketRole::Ok;
        return finish_result(st);
      }
      if (first == kLocalInfileHeader) {
        if (kind_ != ResponseKind::Query) {
          return fail();
        }
        role_ = PacketRole::LocalInfile;
        return Step::LocalInfile;  // the server's answer comes as a new first packet
      }
      Reader r(payload);
      uint64_t count = 0;
      if (!r.lenenc(count) || !r.at_end() || count == 0 || count > kMaxColumns) {
        return fail();
      }
      role_ = PacketRole::ColumnCount;
      columns_ = count;
      remaining_ = count;
      ++result_sets_;
      state_ = State::Columns;
      return Step::More;
    }
    case ResponseKind::Prepare: {
      if (!decode_prepare_ok(payload, prepare_ok_)) {
        return fail();
      }
      role_ = PacketRole::PrepareOk;
      warnings_ = prepare_ok_.warnings;
      columns_ = prepare_ok_.num_columns;
      if (prepare_ok_.num_params > 0) {
        state_ = State::Params;
        remaining_ = prepare_ok_.num_params;
        return Step::More;
      }
      if (prepare_ok_.num_columns > 0) {
        state_ = State::Columns;
        remaining_ = prepare_ok_.num_columns;
        return Step::More;
      }
      state_ = State::Done;
      return Step::Done;
    }
    case ResponseKind::Simple: {
      if (first == kOkHeader) {
        if (!decode_ok_status(payload, caps_, st, warnings_)) {
          return fail();
        }
        role_ = PacketRole::Ok;
      } else if (is_result_terminator(payload, caps_)) {
        EofPacket e;
        if (deprecate_eof_) {
          if (!decode_ok_status(payload, caps_, st, warnings_)) {
            return fail();
          }
        } else {
          if (!decode_eof(payload, e)) {
            return fail();
          }
          st = e.status;
          warnings_ = e.warnings;
        }
        role_ = PacketRole::Eof;
      } else {
        return fail();
      }
      status_ = st;
      ended_result_ = true;
      state_ = State::Done;
      return Step::Done;
    }
    case ResponseKind::Statistics:
      role_ = PacketRole::Text;
      ended_result_ = true;
      state_ = State::Done;
      return Step::Done;
    case ResponseKind::Fetch:
    case ResponseKind::FieldList:
      break;
  }
  return fail();
}

Step ResponseReader::feed(std::string_view payload) {
  if (state_ == State::Done || state_ == State::Failed || payload.empty()) {
    return fail();
  }
  last_definition_ = false;
  first_after_metadata_ = false;
  ended_result_ = false;
  const auto first = static_cast<uint8_t>(payload[0]);

  if (first == kErrHeader) {
    ErrPacket e;
    if (!decode_err(payload, e)) {
      return fail();
    }
    if (e.code == kProgressReportCode && (caps_ & cap::kMariaProgress) != 0) {
      role_ = PacketRole::Progress;
      return Step::More;
    }
    // After a PREPARE's last definition only its EOF may come: a client
    // with DEPRECATE_EOF would already consider the response complete, so
    // an ERR there cannot be relayed and is no valid answer.
    if (kind_ == ResponseKind::Prepare &&
        (state_ == State::ColumnsEof ||
         (state_ == State::ParamsEof && prepare_ok_.num_columns == 0))) {
      return fail();
    }
    role_ = PacketRole::Err;
    error_ = std::move(e);
    ended_result_ = true;
    state_ = State::Done;
    return Step::Done;
  }

  switch (state_) {
    case State::Start:
      return start_packet(payload, first);

    case State::Columns:
    case State::Params: {
      const bool params = state_ == State::Params;
      role_ = params ? PacketRole::ParamDef : PacketRole::ColumnDef;
      if (--remaining_ > 0) {
        return Step::More;
      }
      return params ? after_params() : after_columns();
    }

    case State::ColumnsEof:
    case State::ParamsEof: {
      EofPacket e;
      if (!decode_eof(payload, e)) {
        return fail();
      }
      role_ = PacketRole::MetadataEof;
      status_ = e.status;
      warnings_ = e.warnings;
      if (state_ == State::ParamsEof) {
        if (prepare_ok_.num_columns > 0) {
          state_ = State::Columns;
          remaining_ = prepare_ok_.num_columns;
          return Step::More;
        }
        state_ = State::Done;
        return Step::Done;
      }
      if (kind_ == ResponseKind::Prepare) {
        state_ = State::Done;
        return Step::Done;
      }
      if (kind_ == ResponseKind::Execute && (e.status & status::kCursorExists) != 0) {
        return finish_result(e.status);  // rows come with COM_STMT_FETCH
      }
      state_ = State::Rows;
      return Step::More;
    }

    case State::Rows: {
      first_after_metadata_ = awaiting_first_row_;
      awaiting_first_row_ = false;
      if (is_result_terminator(payload, caps_)) {
        uint16_t st = 0;
        if (deprecate_eof_) {
          if (!decode_ok_status(payload, caps_, st, warnings_)) {
            return fail();
          }
        } else {
          EofPacket e;
          if (!decode_eof(payload, e)) {
            return fail();
          }
          st = e.status;
          warnings_ = e.warnings;
        }
        role_ = PacketRole::Terminator;
        return finish_result(st);
      }
      const bool binary = kind_ == ResponseKind::Execute || kind_ == ResponseKind::Fetch;
      if (binary && first != 0x00) {
        return fail();
      }
      role_ = PacketRole::Row;
      ++rows_;
      return Step::More;
    }

    case State::FieldList: {
      if (is_result_terminator(payload, caps_)) {
        uint16_t st = 0;
        if (deprecate_eof_) {
          if (!decode_ok_status(payload, caps_, st, warnings_)) {
            return fail();
          }
        } else {
          EofPacket e;
          if (!decode_eof(payload, e)) {
            return fail();
          }
          st = e.status;
          warnings_ = e.warnings;
        }
        role_ = PacketRole::Terminator;
        status_ = st;
        ended_result_ = true;
        state_ = State::Done;
        return Step::Done;
      }
      role_ = PacketRole::ColumnDef;
      ++columns_;
      return Step::More;
    }

    case State::Done:
    case State::Failed:
      break;
  }
  return fail();
}

// --- DEPRECATE_EOF translation ------------------------------------------------------------

bool translate_for_client(const ResponseReader& reader, std::string_view payload,
                          bool client_deprecate_eof, std::vector<std::string>& out) {
  const bool backend_deprecate_eof = (reader.caps() & cap::kDeprecateEof) != 0;
  if (backend_deprecate_eof == client_deprecate_eof || reader.failed()) {
    return false;
  }
  out.clear();
  const PacketRole role = reader.role();

  if (!backend_deprecate_eof) {
    // EOF-style backend -> DEPRECATE_EOF client.
    switch (role) {
      case PacketRole::MetadataEof: {
        if (reader.kind() == ResponseKind::Execute && reader.ended_result()) {
          std::string ok;  // a cursor: the metadata EOF was the end of the result
          if (!eof_to_ok_terminator(payload, ok)) {
            return false;
          }
          out.push_back(std::move(ok));
        }
        return true;  // otherwise dropped
      }
      case PacketRole::Terminator:
      case PacketRole::Eof: {
        std::string ok;
        if (!eof_to_ok_terminator(payload, ok)) {
          return false;
        }
        out.push_back(std::move(ok));
        return true;
      }
      default:
        return false;
    }
  }

  // DEPRECATE_EOF backend -> EOF-style client.
  std::string eof;
  encode_eof(eof, EofPacket{0, reader.status()});
  if (reader.kind() == ResponseKind::Prepare) {
    if ((role == PacketRole::ParamDef || role == PacketRole::ColumnDef) &&
        reader.last_definition()) {
      out.emplace_back(payload);
      out.push_back(std::move(eof));
      return true;
    }
    return false;
  }
  if (role == PacketRole::Row && reader.first_after_metadata()) {
    out.push_back(std::move(eof));
    out.emplace_back(payload);
    return true;
  }
  if (role == PacketRole::Terminator || role == PacketRole::Eof) {
    std::string converted;
    if (!ok_terminator_to_eof(payload, reader.caps(), converted)) {
      return false;
    }
    const bool cursor =
        reader.kind() == ResponseKind::Execute && (reader.status() & status::kCursorExists) != 0;
    if (reader.first_after_metadata() && !cursor) {
      out.push_back(std::move(eof));  // an empty result set still has its metadata EOF
    }
    out.push_back(std::move(converted));
    return true;
  }
  return false;
}

}  // namespace sqlmux::my
