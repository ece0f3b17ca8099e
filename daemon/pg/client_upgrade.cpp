// Online upgrade (README "Upgrade procedure"): a PostgreSQL client idle
// between transactions moves to the new process with its protocol state
// (daemon/ops/upgrade_wire.h ClientState): session parameters, prepared
// statement names, cancel key. Server-side statements are prepared again
// lazily, as for any client that meets a new server connection.
#include <unistd.h>

#include "daemon/core/directory.h"
#include "daemon/core/log.h"
#include "daemon/core/pool.h"
#include "daemon/core/worker.h"
#include "daemon/pg/client.h"
#include "daemon/pg/protocol.h"
#include "pool/pg/cancel_key.h"

namespace sqlmux {

std::string PgClient::upgrade_record() const {
  if (state_ != ClientState::Idle || pool_ == nullptr || local_ || make_local_ || tls() ||
      pool_->cfg().mode == config::PoolMode::Session ||
      // (passthrough: it logs in with the ClientKey of the client's SCRAM proof,
      // which an adopted client does not bring)
      pool_->logs_in_as_client() || backend_ != nullptr || !welcome_sent_ || !learning_.empty() ||
      !in_.empty() || queued() != 0 || pass_remaining_ != 0 || drop_remaining_ != 0 ||
      skip_until_sync_ || in_cycle_ || in_tx_ || queries_open_ != 0 || !listen_.empty() ||
      listen_waits_ != 0 || notify_corked_ || !notify_held_.empty() || unnamed_dealloc_ ||
      dealloc_portal_ || listen_portal_ || !digest_q_.empty() || holds_client_key_ ||
      failure_pending() || cancel_pid_ == 0 || closing()) {
    return {};
  }
  upgrade::ClientState s;
  s.id = id_;
  s.pool = pool_->cfg().name;
  s.user = user_name_;
  s.database = database_;
  s.cancel_pid = cancel_pid_;
  s.cancel_key = cancel_key_;
  s.describes_portals = describes_portals_;
  for (const auto& [key, e] : params_.entries()) s.params.push_back({e.name, e.value, e.reported});
  bool listens = false;
  statements_.for_each([&](const std::string& name, const pool::ClientStatements::Entry& e) {
    if (!e.def->listen.empty()) listens = true;
    s.statements.push_back({name, e.def->query, e.def->param_types});
  });
  if (listens) return {};  // a prepared LISTEN: its fan-out state stays here
  return upgrade::encode_client(s);
}

bool PgClient::adopt(Worker& w, int fd, const upgrade::ClientState& s, const PgProtocol& protocol,
                     std::string& why) {
  Directory& dir = w.directory();
  const uint64_t id = dir.next_client_id();
  const User* user = dir.find_user(s.user);
  Pool* pool =
      user != nullptr ? dir.find_pool(s.database, *user, config::Protocol::Postgres) : nullptr;
  if (user == nullptr) {
    why = "no such user";
  } else if (const char* no = PooledClient::not_adoptable(pool, s.pool)) {
    why = no;
  } else if (s.cancel_pid == 0 ||
             !dir.register_cancel(pool::cancel_lookup_id(s.cancel_pid, s.cancel_key), w.id(), id)) {
    why = "its cancel key is taken";
  }
  if (why.empty() && !dir.try_add_client()) {  // counted either way
    dir.remove_client();
    dir.unregister_cancel(pool::cancel_lookup_id(s.cancel_pid, s.cancel_key));
    why = "max_client_conn reached";
  }
  if (!why.empty()) {
    ::close(fd);
    return false;
  }
  // Counted like an accepted client from here; uncounted when it closes.
  auto* c = new PgClient(w, fd, id, nullptr, PeerAddress::of_socket(fd), protocol);
  c->cancel_pid_ = s.cancel_pid;
  c->cancel_key_ = s.cancel_key;
  c->user_ = user;
  c->secrets_ = static_cast<const PgSecrets*>(user->secrets_for(config::Protocol::Postgres));
  c->user_name_ = s.user;
  c->database_ = s.database;
  c->log_tag_.user = s.user;
  c->log_tag_.database = s.database;
  for (const auto& p : s.params) {
    c->params_.set(p.name, p.value, p.reported);
    if (p.name == "application_name") c->log_tag_.application = p.value;
  }
  c->describes_portals_ = s.describes_portals;
  auto& stale = pg_state(*pool).stale_statements();
  for (const auto& st : s.statements) {
    c->statements_.add(st.name, pool::make_statement(st.query, st.param_types, stale.generation()),
                       stale.current());
  }
  c->welcome_sent_ = true;
  w.client_created(c);
  if (!c->join_adopted(*pool, user->cfg, why)) {
    c->finish(Reason::ClientClosed);
    return false;
  }
  if (!c->attach()) {
    why = "cannot poll its socket";
    c->finish(Reason::ClientClosed);
    return false;
  }
  CLOG_AT(log::connections_level(), c->log_tag_, "handed over by the previous process");
  return true;
}

}  // namespace sqlmux
