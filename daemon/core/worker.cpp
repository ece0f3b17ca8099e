#include "daemon/core/worker.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstring>

#include "daemon/core/auth_limiter.h"
#include "daemon/core/control.h"
#include "daemon/core/directory.h"
#include "daemon/core/failure.h"
#include "daemon/core/log.h"
#include "daemon/core/pool.h"

namespace sqlmux {

namespace {
constexpr uint64_t kTickMs = 200;
// How long the listeners rest after accept() failed for want of a
// descriptor (or memory): the queued clients wait, the loop does not spin.
constexpr uint64_t kAcceptPauseMs = 100;
constexpr uint64_t kAcceptLogIntervalMs = 10000;

int open_spare() {
  return ::open("/dev/null", O_RDONLY | O_CLOEXEC);
}
}  // namespace

void refuse_now(int fd, const RefusalWriter& write, const Failure& f) {
  // What the client sent already (a startup packet) is read first, so that
  // closing does not reset the connection before it reads the refusal.
  std::string received;
  char buf[1024];
  for (int i = 0; i < 8; ++i) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n <= 0) break;
    if (received.size() < sizeof buf) received.append(buf, static_cast<size_t>(n));
  }
  std::string out;
  write(f, received, out);
  // A fresh socket's send buffer takes these few bytes whole.
  (void)::send(fd, out.data(), out.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  ::close(fd);
}

size_t refuse_pending(int lfd, const RefusalWriter& write, const Failure& f, size_t max, int& err) {
  size_t n = 0;
  err = 0;
  while (n < max) {
    int fd = ::accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) err = errno;
      break;
    }
    refuse_now(fd, write, f);
    ++n;
  }
  return n;
}

void Workers::post_all(const Task& t) {
  for (auto& w : list_) w->post(t);
}

Worker::Worker(const Services& services, int id) : services_(services), id_(id) {
  uv_async_init(loop(), &async_, &Worker::on_async);
  async_.data = this;
  uv_timer_init(loop(), &tick_);
  tick_.data = this;
  uv_timer_init(loop(), &accept_pause_);
  accept_pause_.data = this;
  uv_check_init(loop(), &offer_check_);
  offer_check_.data = this;
  spare_fd_ = open_spare();
  if (Metrics* m = services_.metrics) {
    stats_ = std::make_unique<metrics::WorkerStats>();
    m->add_worker(stats_.get());
  }
}

Worker::~Worker() {
  // The loop was closed by the thread (stop()); nothing may remain.
  assert(by_id_.empty());
}

void Worker::add_listener(int fd, ClientFactory make, RefusalWriter refuse) {
  auto* h = new uv_poll_t;
  uv_poll_init_socket(loop(), h, fd);
  listeners_.push_back({h, std::move(make), std::move(refuse)});
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
  std::lock_guard<std::mutex> lk(inbox_mu_);
  if (inbox_closed_) return;
  inbox_.push_back(std::move(t));
  uv_async_send(&async_);  // under the lock: stop() cannot close the handle meanwhile
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
  c->stop_delay();
  c->release_user();
  if (c->login_slot_.valid()) services_.auth_limiter->login_ended(c->login_slot_);
  c->login_slot_ = {};
  clients_[static_cast<int>(c->state())].remove(c);
  if (stats_ != nullptr) client_state_metrics(c, c->state(), ClientState::Count);
  by_id_.erase(c->id());  // the lifecycle's shutdown timer watches the client count
}

void Worker::set_client_state(PooledClient* c, ClientState s) {
  if (s != ClientState::Login && c->login_slot_.valid()) {
    services_.auth_limiter->login_ended(c->login_slot_);
    c->login_slot_ = {};
  }
  clients_[static_cast<int>(c->state())].remove(c);
  clients_[static_cast<int>(s)].push_back(c);
  if (stats_ != nullptr) client_state_metrics(c, c->state(), s);
  // Online upgrade: looked at once the callback that made it idle is over
  // (its protocol may still read what the client sent meanwhile).
  if (offers_ && s == ClientState::Idle) became_idle_.push_back(c->id());
}

void Worker::start_offering(std::shared_ptr<ClientOffers> to) {
  if (stopping_ || shutting_down_) return;
  offers_ = std::move(to);
  uv_check_start(&offer_check_, &Worker::on_offer_check);
  sweep_.clear();
  clients_[static_cast<int>(ClientState::Idle)].for_each(
      [&](PooledClient* c) { sweep_.push_back(c); });
  for (PooledClient* c : sweep_) try_offer(c);
  sweep_.clear();
}

void Worker::on_offer_check(uv_check_t* h) {
  auto* w = static_cast<Worker*>(h->data);
  if (w->became_idle_.empty()) return;
  std::vector<uint64_t> ids;
  ids.swap(w->became_idle_);
  for (uint64_t id : ids) {
    if (PooledClient* c = w->find_client(id)) w->try_offer(c);
  }
}

void Worker::try_offer(PooledClient* c) {
  if (!offers_ || c->state() != ClientState::Idle || c->handing_over_ || c->offer_refused_ ||
      c->closing()) {
    return;
  }
  std::string rec = c->upgrade_record();
  if (rec.empty()) return;
  // dup() and then close-on-exec, not F_DUPFD_CLOEXEC: ThreadSanitizer
  // sees dup() create a descriptor (else it takes a reused number for the
  // socket once closed under it in another thread). No process is
  // started meanwhile: SIGUSR2 starts none once this one handed over.
  const int fd = ::dup(c->fd());
  if (fd < 0) return;
  (void)::fcntl(fd, F_SETFD, FD_CLOEXEC);
  // Not read from here on: its next request waits in the socket for
  // whichever process serves it.
  c->want_read(false);
  c->set_handing_over(true);
  if (!offers_->offer(id_, c->id(), std::move(rec), fd)) {
    ::close(fd);
    c->set_handing_over(false);
    c->want_read(true);
    offers_.reset();
    uv_check_stop(&offer_check_);
    became_idle_.clear();
  }
}

void Worker::offer_answered(uint64_t id, OfferResult r) {
  PooledClient* c = find_client(id);
  if (c == nullptr || !c->handing_over_) return;
  switch (r) {
    case OfferResult::Adopted:
    case OfferResult::Unanswered:
      // Its socket may be the new process's now: not a byte more from here.
      c->fail({Reason::Shutdown, {}, {}});
      return;
    case OfferResult::Refused:
      c->offer_refused_ = true;
      break;
    case OfferResult::NotSent:
      break;
  }
  c->set_handing_over(false);
  if (shutting_down_) {
    c->on_shutdown();
    return;
  }
  c->want_read(true);
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
    // The spare first: a descriptor freed by another thread goes to it
    // rather than to a client that would leave this worker without one.
    const bool room = have_spare();
    sockaddr_storage ss{};
    socklen_t sslen = sizeof ss;
    int fd = ::accept4(lfd, reinterpret_cast<sockaddr*>(&ss), &sslen, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
      // The connection that failed is gone; the next one may be fine.
      if (errno == ECONNABORTED || errno == EPROTO || errno == EPERM) continue;
      accept_failed(l, lfd, errno);
      return;
    }
    if (!room) {
      // At the limit with no spare: this connection holds the last
      // descriptor, and is refused as if it had come through the spare.
      ++accept_errors_.events;
      ++accept_errors_.refused;
      accept_errors_.last_err = EMFILE;
      const Failure f = fd_exhausted_failure();
      admit(l, fd, ss, &f);
      log_accept_errors(false);
      pause_accepting();
      return;
    }
    admit(l, fd, ss, nullptr);
  }
}

bool Worker::have_spare() {
  if (spare_fd_ >= 0) return true;
  spare_fd_ = open_spare();
  if (spare_fd_ >= 0) return true;
  return errno != EMFILE && errno != ENFILE;  // no /dev/null to open: do without
}

net::Keepalive Worker::keepalive() {
  const config::ServerConfig& s = directory().config().server;
  return {s.tcp_keepalive, static_cast<int>(s.tcp_keepidle), static_cast<int>(s.tcp_keepintvl),
          static_cast<int>(s.tcp_keepcnt)};
}

void Worker::admit(Listener& l, int fd, const sockaddr_storage& ss, const Failure* refused) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // fails harmlessly on unix sockets
  (void)net::set_keepalive(fd, keepalive());
  // The neutral admission check; each protocol renders a refusal itself.
  Failure refusal;
  if (!directory().try_add_client()) {  // counted either way; uncounted on close
    if (refused == nullptr) {
      refusal = {Reason::TooManyClients, "max_client_conn reached",
                 "sqlmux max_client_conn (" +
                     std::to_string(directory().config().server.max_client_conn) + ") reached"};
      refused = &refusal;
    }
  } else if (refused == nullptr && (shutting_down_ || (services_.control != nullptr &&
                                                       services_.control->shutting_down()))) {
    refusal = {Reason::Shutdown, "shutting down", {}};
    refused = &refusal;
  }
  const PeerAddress peer = PeerAddress::from_sockaddr(reinterpret_cast<const sockaddr*>(&ss));
  bool slot = false;
  if (refused == nullptr && peer.valid()) {
    // Logins in progress per address (README "Failed logins").
    const uint32_t cap = directory().config().server.max_login_clients_per_address;
    bool log = false;
    uint64_t suppressed = 0;
    slot = services_.auth_limiter->login_started(peer, cap, now_ms(), log, suppressed);
    if (!slot) {
      if (log) {
        const std::string more =
            suppressed == 0 ? std::string()
                            : " (" + std::to_string(suppressed) +
                                  " more refused, from any address, since the last such line)";
        LOG_WARN(
            "refusing a connection from %s: max_login_clients_per_address (%u) logins in "
            "progress from that address%s",
            peer.text().c_str(), cap, more.c_str());
      }
      refusal = {Reason::TooManyLogins, "too many logins in progress from this address",
                 "sqlmux max_login_clients_per_address (" + std::to_string(cap) + ") reached for " +
                     peer.text()};
      refused = &refusal;
    }
  }
  PooledClient* c = l.make(*this, fd, directory().next_client_id(), refused, peer);
  if (slot) c->login_slot_ = peer;
  client_created(c);
  if (!c->attach()) {
    LOG_ERROR("cannot poll client socket");
    c->close();
    return;
  }
  c->on_accepted();
}

Failure Worker::fd_exhausted_failure() const {
  rlimit rl{};
  std::string limit;
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    limit = ": open file limit " + std::to_string(rl.rlim_cur);
  }
  return {Reason::FdExhausted, "no file descriptor left",
          "sqlmux is out of file descriptors" + limit};
}

void Worker::accept_failed(Listener& l, int lfd, int err) {
  ++accept_errors_.events;
  accept_errors_.last_err = err;
  if ((err == EMFILE || err == ENFILE) && spare_fd_ >= 0) {
    // The spare makes room for one connection, which is told why in its
    // protocol (after reading its startup packet, so that a PostgreSQL
    // client asking for TLS first still sees the message) and closed; the
    // spare is opened again when the listeners resume.
    ::close(spare_fd_);
    spare_fd_ = -1;
    sockaddr_storage ss{};
    socklen_t sslen = sizeof ss;
    int fd = ::accept4(lfd, reinterpret_cast<sockaddr*>(&ss), &sslen, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      ++accept_errors_.refused;
      const Failure f = fd_exhausted_failure();
      admit(l, fd, ss, &f);
    }
  }
  log_accept_errors(false);
  pause_accepting();
}

void Worker::log_accept_errors(bool force) {
  AcceptErrors& e = accept_errors_;
  if (e.events == 0) return;
  const uint64_t now = now_ms();
  if (e.logged && now - e.last_log_ms < kAcceptLogIntervalMs && !force) return;
  std::string hint;
  if (e.last_err == EMFILE || e.last_err == ENFILE) {
    rlimit rl{};
    (void)::getrlimit(RLIMIT_NOFILE, &rl);
    hint = "; open file limit " + std::to_string(rl.rlim_cur) +
           ": raise LimitNOFILE / ulimit -n, or lower max_client_conn";
  }
  LOG_ERROR("accept: %s (%" PRIu64 " time(s) since the last such line, %" PRIu64
            " client(s) refused as %s); accepting pauses %" PRIu64 " ms each time%s",
            strerror(e.last_err), e.events, e.refused,
            std::string(to_string(Reason::FdExhausted)).c_str(), kAcceptPauseMs, hint.c_str());
  e.events = 0;
  e.refused = 0;
  e.last_log_ms = now;
  e.logged = true;
}

void Worker::log_fd_exhausted(const std::string& what) {
  OpenErrors& e = open_errors_;
  ++e.since_log;
  const uint64_t now = now_ms();
  if (e.logged && now - e.last_log_ms < kAcceptLogIntervalMs) return;
  rlimit rl{};
  (void)::getrlimit(RLIMIT_NOFILE, &rl);
  LOG_ERROR("%s (%" PRIu64
            " server connection(s) not opened as %s since the last such line); "
            "open file limit %llu: raise LimitNOFILE / ulimit -n, or lower pool sizes",
            what.c_str(), e.since_log, std::string(to_string(Reason::FdExhausted)).c_str(),
            static_cast<unsigned long long>(rl.rlim_cur));
  e.since_log = 0;
  e.last_log_ms = now;
  e.logged = true;
}

void Worker::log_user_cap_refusal(const PooledClient& c, uint32_t cap) {
  UserCapRefusals& e = user_cap_refusals_;
  ++e.since_log;
  const uint64_t now = now_ms();
  if (e.logged && now - e.last_log_ms < kAcceptLogIntervalMs) return;
  CLOG_WARN(c.log_tag(),
            "max_user_client_connections (%u) reached for user \"%s\", refusing the client "
            "(%" PRIu64 " client(s) refused as %s on this worker since the last such line)",
            cap, c.user_name().c_str(), e.since_log,
            std::string(to_string(Reason::TooManyUserClients)).c_str());
  e.since_log = 0;
  e.last_log_ms = now;
  e.logged = true;
}

void Worker::pause_accepting() {
  if (accept_paused_ || stopping_) return;
  accept_paused_ = true;
  for (auto& l : listeners_) uv_poll_stop(l.handle);
  uv_timer_start(&accept_pause_, &Worker::on_accept_resume, kAcceptPauseMs, 0);
}

void Worker::on_accept_resume(uv_timer_t* h) {
  auto* w = static_cast<Worker*>(h->data);
  if (!w->accept_paused_ || w->stopping_) return;
  w->accept_paused_ = false;
  (void)w->have_spare();
  for (auto& l : w->listeners_) uv_poll_start(l.handle, UV_READABLE, &Worker::on_accept);
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
  // Session timeouts: collected first, as failing one client may move
  // another between the lists (a server connection handed on). No pool
  // with one (the default): no walk over every client.
  bool timeouts = false;
  directory().for_each_pool(
      [&](Pool& p) { timeouts = timeouts || p.cfg().has_session_timeouts(); });
  if (timeouts) {
    sweep_.clear();
    for (int s : {static_cast<int>(ClientState::Idle), static_cast<int>(ClientState::Active)}) {
      clients_[s].for_each([&](PooledClient* c) { sweep_.push_back(c); });
    }
    for (PooledClient* c : sweep_) c->check_session_timeouts(now);
    sweep_.clear();
  }
  if (!stopping_) (void)have_spare();
  // The count of accept failures since the last line, once the storm ends.
  if (!accept_paused_ && accept_errors_.logged &&
      now - accept_errors_.last_log_ms >= kAcceptLogIntervalMs) {
    log_accept_errors(true);
  }
  if (!shutting_down_) directory().for_each_pool([&](Pool& p) { p.housekeep(*this, now); });
  // Online upgrade: an idle client not offered when it became idle (its
  // answer was still being written, say) goes once it can.
  if (offers_) {
    sweep_.clear();
    clients_[static_cast<int>(ClientState::Idle)].for_each([&](PooledClient* c) {
      if (!c->handing_over_ && !c->offer_refused_) sweep_.push_back(c);
    });
    for (PooledClient* c : sweep_) try_offer(c);
    sweep_.clear();
  }
  run_deferred();
}

void Worker::begin_shutdown() {
  if (shutting_down_) return;
  shutting_down_ = true;
  offers_.reset();
  uv_check_stop(&offer_check_);
  became_idle_.clear();
  // Listeners stay open until stop(): a client that connects now gets
  // FATAL 57P03 (as from PostgreSQL shutting down), not a hanging socket.
  // (One being offered waits for its answer: offer_answered.)
  for (int s = 0; s < static_cast<int>(ClientState::Count); ++s) {
    clients_[s].for_each([](PooledClient* c) {
      if (!c->handing_over_) c->on_shutdown();
    });
  }
  directory().for_each_pool([&](Pool& p) { p.close_idle(*this); });
}

void Worker::stop_accepting() {
  for (auto& l : listeners_) {
    uv_close(reinterpret_cast<uv_handle_t*>(l.handle),
             [](uv_handle_t* hh) { delete reinterpret_cast<uv_poll_t*>(hh); });
  }
  listeners_.clear();
}

void Worker::stop() {
  if (stopping_) return;
  stopping_ = true;
  begin_shutdown();
  for (int s = 0; s < static_cast<int>(ClientState::Count); ++s) {
    clients_[s].for_each([](PooledClient* c) {
      // One being offered to another process gets no word: that process
      // may serve its socket already.
      c->fail({Reason::Shutdown,
               c->handing_over_ ? "" : "terminating connection due to administrator command",
               {}});
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
  uv_close(reinterpret_cast<uv_handle_t*>(&accept_pause_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&offer_check_), nullptr);
  if (spare_fd_ >= 0) ::close(spare_fd_);
  spare_fd_ = -1;
  for (auto& f : at_stop_) f();
  at_stop_.clear();
  {
    std::lock_guard<std::mutex> lk(inbox_mu_);
    inbox_closed_ = true;
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&async_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&tick_), nullptr);
  close_handles();
}

}  // namespace sqlmux
