// Online upgrade (README "Upgrade procedure"): a MySQL client of a
// transaction or statement pool, idle between transactions, moves to the
// new process with its protocol state (daemon/ops/upgrade_wire.h
// MyClientState): its thread id (CONNECTION_ID(), the id KILL names),
// negotiated capabilities and charset, the session state sqlmux restores
// on a server connection (system variables, schema), its prepared
// statements by the ids it holds. Server-side statements are prepared
// again lazily, as for any client that meets a new server connection.
#include <unistd.h>

#include "daemon/core/directory.h"
#include "daemon/core/log.h"
#include "daemon/core/pool.h"
#include "daemon/core/worker.h"
#include "daemon/mysql/client.h"
#include "daemon/mysql/protocol.h"

namespace sqlmux {

std::string MyClient::upgrade_record() const {
  if (state_ != ClientState::Idle || pool_ == nullptr || user_ == nullptr || !joined_ ||
      !counted_ || refusal_ || login_ != Login::Done || changing_user_ || tls() || tls_requested_ ||
      pool_->cfg().mode == config::PoolMode::Session ||
      // (it logs in as the client with what the client's login gave: its
      // password or the SHA1 of a native-hash proof, which an adopted
      // client does not bring; auth_query pools are of this kind)
      pool_->logs_in_as_client() || looked_up_user_ != nullptr || auth_query_ != nullptr ||
      full_auth_ != nullptr || backend_ != nullptr || !in_.empty() || queued() != 0 ||
      !pending_.empty() || infile_ || in_flight_ || preparing_ || pending_def_ != nullptr ||
      pin_ != pool::PinReason::None || long_data_ || !cursors_.empty() || session_statements_ ||
      in_tx_ || tx_open_ || requests_open_ != 0 || peer_kill_pending_ || !digest_text_.empty() ||
      failure_pending() || thread_id_ == 0 || closing()) {
    return {};
  }
  upgrade::ClientState s;
  s.id = id_;
  s.pool = pool_->cfg().name;
  s.user = user_name_;
  s.database = database_;
  upgrade::MyClientState& m = s.mysql.emplace();
  m.thread_id = thread_id_;
  m.thread_counter = worker_->directory().thread_counter();
  m.caps = caps_;
  m.charset = charset_;
  m.scramble = scramble_;
  m.login_db = login_db_;
  m.application = log_tag_.application;
  m.schema = vars_.schema;
  m.results_collation = vars_.results_collation;
  for (const auto& [name, value] : vars_.vars()) m.vars.emplace_back(name, value);
  m.next_statement = stmts_.next_id();
  m.last_statement = stmts_.last_id();
  stmts_.for_each([&](uint32_t id, const pool::MyStatementDef& def) {
    upgrade::MyStatementState st;
    st.id = id;
    st.sql = def.sql;
    st.schema = def.schema;
    st.num_params = def.num_params;
    st.num_columns = def.num_columns;
    for (const my::ParamType& t : def.param_types) {
      st.param_types.push_back(static_cast<uint16_t>(t.type | (t.flags << 8)));
    }
    m.statements.push_back(std::move(st));
  });
  return upgrade::encode_client(s);
}

bool MyClient::adopt(Worker& w, int fd, const upgrade::ClientState& s, const MyProtocol& protocol,
                     std::string& why) {
  const upgrade::MyClientState& m = *s.mysql;
  Directory& dir = w.directory();
  const uint64_t id = dir.next_client_id();
  const User* user = dir.find_user(s.user);
  Pool* pool =
      user != nullptr ? dir.find_pool(s.database, *user, config::Protocol::Mysql) : nullptr;
  pool::MyClientStatements stmts;
  std::vector<std::pair<uint32_t, std::shared_ptr<pool::MyStatementDef>>> defs;
  for (const auto& st : m.statements) {
    auto def = pool::make_statement_def(st.sql, st.schema, st.num_params, st.num_columns);
    for (uint16_t t : st.param_types) {
      def->param_types.push_back({static_cast<uint8_t>(t & 0xff), static_cast<uint8_t>(t >> 8)});
    }
    defs.emplace_back(st.id, std::move(def));
  }
  if (user == nullptr) {
    why = "no such user";
  } else if (const char* no = PooledClient::not_adoptable(pool, s.pool)) {
    why = no;
  } else if (!stmts.restore(std::move(defs), m.next_statement, m.last_statement)) {
    why = "its prepared statements are inconsistent";
  } else if (!dir.adopt_thread(m.thread_id, m.thread_counter, w.id(), id)) {
    why = "its thread id " + std::to_string(m.thread_id) +
          " is in use here (or is not one of this instance's peer_id)";
  }
  if (why.empty() && !dir.try_add_client()) {  // counted either way
    dir.remove_client();
    dir.unregister_thread(m.thread_id);
    why = "max_client_conn reached";
  }
  if (!why.empty()) {
    ::close(fd);
    return false;
  }
  // Counted like an accepted client from here (its thread id too);
  // uncounted when it closes.
  auto* c = new MyClient(w, fd, id, nullptr, PeerAddress::of_socket(fd), protocol);
  c->thread_id_ = m.thread_id;
  c->login_ = Login::Done;
  c->user_ = user;
  c->user_name_ = s.user;
  c->database_ = s.database;
  c->log_tag_.user = s.user;
  c->log_tag_.database = s.database;
  c->log_tag_.application = m.application;
  c->caps_ = m.caps;
  c->charset_ = m.charset;
  c->scramble_ = m.scramble;
  c->login_db_ = m.login_db;
  c->vars_.schema = m.schema;
  c->vars_.results_collation = m.results_collation;
  for (const auto& [name, value] : m.vars) c->vars_.set(name, value);
  c->stmts_ = std::move(stmts);
  w.client_created(c);
  dir.set_thread_user(m.thread_id, s.user);  // KILL checks the owner
  if (!c->join_adopted(*pool, user->cfg, why)) {
    c->finish(Reason::ClientClosed);
    return false;
  }
  c->joined_ = true;
  if (!c->attach()) {
    why = "cannot poll its socket";
    c->finish(Reason::ClientClosed);
    return false;
  }
  CLOG_AT(log::connections_level(), c->log_tag_, "handed over by the previous process (thread %u)",
          m.thread_id);
  return true;
}

}  // namespace sqlmux
