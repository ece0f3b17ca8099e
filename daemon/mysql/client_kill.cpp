// MyClient's KILL: a client's `KILL [QUERY|CONNECTION] <id>` and
// COM_PROCESS_KILL name sqlmux's thread ids (the ids its clients see), so
// sqlmux answers them itself. The statement of the client that owns the
// id is killed on whatever server connection runs it at that moment, by
// `KILL QUERY <server thread id>` on a connection of sqlmux's own to that
// server; a statement would otherwise be relayed to a shared server
// connection, where the id names another client's session (or none).
// An id that another instance of the fleet issued (its peer_id in the id,
// pool/peer_kill.h) is sent to that instance (daemon/core/peer_kill), whose
// answer is the client's.
#include <mysql.h>
#include <uv.h>

#include <cinttypes>
#include <optional>
#include <string>

#include "daemon/core/directory.h"
#include "daemon/core/log.h"
#include "daemon/core/peer_kill.h"
#include "daemon/core/pool.h"
#include "daemon/core/worker.h"
#include "daemon/mysql/backend.h"
#include "daemon/mysql/client.h"
#include "daemon/ops/metrics.h"
#include "pool/peer_kill.h"

namespace sqlmux {

namespace {

// How long the server kill may take to connect and answer.
constexpr unsigned kServerKillTimeoutS = 5;

struct ServerKill {
  uv_work_t req{};
  std::string host;
  unsigned port = 0;
  std::string user;
  std::string password;
  std::string sql;
  std::string error;  // empty: done
};

void count(Worker& w, metrics::KillOutcome o,
           metrics::KillRoute route = metrics::KillRoute::Local) {
  if (metrics::WorkerStats* ws = w.stats(); ws != nullptr) {
    ws->kills[static_cast<int>(route)][static_cast<int>(o)].add();
  }
}

}  // namespace

void MyClient::kill_unsupported(uint8_t next) {
  count(*worker_, metrics::KillOutcome::Unsupported);
  CLOG_INFO(log_tag_, "KILL refused (form not supported) from %s", peer_.text().c_str());
  send_err(next, my::ErrorCode::NotSupportedYet,
           "sqlmux answers KILL [QUERY|CONNECTION] <thread id> only (KILL USER and KILL QUERY "
           "ID would reach every client sharing the server connections)");
}

void MyClient::kill_command(const my::KillStatement& k, uint8_t next, std::string_view via) {
  const uint64_t target = k.own ? thread_id_ : k.id;
  const std::string what = k.query_only ? "KILL QUERY" : "KILL CONNECTION";
  const uint32_t own_peer = worker_->directory().config().server.peer_id;
  if (own_peer != 0 && target <= UINT32_MAX && pool::thread_peer(target) != 0 &&
      pool::thread_peer(target) != own_peer) {
    kill_on_peer(k.query_only, static_cast<uint32_t>(target), next, via);
    return;
  }
  Directory::ThreadEntry e;
  if (target == 0 || target > UINT32_MAX ||
      !worker_->directory().lookup_thread(static_cast<uint32_t>(target), e) || e.user.empty()) {
    count(*worker_, metrics::KillOutcome::NoSuchThread);
    CLOG_INFO(log_tag_, "%.*s %s %" PRIu64 " from %s: no such thread", static_cast<int>(via.size()),
              via.data(), what.c_str(), target, peer_.text().c_str());
    send_err(next, my::ErrorCode::NoSuchThread, "Unknown thread id: " + std::to_string(target));
    return;
  }
  if (e.user != user_name_) {
    count(*worker_, metrics::KillOutcome::NotOwner);
    CLOG_INFO(log_tag_, "%.*s %s %" PRIu64 " from %s: refused, thread of user '%s'",
              static_cast<int>(via.size()), via.data(), what.c_str(), target, peer_.text().c_str(),
              e.user.c_str());
    send_err(next, my::ErrorCode::KillDeniedError,
             "You are not owner of thread " + std::to_string(target));
    return;
  }
  count(*worker_, k.query_only ? metrics::KillOutcome::Query : metrics::KillOutcome::Connection);
  CLOG_INFO(log_tag_, "%.*s %s %" PRIu64 " from %s (client %" PRIu64 ")",
            static_cast<int>(via.size()), via.data(), what.c_str(), target, peer_.text().c_str(),
            e.client_id);
  if (e.client_id == id_) {
    // Its own thread, as MariaDB: the KILL is the statement interrupted;
    // KILL CONNECTION ends the session after saying so.
    if (k.query_only) {
      send_err(next, my::ErrorCode::QueryInterrupted, "Query execution was interrupted");
    } else {
      disconnect(Reason::ClientKill, next, my::ErrorCode::ConnectionKilled,
                 "Connection was killed");
    }
    return;
  }
  const bool query_only = k.query_only;
  const uint64_t cid = e.client_id;
  worker_->workers().at(e.worker).post([cid, query_only](Worker& tw) {
    // Only MyClients register thread ids; client ids are never reused.
    if (PooledClient* c = tw.find_client(cid)) static_cast<MyClient*>(c)->killed(query_only);
  });
  send_ok(next);
}

void MyClient::kill_on_peer(bool query_only, uint32_t target, uint8_t next, std::string_view via) {
  const uint32_t peer = pool::thread_peer(target);
  const std::string what =
      std::string(via) + (query_only ? " QUERY " : " CONNECTION ") + std::to_string(target);
  pool::PeerKill req;
  req.thread_id = target;
  req.query_only = query_only;
  req.user = user_name_;
  const uint64_t cid = id_;
  const bool started = forward_kill(
      *worker_, peer, std::move(req),
      [cid, next, query_only, target, peer, what](Worker& w,
                                                  std::optional<pool::PeerKillResult> r) {
        PooledClient* pc = w.find_client(cid);  // only MyClients forward KILLs
        if (pc == nullptr) return;              // gone meanwhile
        auto* c = static_cast<MyClient*>(pc);
        if (c->closing()) return;
        c->peer_kill_pending_ = false;
        if (!r) {
          count(w, metrics::KillOutcome::PeerFailed, metrics::KillRoute::Forwarded);
          CLOG_INFO(c->log_tag_, "%s from %s: peer id %u did not answer", what.c_str(),
                    c->peer_.text().c_str(), peer);
          c->send_err(next, my::ErrorCode::NoSuchThread,
                      "Unknown thread id: " + std::to_string(target) + " (its sqlmux instance, " +
                          "peer id " + std::to_string(peer) + ", did not answer)");
        } else if (*r == pool::PeerKillResult::Ok) {
          count(w, query_only ? metrics::KillOutcome::Query : metrics::KillOutcome::Connection,
                metrics::KillRoute::Forwarded);
          CLOG_INFO(c->log_tag_, "%s from %s: done by peer id %u", what.c_str(),
                    c->peer_.text().c_str(), peer);
          c->send_ok(next);
        } else if (*r == pool::PeerKillResult::NotOwner) {
          count(w, metrics::KillOutcome::NotOwner, metrics::KillRoute::Forwarded);
          CLOG_INFO(c->log_tag_, "%s from %s: refused by peer id %u, thread of another user",
                    what.c_str(), c->peer_.text().c_str(), peer);
          c->send_err(next, my::ErrorCode::KillDeniedError,
                      "You are not owner of thread " + std::to_string(target));
        } else {
          count(w, metrics::KillOutcome::NoSuchThread, metrics::KillRoute::Forwarded);
          CLOG_INFO(c->log_tag_, "%s from %s: no such thread on peer id %u", what.c_str(),
                    c->peer_.text().c_str(), peer);
          c->send_err(next, my::ErrorCode::NoSuchThread,
                      "Unknown thread id: " + std::to_string(target));
        }
        c->process_input();
      });
  if (started) {
    peer_kill_pending_ = true;  // no other command is read until the answer
    CLOG_DEBUG(log_tag_, "%s from %s forwarded to peer id %u", what.c_str(), peer_.text().c_str(),
               peer);
    return;
  }
  // Forwarding is off (no server.peer_secret) or [peers] does not list it.
  count(*worker_, metrics::KillOutcome::NoSuchThread);
  CLOG_INFO(log_tag_, "%s from %s: thread of peer id %u, not forwarded (%s)", what.c_str(),
            peer_.text().c_str(), peer,
            worker_->directory().config().server.peer_secret.empty()
                ? "server.peer_secret is not set"
                : "[peers] does not list it, or it cannot be reached");
  send_err(next, my::ErrorCode::NoSuchThread, "Unknown thread id: " + std::to_string(target));
}

void MyClient::killed(bool query_only) {
  if (closing()) return;
  if (state_ == ClientState::Waiting && !pending_.empty() && pool_ != nullptr) {
    // Not started on any server: it ends here, as a killed statement.
    pool_->cancel_wait(*worker_, id_);
    pending_.clear();
    set_state(ClientState::Idle);
    if (query_only) {
      send_err(static_cast<uint8_t>(pending_seq_ + 1), my::ErrorCode::QueryInterrupted,
               "Query execution was interrupted");
      process_input();
      return;
    }
  } else if (in_flight_ && backend_ != nullptr) {
    kill_on_server(*backend_);
  }
  if (!query_only) {
    // The server ends the statement; the connection drains its response
    // and is reset before another client gets it (MyBackend::client_gone).
    finish(Reason::ClientKill);
  }
}

void MyClient::kill_on_server(const MyBackend& b) {
  if (b.host() == nullptr || b.pid() <= 0) return;
  const config::Address& addr = b.host()->address;
  auto* work = new ServerKill;
  work->req.data = work;
  work->host = addr.host;
  work->port = addr.port == 0 ? my::kDefaultPort : addr.port;
  work->user = b.pool().backend_user();
  work->password = b.pool().backend_password();
  // A pool without `user` whose [[user]] holds only a hash: the password
  // this client's full authentication gave (with SHA1(password) alone
  // Connector/C cannot log in, and the KILL fails with a log line).
  if (work->password.empty() && !b.pool().cfg().user && credential_.has_password()) {
    work->password = credential_.password();
  }
  work->sql = "KILL QUERY " + std::to_string(b.pid());
  CLOG_DEBUG(log_tag_, "%s on %s", work->sql.c_str(), b.address().c_str());
  uv_queue_work(
      worker_->loop(), &work->req,
      [](uv_work_t* req) {
        auto* wk = static_cast<ServerKill*>(req->data);
        MYSQL* m = mysql_init(nullptr);
        if (m == nullptr) {
          wk->error = "out of memory";
          return;
        }
        mysql_options(m, MYSQL_OPT_CONNECT_TIMEOUT, &kServerKillTimeoutS);
        mysql_options(m, MYSQL_OPT_READ_TIMEOUT, &kServerKillTimeoutS);
        mysql_options(m, MYSQL_OPT_WRITE_TIMEOUT, &kServerKillTimeoutS);
        if (mysql_real_connect(m, wk->host.c_str(), wk->user.c_str(), wk->password.c_str(), nullptr,
                               wk->port, nullptr, 0) == nullptr ||
            mysql_real_query(m, wk->sql.data(), wk->sql.size()) != 0) {
          // 1094: the statement (and its session) ended meanwhile.
          if (mysql_errno(m) != 1094) wk->error = log::one_line(mysql_error(m));
        }
        mysql_close(m);
      },
      [](uv_work_t* req, int) {
        auto* wk = static_cast<ServerKill*>(req->data);
        if (!wk->error.empty()) {
          LOG_WARN("%s on %s:%u failed: %s", wk->sql.c_str(), wk->host.c_str(), wk->port,
                   wk->error.c_str());
        }
        delete wk;
      });
}

}  // namespace sqlmux
