// The admin console's per-worker parts: each runs on one worker's thread
// and touches only that worker's clients and backends.
#include <ctime>

#include "daemon/admin/session.h"
#include "daemon/core/log.h"
#include "daemon/core/pool.h"
#include "daemon/core/worker.h"

namespace sqlmux::admin {
namespace {

bool in(const std::vector<Pool*>& pools, const Pool* p) {
  return std::find(pools.begin(), pools.end(), p) != pools.end();
}

Failure killed(std::string_view command) {
  return {Reason::AdminKill, "terminating connection due to administrator command",
          "sqlmux admin console: " + std::string(command)};
}

}  // namespace

std::string format_time(int64_t unix_seconds) {
  std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

void run_job(Worker& w, const std::shared_ptr<Job>& job) {
  WorkerPart part;
  job->work(w, part);
  bool last = false;
  {
    std::lock_guard<std::mutex> lk(job->mu);
    job->parts[static_cast<size_t>(w.id())] = std::move(part);
    last = --job->remaining == 0;
  }
  if (last) {
    w.workers().at(job->origin).post([job](Worker&) {
      if (std::shared_ptr<Session> s = job->session.lock()) s->job_done(job);
    });
  }
}

void snapshot(Worker& w, WorkerPart& out) {
  const auto now_wall = static_cast<int64_t>(std::time(nullptr));
  const uint64_t now_ms = w.now_ms();
  w.for_each_client([&](PooledClient* c) {
    ClientRow r;
    r.id = c->id();
    r.user = c->user_name();
    r.database = c->database();
    r.pool = c->pool();
    r.state = std::string(to_string(c->state()));
    r.address = c->log_tag().address;  // taken at accept
    r.connect_time = c->connect_time();
    r.worker = w.id();
    r.pinned = c->pinned_by();
    out.clients.push_back(std::move(r));
  });
  w.for_each_backend([&](PooledBackend* b) {
    ServerRow r;
    r.pid = b->pid();
    r.pool = &b->pool();
    r.state = std::string(to_string(b->state()));
    if (b->pooled_client() != nullptr) r.client_id = b->pooled_client()->id();
    r.address = b->address();
    r.connect_time = now_wall - static_cast<int64_t>((now_ms - b->created_ms()) / 1000);
    r.worker = w.id();
    r.to_close = b->generation() < b->pool().generation() || b->pool().retired();
    out.servers.push_back(std::move(r));
  });
}

void kill_pool_clients(Worker& w, const std::vector<Pool*>& pools, WorkerPart& out) {
  std::vector<PooledClient*> clients;
  w.for_each_client([&](PooledClient* c) {
    if (c->pool() != nullptr && in(pools, c->pool()) && !c->closing()) clients.push_back(c);
  });
  for (PooledClient* c : clients) {
    c->fail(killed("KILL " + config::qualified_name(c->pool()->cfg())));
    ++out.affected;
  }
  std::vector<PooledBackend*> backends;
  w.for_each_backend([&](PooledBackend* b) {
    if (in(pools, &b->pool()) && !b->closing()) backends.push_back(b);
  });
  for (PooledBackend* b : backends) {
    if (!b->closing()) b->terminate(Reason::AdminKill);
  }
  if (!clients.empty() || !backends.empty()) {
    LOG_INFO("admin KILL: closed %zu client(s) and %zu server connection(s)", clients.size(),
             backends.size());
  }
}

void kill_client(Worker& w, uint64_t id, WorkerPart& out) {
  PooledClient* c = w.find_client(id);
  if (c == nullptr || c->closing()) return;
  LOG_INFO("admin KILL_CLIENT: closing client %llu (user=%s)", static_cast<unsigned long long>(id),
           c->user_name().c_str());
  c->fail(killed("KILL_CLIENT " + std::to_string(id)));
  ++out.affected;
}

}  // namespace sqlmux::admin
