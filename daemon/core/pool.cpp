#include "daemon/core/pool.h"

#include <algorithm>
#include <cassert>
#include <cinttypes>

#include "daemon/core/directory.h"
#include "daemon/core/log.h"
#include "daemon/core/pooled.h"
#include "daemon/core/worker.h"
#include "daemon/ops/hosts.h"

namespace sqlmux {

namespace {
// How much longer another worker's client must have waited than this
// worker's before a freed backend moves to it.
constexpr uint64_t kHandoverAfterMs = 5;
}  // namespace

Pool::Pool(PoolEnv& env, config::PoolConfig cfg, std::string backend_user,
           std::string backend_password)
    : env_(env),
      driver_(env.protocols.get(cfg.protocol)),
      protocol_state_(driver_.make_pool_state()),
      backend_user_(std::move(backend_user)),
      backend_password_(std::move(backend_password)),
      waiters_(static_cast<size_t>(env.workers.size())),
      idle_(static_cast<size_t>(env.workers.size())),
      owned_(static_cast<size_t>(env.workers.size()), 0) {
  const int workers = env.workers.size();
  cfg_versions_.push_back(std::make_unique<const config::PoolConfig>(std::move(cfg)));
  cfg_.store(cfg_versions_.back().get(), std::memory_order_release);
  label_ = this->cfg().name + "/" + backend_user_;
  sync_hosts_locked(this->cfg());
  if (Metrics* m = env_.metrics) {
    std::vector<const metrics::PoolStats*> parts;
    for (int i = 0; i < workers; ++i) {
      stats_.push_back(std::make_unique<metrics::PoolStats>());
      parts.push_back(stats_.back().get());
    }
    m->add_pool(
        {this->cfg().name, backend_user_, std::string(config::to_string(this->cfg().protocol)),
         this->cfg().backends.front().address.text},
        std::move(parts));
  }
}

bool Pool::obsolete_locked(const PooledBackend* b, size_t closing) const {
  return b->generation() < generation_ ||
         (retired_ && clients_.load(std::memory_order_relaxed) == 0) ||
         total_ - closing > cfg().size || !host_serves_locked(b->host());
}

// --- hosts -------------------------------------------------------------------------

void Pool::sync_hosts_locked(const config::PoolConfig& cfg) {
  for (auto& [address, h] : hosts_) h->listed = false;
  current_.clear();
  for (const config::BackendConfig& bc : cfg.backends) {
    auto it = hosts_.find(bc.address.text);
    if (it == hosts_.end()) {
      auto h = std::make_unique<PoolHost>();
      h->status = &env_.hosts.get(bc.address.text);
      it = hosts_.emplace(bc.address.text, std::move(h)).first;
    }
    PoolHost& h = *it->second;
    if (h.listed) continue;  // listed twice: the first entry counts
    h.address = bc.address;
    h.configured = pool::parse_role(bc.role);
    h.weight = static_cast<uint32_t>(std::max(1, bc.weight));
    h.listed = true;
    current_.push_back(&h);
  }
  choices_.resize(current_.size());
}

pool::Role Pool::role_of(const PoolHost& h) const {
  return h.status->observed_role().value_or(h.configured);
}

void Pool::fill_choices_locked(bool by_connections) {
  for (size_t i = 0; i < current_.size(); ++i) {
    const PoolHost& h = *current_[i];
    choices_[i] = {role_of(h), h.status->usable(),
                   by_connections ? h.connections : h.connections - h.idle, h.weight};
  }
}

bool Pool::host_serves_locked(const PoolHost* h) const {
  if (h == nullptr) return true;
  if (!h->listed || !h->status->usable()) return false;
  const config::Route route = cfg().route;
  if (route == config::Route::Any) return true;
  const pool::Role role = role_of(*h);
  if (route == config::Route::Primary || role == pool::Role::Replica) {
    return pool::serves(role, route, true);
  }
  // A primary serves a replica route only while no replica is usable.
  for (const PoolHost* o : current_) {
    if (o->status->usable() && role_of(*o) == pool::Role::Replica) return false;
  }
  return true;
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

void Pool::push_idle_locked(int worker, PooledBackend* b) {
  idle_[static_cast<size_t>(worker)].push_back(b);
  if (b->host() != nullptr) ++b->host()->idle;
}

void Pool::erased_idle_locked(PooledBackend* b) {
  if (b->host() != nullptr) --b->host()->idle;
}

PooledBackend* Pool::take_idle_locked(int worker, std::vector<PooledBackend*>& obsolete) {
  auto& idle = idle_[static_cast<size_t>(worker)];
  if (current_.size() <= 1) {
    while (!idle.empty() && obsolete_locked(idle.back(), obsolete.size())) {
      obsolete.push_back(idle.back());
      erased_idle_locked(idle.back());
      idle.pop_back();
    }
    if (idle.empty()) return nullptr;
    PooledBackend* b = idle.back();
    idle.pop_back();
    erased_idle_locked(b);
    return b;
  }
  // Several hosts: the idle backend whose host has the fewest active
  // transactions per weight (the most recently idle of equals).
  for (size_t i = idle.size(); i-- > 0;) {
    if (obsolete_locked(idle[i], obsolete.size())) {
      obsolete.push_back(idle[i]);
      erased_idle_locked(idle[i]);
      idle.erase(idle.begin() + static_cast<std::ptrdiff_t>(i));
    }
  }
  if (idle.empty()) return nullptr;
  size_t best = idle.size() - 1;
  for (size_t i = idle.size(); i-- > 0;) {
    const PoolHost* a = idle[i]->host();
    const PoolHost* b = idle[best]->host();
    if (a == nullptr || b == nullptr || a == b) continue;
    if (static_cast<uint64_t>(a->connections - a->idle) * b->weight <
        static_cast<uint64_t>(b->connections - b->idle) * a->weight) {
      best = i;
    }
  }
  PooledBackend* b = idle[best];
  idle.erase(idle.begin() + static_cast<std::ptrdiff_t>(best));
  erased_idle_locked(b);
  return b;
}

std::vector<Pool::HostRow> Pool::host_rows() {
  std::lock_guard<std::mutex> lk(mu_);
  std::vector<HostRow> rows;
  for (const PoolHost* h : current_) {
    rows.push_back({h->address.text, role_of(*h), h->configured, h->weight, h->connections,
                    h->connections - h->idle});
  }
  return rows;
}

void Pool::acquire(Worker& w, PooledClient& c) {
  PooledBackend* b = nullptr;
  bool connect = false;
  int donor = -1;
  std::vector<PooledBackend*> obsolete;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (!paused_) b = take_idle_locked(w.id(), obsolete);
    if (paused_) {
      waiters_[static_cast<size_t>(w.id())].push_back({w.id(), c.id(), w.now_ms()});
      ++waiting_;
    } else if (b != nullptr) {
      // an idle one of this worker
    } else if (total_ - obsolete.size() < cfg().size) {
      ++total_;
      connect = true;
    } else {
      auto& q = waiters_[static_cast<size_t>(w.id())];
      const uint64_t now = w.now_ms();
      q.push_back({w.id(), c.id(), now});
      ++waiting_;
      // Moving a backend between event loops costs system calls on both;
      // this worker's own busy backends will serve its queue unless it has
      // none or the queue is falling behind.
      if (owned_[static_cast<size_t>(w.id())] == 0 || q.front().since_ms + kHandoverAfterMs < now) {
        for (size_t i = 0; i < idle_.size(); ++i) {
          if (static_cast<int>(i) != w.id() && !idle_[i].empty()) {
            donor = static_cast<int>(i);
            break;
          }
        }
      }
    }
  }
  for (PooledBackend* o : obsolete) o->terminate(Reason::BackendObsolete);
  if (b != nullptr) {
    c.on_backend_linked(b);
  } else if (connect) {
    start_connect(w, c.id());
  } else if (donor >= 0) {
    env_.workers.at(donor).post([this](Worker& dw) { donate(dw); });
  }
}

void Pool::cancel_wait(Worker& w, uint64_t client_id) {
  std::lock_guard<std::mutex> lk(mu_);
  auto& q = waiters_[static_cast<size_t>(w.id())];
  auto it =
      std::find_if(q.begin(), q.end(), [&](const Waiter& x) { return x.client_id == client_id; });
  if (it != q.end()) {
    q.erase(it);
    --waiting_;
  }
}

int Pool::oldest_waiting_worker(int except) const {
  int best = -1;
  for (size_t i = 0; i < waiters_.size(); ++i) {
    if (static_cast<int>(i) == except || waiters_[i].empty()) continue;
    if (best < 0 ||
        waiters_[i].front().since_ms < waiters_[static_cast<size_t>(best)].front().since_ms) {
      best = static_cast<int>(i);
    }
  }
  return best;
}

Pool::Waiter Pool::pop_waiter(int worker) {
  auto& q = waiters_[static_cast<size_t>(worker)];
  assert(!q.empty());
  Waiter wt = q.front();
  q.pop_front();
  --waiting_;
  return wt;
}

void Pool::release(Worker& w, PooledBackend* b) {
  const uint64_t now = w.now_ms();
  const auto lifetime = static_cast<uint64_t>(cfg().server_lifetime.count());
  if (lifetime > 0 && now - b->created_ms() >= lifetime) {
    b->terminate(Reason::ServerLifetime);
    return;
  }
  if (w.shutting_down()) {
    b->terminate(Reason::Shutdown);
    return;
  }
  PooledClient* local = nullptr;
  Waiter remote{-1, 0, 0};
  bool obsolete = false;
  {
    std::lock_guard<std::mutex> lk(mu_);
    obsolete = obsolete_locked(b, 0);
    const auto& mine = waiters_[static_cast<size_t>(w.id())];
    while (waiting_ > 0 && !paused_ && !obsolete) {
      const int other = oldest_waiting_worker(w.id());
      if (other >= 0) {
        const uint64_t since = waiters_[static_cast<size_t>(other)].front().since_ms;
        const bool hand_over = mine.empty() ? (owned_[static_cast<size_t>(other)] == 0 ||
                                               since + kHandoverAfterMs <= now)
                                            : since + kHandoverAfterMs < mine.front().since_ms;
        if (hand_over) {
          remote = pop_waiter(other);
          --owned_[static_cast<size_t>(w.id())];
          ++owned_[static_cast<size_t>(remote.worker)];
          break;
        }
      }
      if (mine.empty()) break;  // idle here: the other worker's own backends serve its queue
      Waiter wt = pop_waiter(w.id());
      PooledClient* c = w.find_client(wt.client_id);
      if (c != nullptr && c->state() == ClientState::Waiting && c->pool() == this &&
          c->pooled_backend() == nullptr) {
        local = c;
        break;
      }
    }
    if (local == nullptr && remote.worker < 0 && !obsolete) push_idle_locked(w.id(), b);
  }
  if (obsolete) {
    b->terminate(Reason::BackendObsolete);
  } else if (local != nullptr) {
    local->on_backend_linked(b);
  } else if (remote.worker >= 0) {
    b->move_to(env_.workers.at(remote.worker), remote.client_id);
  } else {
    b->became_idle();
  }
}

void Pool::backend_gone(Worker& w, PooledBackend* b) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    auto& idle = idle_[static_cast<size_t>(w.id())];
    auto it = std::find(idle.begin(), idle.end(), b);
    if (it != idle.end()) {
      idle.erase(it);
      erased_idle_locked(b);
    }
    if (b->host() != nullptr) --b->host()->connections;
    if (b->slot_moved()) return;  // a retry on another host took the slot over
    assert(total_ > 0);
    --total_;
    --owned_[static_cast<size_t>(w.id())];
  }
  capacity_freed(w);
}

void Pool::capacity_freed(Worker& w) {
  if (w.shutting_down()) return;
  Waiter target{-1, 0, 0};
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (waiting_ > 0 && total_ < cfg().size && !paused_) {
      target = pop_waiter(oldest_waiting_worker(-1));
      ++total_;
    }
  }
  if (target.worker < 0) return;
  if (target.worker == w.id()) {
    start_connect(w, target.client_id);
  } else {
    const uint64_t cid = target.client_id;
    env_.workers.at(target.worker).post([this, cid](Worker& tw) { connect_for(tw, cid); });
  }
}

void Pool::connect_for(Worker& w, uint64_t client_id) {
  start_connect(w, client_id);
}

void Pool::start_connect(Worker& w, uint64_t client_id) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    ++owned_[static_cast<size_t>(w.id())];  // backend_gone() undoes it if the connect fails
  }
  launch(w, client_id, 0);
}

bool Pool::retry_connect(Worker& w, PooledBackend* failed, uint64_t client_id) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    fill_choices_locked(true);
    if (pool::pick_host(choices_, cfg().route, failed->tried_hosts()) < 0) return false;
    failed->move_slot();  // the failed backend's slot is this retry's
  }
  LOG_INFO("pool %s: server %s failed; trying the next server for client %" PRIu64, label_.c_str(),
           failed->address().c_str(), client_id);
  launch(w, client_id, failed->tried_hosts());
  return true;
}

void Pool::launch(Worker& w, uint64_t client_id, uint64_t exclude) {
  metrics::PoolStats* ps = stats(w.id());
  std::string err;
  for (;;) {
    PoolHost* host = nullptr;
    int index = -1;
    {
      std::lock_guard<std::mutex> lk(mu_);
      fill_choices_locked(true);
      index = pool::pick_host(choices_, cfg().route, exclude);
      if (index >= 0) {
        host = current_[static_cast<size_t>(index)];
        ++host->connections;  // backend_gone() undoes it
      } else if (err.empty()) {
        err = no_host_reason_locked();
      }
    }
    if (host == nullptr) break;
    if (index < 64) exclude |= uint64_t{1} << index;
    if (ps != nullptr) ps->connect_attempts.add();
    err.clear();
    PooledBackend* b = driver_.open_backend(w, *this, *host, client_id, exclude, err);
    err = log::one_line(err.c_str());
    if (b != nullptr || err.empty()) return;  // connecting, or failed and handled
    {
      std::lock_guard<std::mutex> lk(mu_);
      --host->connections;
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
    --total_;
    --owned_[static_cast<size_t>(w.id())];
  }
  LOG_WARN("backend connect for pool %s failed: %s", label_.c_str(), err.c_str());
  if (PooledClient* c = client_id != 0 ? w.find_client(client_id) : nullptr) {
    c->fail({Reason::BackendConnectFailed, "sqlmux could not connect to the server: " + err, {}});
  }
}

void Pool::donate(Worker& w) {
  PooledBackend* b = nullptr;
  std::vector<PooledBackend*> obsolete;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (waiting_ == 0) return;
    b = take_idle_locked(w.id(), obsolete);
  }
  for (PooledBackend* o : obsolete) o->terminate(Reason::BackendObsolete);
  if (b != nullptr) release(w, b);
}

void Pool::housekeep(Worker& w, uint64_t now) {
  std::vector<std::pair<PooledBackend*, Reason>> to_close;
  int to_open = 0;
  const config::PoolConfig& pc = cfg();
  {
    std::lock_guard<std::mutex> lk(mu_);
    size_t total_idle = 0;
    for (const auto& v : idle_) total_idle += v.size();
    auto& idle = idle_[static_cast<size_t>(w.id())];
    const auto idle_timeout = static_cast<uint64_t>(pc.server_idle_timeout.count());
    const auto lifetime = static_cast<uint64_t>(pc.server_lifetime.count());
    for (auto it = idle.begin(); it != idle.end();) {
      PooledBackend* b = *it;
      if (obsolete_locked(b, to_close.size())) {
        to_close.emplace_back(b, Reason::BackendObsolete);
      } else if (lifetime > 0 && now - b->created_ms() >= lifetime) {
        to_close.emplace_back(b, Reason::ServerLifetime);
      } else if (idle_timeout > 0 && now - b->state_since_ms() >= idle_timeout &&
                 total_idle > pc.min_idle) {
        to_close.emplace_back(b, Reason::ServerIdleTimeout);
      } else {
        ++it;
        continue;
      }
      --total_idle;
      erased_idle_locked(b);
      it = idle.erase(it);
    }
    // min_idle upkeep happens on worker 0 only, one batch at a time.
    fill_choices_locked(true);
    if (w.id() == 0 && total_idle < pc.min_idle && !retired_ && !paused_ &&
        pool::pick_host(choices_, pc.route) >= 0 &&
        w.backend_count(BackendState::Connecting) == 0 && waiting_ == 0) {
      while (total_idle + static_cast<size_t>(to_open) < pc.min_idle && total_ < pc.size) {
        ++total_;
        ++to_open;
      }
    }
  }
  for (auto& [b, why] : to_close) b->terminate(why);
  for (int i = 0; i < to_open; ++i) start_connect(w, 0);
  // The safety net of acquire()'s rule: idle backends here while clients of
  // another worker have waited too long.
  for (;;) {
    PooledBackend* b = nullptr;
    {
      std::lock_guard<std::mutex> lk(mu_);
      auto& idle = idle_[static_cast<size_t>(w.id())];
      const int other = oldest_waiting_worker(w.id());
      if (idle.empty() || other < 0 || paused_ ||
          waiters_[static_cast<size_t>(other)].front().since_ms + kHandoverAfterMs > now) {
        break;
      }
      b = idle.back();
      idle.pop_back();
      erased_idle_locked(b);
    }
    release(w, b);
  }
}

void Pool::close_idle(Worker& w) {
  std::vector<PooledBackend*> idle;
  {
    std::lock_guard<std::mutex> lk(mu_);
    idle.swap(idle_[static_cast<size_t>(w.id())]);
    for (PooledBackend* b : idle) erased_idle_locked(b);
  }
  for (PooledBackend* b : idle) b->terminate(Reason::Shutdown);
}

void Pool::set_config(const config::PoolConfig& cfg) {
  std::lock_guard<std::mutex> lk(mu_);
  cfg_versions_.push_back(std::make_unique<const config::PoolConfig>(cfg));
  cfg_.store(cfg_versions_.back().get(), std::memory_order_release);
  sync_hosts_locked(cfg);
}

void Pool::set_paused(bool on) {
  std::lock_guard<std::mutex> lk(mu_);
  paused_ = on;
}

bool Pool::paused() {
  std::lock_guard<std::mutex> lk(mu_);
  return paused_;
}

void Pool::set_retired(bool on) {
  std::lock_guard<std::mutex> lk(mu_);
  retired_ = on;
}

bool Pool::retired() {
  std::lock_guard<std::mutex> lk(mu_);
  return retired_;
}

void Pool::bump_generation() {
  std::lock_guard<std::mutex> lk(mu_);
  ++generation_;
}

uint64_t Pool::generation() {
  std::lock_guard<std::mutex> lk(mu_);
  return generation_;
}

void Pool::kick(Worker& w) {
  std::vector<PooledBackend*> obsolete;
  {
    std::lock_guard<std::mutex> lk(mu_);
    auto& idle = idle_[static_cast<size_t>(w.id())];
    for (auto it = idle.begin(); it != idle.end();) {
      if (obsolete_locked(*it, obsolete.size())) {
        obsolete.push_back(*it);
        erased_idle_locked(*it);
        it = idle.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (PooledBackend* b : obsolete) b->terminate(Reason::BackendObsolete);
  // This worker's idle backends to the waiters: each gets one chance
  // (release() may keep it idle, e.g. for another worker's fresh waiter).
  size_t chances = 0;
  {
    std::lock_guard<std::mutex> lk(mu_);
    chances = idle_[static_cast<size_t>(w.id())].size();
  }
  for (; chances > 0; --chances) {
    PooledBackend* b = nullptr;
    {
      std::lock_guard<std::mutex> lk(mu_);
      auto& idle = idle_[static_cast<size_t>(w.id())];
      if (paused_ || waiting_ == 0 || idle.empty()) break;
      b = idle.back();
      idle.pop_back();
      erased_idle_locked(b);
    }
    release(w, b);
  }
  while (!w.shutting_down()) {  // free capacity to the waiters
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (paused_ || waiting_ == 0 || total_ >= cfg().size) break;
    }
    capacity_freed(w);
  }
}

Pool::Counts Pool::counts() {
  std::lock_guard<std::mutex> lk(mu_);
  Counts c;
  c.total = total_;
  for (const auto& v : idle_) c.idle += static_cast<uint32_t>(v.size());
  c.waiting = static_cast<uint32_t>(waiting_);
  return c;
}

}  // namespace sqlmux
