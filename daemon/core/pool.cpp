#include "daemon/core/pool.h"

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cinttypes>
#include <cstring>

#include "daemon/core/directory.h"
#include "daemon/core/log.h"
#include "daemon/core/pooled.h"
#include "daemon/core/worker.h"
#include "daemon/ops/hosts.h"

namespace sqlmux {

namespace {

pool::Scheduler::Settings settings_of(const config::PoolConfig& cfg, bool clients_only) {
  pool::Scheduler::Settings s;
  s.size = cfg.size;
  s.min_idle = clients_only ? 0 : cfg.min_idle;
  s.route = cfg.route;
  s.server_lifetime_ms = static_cast<uint64_t>(cfg.server_lifetime.count());
  s.server_idle_timeout_ms = static_cast<uint64_t>(cfg.server_idle_timeout.count());
  s.reserve_pool_size = cfg.reserve_pool_size;
  s.reserve_pool_timeout_ms = static_cast<uint64_t>(cfg.reserve_pool_timeout.count());
  return s;
}

// What the scheduler knows of `b`. All callers set it Idle before a
// release, so its state time is when it became idle.
pool::Backend facts(PooledBackend* b) {
  return {b, b->generation(), b->host() != nullptr ? b->host()->id : pool::kNoHost, b->created_ms(),
          b->state_since_ms()};
}

PooledBackend* backend(const pool::Backend& b) {
  return static_cast<PooledBackend*>(b.conn);
}

Reason reason(pool::Close why) {
  switch (why) {
    case pool::Close::Obsolete:
      return Reason::BackendObsolete;
    case pool::Close::Lifetime:
      return Reason::ServerLifetime;
    case pool::Close::IdleTimeout:
      return Reason::ServerIdleTimeout;
    case pool::Close::Shutdown:
      return Reason::Shutdown;
    case pool::Close::Evicted:
      return Reason::BackendEvicted;
  }
  return Reason::BackendObsolete;
}

void close_all(const std::vector<pool::Backend>& list, Reason why) {
  for (const pool::Backend& b : list) backend(b)->terminate(why);
}

}  // namespace

Pool::Pool(PoolEnv& env, config::PoolConfig cfg, std::string backend_user,
           std::string backend_password)
    : env_(env),
      driver_(env.protocols.get(cfg.protocol)),
      protocol_state_(driver_.make_pool_state()),
      backend_user_(std::move(backend_user)),
      backend_password_(std::move(backend_password)),
      sched_(env.workers.size()) {
  const int workers = env.workers.size();
  cfg_versions_.push_back(std::make_unique<const config::PoolConfig>(std::move(cfg)));
  cfg_.store(cfg_versions_.back().get(), std::memory_order_release);
  label_ = this->cfg().name + "/" + backend_user_;
  db_key_ = config::qualified_name(this->cfg());
  user_key_ = std::string(config::to_string(this->cfg().protocol)) + ":" + backend_user_;
  sched_.set_gate(this);
  created_ms_ = uv_hrtime() / 1'000'000;
  sync_hosts_locked(this->cfg());
  refresh_caps();
  if (Metrics* m = env_.metrics) {
    std::vector<const metrics::PoolStats*> parts;
    for (int i = 0; i < workers; ++i) {
      stats_.push_back(std::make_unique<metrics::PoolStats>());
      parts.push_back(stats_.back().get());
    }
    m->add_pool(
        {this->cfg().name, backend_user_, std::string(config::to_string(this->cfg().protocol)),
         this->cfg().backends.front().address.text},
        std::move(parts), [this] {
          // (Pools live as long as the process: a reload only retires one.)
          return metrics::PoolGauges{this->cfg().size, oldest_wait_seconds(uv_hrtime() / 1'000'000),
                                     reserve_in_use(), static_cast<uint32_t>(waiting_on_cap())};
        });
  }
}

// --- hosts -------------------------------------------------------------------------

void Pool::sync_hosts_locked(const config::PoolConfig& cfg) {
  current_.clear();
  std::vector<pool::Scheduler::ListedHost> listed;
  for (const config::BackendConfig& bc : cfg.backends) {
    auto it = hosts_.find(bc.address.text);
    if (it == hosts_.end()) {
      auto h = std::make_unique<PoolHost>();
      h->status = &env_.hosts.get(bc.address.text);
      h->id = static_cast<int>(hosts_.size());
      it = hosts_.emplace(bc.address.text, std::move(h)).first;
    }
    PoolHost& h = *it->second;
    if (std::find(current_.begin(), current_.end(), &h) != current_.end()) {
      continue;  // listed twice: the first entry counts
    }
    h.address = bc.address;
    h.configured = pool::parse_role(bc.role);
    h.weight = static_cast<uint32_t>(std::max(1, bc.weight));
    current_.push_back(&h);
    listed.push_back({h.id, h.weight});
  }
  sched_.set_hosts(listed);
  hosts_seen_ = kHostsUnseen;  // the next decision reads every host
  sched_.configure(settings_of(cfg, clients_only_));
}

void Pool::set_clients_only() {
  std::lock_guard<std::mutex> lk(mu_);
  clients_only_ = true;
  sched_.configure(settings_of(cfg(), true));
}

pool::Role Pool::role_of(const PoolHost& h) const {
  return h.status->observed_role().value_or(h.configured);
}

void Pool::observe_locked() {
  const uint64_t changes = env_.hosts.changes();
  if (changes != hosts_seen_) {  // health, role or DISABLE moved since the last look
    hosts_seen_ = changes;
    for (const PoolHost* h : current_) {
      sched_.observe_host(h->id, h->status->usable(), role_of(*h));
    }
  }
  sched_.observe_clients(clients_.load(std::memory_order_relaxed));
}

std::string Pool::no_host_reason_locked() const {
  std::string out;
  for (const PoolHost* h : current_) {
    if (!out.empty()) out += ", ";
    out += h->address.text + " ";
    if (h->status->disabled()) {
      out += "disabled (admin console DISABLE; ENABLE lifts it)";
    } else if (h->status->health() == pool::Health::Down) {
      out += "down";
    } else {
      out += "is a " + std::string(pool::to_string(role_of(*h)));
    }
  }
  return "no usable " +
         std::string(cfg().route == config::Route::Any ? "server"
                                                       : config::to_string(cfg().route)) +
         " server (" + out + ")";
}

std::vector<Pool::HostRow> Pool::host_rows() {
  std::lock_guard<std::mutex> lk(mu_);
  std::vector<HostRow> rows;
  for (const PoolHost* h : current_) {
    const pool::Scheduler::HostLoad load = sched_.host_load(h->id);
    rows.push_back({h->address.text, role_of(*h), h->configured, h->weight, load.connections,
                    load.connections - load.idle});
  }
  return rows;
}

// --- backends to clients -----------------------------------------------------------

void Pool::acquire(Worker& w, PooledClient& c) {
  pool::Acquired a;
  {
    std::lock_guard<std::mutex> lk(mu_);
    observe_locked();
    a = sched_.acquire(w.id(), c.id(), w.now_ms());
  }
  close_all(a.obsolete, Reason::BackendObsolete);
  switch (a.kind) {
    case pool::Acquired::Kind::Linked:
      c.on_backend_linked(backend(a.backend));
      break;
    case pool::Acquired::Kind::Connect:
      start_connect(w, c.id());
      break;
    case pool::Acquired::Kind::Queued:
      if (a.donor >= 0) env_.workers.at(a.donor).post([this](Worker& dw) { donate(dw); });
      if (caps_on()) evict_for_cap(w);  // when a shared cap refused the slot
      break;
  }
}

void Pool::cancel_wait(Worker& w, uint64_t client_id) {
  std::lock_guard<std::mutex> lk(mu_);
  static_cast<void>(sched_.cancel_wait(w.id(), client_id));
}

void Pool::release(Worker& w, PooledBackend* b) {
  const uint64_t now = w.now_ms();
  const pool::Backend me = facts(b);
  // Rather than idle here, it closes for a pool waiting at a shared cap.
  const bool evict = caps_on() && others_wait_on_cap();
  PooledClient* local = nullptr;
  pool::Handout h;
  {
    std::lock_guard<std::mutex> lk(mu_);
    observe_locked();
    h = sched_.release(w.id(), me, now, w.shutting_down(), evict);
    while (h.kind == pool::Handout::Kind::Local) {
      PooledClient* c = w.find_client(h.waiter.client_id);
      if (c != nullptr && c->state() == ClientState::Waiting && c->pool() == this &&
          c->pooled_backend() == nullptr) {
        local = c;
        break;
      }
      h = sched_.hand_out(w.id(), me, now, evict);  // that one stopped waiting
    }
  }
  switch (h.kind) {
    case pool::Handout::Kind::Close:
      b->terminate(reason(h.why));
      break;
    case pool::Handout::Kind::Local:
      assert(local != nullptr);
      local->on_backend_linked(b);
      break;
    case pool::Handout::Kind::Remote:
      b->move_to(env_.workers.at(h.waiter.worker), h.waiter.client_id);
      break;
    case pool::Handout::Kind::Idle:
      b->became_idle();
      break;
  }
}

// --- slots -------------------------------------------------------------------------

void Pool::backend_gone(Worker& w, PooledBackend* b) {
  bool freed = false;
  {
    std::lock_guard<std::mutex> lk(mu_);
    freed = sched_.backend_gone(w.id(), facts(b), b->slot_moved());
  }
  if (freed) slot_freed(w);
}

void Pool::slot_freed(Worker& w) {
  if (!capacity_freed(w)) cap_slot_freed(w);
}

// --- caps shared with other pools ----------------------------------------------------

void Pool::refresh_caps() {
  if (env_.directory == nullptr) return;
  const config::Config& c = env_.directory->config();
  db_cap_.store(config::db_connection_cap(c, cfg()), std::memory_order_relaxed);
  user_cap_.store(config::user_connection_cap(c, backend_user_), std::memory_order_relaxed);
}

bool Pool::try_take() {
  Directory* dir = env_.directory;
  if (dir == nullptr) return true;
  cap_refused_ = dir->take_server_slot({db_key_, db_cap_.load(std::memory_order_relaxed), user_key_,
                                        user_cap_.load(std::memory_order_relaxed)});
  return cap_refused_ == pool::kCapNone;
}

void Pool::give_back() {
  if (env_.directory != nullptr) env_.directory->give_back_server_slot(db_key_, user_key_);
}

bool Pool::caps_on() const {
  return db_cap_.load(std::memory_order_relaxed) != 0 ||
         user_cap_.load(std::memory_order_relaxed) != 0;
}

uint8_t Pool::shared_caps(const Pool& o) const {
  return static_cast<uint8_t>((db_key_ == o.db_key_ ? pool::kCapDb : 0) |
                              (user_key_ == o.user_key_ ? pool::kCapUser : 0));
}

size_t Pool::waiting_on_cap(uint8_t caps) {
  std::lock_guard<std::mutex> lk(mu_);
  return (cap_refused_ & caps) != 0 ? sched_.waiting_on_cap() : 0;
}

bool Pool::others_wait_on_cap() {
  bool found = false;
  env_.directory->for_each_pool([&](Pool& p) {
    if (found || &p == this) return;
    const uint8_t shared = shared_caps(p);
    if (shared != pool::kCapNone && p.waiting_on_cap(shared) > 0) found = true;
  });
  return found;
}

void Pool::cap_slot_freed(Worker& w) {
  if (w.shutting_down() || !caps_on()) return;
  std::vector<std::pair<uint64_t, Pool*>> waiting;  // by when their longest wait began
  env_.directory->for_each_pool([&](Pool& p) {
    if (&p == this) return;
    const uint8_t shared = shared_caps(p);
    if (shared == pool::kCapNone) return;
    std::lock_guard<std::mutex> lk(p.mu_);
    if ((p.cap_refused_ & shared) != 0 && p.sched_.waiting_on_cap() > 0) {
      waiting.emplace_back(p.sched_.oldest_wait_since_ms(), &p);
    }
  });
  std::sort(waiting.begin(), waiting.end());
  for (const auto& [since, p] : waiting) {
    if (p->capacity_freed(w)) return;
  }
}

void Pool::evict_for_cap(Worker& w) {
  uint8_t refused = pool::kCapNone;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (sched_.waiting_on_cap() == 0) return;
    refused = cap_refused_;
  }
  std::vector<Pool*> pools;
  std::vector<int> workers;
  std::vector<pool::EvictionCandidate> candidates;
  env_.directory->for_each_pool([&](Pool& p) {
    if (&p == this || (shared_caps(p) & refused) == 0) return;
    std::lock_guard<std::mutex> lk(p.mu_);
    const auto oldest = p.sched_.oldest_idle();
    if (!oldest) return;
    pools.push_back(&p);
    workers.push_back(oldest->first);
    candidates.push_back({p.sched_.idle(), oldest->second});
  });
  const int pick = pool::pick_eviction(candidates);
  if (pick < 0) return;
  Pool* victim = pools[static_cast<size_t>(pick)];
  const int on = workers[static_cast<size_t>(pick)];
  LOG_DEBUG(
      "pool %s: clients wait at max_%s_connections; closing an idle server connection of "
      "pool %s",
      label_.c_str(), (refused & pool::kCapDb) != 0 ? "db" : "user", victim->label_.c_str());
  if (on == w.id()) {
    victim->evict_idle(w);
  } else {
    env_.workers.at(on).post([victim](Worker& vw) { victim->evict_idle(vw); });
  }
}

void Pool::evict_idle(Worker& w) {
  std::optional<pool::Backend> b;
  {
    std::lock_guard<std::mutex> lk(mu_);
    b = sched_.evict_idle(w.id());
  }
  if (b) backend(*b)->terminate(Reason::BackendEvicted);
}

bool Pool::capacity_freed(Worker& w) {
  if (w.shutting_down()) return false;
  std::optional<pool::Waiter> target;
  bool reserve = false;
  const uint64_t now = w.now_ms();
  uint32_t in_use = 0;
  uint64_t since_log = 0;
  bool log_it = false;
  {
    std::lock_guard<std::mutex> lk(mu_);
    target = sched_.grant_slot(now, &reserve);
    if (target && reserve) {
      in_use = sched_.reserve_in_use();
      ++reserve_opens_;
      if (reserve_last_log_ms_ == 0 || now - reserve_last_log_ms_ >= kReserveLogIntervalMs) {
        log_it = true;
        since_log = reserve_opens_;
        reserve_opens_ = 0;
        reserve_last_log_ms_ = now;
      }
    }
  }
  if (!target) return false;
  const uint64_t cid = target->client_id;
  const uint64_t waited = now - target->since_ms;
  const auto go = [this, cid, log_it, waited, in_use, since_log](Worker& tw) {
    if (log_it) {
      // On the client's worker: its line names it and its address.
      const config::PoolConfig& pc = cfg();
      if (PooledClient* c = tw.find_client(cid)) {
        CLOG_WARN(c->log_tag(),
                  "pool %s: waited %" PRIu64 " ms (reserve_pool_timeout %" PRId64
                  " ms): opening a reserve server connection, %u of reserve_pool_size %u in use "
                  "(%" PRIu64 " reserve connection(s) opened since the last such line)",
                  label_.c_str(), waited, static_cast<int64_t>(pc.reserve_pool_timeout.count()),
                  in_use, pc.reserve_pool_size, since_log);
      }
    }
    connect_for(tw, cid);
  };
  if (target->worker == w.id()) {
    go(w);
  } else {
    env_.workers.at(target->worker).post(go);
  }
  return true;
}

uint32_t Pool::reserve_in_use() {
  std::lock_guard<std::mutex> lk(mu_);
  return sched_.reserve_in_use();
}

void Pool::connect_for(Worker& w, uint64_t client_id) {
  start_connect(w, client_id);
}

void Pool::start_connect(Worker& w, uint64_t client_id) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    sched_.connecting(w.id());
  }
  launch(w, client_id, 0);
}

bool Pool::retry_connect(Worker& w, PooledBackend* failed, uint64_t client_id) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    observe_locked();
    if (sched_.pick_host(failed->tried_hosts()) < 0) return false;
    failed->move_slot();  // the failed backend's slot is this retry's
  }
  LOG_INFO("pool %s: server %s failed; trying the next server for client %" PRIu64, label_.c_str(),
           failed->address().c_str(), client_id);
  launch(w, client_id, failed->tried_hosts());
  return true;
}

double Pool::oldest_wait_seconds(uint64_t now_ms) {
  std::lock_guard<std::mutex> lk(mu_);
  const uint64_t since = sched_.oldest_wait_since_ms();
  return since == 0 || now_ms <= since ? 0.0 : static_cast<double>(now_ms - since) / 1000.0;
}

PoolHost* Pool::pick_host_uncounted() {
  std::lock_guard<std::mutex> lk(mu_);
  observe_locked();
  const int index = sched_.pick_host(0);
  return index < 0 ? nullptr : current_[static_cast<size_t>(index)];
}

namespace {
// Whether opening a server connection failed for want of a descriptor
// (socket(2): EMFILE / ENFILE), from errno or from the error text that
// quotes strerror (libpq formats its own message).
bool out_of_descriptors(int err_no, const std::string& text) {
  if (err_no == EMFILE || err_no == ENFILE) return true;
  return text.find(strerror(EMFILE)) != std::string::npos ||
         text.find(strerror(ENFILE)) != std::string::npos;
}
}  // namespace

void Pool::launch(Worker& w, uint64_t client_id, uint64_t exclude) {
  metrics::PoolStats* ps = stats(w.id());
  std::string err;
  for (;;) {
    PoolHost* host = nullptr;
    int index = -1;
    {
      std::lock_guard<std::mutex> lk(mu_);
      observe_locked();
      index = sched_.open_on_host(exclude);  // backend_gone() undoes it
      if (index >= 0) {
        host = current_[static_cast<size_t>(index)];
      } else if (err.empty()) {
        err = no_host_reason_locked();
      }
    }
    if (host == nullptr) break;
    if (index < 64) exclude |= uint64_t{1} << index;
    if (ps != nullptr) ps->connect_attempts.add();
    err.clear();
    PooledBackend* b = driver_.open_backend(w, *this, *host, client_id, exclude, err);
    const int open_errno = errno;
    err = log::one_line(err.c_str());
    if (b != nullptr || err.empty()) return;  // connecting, or failed and handled
    if (out_of_descriptors(open_errno, err)) {
      // sqlmux's own limit, not the server's fault: no other host is
      // tried, and the client is told why in its protocol.
      {
        std::lock_guard<std::mutex> lk(mu_);
        sched_.host_closed(host->id);
        sched_.slot_failed(w.id());
      }
      if (ps != nullptr) {
        ps->connect_failures.add();
        ps->server_errors[static_cast<int>(Reason::FdExhausted)].add();
      }
      cap_slot_freed(w);
      w.log_fd_exhausted("backend connect for pool " + label_ + ": " + err);
      if (PooledClient* c = client_id != 0 ? w.find_client(client_id) : nullptr) {
        Failure f = w.fd_exhausted_failure();
        f.message = "sqlmux could not open a server connection: no file descriptor left";
        c->fail(f);
      }
      return;
    }
    {
      std::lock_guard<std::mutex> lk(mu_);
      sched_.host_closed(host->id);
    }
    LOG_WARN("backend connect for pool %s to %s failed: %s", label_.c_str(),
             host->address.text.c_str(), err.c_str());
    if (ps != nullptr) {
      ps->connect_failures.add();
      ps->connect_outcome(uv_hrtime(), false);
    }
  }
  if (ps != nullptr) ps->server_errors[static_cast<int>(Reason::BackendConnectFailed)].add();
  // No backend took the slot.
  {
    std::lock_guard<std::mutex> lk(mu_);
    sched_.slot_failed(w.id());
  }
  cap_slot_freed(w);
  LOG_WARN("backend connect for pool %s failed: %s", label_.c_str(), err.c_str());
  if (PooledClient* c = client_id != 0 ? w.find_client(client_id) : nullptr) {
    c->fail({Reason::BackendConnectFailed, "sqlmux could not connect to the server: " + err, {}});
  }
}

void Pool::donate(Worker& w) {
  pool::Taken t;
  {
    std::lock_guard<std::mutex> lk(mu_);
    observe_locked();
    t = sched_.donate(w.id());
  }
  close_all(t.obsolete, Reason::BackendObsolete);
  if (t.backend) release(w, backend(*t.backend));
}

// --- upkeep ------------------------------------------------------------------------

void Pool::housekeep(Worker& w, uint64_t now) {
  pool::Upkeep up;
  {
    std::lock_guard<std::mutex> lk(mu_);
    observe_locked();
    up = sched_.housekeep(w.id(), now, w.backend_count(BackendState::Connecting) != 0);
  }
  for (const auto& [b, why] : up.close) backend(b)->terminate(reason(why));
  for (int i = 0; i < up.open; ++i) start_connect(w, 0);
  // The safety net of acquire()'s rule: idle backends here while clients of
  // another worker have waited too long.
  for (;;) {
    std::optional<pool::Backend> b;
    {
      std::lock_guard<std::mutex> lk(mu_);
      b = sched_.overdue(w.id(), now);
    }
    if (!b) break;
    release(w, backend(*b));
  }
  // A client that has waited reserve_pool_timeout: reserve slots.
  while (capacity_freed(w)) {
  }
  // Clients waiting at a shared cap: an idle backend of another pool under
  // it closes (acquire() asks too; this catches one that went idle since).
  if (w.id() == 0 && caps_on()) evict_for_cap(w);
}

void Pool::close_idle(Worker& w) {
  std::vector<pool::Backend> idle;
  {
    std::lock_guard<std::mutex> lk(mu_);
    idle = sched_.take_all_idle(w.id());
  }
  close_all(idle, Reason::Shutdown);
}

void Pool::set_config(const config::PoolConfig& cfg) {
  std::lock_guard<std::mutex> lk(mu_);
  cfg_versions_.push_back(std::make_unique<const config::PoolConfig>(cfg));
  cfg_.store(cfg_versions_.back().get(), std::memory_order_release);
  sync_hosts_locked(cfg);
  refresh_caps();
}

void Pool::set_paused(bool on) {
  std::lock_guard<std::mutex> lk(mu_);
  sched_.set_paused(on);
}

bool Pool::paused() {
  std::lock_guard<std::mutex> lk(mu_);
  return sched_.paused();
}

void Pool::set_retired(bool on) {
  std::lock_guard<std::mutex> lk(mu_);
  sched_.set_retired(on);
}

bool Pool::retired() {
  std::lock_guard<std::mutex> lk(mu_);
  return sched_.retired();
}

void Pool::bump_generation() {
  std::lock_guard<std::mutex> lk(mu_);
  sched_.bump_generation();
}

uint64_t Pool::generation() {
  std::lock_guard<std::mutex> lk(mu_);
  return sched_.generation();
}

void Pool::kick(Worker& w) {
  std::vector<pool::Backend> obsolete;
  {
    std::lock_guard<std::mutex> lk(mu_);
    observe_locked();
    obsolete = sched_.take_obsolete(w.id());
  }
  close_all(obsolete, Reason::BackendObsolete);
  // This worker's idle backends to the waiters: each gets one chance
  // (release() may keep it idle, e.g. for another worker's fresh waiter).
  size_t chances = 0;
  {
    std::lock_guard<std::mutex> lk(mu_);
    chances = sched_.idle(w.id());
  }
  for (; chances > 0; --chances) {
    std::optional<pool::Backend> b;
    {
      std::lock_guard<std::mutex> lk(mu_);
      b = sched_.take_for_waiters(w.id());
    }
    if (!b) break;
    release(w, backend(*b));
  }
  while (capacity_freed(w)) {
    // free capacity to the waiters
  }
}

Pool::Counts Pool::counts() {
  std::lock_guard<std::mutex> lk(mu_);
  Counts c;
  c.total = sched_.total();
  c.idle = static_cast<uint32_t>(sched_.idle());
  c.waiting = static_cast<uint32_t>(sched_.waiting());
  return c;
}

}  // namespace sqlmux
