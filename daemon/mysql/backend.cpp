#include "daemon/mysql/backend.h"

#include <mysql.h>

#include <cassert>
#include <cerrno>
#include <cstring>
#include <utility>

#include "daemon/core/log.h"
#include "daemon/core/pool.h"
#include "daemon/core/worker.h"
#include "daemon/mysql/client.h"
#include "protocol/mysql/command.h"
#include "protocol/mysql/response.h"

namespace sqlmux {

namespace {
constexpr size_t kReadChunk = 64 * 1024;
constexpr size_t kHighWater = 512 * 1024;      // bytes queued to a client before pausing
constexpr size_t kMaxKeptCapacity = 1u << 20;  // scratch kept between responses
}  // namespace

const char* MyBackend::step_name(Step s) {
  switch (s) {
    case Step::Setup:
      return "session setup";
    case Step::Track:
      return "session tracking";
    case Step::Reset:
      return "COM_RESET_CONNECTION";
    case Step::InitDb:
      return "COM_INIT_DB";
    case Step::Restore:
      return "restoring session variables";
    case Step::Prepare:
      return "COM_STMT_PREPARE";
    case Step::ChangeUser:
      return "COM_CHANGE_USER";
  }
  return "internal command";
}

std::string MyBackend::command_payload(my::Command c, std::string_view arg) {
  std::string out;
  my::encode_command(out, c, arg);
  return out;
}

MyBackend::MyBackend(Worker& w, Pool& pool, int fd, uint64_t for_client)
    : PooledBackend(w, pool, fd, true, for_client),
      statements_(pool.cfg().max_prepared_statements) {}

void MyBackend::prepare_statement(const pool::MyStatementDef& def) {
  steps_.push_back({Step::Prepare, command_payload(my::Command::StmtPrepare, def.sql), def.key});
  if (!internal_running_) run_next();
}

void MyBackend::close_statements(const std::vector<uint32_t>& ids) {
  for (uint32_t id : ids) {
    std::string p;
    my::encode_stmt_close(p, id);
    send_payload(p, 0);  // COM_STMT_CLOSE has no answer
  }
}

PooledClient* MyBackend::pooled_client() const {
  return client_;
}

void MyBackend::send_payload(std::string_view payload, uint8_t seq) {
  scratch_.clear();
  my::put_packet(scratch_, seq, payload);
  send(scratch_.data(), scratch_.size());
}

// --- sqlmux's own commands ---------------------------------------------------------

void MyBackend::queue(Step s, std::string payload) {
  steps_.push_back({s, std::move(payload)});
  if (!internal_running_) run_next();
}

void MyBackend::run_next() {
  if (steps_.empty()) {
    internal_running_ = false;
    return;
  }
  internal_running_ = true;
  const Internal& st = steps_.front();
  const auto cmd = static_cast<uint8_t>(st.payload.empty() ? 0 : st.payload[0]);
  my::ResponseKind kind = my::ResponseKind::Simple;
  if (!my::response_kind_for(cmd, kind)) kind = my::ResponseKind::Simple;
  reader_.emplace(kind, caps_, status_);
  send_payload(st.payload, 0);
}

void MyBackend::process_internal() {
  while (internal_running_ && !closing()) {
    my::Packet p;
    size_t used = 0;
    switch (my::decode_packet(in_.data(), in_.size(), my::kMaxPacketLimit, p, used)) {
      case my::Decode::NeedMore:
        return;
      case my::Decode::Malformed:
        fail(Reason::BackendProtocolError, "malformed packet from the server");
        return;
      case my::Decode::Complete:
        break;
    }
    const std::string payload(p.payload());
    in_.consume(used);
    if (steps_.front().step == Step::ChangeUser && !payload.empty()) {
      const auto first = static_cast<uint8_t>(payload[0]);
      if (first == my::kEofHeader && payload.size() > 5) {
        // AuthSwitchRequest: answer with the new scramble, wait for the OK.
        my::AuthSwitchRequest sw;
        std::string why;
        if (!my::decode_auth_switch(payload, sw) ||
            (sw.plugin != my::kNativePassword && sw.plugin != my::kCachingSha2Password)) {
          fail(Reason::BackendProtocolError, "unexpected AuthSwitchRequest to COM_CHANGE_USER");
          return;
        }
        if (!can_answer(sw.plugin, why)) {
          fail(Reason::BackendProtocolError, "COM_CHANGE_USER: " + why);
          return;
        }
        greeting_.scramble = sw.data;
        auth_plugin_ = sw.plugin;
        send_payload(auth_data(sw.plugin, sw.data), static_cast<uint8_t>(p.last_seq() + 1));
        continue;
      }
      if (first == my::kAuthMoreDataHeader) continue;  // caching_sha2 fast-auth success
    }
    const my::Step s = reader_->feed(payload);
    if (s == my::Step::Malformed || s == my::Step::LocalInfile) {
      fail(Reason::BackendProtocolError, "unexpected response to sqlmux's own command");
      return;
    }
    if (reader_->role() == my::PacketRole::Ok) note_ok(payload, false);
    if (s == my::Step::Done) {
      status_ = reader_->status();
      if (reader_->error()) {
        my::ErrPacket e = *reader_->error();
        internal_done(false, &e);
      } else {
        internal_done(true, nullptr);
      }
    }
  }
}

void MyBackend::internal_done(bool ok, const my::ErrPacket* err) {
  Internal done = std::move(steps_.front());
  steps_.pop_front();
  const my::PrepareOk prepared = reader_ ? reader_->prepare_ok() : my::PrepareOk{};
  reader_.reset();
  if (!ok) {
    LOG_WARN("mysql backend %d (pool %s): %s failed: %u %s", pid_, pool_.label().c_str(),
             step_name(done.step), err != nullptr ? err->code : 0,
             err != nullptr ? err->message.c_str() : "");
    steps_.clear();
    internal_running_ = false;
    if ((done.step == Step::InitDb || done.step == Step::Restore || done.step == Step::Prepare ||
         done.step == Step::ChangeUser) &&
        client_ != nullptr && state_ == BackendState::Active) {
      // The client's state cannot be had here: its command gets the error.
      std::string payload;
      if (err != nullptr) {
        my::encode_err(payload, *err);
      } else {
        my::encode_err(payload, my::ErrorCode::UnknownError, "cannot restore the session");
      }
      dirty_ = true;
      MyClient* c = client_;
      c->on_restore_failed(payload);
      return;
    }
    if (state_ == BackendState::Connecting) {
      connect_failed("session setup failed: " + (err != nullptr ? err->message : std::string()));
    } else {
      fail(Reason::ServerResetFailed, err != nullptr ? err->message : "internal command failed");
    }
    return;
  }
  switch (done.step) {
    case Step::Setup:
      // Fresh variables (after a login, or after COM_RESET_CONNECTION,
      // which keeps the schema and the handshake's charset).
      retrack_ = false;
      vars_.clear_vars();
      if (auto cs = pool::charset_by_id(kLoginCharset)) vars_.set_charset(*cs);
      if (state_ == BackendState::Connecting) {
        if (!pool_.cfg().database.empty()) vars_.schema = pool_.cfg().database;
        login_ = Login::Done;
        internal_running_ = false;
        want_read(true);
        connect_succeeded();
        return;
      }
      break;
    case Step::Reset:
      dirty_ = false;
      statements_.clear();  // the server closed them all
      break;
    case Step::Prepare:
      close_statements(statements_.add(done.key, prepared.statement_id, prepared.num_params));
      break;
    case Step::Track:
      retrack_ = false;
      break;
    case Step::ChangeUser:
      break;  // link() already counted on the fresh session
    case Step::InitDb:
      if (client_ != nullptr) vars_.schema = client_->vars().schema;
      break;
    case Step::Restore:
      if (client_ != nullptr) {
        auto schema = vars_.schema;  // set by COM_INIT_DB, or not settable
        vars_ = client_->vars();
        vars_.schema = schema;
        vars_.erase_tracking_vars();  // the client's own: never set here
      }
      break;
  }
  if (!steps_.empty()) {
    run_next();
    return;
  }
  internal_running_ = false;
  const AfterSteps then = after_steps_;
  after_steps_ = AfterSteps::Ready;
  if (state_ == BackendState::Resetting) {
    release_to_pool();
  } else if (client_ != nullptr && state_ == BackendState::Active) {
    if (then == AfterSteps::ResponseDone) {
      client_->on_response_done(status_, std::exchange(linger_after_, false));
    } else {
      client_->on_backend_ready();
    }
  }
}

// --- linking and relaying ---------------------------------------------------------

void MyBackend::link(MyClient* c) {
  assert(client_ == nullptr);
  client_ = c;
  set_state(BackendState::Active);
  if (!pool::can_restore_schema(vars_.schema, c->vars().schema)) {
    // The client selected no database and this session has one: a new
    // login on it (as COM_RESET_CONNECTION, and without a schema), then
    // tracking again. What follows is computed against that fresh session.
    queue(Step::ChangeUser, change_user_payload());
    queue(Step::Setup, command_payload(my::Command::Query, kSetupSql));
    vars_.clear_vars();
    if (auto cs = pool::charset_by_id(kLoginCharset)) vars_.set_charset(*cs);
    vars_.schema.reset();
    statements_.clear();
  }
  if (auto db = pool::schema_to_restore(vars_.schema, c->vars().schema)) {
    queue(Step::InitDb, command_payload(my::Command::InitDb, *db));
  }
  // Equal variables (the common case: clients of a pool with the same
  // charset and settings) need no statement; comparing them is a fraction
  // of restore_statement()'s lookups.
  std::string set = vars_ == c->vars()
                        ? std::string()
                        : pool::restore_statement(vars_, c->vars(), nullptr,
                                                  (status_ & my::status::kNoBackslashEscapes) != 0);
  LOG_DEBUG("mysql backend %d linked to client %llu%s%s", pid_,
            static_cast<unsigned long long>(c->id()), set.empty() ? "" : ": ", set.c_str());
  if (!set.empty()) queue(Step::Restore, command_payload(my::Command::Query, set));
  if (!internal_running_) c->on_backend_ready();
}

void MyBackend::send_command(const uint8_t* wire, size_t n, uint8_t command, uint8_t seq,
                             bool expects_response) {
  assert(client_ != nullptr && !internal_running_);
  command_ = command;
  linger_ = false;
  report_ = {};
  if (command == static_cast<uint8_t>(my::Command::Query) && n > my::kHeaderLen + 1) {
    // The first chunk holds the statement's start, which is all it takes.
    const std::string_view q(reinterpret_cast<const char*>(wire) + my::kHeaderLen + 1,
                             std::min<size_t>(n - my::kHeaderLen - 1, 4096));
    report_.set_statement = pool::is_set_statement(q);
    report_.names_collation = pool::set_names_collation(q);
  }
  // The command's chunks keep their ids; the reply continues from the last.
  my::PacketExtent ext;
  if (my::peek_packet(wire, n, my::kMaxPacketLimit, ext) != my::Decode::Complete) {
    fail(Reason::Internal, "command framing");
    return;
  }
  backend_seq_ = static_cast<uint8_t>(ext.last_seq + 1);
  client_seq_ = backend_seq_;
  (void)seq;
  send(wire, n);
  if (!expects_response) {
    reader_.reset();
    return;
  }
  my::ResponseKind kind = my::ResponseKind::Simple;
  if (!my::response_kind_for(command, kind)) kind = my::ResponseKind::Simple;
  reader_.emplace(kind, caps_, status_);
  if (!in_.empty()) relay();
}

void MyBackend::send_infile(std::string_view payload, bool last) {
  if (!infile_) return;
  scratch_.clear();
  uint8_t seq = backend_seq_;
  my::put_packet(scratch_, seq, payload);
  backend_seq_ = seq;
  client_seq_ = seq;
  send(scratch_.data(), scratch_.size());
  if (last) infile_ = false;
}

void MyBackend::note_ok(std::string_view payload, bool to_client) {
  my::OkPacket ok;
  if (!my::decode_ok(payload, caps_, ok)) return;
  status_ = ok.status;
  if (to_client) ok_rows_ += ok.affected_rows;
  // LAST_INSERT_ID(), ROW_COUNT() and SHOW WARNINGS answer from this
  // connection: the client keeps it for its next command.
  if (ok.last_insert_id != 0 || ok.affected_rows != 0 || ok.warnings != 0) linger_ = true;
  if (!ok.has_session_state) return;
  if (!to_client) return;  // sqlmux's own commands: see internal_done
  pool::apply_report(vars_, ok, report_);
  // The client's session_track_* are its own (see filter_for_client);
  // sqlmux's trackers are set again after the response.
  if (vars_.erase_tracking_vars()) retrack_ = true;
  if (client_ != nullptr) client_->on_session_change(ok, report_);
}

void MyBackend::relay() {
  const bool client_deprecate_eof =
      client_ != nullptr && (client_->caps() & my::cap::kDeprecateEof) != 0;
  const bool client_tracks = client_ != nullptr && (client_->caps() & my::cap::kSessionTrack) != 0;
  const bool client_found_rows = client_ != nullptr &&
                                 (client_->caps() & my::cap::kFoundRows) != 0 &&
                                 (caps_ & my::cap::kFoundRows) == 0;
  // MariaDB's extended metadata in column definitions: dropped for a
  // client that did not negotiate it, an empty one added for a client that
  // did when the server did not offer it. Equal capabilities cost nothing.
  const uint64_t client_caps = client_ != nullptr ? client_->caps() : caps_;
  const bool reshape_definitions = ((client_caps ^ caps_) & my::cap::kMariaExtendedMetadata) != 0;
  std::string& out = relay_out_;  // members: their capacity stays between calls
  std::vector<std::string>& translated = translated_;
  out.clear();
  bool done = false;
  bool infile = false;
  while (reader_ && !closing()) {
    my::PacketExtent ext;
    const my::Decode d = my::peek_packet(in_.data(), in_.size(), my::kMaxPacketLimit, ext);
    if (d == my::Decode::Malformed) {
      fail(Reason::BackendProtocolError, "malformed packet from the server");
      return;
    }
    if (d == my::Decode::NeedMore) break;
    std::string joined;
    const std::string_view payload = my::packet_payload(in_.data(), ext, joined);
    const my::Step s = reader_->feed(payload);
    if (s == my::Step::Malformed) {
      fail(Reason::BackendProtocolError, "malformed response from the server");
      return;
    }
    backend_seq_ = static_cast<uint8_t>(ext.last_seq + 1);
    const my::PacketRole role = reader_->role();
    bool sent = false;
    if (role == my::PacketRole::PrepareOk && client_ != nullptr && !draining_) {
      if (const pool::MyStatementDef* def = client_->preparing_def()) {
        // Transaction mode: recorded here, renumbered for the client.
        my::PrepareOk pok;
        if (my::decode_prepare_ok(payload, pok)) {
          to_close_ = statements_.add(def->key, pok.statement_id, pok.num_params);
          pok.statement_id = client_->on_prepared(pok);
          std::string re;
          my::encode_prepare_ok(re, pok);
          my::put_packet(out, client_seq_, re);
          sent = true;
        }
      }
    }
    if (role == my::PacketRole::Ok || role == my::PacketRole::Terminator) {
      if (role == my::PacketRole::Ok) note_ok(payload, !draining_);
      // A client without CLIENT_SESSION_TRACK gets the OK without trackers,
      // one with it what its own trackers report; one with
      // CLIENT_FOUND_ROWS gets an UPDATE's matched rows as its affected rows
      // (server connections count changed rows).
      const bool tracked = (reader_->status() & my::status::kSessionStateChanged) != 0;
      if (role == my::PacketRole::Ok && !draining_ && (tracked || client_found_rows)) {
        my::OkPacket ok;
        if (my::decode_ok(payload, caps_, ok)) {
          bool changed = false;
          if (tracked && !client_tracks) {
            ok.has_session_state = false;
            ok.session_state = {};
            ok.status = static_cast<uint16_t>(ok.status & ~my::status::kSessionStateChanged);
            changed = true;
          } else if (tracked) {
            changed = pool::filter_for_client(ok, pool::client_tracking(client_->vars()));
          }
          if (client_found_rows) {
            if (auto matched = my::rows_matched(ok.info); matched && *matched != ok.affected_rows) {
              ok.affected_rows = *matched;
              changed = true;
            }
          }
          if (changed) {
            std::string re;
            my::encode_ok(re, ok, client_->caps());
            my::put_packet(out, client_seq_, re);
            sent = true;
          }
        }
      }
    }
    std::string_view forward = payload;
    if (reshape_definitions && !sent && !draining_ &&
        (role == my::PacketRole::ColumnDef || role == my::PacketRole::ParamDef)) {
      size_t at = 0;
      size_t len = 0;
      if ((caps_ & (my::cap::kMariaExtendedMetadata | my::cap::kDeprecateEof)) ==
              my::cap::kMariaExtendedMetadata &&
          my::column_def_extended_span(payload, caps_, at, len)) {
        // The usual case, a client without it: framed around the field
        // (an EOF-style server's definitions need no EOF translation).
        my::put_packet(out, client_seq_, payload.substr(0, at), payload.substr(at + len));
        sent = true;
      } else if (my::reshape_column_def(payload, caps_, client_caps, definition_)) {
        forward = definition_;
      }
    }
    std::string eof_copy;
    if (!sent && !draining_ && client_ != nullptr && my::is_eof(payload)) {
      // An EOF's state flag without the state: see keep_eof_state_flag.
      my::EofPacket eof;
      if (my::decode_eof(payload, eof) && (eof.status & my::status::kSessionStateChanged) != 0 &&
          !(client_tracks && pool::keep_eof_state_flag(pool::client_tracking(client_->vars())))) {
        eof.status = static_cast<uint16_t>(eof.status & ~my::status::kSessionStateChanged);
        my::encode_eof(eof_copy, eof);
        forward = eof_copy;
      }
    }
    if (!sent && !draining_) {
      if (my::translate_for_client(*reader_, forward, client_deprecate_eof, translated)) {
        for (const auto& t : translated) my::put_packet(out, client_seq_, t);
      } else {
        my::put_packet(out, client_seq_, forward);
      }
    }
    in_.consume(ext.wire_len);
    if (s == my::Step::LocalInfile) {
      infile = true;
      break;
    }
    if (s == my::Step::Done) {
      done = true;
      break;
    }
    if (out.size() >= kReadChunk && client_ != nullptr) {
      client_->deliver(out);
      out.clear();
    }
  }
  if (!out.empty() && client_ != nullptr && !draining_) client_->deliver(out);
  if (out.capacity() > kMaxKeptCapacity) std::string().swap(out);  // after a huge row
  // A client slower than the server: stop reading until it drains.
  if (client_ != nullptr && client_->queued() > kHighWater) want_read(false);
  if (infile) {
    infile_ = true;
    if (draining_) {
      // Nobody sends the file: an empty packet ends it.
      send_infile({}, true);
    } else if (client_ != nullptr) {
      client_->on_infile_requested();
    }
    return;
  }
  if (done) response_done();
}

void MyBackend::response_done() {
  status_ = reader_->status();
  if (!to_close_.empty()) {
    close_statements(to_close_);
    to_close_.clear();
  }
  const bool linger = linger_ || reader_->warnings() != 0;
  linger_ = false;
  last_result_.rows = reader_->rows() + std::exchange(ok_rows_, 0);
  last_result_.error = reader_->failed() || reader_->error().has_value();
  last_result_.prepared_id = reader_->prepare_ok().statement_id;
  reader_.reset();
  if (draining_) {
    draining_ = false;
    client_gone();
    return;
  }
  if (command_ == static_cast<uint8_t>(my::Command::ResetConnection) && client_ != nullptr) {
    // The server's session is fresh again: tracking is turned on again
    // before the client's turn ends.
    dirty_ = false;
    statements_.clear();
    client_->reset_session_state();
    after_steps_ = AfterSteps::ResponseDone;
    queue(Step::Setup, command_payload(my::Command::Query, kSetupSql));
    return;
  }
  if (retrack_ && client_ != nullptr) {
    // The client's SET session_track_... changed this connection's trackers.
    linger_after_ = linger;
    after_steps_ = AfterSteps::ResponseDone;
    queue(Step::Track, command_payload(my::Command::Query, kSetupSql));
    return;
  }
  if (client_ != nullptr) client_->on_response_done(status_, linger);
}

void MyBackend::unlink() {
  LOG_DEBUG("mysql backend %d unlinked from client %llu", pid_,
            static_cast<unsigned long long>(client_ != nullptr ? client_->id() : 0));
  client_ = nullptr;
  if ((status_ & my::status::kInTrans) != 0) dirty_ = true;
  release_to_pool();
}

void MyBackend::release_to_pool() {
  if (dirty_) {
    set_state(BackendState::Resetting);
    queue(Step::Reset, command_payload(my::Command::ResetConnection, {}));
    queue(Step::Setup, command_payload(my::Command::Query, kSetupSql));
    return;
  }
  set_state(BackendState::Idle);
  pool_.release(*worker_, this);
}

void MyBackend::client_gone() {
  client_ = nullptr;  // it may be freed before the response ends
  dirty_ = true;
  if (reader_ || infile_) {
    draining_ = true;  // read the response to its end first
    if (infile_) send_infile({}, true);
    return;
  }
  if (internal_running_) {
    // Restoring for a client that left: the running command finishes,
    // then internal_done() resets the connection (release_to_pool).
    while (steps_.size() > 1) steps_.pop_back();
    after_steps_ = AfterSteps::Ready;
    set_state(BackendState::Resetting);
    return;
  }
  release_to_pool();
}

void MyBackend::became_idle() {
  if (state_ != BackendState::Idle) set_state(BackendState::Idle);
  want_read(true);
  if (!in_.empty()) process_idle();
}

void MyBackend::process_idle() {
  // An idle server sends nothing; anything (an ERR before it closes) ends it.
  my::Packet p;
  size_t used = 0;
  if (my::decode_packet(in_.data(), in_.size(), kMaxLoginPacket, p, used) == my::Decode::NeedMore) {
    return;
  }
  my::ErrPacket e;
  fail(Reason::BackendDied,
       my::decode_err(p.payload(), e) ? e.message : std::string("unexpected packet"));
}

void MyBackend::on_readable() {
  switch (read_into(in_, kReadChunk)) {
    case ReadResult::Data:
      break;
    case ReadResult::Again:
      return;
    case ReadResult::Eof:
      if (state_ == BackendState::Connecting) {
        connect_failed("server closed the connection during login");
      } else {
        fail(Reason::BackendDied, "server closed the connection unexpectedly");
      }
      return;
    case ReadResult::Error:
      if (state_ == BackendState::Connecting) {
        connect_failed(tls_login_ && last_errno_ == EPROTO ? "TLS: " + tls_error()
                                                           : std::string(strerror(last_errno_)));
      } else {
        fail(Reason::BackendDied, strerror(last_errno_));
      }
      return;
  }
  if (state_ == BackendState::Connecting && !internal_running_) {
    drive_login();
    return;
  }
  if (internal_running_) {
    process_internal();
    if (internal_running_ || closing()) return;
  }
  if (reader_) {
    relay();
  } else if (!in_.empty()) {
    if (state_ == BackendState::Idle || client_ != nullptr) process_idle();
  }
}

void MyBackend::on_writable() {
  if (client_ != nullptr) client_->resume_reading();
}

void MyBackend::resume_reading() {
  if (closing() || reading()) return;
  want_read(true);
  if (!in_.empty() && reader_ && !internal_running_) relay();
}

// --- ending --------------------------------------------------------------------------

void MyBackend::fail(Reason why, const std::string& detail) {
  if (closing()) return;
  LOG_WARN("mysql backend %d (pool %s) failed: %s: %s", pid_, pool_.label().c_str(),
           std::string(to_string(why)).c_str(), detail.c_str());
  if (client_ != nullptr) {
    MyClient* c = client_;
    client_ = nullptr;
    if (reader_ || internal_running_ || infile_) {
      c->on_backend_failed(why, detail, reader_ ? client_seq_ : uint8_t{1});
    } else {
      c->on_backend_lost_idle((status_ & my::status::kInTrans) != 0);
    }
  }
  terminate(why);
}

void MyBackend::on_terminate() {
  if (state_ != BackendState::Connecting && !reader_ && !internal_running_ && out_.empty()) {
    send_payload(command_payload(my::Command::Quit, {}), 0);
  }
  client_ = nullptr;
}

void MyBackend::on_io_error(int err) {
  if (state_ == BackendState::Connecting) {
    connect_failed(strerror(err));
    return;
  }
  fail(Reason::BackendDied, strerror(err));
}

}  // namespace sqlmux
