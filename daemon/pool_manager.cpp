#include "daemon/pool_manager.h"

#include <algorithm>
#include <cinttypes>

#include "daemon/backend.h"
#include "daemon/client.h"
#include "daemon/log.h"
#include "daemon/server.h"
#include "daemon/worker.h"

namespace sqlmux {

Pool::Pool(Server& server, config::PoolConfig cfg, std::string backend_user,
           std::string backend_password, int workers)
    : server_(server),
      cfg_(std::move(cfg)),
      backend_user_(std::move(backend_user)),
      backend_password_(std::move(backend_password)),
      idle_(static_cast<size_t>(workers)) {
  label_ = cfg_.name + "/" + backend_user_;
}

void Pool::acquire(Worker& w, Client& c) {
  Backend* b = nullptr;
  bool connect = false;
  int donor = -1;
  {
    std::lock_guard<std::mutex> lk(mu_);
    auto& idle = idle_[static_cast<size_t>(w.id())];
    if (!idle.empty()) {
      b = idle.back();
      idle.pop_back();
    } else if (total_ < cfg_.size) {
      ++total_;
      connect = true;
    } else {
      waiters_.push_back({w.id(), c.id()});
      for (size_t i = 0; i < idle_.size(); ++i) {
        if (static_cast<int>(i) != w.id() && !idle_[i].empty()) {
          donor = static_cast<int>(i);
          break;
        }
      }
    }
  }
  if (b != nullptr) {
    c.on_backend_linked(b);
  } else if (connect) {
    start_connect(w, c.id());
  } else if (donor >= 0) {
    server_.worker(donor).post({InboxMsg::Kind::Donate, this, nullptr, 0});
  }
}

void Pool::cancel_wait(Worker& w, uint64_t client_id) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = std::find_if(waiters_.begin(), waiters_.end(), [&](const Waiter& x) {
    return x.worker == w.id() && x.client_id == client_id;
  });
  if (it != waiters_.end()) waiters_.erase(it);
}

void Pool::release(Worker& w, Backend* b) {
  const uint64_t now = w.now_ms();
  const auto lifetime = static_cast<uint64_t>(cfg_.server_lifetime.count());
  if (lifetime > 0 && now - b->created_ms() >= lifetime) {
    b->terminate(Reason::ServerLifetime);
    return;
  }
  if (w.shutting_down()) {
    b->terminate(Reason::Shutdown);
    return;
  }
  Client* local = nullptr;
  Waiter remote{-1, 0};
  {
    std::lock_guard<std::mutex> lk(mu_);
    while (!waiters_.empty()) {
      Waiter wt = waiters_.front();
      waiters_.pop_front();
      if (wt.worker != w.id()) {
        remote = wt;
        break;
      }
      Client* c = w.find_client(wt.client_id);
      if (c != nullptr && c->state() == ClientState::Waiting && c->pool() == this &&
          c->backend() == nullptr) {
        local = c;
        break;
      }
    }
    if (local == nullptr && remote.worker < 0) idle_[static_cast<size_t>(w.id())].push_back(b);
  }
  if (local != nullptr) {
    local->on_backend_linked(b);
  } else if (remote.worker >= 0) {
    b->move_to(server_.worker(remote.worker), remote.client_id);
  } else {
    b->became_idle();
  }
}

void Pool::backend_gone(Worker& w, Backend* b) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    auto& idle = idle_[static_cast<size_t>(w.id())];
    auto it = std::find(idle.begin(), idle.end(), b);
    if (it != idle.end()) idle.erase(it);
    assert(total_ > 0);
    --total_;
  }
  capacity_freed(w);
}

void Pool::capacity_freed(Worker& w) {
  if (w.shutting_down()) return;
  Waiter target{-1, 0};
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (!waiters_.empty() && total_ < cfg_.size) {
      target = waiters_.front();
      waiters_.pop_front();
      ++total_;
    }
  }
  if (target.worker < 0) return;
  if (target.worker == w.id()) {
    start_connect(w, target.client_id);
  } else {
    server_.worker(target.worker)
        .post({InboxMsg::Kind::ConnectFor, this, nullptr, target.client_id});
  }
}

void Pool::connect_for(Worker& w, uint64_t client_id) {
  start_connect(w, client_id);
}

void Pool::start_connect(Worker& w, uint64_t client_id) {
  std::string err;
  Backend* b = Backend::connect(w, *this, client_id, err);
  if (b != nullptr) return;
  if (!err.empty()) {
    // libpq could not even start: the slot was not taken by a Backend.
    {
      std::lock_guard<std::mutex> lk(mu_);
      --total_;
    }
    LOG_WARN("backend connect for pool %s failed: %s", label_.c_str(), err.c_str());
    if (Client* c = client_id != 0 ? w.find_client(client_id) : nullptr) {
      pg::ErrorFields e;
      e.severity = "FATAL";
      e.sqlstate = std::string(pg::sqlstate::kUnableToConnect);
      e.message = "sqlmux could not connect to the server: " + err;
      c->fail(Reason::BackendConnectFailed, e);
    }
  }
}

void Pool::donate(Worker& w) {
  Backend* b = nullptr;
  {
    std::lock_guard<std::mutex> lk(mu_);
    auto& idle = idle_[static_cast<size_t>(w.id())];
    if (idle.empty() || waiters_.empty()) return;
    b = idle.back();
    idle.pop_back();
  }
  release(w, b);
}

void Pool::housekeep(Worker& w, uint64_t now) {
  std::vector<std::pair<Backend*, Reason>> to_close;
  int to_open = 0;
  {
    std::lock_guard<std::mutex> lk(mu_);
    size_t total_idle = 0;
    for (const auto& v : idle_) total_idle += v.size();
    auto& idle = idle_[static_cast<size_t>(w.id())];
    const auto idle_timeout = static_cast<uint64_t>(cfg_.server_idle_timeout.count());
    const auto lifetime = static_cast<uint64_t>(cfg_.server_lifetime.count());
    for (auto it = idle.begin(); it != idle.end();) {
      Backend* b = *it;
      if (lifetime > 0 && now - b->created_ms() >= lifetime) {
        to_close.emplace_back(b, Reason::ServerLifetime);
      } else if (idle_timeout > 0 && now - b->state_since_ms() >= idle_timeout &&
                 total_idle > cfg_.min_idle) {
        to_close.emplace_back(b, Reason::ServerIdleTimeout);
      } else {
        ++it;
        continue;
      }
      --total_idle;
      it = idle.erase(it);
    }
    // min_idle upkeep happens on worker 0 only, one batch at a time.
    if (w.id() == 0 && total_idle < cfg_.min_idle &&
        w.backend_count(BackendState::Connecting) == 0 && waiters_.empty()) {
      while (total_idle + static_cast<size_t>(to_open) < cfg_.min_idle && total_ < cfg_.size) {
        ++total_;
        ++to_open;
      }
    }
  }
  for (auto& [b, why] : to_close) b->terminate(why);
  for (int i = 0; i < to_open; ++i) start_connect(w, 0);
}

void Pool::close_idle(Worker& w) {
  std::vector<Backend*> idle;
  {
    std::lock_guard<std::mutex> lk(mu_);
    idle.swap(idle_[static_cast<size_t>(w.id())]);
  }
  for (Backend* b : idle) b->terminate(Reason::Shutdown);
}

bool Pool::welcome(pool::SessionParams& out) {
  std::lock_guard<std::mutex> lk(mu_);
  if (!has_welcome_) return false;
  out = welcome_;
  return true;
}

void Pool::set_welcome(const pool::SessionParams& params) {
  std::lock_guard<std::mutex> lk(mu_);
  if (has_welcome_) return;
  welcome_ = params;
  has_welcome_ = true;
}

Pool::Counts Pool::counts() {
  std::lock_guard<std::mutex> lk(mu_);
  Counts c;
  c.total = total_;
  for (const auto& v : idle_) c.idle += static_cast<uint32_t>(v.size());
  c.waiting = static_cast<uint32_t>(waiters_.size());
  return c;
}

}  // namespace sqlmux
