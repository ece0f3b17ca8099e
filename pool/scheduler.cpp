#include "pool/scheduler.h"

#include <algorithm>
#include <cassert>

namespace sqlmux::pool {

Scheduler::Scheduler(int workers)
    : waiters_(static_cast<size_t>(workers)),
      idle_(static_cast<size_t>(workers)),
      owned_(static_cast<size_t>(workers), 0) {
  assert(workers > 0);
}

size_t Scheduler::index(int worker) const {
  assert(worker >= 0 && static_cast<size_t>(worker) < owned_.size());
  return static_cast<size_t>(worker);
}

// --- hosts -------------------------------------------------------------------------

void Scheduler::set_hosts(const std::vector<ListedHost>& listed) {
  for (Host& h : hosts_) h.listed = false;
  listed_.clear();
  for (const ListedHost& l : listed) {
    assert(l.id >= 0);
    if (static_cast<size_t>(l.id) >= hosts_.size()) hosts_.resize(static_cast<size_t>(l.id) + 1);
    Host& h = hosts_[static_cast<size_t>(l.id)];
    if (h.listed) continue;  // listed twice: the first entry counts
    h.listed = true;
    h.weight = std::max<uint32_t>(1, l.weight);
    listed_.push_back(l.id);
  }
  choices_.resize(listed_.size());
}

void Scheduler::observe_host(int id, bool usable, Role role) {
  Host* h = host(id);
  assert(h != nullptr);
  h->usable = usable;
  h->role = role;
}

Scheduler::Host* Scheduler::host(int id) {
  if (id == kNoHost) return nullptr;
  assert(id >= 0 && static_cast<size_t>(id) < hosts_.size());
  return &hosts_[static_cast<size_t>(id)];
}

Scheduler::HostLoad Scheduler::host_load(int id) const {
  if (id < 0 || static_cast<size_t>(id) >= hosts_.size()) return {};
  const Host& h = hosts_[static_cast<size_t>(id)];
  return {h.connections, h.idle};
}

bool Scheduler::host_serves(int id) const {
  if (id == kNoHost) return true;
  const Host& h = hosts_[static_cast<size_t>(id)];
  if (!h.listed || !h.usable) return false;
  const config::Route route = settings_.route;
  if (route == config::Route::Any) return true;
  if (route == config::Route::Primary || h.role == Role::Replica) {
    return serves(h.role, route, true);
  }
  // A primary serves a replica route only while no replica is usable.
  for (int o : listed_) {
    const Host& oh = hosts_[static_cast<size_t>(o)];
    if (oh.usable && oh.role == Role::Replica) return false;
  }
  return true;
}

int Scheduler::pick_host(uint64_t exclude) {
  for (size_t i = 0; i < listed_.size(); ++i) {
    const Host& h = hosts_[static_cast<size_t>(listed_[i])];
    choices_[i] = {h.role, h.usable, h.connections, h.weight};
  }
  return pool::pick_host(choices_, settings_.route, exclude);
}

int Scheduler::open_on_host(uint64_t exclude) {
  const int pos = pick_host(exclude);
  if (pos >= 0) ++hosts_[static_cast<size_t>(listed_[static_cast<size_t>(pos)])].connections;
  return pos;
}

void Scheduler::host_closed(int id) {
  if (Host* h = host(id)) {
    assert(h->connections > 0);
    --h->connections;
  }
}

// --- slots, waiters, idle lists ----------------------------------------------------

bool Scheduler::obsolete(const Backend& b, size_t closing) const {
  // Reserve backends serve while anyone waits; then they close.
  const uint64_t most = settings_.size + (waiting_ > 0 ? settings_.reserve_pool_size : 0);
  return b.generation < generation_ || (retired_ && clients_ == 0) || total_ - closing > most ||
         !host_serves(b.host);
}

uint32_t Scheduler::limit(uint64_t now_ms) const {
  const uint32_t size = settings_.size;
  if (settings_.reserve_pool_size == 0 || waiting_ == 0) return size;
  const uint64_t since = oldest_wait_since_ms();
  return since + settings_.reserve_pool_timeout_ms <= now_ms ? size + settings_.reserve_pool_size
                                                             : size;
}

uint64_t Scheduler::oldest_wait_since_ms() const {
  const int w = oldest_waiting_worker(-1);
  return w < 0 ? 0 : waiters_[static_cast<size_t>(w)].front().since_ms;
}

int Scheduler::oldest_waiting_worker(int except) const {
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

Waiter Scheduler::pop_waiter(int worker) {
  auto& q = waiters_[index(worker)];
  assert(!q.empty() && waiting_ > 0);
  Waiter wt = q.front();
  q.pop_front();
  --waiting_;
  return wt;
}

void Scheduler::push_idle(int worker, const Backend& b) {
  idle_[index(worker)].push_back(b);
  if (Host* h = host(b.host)) ++h->idle;
}

std::optional<Backend> Scheduler::pop_idle(int worker) {
  auto& idle = idle_[index(worker)];
  if (idle.empty()) return std::nullopt;
  Backend b = idle.back();
  idle.pop_back();
  erased_idle(b);
  return b;
}

void Scheduler::erased_idle(const Backend& b) {
  if (Host* h = host(b.host)) {
    assert(h->idle > 0);
    --h->idle;
  }
}

bool Scheduler::take_slot(bool for_waiter) {
  if (gate_ != nullptr && !gate_->try_take()) {
    if (for_waiter) cap_blocked_ = true;
    return false;
  }
  ++total_;
  cap_blocked_ = false;
  return true;
}

void Scheduler::free_slot() {
  assert(total_ > 0);
  --total_;
  if (gate_ != nullptr) gate_->give_back();
}

size_t Scheduler::idle() const {
  size_t n = 0;
  for (const auto& v : idle_) n += v.size();
  return n;
}

std::optional<Backend> Scheduler::take_idle(int worker, std::vector<Backend>& obsolete) {
  auto& idle = idle_[index(worker)];
  if (listed_.size() <= 1) {
    while (!idle.empty() && this->obsolete(idle.back(), obsolete.size())) {
      obsolete.push_back(idle.back());
      erased_idle(idle.back());
      idle.pop_back();
    }
    return pop_idle(worker);
  }
  // Several hosts: the idle backend whose host has the fewest active
  // transactions per weight (the most recently idle of equals).
  for (size_t i = idle.size(); i-- > 0;) {
    if (this->obsolete(idle[i], obsolete.size())) {
      obsolete.push_back(idle[i]);
      erased_idle(idle[i]);
      idle.erase(idle.begin() + static_cast<std::ptrdiff_t>(i));
    }
  }
  if (idle.empty()) return std::nullopt;
  size_t best = idle.size() - 1;
  for (size_t i = idle.size(); i-- > 0;) {
    const Host* a = host(idle[i].host);
    const Host* b = host(idle[best].host);
    if (a == nullptr || b == nullptr || a == b) continue;
    if (static_cast<uint64_t>(a->connections - a->idle) * b->weight <
        static_cast<uint64_t>(b->connections - b->idle) * a->weight) {
      best = i;
    }
  }
  Backend b = idle[best];
  idle.erase(idle.begin() + static_cast<std::ptrdiff_t>(best));
  erased_idle(b);
  return b;
}

Acquired Scheduler::acquire(int worker, uint64_t client_id, uint64_t now_ms) {
  Acquired out;
  std::optional<Backend> b;
  if (!paused_) b = take_idle(worker, out.obsolete);
  auto& q = waiters_[index(worker)];
  if (paused_) {
    q.push_back({worker, client_id, now_ms});
    ++waiting_;
  } else if (b) {
    out.kind = Acquired::Kind::Linked;
    out.backend = *b;
  } else if (total_ - out.obsolete.size() < settings_.size && take_slot(true)) {
    out.kind = Acquired::Kind::Connect;
  } else {
    // At size the queue waits on the pool; a refused slot (take_slot) on
    // a shared cap.
    if (total_ - out.obsolete.size() >= settings_.size) cap_blocked_ = false;
    q.push_back({worker, client_id, now_ms});
    ++waiting_;
    // Moving a backend between event loops costs system calls on both;
    // this worker's own busy backends will serve its queue unless it has
    // none or the queue is falling behind.
    if (owned_[index(worker)] == 0 || q.front().since_ms + kHandoverAfterMs < now_ms) {
      for (size_t i = 0; i < idle_.size(); ++i) {
        if (static_cast<int>(i) != worker && !idle_[i].empty()) {
          out.donor = static_cast<int>(i);
          break;
        }
      }
    }
  }
  return out;
}

bool Scheduler::cancel_wait(int worker, uint64_t client_id) {
  auto& q = waiters_[index(worker)];
  auto it =
      std::find_if(q.begin(), q.end(), [&](const Waiter& x) { return x.client_id == client_id; });
  if (it == q.end()) return false;
  q.erase(it);
  --waiting_;
  return true;
}

Handout Scheduler::release(int worker, const Backend& b, uint64_t now_ms, bool shutting_down,
                           bool evict) {
  const uint64_t lifetime = settings_.server_lifetime_ms;
  if (lifetime > 0 && now_ms - b.created_ms >= lifetime) {
    return {Handout::Kind::Close, Close::Lifetime, {}};
  }
  if (shutting_down) return {Handout::Kind::Close, Close::Shutdown, {}};
  if (obsolete(b, 0)) return {Handout::Kind::Close, Close::Obsolete, {}};
  return hand_out(worker, b, now_ms, evict);
}

Handout Scheduler::hand_out(int worker, const Backend& b, uint64_t now_ms, bool evict) {
  const auto& mine = waiters_[index(worker)];
  if (waiting_ > 0 && !paused_) {
    const int other = oldest_waiting_worker(worker);
    if (other >= 0) {
      const uint64_t since = waiters_[index(other)].front().since_ms;
      const bool hand_over = mine.empty()
                                 ? (owned_[index(other)] == 0 || since + kHandoverAfterMs <= now_ms)
                                 : since + kHandoverAfterMs < mine.front().since_ms;
      if (hand_over) {
        Handout out{Handout::Kind::Remote, Close::Obsolete, pop_waiter(other)};
        --owned_[index(worker)];
        ++owned_[index(other)];
        return out;
      }
    }
    // Idle here when this queue is empty: the other worker's own backends
    // serve its queue.
    if (!mine.empty()) return {Handout::Kind::Local, Close::Obsolete, pop_waiter(worker)};
  }
  if (evict) return {Handout::Kind::Close, Close::Evicted, {}};
  push_idle(worker, b);
  return {};
}

bool Scheduler::backend_gone(int worker, const Backend& b, bool slot_moved) {
  auto& idle = idle_[index(worker)];
  auto it =
      std::find_if(idle.begin(), idle.end(), [&](const Backend& x) { return x.conn == b.conn; });
  if (it != idle.end()) {
    erased_idle(*it);
    idle.erase(it);
  }
  host_closed(b.host);
  if (slot_moved) return false;  // a retry on another host took the slot over
  assert(owned_[index(worker)] > 0);
  free_slot();
  --owned_[index(worker)];
  return true;
}

std::optional<Waiter> Scheduler::grant_slot(uint64_t now_ms, bool* reserve) {
  if (waiting_ == 0 || paused_ || total_ >= limit(now_ms)) return std::nullopt;
  const bool beyond_size = total_ >= settings_.size;
  if (!take_slot(true)) return std::nullopt;
  if (reserve != nullptr) *reserve = beyond_size;
  return pop_waiter(oldest_waiting_worker(-1));
}

void Scheduler::connecting(int worker) {
  assert(total_ > 0);
  ++owned_[index(worker)];  // backend_gone() or slot_failed() undoes it
}

void Scheduler::slot_failed(int worker) {
  assert(owned_[index(worker)] > 0);
  free_slot();
  --owned_[index(worker)];
}

Taken Scheduler::donate(int worker) {
  Taken out;
  if (waiting_ == 0) return out;
  out.backend = take_idle(worker, out.obsolete);
  return out;
}

Upkeep Scheduler::housekeep(int worker, uint64_t now_ms, bool connecting_here) {
  Upkeep out;
  size_t total_idle = idle();
  auto& idle = idle_[index(worker)];
  const uint64_t idle_timeout = settings_.server_idle_timeout_ms;
  const uint64_t lifetime = settings_.server_lifetime_ms;
  for (auto it = idle.begin(); it != idle.end();) {
    const Backend b = *it;
    if (obsolete(b, out.close.size())) {
      out.close.emplace_back(b, Close::Obsolete);
    } else if (lifetime > 0 && now_ms - b.created_ms >= lifetime) {
      out.close.emplace_back(b, Close::Lifetime);
    } else if (idle_timeout > 0 && now_ms - b.idle_since_ms >= idle_timeout &&
               total_idle > settings_.min_idle) {
      out.close.emplace_back(b, Close::IdleTimeout);
    } else {
      ++it;
      continue;
    }
    --total_idle;
    erased_idle(b);
    it = idle.erase(it);
  }
  // min_idle upkeep happens on worker 0 only, one batch at a time.
  if (worker == 0 && total_idle < settings_.min_idle && !retired_ && !paused_ &&
      pick_host(0) >= 0 && !connecting_here && waiting_ == 0) {
    while (total_idle + static_cast<size_t>(out.open) < settings_.min_idle &&
           total_ < settings_.size && take_slot(false)) {
      ++out.open;
    }
  }
  return out;
}

std::optional<Backend> Scheduler::overdue(int worker, uint64_t now_ms) {
  const int other = oldest_waiting_worker(worker);
  if (other < 0 || paused_ || waiters_[index(other)].front().since_ms + kHandoverAfterMs > now_ms) {
    return std::nullopt;
  }
  return pop_idle(worker);
}

std::vector<Backend> Scheduler::take_obsolete(int worker) {
  std::vector<Backend> out;
  auto& idle = idle_[index(worker)];
  for (auto it = idle.begin(); it != idle.end();) {
    if (obsolete(*it, out.size())) {
      out.push_back(*it);
      erased_idle(*it);
      it = idle.erase(it);
    } else {
      ++it;
    }
  }
  return out;
}

std::optional<Backend> Scheduler::take_for_waiters(int worker) {
  if (paused_ || waiting_ == 0) return std::nullopt;
  return pop_idle(worker);
}

std::optional<Backend> Scheduler::evict_idle(int worker) {
  auto& idle = idle_[index(worker)];
  if (idle.empty()) return std::nullopt;
  Backend b = idle.front();  // the list is in the order they became idle
  idle.erase(idle.begin());
  erased_idle(b);
  return b;
}

std::optional<std::pair<int, uint64_t>> Scheduler::oldest_idle() const {
  std::optional<std::pair<int, uint64_t>> out;
  for (size_t i = 0; i < idle_.size(); ++i) {
    if (idle_[i].empty()) continue;
    const uint64_t since = idle_[i].front().idle_since_ms;
    if (!out || since < out->second) out = std::make_pair(static_cast<int>(i), since);
  }
  return out;
}

std::vector<Backend> Scheduler::take_all_idle(int worker) {
  std::vector<Backend> out;
  out.swap(idle_[index(worker)]);
  for (const Backend& b : out) erased_idle(b);
  return out;
}

}  // namespace sqlmux::pool
