#include "daemon/core/worker.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "daemon/core/auth_limiter.h"
#include "daemon/core/directory.h"
#include "daemon/core/failure.h"
#include "daemon/core/log.h"
#include "daemon/core/pool.h"

namespace sqlmux {

namespace {
constexpr uint64_t kTickMs = 200;
}

void Workers::post_all(const Task& t) {
  for (auto& w : list_) w->post(t);
}

Worker::Worker(const Services& services, int id) : services_(services), id_(id) {
  uv_async_init(loop(), &async_, &Worker::on_async);
  async_.data = this;
  uv_timer_init(loop(), &tick_);
  tick_.data = this;
  if (Metrics* m = services_.metrics) {
    stats_ = std::make_unique<metrics::WorkerStats>();
    m->add_worker(stats_.get());
  }
}

Worker::~Worker() {
  // The loop was closed by the thread (stop()); nothing may remain.
  assert(by_id_.empty());
}

void Worker::add_listener(int fd, ClientFactory make) {
  auto* h = new uv_poll_t;
  uv_poll_init_socket(loop(), h, fd);
  listeners_.push_back({h, std::move(make)});
}

void Worker::start() {
  thread_ = std::thread([this] {
    log::set_thread_worker(id_);
    // Each handle points at its Listener (the vector no longer grows).
    for (auto& l : listeners_) {
      l.handle->data = &l;
      uv_poll_start(l.handle, UV_READABLE, &Worker::on_accept);
    }
    uv_timer_start(&tick_, &Worker::on_tick, kTickMs, kTickMs);
    // Every handle is closed: the loop must close cleanly.
    if (!run()) LOG_ERROR("event loop closed with handles still open");
  });
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::post(Task t) {
  {
    std::lock_guard<std::mutex> lk(inbox_mu_);
    inbox_.push_back(std::move(t));
  }
  uv_async_send(&async_);
}

void Worker::on_async(uv_async_t* h) {
  static_cast<Worker*>(h->data)->drain_inbox();
}

void Worker::drain_inbox() {
  {
    std::lock_guard<std::mutex> lk(inbox_mu_);
    draining_.swap(inbox_);
  }
  for (Task& t : draining_) t(*this);
  draining_.clear();
  run_deferred();
}

PooledClient* Worker::find_client(uint64_t id) {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : it->second;
}

void Worker::client_created(PooledClient* c) {
  by_id_.emplace(c->id(), c);
  clients_[static_cast<int>(c->state())].push_back(c);
  if (stats_ != nullptr) stats_->clients[static_cast<int>(c->state())].inc();
}

void Worker::client_destroyed(PooledClient* c) {
  clients_[static_cast<int>(c->state())].remove(c);
  if (stats_ != nullptr) client_state_metrics(c, c->state(), ClientState::Count);
  by_id_.erase(c->id());  // the lifecycle's shutdown timer watches the client count
}

void Worker::set_client_state(PooledClient* c, ClientState s) {
  clients_[static_cast<int>(c->state())].remove(c);
  clients_[static_cast<int>(s)].push_back(c);
  if (stats_ != nullptr) client_state_metrics(c, c->state(), s);
}

// The gauges mirror the state lists: a client in Login (or without a pool)
// counts on the worker, others on their pool. to == Count: destroyed.
void Worker::client_state_metrics(PooledClient* c, ClientState from, ClientState to) {
  metrics::PoolStats* const ps = c->stats_;
  auto gauge = [&](ClientState s) -> metrics::Gauge& {
    return s != ClientState::Login && ps != nullptr ? ps->clients[static_cast<int>(s)]
                                                    : stats_->clients[static_cast<int>(s)];
  };
  gauge(from).dec();
  if (to == ClientState::Count) return;
  gauge(to).inc();
  if (to == ClientState::Waiting) {
    c->wait_since_ns_ = uv_hrtime();
  } else if (from == ClientState::Waiting && to == ClientState::Active && ps != nullptr) {
    // Linked at once (inside Pool::acquire): no wait, and no clock read.
    const uint64_t now = c->acquiring_ ? c->wait_since_ns_ : uv_hrtime();
    ps->wait.observe_ns(now - c->wait_since_ns_);
    c->linked_ns_ = now;  // the first query's start (client.cpp note_request)
  }
}

void Worker::set_backend_state(PooledBackend* b, BackendState s) {
  auto& from = backends_[static_cast<int>(b->state())];
  const bool listed = from.contains(b);
  if (listed) from.remove(b);
  backends_[static_cast<int>(s)].push_back(b);
  if (metrics::PoolStats* ps = b->stats()) {
    if (listed) ps->servers[static_cast<int>(b->state())].dec();
    ps->servers[static_cast<int>(s)].inc();
  }
}

void Worker::backend_left(PooledBackend* b) {
  auto& l = backends_[static_cast<int>(b->state())];
  if (l.contains(b)) {
    l.remove(b);
    if (metrics::PoolStats* ps = b->stats()) ps->servers[static_cast<int>(b->state())].dec();
  }
}

void Worker::on_accept(uv_poll_t* h, int status, int events) {
  auto* l = static_cast<Listener*>(h->data);
  if (status < 0) {
    LOG_ERROR("listener poll failed: %s", uv_strerror(status));
    return;
  }
  auto* w = static_cast<Worker*>(EventLoop::of(h->loop));
  w->accept_from(*l);
}

void Worker::accept_from(Listener& l) {
  int lfd = -1;
  uv_fileno(reinterpret_cast<uv_handle_t*>(l.handle), &lfd);
  // Bounded per wakeup so that one busy listener cannot starve the loop.
  for (int i = 0; i < 64; ++i) {
    sockaddr_storage ss{};
    socklen_t sslen = sizeof ss;
    int fd = ::accept4(lfd, reinterpret_cast<sockaddr*>(&ss), &sslen, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
      if (errno == EMFILE || errno == ENFILE) {
        LOG_ERROR("accept: %s (raise the file limit)", strerror(errno));
        return;
      }
      LOG_WARN("accept: %s", strerror(errno));
      return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // fails harmlessly on unix sockets
    const bool over = !directory().try_add_client();  // counted either way; uncounted on close
    PooledClient* c = l.make(*this, fd, directory().next_client_id(), over,
                             PeerAddress::from_sockaddr(reinterpret_cast<const sockaddr*>(&ss)));
    client_created(c);
    if (!c->attach()) {
      LOG_ERROR("cannot poll client socket");
      c->close();
      continue;
    }
    c->on_accepted();
  }
}

void Worker::on_tick(uv_timer_t* h) {
  static_cast<Worker*>(h->data)->housekeeping();
}

void Worker::housekeeping() {
  uint64_t now = now_ms();
  for (int s : {static_cast<int>(ClientState::Login), static_cast<int>(ClientState::Waiting)}) {
    clients_[s].for_each([&](PooledClient* c) { c->check_timeouts(now); });
  }
  backends_[static_cast<int>(BackendState::Connecting)].for_each(
      [&](PooledBackend* b) { b->check_timeouts(now); });
  if (!shutting_down_) directory().for_each_pool([&](Pool& p) { p.housekeep(*this, now); });
  run_deferred();
}

void Worker::begin_shutdown() {
  if (shutting_down_) return;
  shutting_down_ = true;
  // Listeners stay open until stop(): a client that connects now gets
  // FATAL 57P03 (as from PostgreSQL shutting down), not a hanging socket.
  for (int s = 0; s < static_cast<int>(ClientState::Count); ++s) {
    clients_[s].for_each([](PooledClient* c) { c->on_shutdown(); });
  }
  directory().for_each_pool([&](Pool& p) { p.close_idle(*this); });
}

void Worker::stop() {
  if (stopping_) return;
  stopping_ = true;
  begin_shutdown();
  for (int s = 0; s < static_cast<int>(ClientState::Count); ++s) {
    clients_[s].for_each([](PooledClient* c) {
      c->fail({Reason::Shutdown, "terminating connection due to administrator command", {}});
    });
  }
  directory().for_each_pool([&](Pool& p) { p.close_idle(*this); });
  for (int s = 0; s < static_cast<int>(BackendState::Count); ++s) {
    backends_[s].for_each([](PooledBackend* b) { b->terminate(Reason::Shutdown); });
  }
  for (auto& l : listeners_) {
    uv_close(reinterpret_cast<uv_handle_t*>(l.handle),
             [](uv_handle_t* hh) { delete reinterpret_cast<uv_poll_t*>(hh); });
  }
  listeners_.clear();
  uv_close(reinterpret_cast<uv_handle_t*>(&async_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&tick_), nullptr);
  close_handles();
}

}  // namespace sqlmux
