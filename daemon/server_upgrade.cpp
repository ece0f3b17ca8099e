// Online upgrade (README "Upgrade procedure"): the running process hands
// its listening sockets to `sqlmux --upgrade` over [server] upgrade_socket
// (messages: ops/upgrade_wire.h) and drains as on SIGTERM, while the new
// process accepts on the same sockets, so that no connection attempt is
// refused at any moment. SIGUSR2 starts the new process.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>

#include "daemon/compose.h"
#include "daemon/core/log.h"
#include "daemon/ops/sd_listen.h"
#include "daemon/ops/upgrade_socket.h"
#include "daemon/server.h"
#include "daemon/upgrade_offers.h"

namespace sqlmux {

namespace {

// New process: how long it waits for the offer, and for "done".
constexpr int kTakeoverTimeoutMs = 10000;
// Old process: how long the new one may take to serve after the offer.
constexpr uint64_t kGoTimeoutMs = 60000;
// Old process: how long the workers get to stop polling their listeners,
// and to pick their idle clients.
constexpr auto kStopAcceptingWait = std::chrono::seconds(5);

bool bound_to_path(int fd, const std::string& path) {
  sockaddr_un sa{};
  socklen_t len = sizeof sa;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) != 0 || sa.sun_family != AF_UNIX) {
    return false;
  }
  return std::strncmp(sa.sun_path, path.c_str(), sizeof sa.sun_path) == 0;
}

config::Address upgrade_address(const std::string& path) {
  config::Address a;
  a.kind = config::Address::Kind::Unix;
  a.unix_path = path;
  a.text = "unix:" + path;
  return a;
}

}  // namespace

// ---- The new process ----

bool Server::receive_handover() {
  const config::Config& cfg = config();
  const std::string& path = cfg.server.upgrade_socket;
  if (path.empty()) {
    LOG_ERROR("--upgrade: [server] upgrade_socket is not set in %s", cfg.source.c_str());
    return false;
  }
  std::string err;
  takeover_fd_ = upgrade::connect_socket(path, kTakeoverTimeoutMs, err);
  if (takeover_fd_ < 0) {
    LOG_ERROR("--upgrade: cannot connect to %s: %s (no sqlmux serving with this upgrade_socket?)",
              path.c_str(), err.c_str());
    return false;
  }
  std::string msg;
  std::vector<int> fds;
  if (!upgrade::recv_packet(takeover_fd_, msg, fds, err)) {
    LOG_ERROR("--upgrade: no sockets from the running process on %s: %s", path.c_str(),
              err.c_str());
    return false;
  }
  std::vector<upgrade::SocketDesc> descs;
  if (const upgrade::WireError e = upgrade::decode_offer(msg, fds.size(), descs);
      e != upgrade::WireError::None) {
    for (int fd : fds) ::close(fd);
    LOG_ERROR("--upgrade: malformed offer from the running process on %s: %s", path.c_str(),
              std::string(upgrade::to_string(e)).c_str());
    return false;
  }
  for (size_t i = 0; i < fds.size(); ++i) inherited_.push_back({descs[i], fds[i]});
  LOG_INFO("--upgrade: received %zu listening socket(s) from the running process on %s", fds.size(),
           path.c_str());
  return true;
}

int Server::take_inherited(upgrade::SocketKind kind, std::string_view protocol,
                           const config::Address& addr) {
  for (auto it = inherited_.begin(); it != inherited_.end(); ++it) {
    if (it->desc.kind != kind) continue;
    if (kind == upgrade::SocketKind::Listener && it->desc.protocol != protocol) continue;
    const bool match = kind == upgrade::SocketKind::Upgrade ? bound_to_path(it->fd, addr.unix_path)
                                                            : sd::socket_matches(it->fd, addr);
    if (!match) continue;
    const int fd = it->fd;
    inherited_.erase(it);
    return fd;
  }
  return -1;
}

void Server::close_unused_inherited() {
  for (const auto& s : inherited_) {
    LOG_WARN("--upgrade: the running process's %s socket %s matches nothing in %s; closed",
             std::string(upgrade::to_string(s.desc.kind)).c_str(), s.desc.address.c_str(),
             config().source.c_str());
    ::close(s.fd);
  }
  inherited_.clear();
}

void Server::finish_takeover() {
  if (takeover_fd_ < 0) return;
  std::string err;
  std::string msg;
  std::vector<int> fds;
  int32_t old_pid = 0;
  if (!upgrade::send_packet(takeover_fd_, upgrade::encode_go(::getpid()), {}, err)) {
    err = "cannot send go: " + err;
  } else if (!upgrade::recv_packet(takeover_fd_, msg, fds, err)) {
    err = "no answer: " + err;
  } else if ((old_pid = upgrade::decode_done(msg)) == 0) {
    err = "unexpected answer";
  }
  for (int fd : fds) ::close(fd);
  if (old_pid != 0 && adopt_clients(old_pid, false)) {
    // Clients busy in a transaction then follow as they become idle.
    timeval tv{0, 200 * 1000};  // the thread sees adopt_stop_ this often
    (void)::setsockopt(takeover_fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    adopt_thread_ = std::thread([this, old_pid] {
      (void)adopt_clients(old_pid, true);
      ::close(takeover_fd_);
      takeover_fd_ = -1;
    });
  } else {
    ::close(takeover_fd_);
    takeover_fd_ = -1;
  }
  if (old_pid == 0) {
    LOG_WARN(
        "--upgrade: the running process did not confirm the handover (%s); serving alongside "
        "it on the same sockets (SIGTERM it to drain it)",
        err.c_str());
    return;
  }
  LOG_INFO("--upgrade: took over from pid %d, which drains its clients", static_cast<int>(old_pid));
}

bool Server::adopt_clients(int old_pid, bool later) {
  size_t adopted = 0;
  size_t refused = 0;
  int next = 0;
  bool ended = false;
  const auto flush = [&] {
    if (metrics_) metrics_->upgrade_clients(adopted, refused);
    if (adopted + refused > 0) {
      LOG_INFO("--upgrade: adopted %zu idle client(s) from pid %d (%zu stay there)", adopted,
               old_pid, refused);
    }
    adopted = refused = 0;
  };
  for (;;) {
    std::string msg;
    std::vector<int> fds;
    std::string err;
    if (!upgrade::recv_packet(takeover_fd_, msg, fds, err)) {
      if (later && err == "timed out" && !adopt_stop_.load()) continue;
      // (A running process of an earlier version hands over no client, and
      // closes after the first batch.)
      if (!later || (err != "closed" && !adopt_stop_.load())) {
        LOG_WARN("--upgrade: the handover of idle clients from pid %d ended%s: %s", old_pid,
                 later ? "" : " early", err.c_str());
      }
      break;
    }
    if (upgrade::decode_end(msg)) {
      for (int fd : fds) ::close(fd);
      if (later) {
        flush();
        continue;
      }
      ended = true;
      break;
    }
    upgrade::ClientState st;
    if (const upgrade::ClientWireError e = upgrade::decode_client(msg, fds.size(), st);
        e != upgrade::ClientWireError::None) {
      for (int fd : fds) ::close(fd);
      LOG_WARN("--upgrade: malformed client record from pid %d: %s; it keeps its clients", old_pid,
               std::string(upgrade::to_string(e)).c_str());
      break;
    }
    struct Result {
      std::mutex mu;
      std::condition_variable cv;
      bool finished = false;
      bool ok = false;
      std::string why;
    };
    auto r = std::make_shared<Result>();
    Worker& w = workers_.at(next++ % workers_.size());
    // Once this process stops, or hands over in its turn, it takes no client.
    const bool closing = later && (shutting_down() || handed_to_.load() != 0);
    w.post([r, fd = fds[0], st, closing, this](Worker& wk) {
      std::string why;
      bool ok = false;
      if (closing) {
        ::close(fd);
        why = "this process is shutting down";
      } else {
        ok = adopt_client(*protocols_, wk, fd, st, why);
      }
      std::lock_guard<std::mutex> lk(r->mu);
      r->finished = true;
      r->ok = ok;
      r->why = std::move(why);
      r->cv.notify_all();
    });
    {
      // (A stopped worker runs nothing more: then this thread gives up.)
      std::unique_lock<std::mutex> lk(r->mu);
      while (!r->cv.wait_for(lk, std::chrono::milliseconds(200), [&] { return r->finished; })) {
        if (later && adopt_stop_.load()) break;
      }
      if (!r->finished) break;
    }
    if (r->ok) {
      ++adopted;
    } else {
      ++refused;
      LOG_INFO("--upgrade: client of user \"%s\" (pool %s) stays on pid %d: %s", st.user.c_str(),
               st.pool.c_str(), old_pid, r->why.c_str());
    }
    const std::string answer =
        r->ok ? upgrade::encode_adopted(st.id) : upgrade::encode_refused(st.id);
    if (!upgrade::send_packet(takeover_fd_, answer, {}, err)) {
      // The old process stopped waiting (or went away): it has closed its
      // copy of the socket, so this client is served here or nowhere.
      if (metrics_) metrics_->upgrade_unanswered(1);
      LOG_WARN("--upgrade: cannot answer pid %d for client %llu (%s): %s", old_pid,
               static_cast<unsigned long long>(st.id), r->ok ? "adopted here" : "closed",
               err.c_str());
      break;
    }
  }
  flush();
  return ended;
}

// ---- The running process ----

bool Server::open_upgrade_socket() {
  const std::string& path = config().server.upgrade_socket;
  if (path.empty()) return true;
  int fd = take_inherited(upgrade::SocketKind::Upgrade, "-", upgrade_address(path));
  if (fd < 0) {
    std::string err;
    fd = upgrade::listen_socket(path, err);
    if (fd < 0) {
      LOG_ERROR("upgrade_socket %s: %s", path.c_str(), err.c_str());
      return false;
    }
  }
  upgrade_fd_ = fd;
  LOG_INFO("online upgrade: listening on %s (sqlmux --upgrade, or SIGUSR2)", path.c_str());
  return true;
}

void Server::on_upgrade_accept(uv_poll_t* h, int status, int /*events*/) {
  auto* s = static_cast<Server*>(h->data);
  if (status < 0 || s->upgrade_fd_ < 0) return;
  int pid = 0;
  for (int fd; (fd = upgrade::accept_peer(s->upgrade_fd_, pid)) >= 0;) {
    if (s->upgrade_conn_ >= 0 || s->shutting_down()) {
      LOG_WARN("online upgrade: pid %d refused: %s", pid,
               s->upgrade_conn_ >= 0 ? "another upgrade is under way" : "shutting down");
      ::close(fd);
      continue;
    }
    s->upgrade_conn_ = fd;
    s->upgrade_peer_pid_ = pid;
    const config::Config& cfg = s->config();
    std::vector<upgrade::SocketDesc> descs;
    std::vector<int> fds;
    for (size_t i = 0; i < s->listen_fds_.size() && i < cfg.listeners.size(); ++i) {
      descs.push_back({upgrade::SocketKind::Listener,
                       std::string(config::to_string(cfg.listeners[i].protocol)),
                       cfg.listeners[i].listen.text});
      fds.push_back(s->listen_fds_[i]);
    }
    if (s->admin_fd_ >= 0 && cfg.admin) {
      descs.push_back({upgrade::SocketKind::Admin, "-", cfg.admin->listen.text});
      fds.push_back(s->admin_fd_);
    }
    if (s->http_ && s->http_->listen_fd() >= 0 && cfg.metrics) {
      descs.push_back({upgrade::SocketKind::Metrics, "-", cfg.metrics->listen.text});
      fds.push_back(s->http_->listen_fd());
    }
    descs.push_back({upgrade::SocketKind::Upgrade, "-", "unix:" + cfg.server.upgrade_socket});
    fds.push_back(s->upgrade_fd_);
    const std::string offer = upgrade::encode_offer(descs);
    std::string err;
    if (offer.empty()) {
      s->end_upgrade_conn("the listening sockets cannot be described");
      continue;
    }
    if (!upgrade::send_packet(fd, offer, fds, err)) {
      s->end_upgrade_conn(("cannot send the sockets: " + err).c_str());
      continue;
    }
    LOG_INFO(
        "online upgrade: pid %d asked for the listening sockets; sent %zu, waiting for it to "
        "serve",
        pid, fds.size());
    auto* ph = new uv_poll_t;
    uv_poll_init_socket(&s->loop_, ph, fd);
    ph->data = s;
    uv_poll_start(ph, UV_READABLE, &Server::on_upgrade_peer);
    s->upgrade_conn_poll_ = ph;
    uv_timer_start(&s->upgrade_timer_, &Server::on_upgrade_timeout, kGoTimeoutMs, 0);
  }
}

void Server::on_upgrade_peer(uv_poll_t* h, int status, int /*events*/) {
  auto* s = static_cast<Server*>(h->data);
  if (status < 0) {
    s->end_upgrade_conn(uv_strerror(status));
    return;
  }
  std::string msg;
  std::vector<int> fds;
  std::string err;
  if (!upgrade::recv_packet(s->upgrade_conn_, msg, fds, err)) {
    if (err == "timed out") return;  // nothing yet
    s->end_upgrade_conn(err == "closed" ? "it exited or closed the connection before serving"
                                        : err.c_str());
    return;
  }
  for (int fd : fds) ::close(fd);  // none expected
  if (s->shutting_down()) {
    s->end_upgrade_conn("this process is shutting down");
    return;
  }
  if (upgrade::decode_go(msg) == 0) {
    s->end_upgrade_conn("unexpected message");
    return;
  }
  s->hand_over(s->upgrade_peer_pid_);
}

void Server::on_upgrade_timeout(uv_timer_t* h) {
  static_cast<Server*>(h->data)->end_upgrade_conn("it did not start serving within 60 s");
}

void Server::end_upgrade_conn(const char* why) {
  if (upgrade_conn_ < 0) return;
  if (why != nullptr) {
    LOG_WARN("online upgrade by pid %d abandoned: %s; this process keeps serving",
             upgrade_peer_pid_, why);
  }
  if (upgrade_conn_poll_ != nullptr) {
    uv_close(reinterpret_cast<uv_handle_t*>(upgrade_conn_poll_),
             [](uv_handle_t* hh) { delete reinterpret_cast<uv_poll_t*>(hh); });
    upgrade_conn_poll_ = nullptr;
  }
  ::close(upgrade_conn_);
  upgrade_conn_ = -1;
  uv_timer_stop(&upgrade_timer_);
}

void Server::hand_over(int new_pid) {
  handed_to_ = new_pid;
  // Every worker stops polling its listeners before this process calls
  // itself shutting down (from then on a connection it accepted would be
  // refused): each connection is accepted by the new process or, until
  // then, served here.
  struct Barrier {
    std::mutex mu;
    std::condition_variable cv;
    size_t left = 0;
  };
  auto b = std::make_shared<Barrier>();
  b->left = static_cast<size_t>(workers_.size());
  workers_.post_all([b](Worker& w) {
    w.stop_accepting();
    std::lock_guard<std::mutex> lk(b->mu);
    if (--b->left == 0) b->cv.notify_all();
  });
  {
    std::unique_lock<std::mutex> lk(b->mu);
    if (!b->cv.wait_for(lk, kStopAcceptingWait, [&] { return b->left == 0; })) {
      LOG_WARN("online upgrade: %zu worker(s) did not stop accepting within 5 s", b->left);
    }
  }
  if (http_) http_->stop_listening();
  // Our copy of the upgrade socket closes; the new process listens on it.
  if (upgrade_polling_) {
    uv_close(reinterpret_cast<uv_handle_t*>(&upgrade_poll_), nullptr);
    upgrade_polling_ = false;
  }
  if (upgrade_fd_ >= 0) ::close(upgrade_fd_);
  upgrade_fd_ = -1;
  std::string err;
  if (!upgrade::send_packet(upgrade_conn_, upgrade::encode_done(::getpid()), {}, err)) {
    LOG_WARN("online upgrade: cannot confirm to pid %d: %s", new_pid, err.c_str());
    end_upgrade_conn(nullptr);
  } else {
    start_offering(new_pid);
  }
  LOG_INFO(
      "online upgrade: pid %d serves the listening sockets; this process no longer accepts "
      "and serves its %u client(s) until they leave (up to shutdown_timeout, %lld ms; "
      "SIGTERM: drain now)",
      new_pid, directory_->client_count(),
      static_cast<long long>(config().server.shutdown_timeout.count()));
  wait_for_clients();
}

void Server::start_offering(int new_pid) {
  // The connection is the offering thread's from here.
  if (upgrade_conn_poll_ != nullptr) {
    uv_close(reinterpret_cast<uv_handle_t*>(upgrade_conn_poll_),
             [](uv_handle_t* hh) { delete reinterpret_cast<uv_poll_t*>(hh); });
    upgrade_conn_poll_ = nullptr;
  }
  uv_timer_stop(&upgrade_timer_);
  upgrade_offers_ =
      std::make_shared<UpgradeOffers>(upgrade_conn_, new_pid, workers_, metrics_.get());
  upgrade_conn_ = -1;
  // Once every worker has queued the clients idle now, "end" follows
  // them: the new process waits for that first batch.
  struct Left {
    std::atomic<int> n;
  };
  auto left = std::make_shared<Left>();
  left->n = workers_.size();
  std::shared_ptr<UpgradeOffers> offers = upgrade_offers_;
  workers_.post_all([offers, left](Worker& w) {
    w.start_offering(offers);
    if (--left->n == 0) offers->first_batch_queued();
  });
}

void Server::spawn_upgrade() {
  if (exe_path_.empty() || shutting_down() || handed_to_.load() != 0) {
    LOG_WARN("SIGUSR2: no upgrade started: %s",
             exe_path_.empty() ? "the path of the sqlmux binary is unknown" : "shutting down");
    return;
  }
  if (config().server.upgrade_socket.empty()) {
    LOG_WARN("SIGUSR2: no upgrade started: [server] upgrade_socket is not set");
    return;
  }
  if (upgrade_child_ != nullptr) {
    LOG_WARN("SIGUSR2: no upgrade started: pid %d, started by the previous SIGUSR2, still runs",
             upgrade_child_->pid);
    return;
  }
  std::string source = config().source;
  std::string exe = exe_path_;
  char upgrade_flag[] = "--upgrade";
  char config_flag[] = "--config";
  char* args[] = {exe.data(), upgrade_flag, config_flag, source.data(), nullptr};
  uv_stdio_container_t stdio[3];
  for (int i = 0; i < 3; ++i) {
    stdio[i].flags = UV_INHERIT_FD;
    stdio[i].data.fd = i;
  }
  uv_process_options_t o{};
  o.file = exe.c_str();
  o.args = args;
  o.stdio = stdio;
  o.stdio_count = 3;
  o.exit_cb = [](uv_process_t* p, int64_t status, int sig) {
    auto* s = static_cast<Server*>(p->data);
    if (status != 0 || sig != 0) {
      LOG_WARN("SIGUSR2: the new process (pid %d) exited with status %lld%s", p->pid,
               static_cast<long long>(status), sig != 0 ? " on a signal" : "");
    }
    s->upgrade_child_ = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(p),
             [](uv_handle_t* hh) { delete reinterpret_cast<uv_process_t*>(hh); });
  };
  auto* p = new uv_process_t;
  p->data = this;
  if (const int rc = uv_spawn(&loop_, p, &o); rc != 0) {
    LOG_ERROR("SIGUSR2: cannot start %s --upgrade: %s", exe.c_str(), uv_strerror(rc));
    delete p;
    return;
  }
  upgrade_child_ = p;
  LOG_INFO("SIGUSR2: started %s --upgrade --config %s (pid %d)", exe.c_str(), source.c_str(),
           p->pid);
}

}  // namespace sqlmux
