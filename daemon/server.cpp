#include "daemon/server.h"

#include <linux/filter.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <iterator>
#include <thread>
#include <utility>
#include <vector>

#include <prometheus/text_serializer.h>

#include "daemon/compose.h"
#include "daemon/core/log.h"
#include "daemon/core/pool.h"
#include "daemon/ops/fd_limit.h"
#include "daemon/ops/health_check.h"
#include "daemon/ops/metrics.h"
#include "daemon/ops/sd_listen.h"
#include "daemon/ops/sd_notify.h"
#include "daemon/upgrade_offers.h"

namespace sqlmux {

namespace {
constexpr uint64_t kShutdownTickMs = 100;
constexpr uint64_t kStatusTickMs = 2000;
// At exit, how long handshakes already under way get to complete into the
// queue (and be refused) once new ones are kept out.
constexpr int kHandshakeSettleMs = 50;
}  // namespace

Server::Server(config::Config cfg)
    : protocols_(make_protocols()),
      directory_(std::make_unique<Directory>(std::move(cfg), *protocols_)) {
  if (config().metrics) {
    metrics_ = std::make_shared<Metrics>();
    metrics_->set_host_source(
        [this](std::vector<Metrics::HostSample>& out, std::vector<Metrics::HostChecks>& checks) {
          const config::Config& c = config();
          for (const auto& pc : c.pools) {
            for (const auto& b : pc.backends) {
              const HostStatus* h = hosts_.find(b.address.text);
              const pool::Health health = h != nullptr ? h->health() : pool::Health::Unchecked;
              out.push_back({pc.name, std::string(config::to_string(pc.protocol)), b.address.text,
                             health == pool::Health::Up     ? 1
                             : health == pool::Health::Down ? 2
                                                            : 0});
            }
          }
          if (!c.health) return;
          hosts_.for_each([&](HostStatus& h) {
            checks.push_back({h.address(), h.checks_ok(), h.checks_failed()});
          });
        });
  }
  if (metrics_) {
    metrics_->set_auth_source([this] {
      const auto t = auth_limiter_.totals(uv_hrtime() / 1000000, auth_policy(config().server));
      return Metrics::AuthSample{t.refused, t.delayed_addresses};
    });
    metrics_->set_digest_source([this] {
      const config::Config& cfg = config();
      const size_t top = cfg.metrics ? cfg.metrics->query_digests_top : 0;
      std::vector<pool::DigestRow> all;
      if (top == 0) return all;
      workers_.for_each([&](Worker& w) {
        std::lock_guard<std::mutex> lock(w.digests().mu);
        w.digests().table.collect(all);
      });
      return pool::merge_digests(std::move(all), top);
    });
  }
  pool_env_.reset(new PoolEnv{hosts_, metrics_.get(), workers_, *protocols_});
  directory_->set_pool_env(pool_env_.get());
  services_.directory = directory_.get();
  services_.workers = &workers_;
  services_.hosts = &hosts_;
  services_.auth_limiter = &auth_limiter_;
  services_.control = this;
  services_.metrics = metrics_.get();
}

Server::~Server() = default;

bool Server::open_listeners(std::vector<int>& fds) {
  // Socket activation: sockets systemd passed serve the listeners they are
  // bound to; the others are opened here. Unused passed sockets are closed.
  sd::PassedSockets passed = sd::PassedSockets::from_environment();
  for (const auto& l : config().listeners) {
    std::string how;
    // An online upgrade: the socket the running process served it on.
    if (int ifd =
            take_inherited(upgrade::SocketKind::Listener, config::to_string(l.protocol), l.listen);
        ifd >= 0) {
      LOG_INFO("listening on %s (%s): socket from the running process", l.listen.text.c_str(),
               std::string(config::to_string(l.protocol)).c_str());
      fds.push_back(ifd);
      listen_clients_.push_back(listener_clients(*protocols_, l.protocol, l.client_tls));
      listen_refusals_.push_back(listener_refusal(l.protocol));
      continue;
    }
    if (int pfd = passed.take(l.listen, how); pfd >= 0) {
      LOG_INFO("listening on %s (%s): socket from systemd (%s)", l.listen.text.c_str(),
               std::string(config::to_string(l.protocol)).c_str(), how.c_str());
      fds.push_back(pfd);
      listen_clients_.push_back(listener_clients(*protocols_, l.protocol, l.client_tls));
      listen_refusals_.push_back(listener_refusal(l.protocol));
      continue;
    }
    int fd = -1;
    if (l.listen.kind == config::Address::Kind::Unix) {
      sockaddr_un sa{};
      sa.sun_family = AF_UNIX;
      if (l.listen.unix_path.size() >= sizeof sa.sun_path) {
        LOG_ERROR("listener %s: path too long", l.listen.text.c_str());
        return false;
      }
      std::strncpy(sa.sun_path, l.listen.unix_path.c_str(), sizeof sa.sun_path - 1);
      struct stat st {};
      if (::stat(sa.sun_path, &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(sa.sun_path);
      fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
        LOG_ERROR("listener %s: %s", l.listen.text.c_str(), strerror(errno));
        if (fd >= 0) ::close(fd);
        return false;
      }
      ::chmod(sa.sun_path, 0777);
      unix_paths_.push_back(l.listen.unix_path);
    } else {
      addrinfo hints{};
      hints.ai_family = AF_UNSPEC;
      hints.ai_socktype = SOCK_STREAM;
      hints.ai_flags = AI_PASSIVE;
      addrinfo* res = nullptr;
      std::string port = std::to_string(l.listen.port);
      const char* host =
          l.listen.host.empty() || l.listen.host == "*" ? nullptr : l.listen.host.c_str();
      int rc = ::getaddrinfo(host, port.c_str(), &hints, &res);
      if (rc != 0 || res == nullptr) {
        LOG_ERROR("listener %s: %s", l.listen.text.c_str(), gai_strerror(rc));
        return false;
      }
      fd = ::socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      int one = 1;
      if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      if (fd < 0 || ::bind(fd, res->ai_addr, res->ai_addrlen) != 0) {
        LOG_ERROR("listener %s: cannot bind: %s", l.listen.text.c_str(), strerror(errno));
        if (fd >= 0) ::close(fd);
        ::freeaddrinfo(res);
        return false;
      }
      ::freeaddrinfo(res);
    }
    if (::listen(fd, 4096) != 0) {
      LOG_ERROR("listener %s: listen: %s", l.listen.text.c_str(), strerror(errno));
      ::close(fd);
      return false;
    }
    LOG_INFO("listening on %s (%s)", l.listen.text.c_str(),
             std::string(config::to_string(l.protocol)).c_str());
    fds.push_back(fd);
    listen_clients_.push_back(listener_clients(*protocols_, l.protocol, l.client_tls));
    listen_refusals_.push_back(listener_refusal(l.protocol));
  }
  passed.close_unused();
  if (fds.empty()) {
    LOG_ERROR("no listener could be opened");
    return false;
  }
  return true;
}

int Server::run() {
  const config::Config& cfg = config();
  log::configure(cfg.server);
  log::detect_journal();
  std::signal(SIGPIPE, SIG_IGN);
  // /metrics first: prometheus-cpp listens before the collector is
  // registered, so it answers 404 for a moment; that moment ends before
  // clients can connect.
  if (cfg.tls) {
    std::string err;
    tls_ctx_ = tls::make_server_ctx(*cfg.tls, err);
    if (!tls_ctx_) {
      LOG_ERROR("[tls]: %s", err.c_str());
      return 1;
    }
  }
  int n = cfg.server.workers;
  if (n <= 0) n = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  // Before anything opens: the limit may be raised for all that follows.
  (void)fd_limit::ensure(cfg, n, "startup");
  // `sqlmux --upgrade`: the listening sockets come from the running
  // process; a failure from here until finish_takeover() closes the
  // connection to it, and it keeps serving.
  if (upgrade_mode_ && !receive_handover()) return 1;
  if (metrics_ && !start_metrics()) return 1;
  if (!open_listeners(listen_fds_) || !open_admin_listener() || !open_upgrade_socket()) return 1;
  close_unused_inherited();
  services_.client_tls = tls_ctx_.get();

  for (int i = 0; i < n; ++i) workers_.add(std::make_unique<Worker>(services_, i));
  workers_.for_each([&](Worker& w) {
    for (size_t i = 0; i < listen_fds_.size(); ++i) {
      w.add_listener(listen_fds_[i], listen_clients_[i], listen_refusals_[i]);
    }
    // The console offers TLS whenever [tls] is configured.
    if (admin_fd_ >= 0) {
      w.add_listener(admin_fd_,
                     console_clients(*protocols_, cfg.tls ? config::ClientTls::Allow
                                                          : config::ClientTls::Disable),
                     listener_refusal(config::Protocol::Postgres));
    }
  });
  // Pools with a fixed server login exist from the start, so that min_idle
  // opens their connections before the first client arrives.
  directory_->create_fixed_pools();

  uv_loop_init(&loop_);
  uv_signal_init(&loop_, &sigterm_);
  uv_signal_init(&loop_, &sigint_);
  uv_signal_init(&loop_, &sighup_);
  sigterm_.data = sigint_.data = sighup_.data = this;
  uv_signal_start(&sigterm_, &Server::on_signal, SIGTERM);
  uv_signal_start(&sigint_, &Server::on_signal, SIGINT);
  uv_signal_start(&sighup_, &Server::on_signal, SIGHUP);
  uv_signal_init(&loop_, &sigusr2_);
  sigusr2_.data = this;
  uv_signal_start(&sigusr2_, &Server::on_signal, SIGUSR2);
  uv_timer_init(&loop_, &upgrade_timer_);
  upgrade_timer_.data = this;
  if (upgrade_fd_ >= 0) {
    uv_poll_init_socket(&loop_, &upgrade_poll_, upgrade_fd_);
    upgrade_poll_.data = this;
    uv_poll_start(&upgrade_poll_, UV_READABLE, &Server::on_upgrade_accept);
    upgrade_polling_ = true;
  }
  uv_timer_init(&loop_, &shutdown_timer_);
  shutdown_timer_.data = this;
  uv_async_init(&loop_, &shutdown_async_, [](uv_async_t* h) {
    auto* s = static_cast<Server*>(h->data);
    if (s->signals_seen_++ == 0) {
      LOG_INFO("SHUTDOWN from the admin console: shutting down as on SIGTERM");
      s->begin_shutdown();
    }
  });
  shutdown_async_.data = this;

  uv_timer_init(&loop_, &status_timer_);
  status_timer_.data = this;
  // Around every reload: systemd hears RELOADING=1 then READY=1, and the
  // metrics count it.
  // (Not after an online upgrade handed over: the new process is the
  // service's main process then.)
  reload_hooks_.before = [this] {
    if (handed_to_.load() == 0) sd::notify_reloading(status_line("reloading"));
  };
  reload_hooks_.after = [this](bool ok) {
    if (metrics_) metrics_->config_reload(ok);
    // May run off the main loop: no last_status_.
    if (handed_to_.load() == 0) sd::notify_ready(status_line("ready"));
  };

  // READY=1's STATUS is the state before any worker accepts: a connection
  // queued on a listener since listen() (a readiness probe) is not counted
  // in it, whatever the order of the threads.
  const std::string ready_status = status_line("ready");
  workers_.for_each([](Worker& w) { w.start(); });
  health_ = std::make_unique<HealthChecker>(hosts_, health_probes(), [this] { hosts_changed(); });
  health_->configure(cfg);
  LOG_INFO("sqlmux started: %d worker(s), %zu pool(s), %zu user(s)", n, cfg.pools.size(),
           cfg.users.size());
  started_ = true;
  if (upgrade_mode_) {
    // The old process stops accepting once this one does; under systemd
    // this process becomes the service's main process (NotifyAccess=all).
    finish_takeover();
    sd::notify_main_pid_ready(static_cast<int>(::getpid()), last_status_ = status_line("ready"));
  } else {
    sd::notify_ready(last_status_ = ready_status);
  }
  if (sd::notify_enabled()) {
    uv_timer_start(&status_timer_, &Server::on_status_tick, kStatusTickMs, kStatusTickMs);
  }

  uv_run(&loop_, UV_RUN_DEFAULT);
  adopt_stop_ = true;
  if (adopt_thread_.joinable()) adopt_thread_.join();
  workers_.for_each([](Worker& w) { w.join(); });
  upgrade_offers_.reset();
  close_listeners();
  if (http_) http_->stop();
  uv_loop_close(&loop_);
  // Handed over: the socket files are the new process's.
  if (handed_to_.load() == 0) {
    for (const auto& p : unix_paths_) ::unlink(p.c_str());
    if (upgrade_fd_ >= 0) ::unlink(config().server.upgrade_socket.c_str());
  }
  if (upgrade_fd_ >= 0) ::close(upgrade_fd_);
  upgrade_fd_ = -1;
  LOG_INFO("sqlmux stopped");
  return 0;
}

void Server::close_listeners() {
  if (handed_to_.load() != 0) {
    // The new process serves these sockets: this copy closes, the queue
    // and the socket stay (no filter, nothing refused).
    for (int fd : listen_fds_) ::close(fd);
    if (admin_fd_ >= 0) ::close(admin_fd_);
    listen_fds_.clear();
    admin_fd_ = -1;
    return;
  }
  // The workers no longer accept. A connection that arrived since (or
  // arrives now) is told 57P03 / ERR 1053 like one during the graceful
  // wait, not accepted by the kernel and then reset by close(). First a
  // filter drops every SYN, so no new connection starts (its SYN is
  // retried and refused once the socket is closed), while the other
  // packets pass: a handshake already under way completes into the queue
  // instead of being left half open (its ACK dropped, then reset at
  // close). After a moment for those, the queue is refused, then the
  // socket closes. (For TCP, a socket filter sees the packet from its TCP
  // header: byte 13 holds the flags, 0x02 is SYN.)
  const Failure bye{Reason::Shutdown, "shutting down", {}};
  sock_filter no_syn[] = {
      {BPF_LD | BPF_B | BPF_ABS, 0, 0, 13},      // A = TCP flags
      {BPF_JMP | BPF_JSET | BPF_K, 0, 1, 0x02},  // SYN?
      {BPF_RET | BPF_K, 0, 0, 0},                // yes: drop
      {BPF_RET | BPF_K, 0, 0, 0xffffffffu},      // no: keep
  };
  sock_fprog prog{static_cast<unsigned short>(std::size(no_syn)), no_syn};
  std::vector<std::pair<int, RefusalWriter>> fds;
  for (size_t i = 0; i < listen_fds_.size(); ++i)
    fds.emplace_back(listen_fds_[i], listen_refusals_[i]);
  if (admin_fd_ >= 0) fds.emplace_back(admin_fd_, listener_refusal(config::Protocol::Postgres));
  bool filtered = false;
  for (const auto& [fd, refuse] : fds) {
    filtered = setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) == 0 || filtered;
  }
  if (filtered) std::this_thread::sleep_for(std::chrono::milliseconds(kHandshakeSettleMs));
  for (const auto& [fd, refuse] : fds) {
    int err = 0;
    const size_t n = refuse_pending(fd, refuse, bye, SIZE_MAX, err);
    if (n > 0) LOG_INFO("refused %zu connection(s) queued at exit (shutdown)", n);
    ::close(fd);
  }
  listen_fds_.clear();
  admin_fd_ = -1;
}

bool Server::start_metrics() {
  const config::Address& addr = config().metrics->listen;
  HttpEndpoint::Handlers h;
  h.metrics = [this] { return prometheus::TextSerializer().Serialize(metrics_->Collect()); };
  h.ready = [this] { return readiness(); };
  http_ = std::make_unique<HttpEndpoint>();
  std::string err;
  const int inherited = take_inherited(upgrade::SocketKind::Metrics, "-", addr);
  if (!http_->start(addr, std::move(h), err, inherited)) {
    LOG_ERROR("metrics: cannot listen on %s: %s", addr.text.c_str(), err.c_str());
    http_.reset();
    return false;
  }
  LOG_INFO("metrics on http://%s/metrics (also /healthz, /readyz)%s", addr.text.c_str(),
           inherited >= 0 ? ": socket from the running process" : "");
  return true;
}

std::pair<bool, std::string> Server::readiness() {
  if (const int pid = handed_to_.load(); pid != 0) {
    return {false, "handed over to pid " + std::to_string(pid) + " (online upgrade), draining"};
  }
  if (shutting_down_.load()) return {false, "shutting down"};
  if (!started_.load()) return {false, "starting"};
  const config::Config& c = config();
  for (const auto& pc : c.pools) {
    bool usable = pc.backends.empty();
    for (const auto& b : pc.backends) {
      const HostStatus* h = hosts_.find(b.address.text);
      usable = usable || h == nullptr || h->health() != pool::Health::Down;
    }
    if (!usable) {
      return {false, "pool " + std::string(config::to_string(pc.protocol)) + ":" + pc.name +
                         ": every backend host is down"};
    }
  }
  return {true, ""};
}

void Server::on_signal(uv_signal_t* h, int signum) {
  auto* s = static_cast<Server*>(h->data);
  if (signum == SIGHUP) {
    LOG_INFO("SIGHUP: reloading %s", s->config().source.c_str());
    (void)s->reload(nullptr);
    return;
  }
  if (signum == SIGUSR2) {
    s->spawn_upgrade();
    return;
  }
  if (s->signals_seen_++ == 0) {
    LOG_INFO("%s: shutting down; waiting for running transactions (up to %lld ms)",
             signum == SIGTERM ? "SIGTERM" : "SIGINT",
             static_cast<long long>(s->config().server.shutdown_timeout.count()));
    s->begin_shutdown();
  } else {
    LOG_INFO("second signal: closing all connections now");
    s->stop_workers();
  }
}

void Server::begin_shutdown() {
  shutting_down_ = true;
  // After an online upgrade: no more clients offered (one awaiting its
  // answer is closed here, as for want of one).
  if (upgrade_offers_) upgrade_offers_->stop();
  if (health_) health_->stop();
  shutdown_started_ = uv_now(&loop_);
  // Handed over: the new process is the service's main process now.
  if (handed_to_.load() == 0) sd::notify_stopping(last_status_ = status_line("stopping"));
  workers_.post_all([](Worker& w) { w.begin_shutdown(); });
  uv_timer_start(&shutdown_timer_, &Server::on_shutdown_tick, kShutdownTickMs, kShutdownTickMs);
}

void Server::wait_for_clients() {
  shutdown_started_ = uv_now(&loop_);
  uv_timer_start(&shutdown_timer_, &Server::on_shutdown_tick, kShutdownTickMs, kShutdownTickMs);
}

void Server::on_shutdown_tick(uv_timer_t* h) {
  auto* s = static_cast<Server*>(h->data);
  uint64_t elapsed = uv_now(&s->loop_) - s->shutdown_started_;
  auto limit = static_cast<uint64_t>(s->config().server.shutdown_timeout.count());
  if (s->directory_->client_count() == 0) {
    s->stop_workers();
  } else if (elapsed >= limit) {
    LOG_WARN("shutdown_timeout reached with %u client(s) still connected; closing them",
             s->directory_->client_count());
    s->stop_workers();
  }
}

void Server::stop_workers() {
  if (stop_sent_) return;
  stop_sent_ = true;
  shutting_down_ = true;
  // Before the workers stop: what it posts them (an answer, a client it
  // closes for want of one) runs before their stop().
  if (upgrade_offers_) upgrade_offers_->stop();
  if (health_) health_->stop();
  workers_.post_all([](Worker& w) { w.stop(); });
  uv_close(reinterpret_cast<uv_handle_t*>(&sigterm_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&sigint_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&sighup_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&sigusr2_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&upgrade_timer_), nullptr);
  if (upgrade_polling_) uv_close(reinterpret_cast<uv_handle_t*>(&upgrade_poll_), nullptr);
  upgrade_polling_ = false;
  end_upgrade_conn(handed_to_.load() != 0 ? nullptr : "shutting down");
  if (upgrade_child_ != nullptr) {
    // The new process runs on; this one no longer waits for it.
    uv_close(reinterpret_cast<uv_handle_t*>(upgrade_child_),
             [](uv_handle_t* hh) { delete reinterpret_cast<uv_process_t*>(hh); });
    upgrade_child_ = nullptr;
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&shutdown_timer_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&shutdown_async_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&status_timer_), nullptr);
  if (handed_to_.load() == 0) sd::notify_status(status_line("stopping, closing connections"));
}

std::string Server::status_line(const char* state) {
  uint32_t servers = 0;
  directory_->for_each_pool([&](Pool& p) { servers += p.counts().total; });
  uint32_t clients = directory_->client_count();
  return std::string(state) + ": " + std::to_string(clients) +
         (clients == 1 ? " client, " : " clients, ") + std::to_string(servers) +
         (servers == 1 ? " server connection" : " server connections");
}

void Server::on_status_tick(uv_timer_t* h) {
  auto* s = static_cast<Server*>(h->data);
  if (s->handed_to_.load() != 0) return;
  std::string line = s->status_line(s->shutting_down_.load() ? "stopping" : "ready");
  if (line == s->last_status_) return;
  s->last_status_ = line;
  sd::notify_status(line);
}

}  // namespace sqlmux
