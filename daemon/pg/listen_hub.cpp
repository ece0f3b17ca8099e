#include "daemon/pg/listen_hub.h"

#include <algorithm>
#include <cinttypes>
#include <memory>
#include <unordered_map>

#include "daemon/core/log.h"
#include "daemon/core/pool.h"
#include "daemon/core/worker.h"
#include "daemon/ops/metrics.h"
#include "daemon/pg/client.h"
#include "protocol/pg/codec.h"

namespace sqlmux {

namespace {
constexpr int kRetryFirstMs = 100;
constexpr int kRetryMaxMs = 5000;

// Notifications for one worker's clients: each message with who gets it.
using Batch = std::vector<std::pair<std::shared_ptr<const std::string>, std::vector<uint64_t>>>;

PgClient* pg_client(Worker& w, uint64_t id) {
  return dynamic_cast<PgClient*>(w.find_client(id));
}
}  // namespace

ListenHub::~ListenHub() {
  // The home worker's stop() closed the connection (at_stop); a hub whose
  // worker never ran has nothing open.
  if (pg_ != nullptr) PQfinish(pg_);
}

void ListenHub::change(Pool& pool, Worker& from, uint64_t client, std::vector<std::string> added,
                       std::vector<std::string> removed) {
  Worker& home = from.workers().at(0);
  const int w = from.id();
  home.post(
      [this, &pool, w, client, added = std::move(added), removed = std::move(removed)](Worker& h) {
        if (pool_ == nullptr) {
          pool_ = &pool;
          home_ = &h;
        }
        on_change(w, client, added, removed);
      });
}

void ListenHub::on_change(int worker, uint64_t client, const std::vector<std::string>& added,
                          const std::vector<std::string>& removed) {
  if (!at_stop_registered_) {
    at_stop_registered_ = true;
    home_->at_stop([this] {
      stopped_ = true;
      waiters_.clear();
      close_connection();
    });
  }
  if (stopped_) return;
  for (const auto& ch : removed) (void)reg_.remove(ch, client);
  for (const auto& ch : added) (void)reg_.add(ch, {worker, client});
  if (!added.empty()) {
    const bool have = state_ == State::Ready && in_flight_.empty() &&
                      std::all_of(added.begin(), added.end(),
                                  [&](const std::string& c) { return active_.count(c) != 0; });
    if (have) {
      post_ready(worker, client);
    } else {
      waiters_.push_back({worker, client, added});
    }
  }
  update_gauges();
  sync();
}

void ListenHub::post_ready(int worker, uint64_t client) {
  home_->workers().at(worker).post([client](Worker& w) {
    if (PgClient* c = pg_client(w, client)) c->on_listen_ready();
  });
}

void ListenHub::wake_waiters(bool all) {
  auto ready = [&](const Waiter& x) {
    return all || std::all_of(x.channels.begin(), x.channels.end(), [&](const std::string& c) {
             // Listened to, or nobody's any more (the client left meanwhile).
             return active_.count(c) != 0 || reg_.subscribers(c) == nullptr;
           });
  };
  auto keep = std::stable_partition(waiters_.begin(), waiters_.end(),
                                    [&](const Waiter& x) { return !ready(x); });
  for (auto it = keep; it != waiters_.end(); ++it) post_ready(it->worker, it->client);
  waiters_.erase(keep, waiters_.end());
}

void ListenHub::update_gauges() {
  if (metrics::PoolStats* st = pool_->stats(home_->id())) {
    st->listen_channels.set(static_cast<int64_t>(active_.size()));
    st->listen_subscriptions.set(static_cast<int64_t>(reg_.subscriptions()));
  }
}

void ListenHub::sync() {
  if (stopped_) return;
  if (reg_.empty()) {
    if (state_ != State::Closed) {
      LOG_INFO("pool %s: no client listens any more; LISTEN connection closed",
               pool_->label().c_str());
    }
    close_connection();
    lost_ = false;
    wake_waiters(true);
    update_gauges();
    return;
  }
  if (state_ == State::Closed) {
    connect();
    return;
  }
  if (state_ != State::Ready || !in_flight_.empty()) return;
  std::string sql;
  for (const std::string& ch : reg_.channel_names()) {
    if (active_.count(ch) != 0) continue;
    sql += "LISTEN " + pool::quote_channel(ch) + ";";
    in_flight_.emplace_back(true, ch);
  }
  for (const std::string& ch : active_) {
    if (reg_.subscribers(ch) != nullptr) continue;
    sql += "UNLISTEN " + pool::quote_channel(ch) + ";";
    in_flight_.emplace_back(false, ch);
  }
  if (sql.empty()) {
    wake_waiters(false);
    return;
  }
  if (PQsendQuery(pg_, sql.c_str()) == 0) {
    in_flight_.clear();
    lost(PQerrorMessage(pg_));
    return;
  }
  if (PQflush(pg_) == 1) {
    (void)uv_poll_start(poll_, UV_READABLE | UV_WRITABLE, [](uv_poll_t* h, int s, int e) {
      static_cast<ListenHub*>(h->data)->on_io(s, e);
    });
  }
}

void ListenHub::connect() {
  PoolHost* host = pool_->pick_host_uncounted();
  if (host == nullptr) {
    lost("no usable host");
    return;
  }
  const config::PoolConfig& cfg = pool_->cfg();
  const config::Address& addr = host->address;
  const std::string h = addr.kind == config::Address::Kind::Unix ? addr.unix_path : addr.host;
  const std::string port = std::to_string(addr.port == 0 ? pg::kDefaultPort : addr.port);
  const char* keys[] = {
      "host",       "port",        "dbname",           "user", "password", "sslmode",
      "gssencmode", "sslrootcert", "application_name", nullptr};
  const char* vals[] = {
      h.c_str(),
      port.c_str(),
      cfg.database.c_str(),
      pool_->backend_user().c_str(),
      pool_->backend_password().empty() ? nullptr : pool_->backend_password().c_str(),
      cfg.server_tls.c_str(),
      "disable",
      cfg.server_tls_ca.empty() ? nullptr : cfg.server_tls_ca.c_str(),
      "sqlmux listen",
      nullptr};
  pg_ = PQconnectStartParams(keys, vals, 0);
  if (pg_ == nullptr || PQstatus(pg_) == CONNECTION_BAD || PQsocket(pg_) < 0 ||
      PQsetnonblocking(pg_, 1) != 0) {
    lost(pg_ != nullptr ? PQerrorMessage(pg_) : "out of memory");
    return;
  }
  PQsetNoticeProcessor(
      pg_,
      [](void* arg, const char* msg) {
        LOG_DEBUG("pool %s: LISTEN connection: %s", static_cast<Pool*>(arg)->label().c_str(),
                  log::one_line(msg).c_str());
      },
      pool_);
  state_ = State::Connecting;
  // A server that never answers: give up after server_connect_timeout.
  start_timer(cfg.server_connect_timeout.count());
  drive_connect();
}

void ListenHub::start_timer(int64_t ms) {
  if (retry_ == nullptr) {
    retry_ = new uv_timer_t;
    (void)uv_timer_init(home_->loop(), retry_);
    retry_->data = this;
  }
  (void)uv_timer_start(
      retry_,
      [](uv_timer_t* t) {
        auto* hub = static_cast<ListenHub*>(t->data);
        if (hub->state_ == State::Connecting) {
          hub->lost("timed out connecting");
        } else if (hub->state_ == State::Retrying) {
          hub->state_ = State::Closed;
          hub->sync();
        }
      },
      static_cast<uint64_t>(std::max<int64_t>(ms, 1)), 0);
}

void ListenHub::drive_connect() {
  const PostgresPollingStatusType st = PQconnectPoll(pg_);
  const int fd = PQsocket(pg_);
  if (st == PGRES_POLLING_FAILED || fd < 0) {
    lost(PQerrorMessage(pg_));
    return;
  }
  int polled = -1;
  if (poll_ != nullptr) (void)uv_fileno(reinterpret_cast<uv_handle_t*>(poll_), &polled);
  if (poll_ == nullptr || polled != fd) {
    if (poll_ != nullptr) {
      uv_close(reinterpret_cast<uv_handle_t*>(poll_),
               [](uv_handle_t* hh) { delete reinterpret_cast<uv_poll_t*>(hh); });
    }
    poll_ = new uv_poll_t;
    if (uv_poll_init(home_->loop(), poll_, fd) != 0) {
      delete poll_;
      poll_ = nullptr;
      lost("cannot poll the LISTEN connection's socket");
      return;
    }
    poll_->data = this;
  }
  auto cb = [](uv_poll_t* h, int s, int e) { static_cast<ListenHub*>(h->data)->on_io(s, e); };
  switch (st) {
    case PGRES_POLLING_READING:
      (void)uv_poll_start(poll_, UV_READABLE, cb);
      return;
    case PGRES_POLLING_WRITING:
      (void)uv_poll_start(poll_, UV_WRITABLE, cb);
      return;
    default:
      break;
  }
  // PGRES_POLLING_OK
  if (retry_ != nullptr) (void)uv_timer_stop(retry_);
  state_ = State::Ready;
  retry_ms_ = 0;
  LOG_INFO("pool %s: LISTEN connection open (server pid %d)", pool_->label().c_str(),
           PQbackendPID(pg_));
  (void)uv_poll_start(poll_, UV_READABLE, cb);
  if (lost_) {
    lost_ = false;
    tell_missed();
  }
  sync();
}

void ListenHub::on_io(int status, int events) {
  if (state_ == State::Connecting) {
    drive_connect();
    return;
  }
  if (state_ != State::Ready) return;
  if (status < 0) {
    lost(uv_strerror(status));
    return;
  }
  if ((events & UV_WRITABLE) != 0) {
    const int f = PQflush(pg_);
    if (f < 0) {
      lost(PQerrorMessage(pg_));
      return;
    }
    if (f == 0) {
      (void)uv_poll_start(poll_, UV_READABLE, [](uv_poll_t* h, int s, int e) {
        static_cast<ListenHub*>(h->data)->on_io(s, e);
      });
    }
  }
  if ((events & UV_READABLE) == 0) return;
  if (PQconsumeInput(pg_) == 0) {
    lost(PQerrorMessage(pg_));
    return;
  }
  fan_out();
  if (!in_flight_.empty()) read_results();
  if (state_ == State::Ready && PQstatus(pg_) == CONNECTION_BAD) lost(PQerrorMessage(pg_));
}

void ListenHub::read_results() {
  // One result per command; PQgetResult only blocks when libpq is busy.
  for (;;) {
    if (PQisBusy(pg_) != 0) {
      fan_out();
      return;  // the rest when more arrives
    }
    PGresult* r = PQgetResult(pg_);
    if (r == nullptr) break;
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
      batch_failed_ = true;
      LOG_WARN("pool %s: LISTEN connection: %s", pool_->label().c_str(),
               log::one_line(PQresultErrorMessage(r)).c_str());
    }
    PQclear(r);
  }
  const bool failed = batch_failed_;
  batch_failed_ = false;
  fan_out();  // notifications parsed along with the results
  if (failed && PQstatus(pg_) == CONNECTION_BAD) {
    lost(PQerrorMessage(pg_));
    return;
  }
  // The commands ran as one implicit transaction: all of them or (after an
  // error) none; a failed set is not retried in a loop, clients are told.
  for (const auto& [listen, ch] : in_flight_) {
    if (listen) {
      active_.insert(ch);
    } else {
      active_.erase(ch);
    }
  }
  in_flight_.clear();
  update_gauges();
  wake_waiters(failed);
  sync();
}

void ListenHub::fan_out() {
  std::unordered_map<int, std::shared_ptr<Batch>> batches;
  while (PGnotify* n = PQnotifies(pg_)) {
    const auto* subs = reg_.subscribers(n->relname);
    if (subs != nullptr) {
      auto msg = std::make_shared<std::string>();
      pg::put_notification(*msg, n->be_pid, n->relname, n->extra != nullptr ? n->extra : "");
      std::shared_ptr<const std::string> shared = msg;
      for (const auto& s : *subs) {
        auto& b = batches[s.worker];
        if (!b) b = std::make_shared<Batch>();
        if (b->empty() || b->back().first != shared)
          b->emplace_back(shared, std::vector<uint64_t>{});
        b->back().second.push_back(s.client);
      }
    }
    PQfreemem(n);
  }
  for (auto& [worker, batch] : batches) {
    home_->workers().at(worker).post([pool = pool_, batch = std::move(batch)](Worker& w) {
      // Each client's notifications of the batch go out in one write.
      std::unordered_map<uint64_t, PgClient*> clients;
      for (const auto& [msg, ids] : *batch) {
        for (uint64_t id : ids) {
          auto [it, fresh] = clients.try_emplace(id, nullptr);
          if (fresh && (it->second = pg_client(w, id)) != nullptr) it->second->notify_batch(true);
        }
      }
      uint64_t n = 0;
      for (const auto& [msg, ids] : *batch) {
        for (uint64_t id : ids) {
          if (PgClient* c = clients[id]) {
            c->notify(*msg);
            ++n;
          }
        }
      }
      for (auto& [id, c] : clients) {
        if (c != nullptr) c->notify_batch(false);
      }
      if (metrics::PoolStats* st = pool->stats(w.id())) st->notifications_delivered.add(n);
    });
  }
}

void ListenHub::tell_missed() {
  pg::ErrorFields e;
  e.severity = "WARNING";
  e.sqlstate = "01000";
  e.message =
      "sqlmux: the pool's LISTEN connection was lost and reopened; notifications may "
      "have been missed";
  auto msg = std::make_shared<std::string>();
  pg::put_notice(*msg, e);
  std::unordered_map<int, std::vector<uint64_t>> by_worker;
  for (const auto& s : reg_.all_subscribers()) by_worker[s.worker].push_back(s.client);
  for (auto& [worker, clients] : by_worker) {
    std::shared_ptr<const std::string> m = msg;
    home_->workers().at(worker).post([m, clients = std::move(clients)](Worker& w) {
      for (uint64_t id : clients) {
        if (PgClient* c = pg_client(w, id)) c->notify(*m);
      }
    });
  }
}

void ListenHub::lost(const char* why) {
  const bool was_open = state_ == State::Ready;
  const std::string reason = log::one_line(why);
  close_connection();
  if (stopped_) return;
  if (was_open) {
    if (metrics::PoolStats* st = pool_->stats(home_->id())) st->listen_connection_losses.add();
  }
  update_gauges();
  // Clients waiting for their LISTEN are not held while the server is away.
  wake_waiters(true);
  if (reg_.empty()) return;
  lost_ = true;  // listening clients may miss notifications until it is back
  retry_ms_ = retry_ms_ == 0 ? kRetryFirstMs : std::min(retry_ms_ * 2, kRetryMaxMs);
  LOG_WARN("pool %s: LISTEN connection %s: %s; retrying in %d ms", pool_->label().c_str(),
           was_open ? "lost" : "failed", reason.c_str(), retry_ms_);
  state_ = State::Retrying;
  start_timer(retry_ms_);
}

void ListenHub::close_connection() {
  if (poll_ != nullptr) {
    uv_close(reinterpret_cast<uv_handle_t*>(poll_),
             [](uv_handle_t* hh) { delete reinterpret_cast<uv_poll_t*>(hh); });
    poll_ = nullptr;
  }
  if (pg_ != nullptr) {
    PQfinish(pg_);  // after the poll handle let go of its socket
    pg_ = nullptr;
  }
  if (stopped_ && retry_ != nullptr) {
    uv_close(reinterpret_cast<uv_handle_t*>(retry_),
             [](uv_handle_t* hh) { delete reinterpret_cast<uv_timer_t*>(hh); });
    retry_ = nullptr;
  } else if (retry_ != nullptr) {
    (void)uv_timer_stop(retry_);
  }
  active_.clear();
  in_flight_.clear();
  state_ = State::Closed;
}

}  // namespace sqlmux
