// Runtime control of the daemon: configuration reload, the admin console's
// listener, and the switches the console flips (pause, disabled servers,
// shutdown).
#include <netdb.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "config/config_diff.h"
#include "daemon/core/log.h"
#include "daemon/core/pool.h"
#include "daemon/ops/fd_limit.h"
#include "daemon/ops/health_check.h"
#include "daemon/server.h"

namespace sqlmux {

namespace {

// A listening socket on `addr` (TCP or unix); -1 on failure (logged).
int listen_on(const config::Address& addr) {
  int fd = -1;
  if (addr.kind == config::Address::Kind::Unix) {
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    if (addr.unix_path.size() >= sizeof sa.sun_path) {
      LOG_ERROR("admin listener %s: path too long", addr.text.c_str());
      return -1;
    }
    std::strncpy(sa.sun_path, addr.unix_path.c_str(), sizeof sa.sun_path - 1);
    struct stat st {};
    if (::stat(sa.sun_path, &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(sa.sun_path);
    fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
      LOG_ERROR("admin listener %s: %s", addr.text.c_str(), strerror(errno));
      if (fd >= 0) ::close(fd);
      return -1;
    }
    ::chmod(sa.sun_path, 0700);  // the console: its owner only
  } else {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    addrinfo* res = nullptr;
    std::string port = std::to_string(addr.port);
    const char* host = addr.host.empty() || addr.host == "*" ? nullptr : addr.host.c_str();
    int rc = ::getaddrinfo(host, port.c_str(), &hints, &res);
    if (rc != 0 || res == nullptr) {
      LOG_ERROR("admin listener %s: %s", addr.text.c_str(), gai_strerror(rc));
      return -1;
    }
    fd = ::socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || ::bind(fd, res->ai_addr, res->ai_addrlen) != 0) {
      LOG_ERROR("admin listener %s: cannot bind: %s", addr.text.c_str(), strerror(errno));
      if (fd >= 0) ::close(fd);
      ::freeaddrinfo(res);
      return -1;
    }
    ::freeaddrinfo(res);
  }
  if (::listen(fd, 128) != 0) {
    LOG_ERROR("admin listener %s: listen: %s", addr.text.c_str(), strerror(errno));
    ::close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

bool Server::open_admin_listener() {
  const auto& admin = config().admin;
  if (!admin) return true;
  admin_fd_ = take_inherited(upgrade::SocketKind::Admin, "-", admin->listen);
  if (admin_fd_ >= 0) {
    LOG_INFO("admin console listening on %s (database \"sqlmux\"): socket from the running process",
             admin->listen.text.c_str());
    return true;
  }
  admin_fd_ = listen_on(admin->listen);
  if (admin_fd_ < 0) return false;
  if (admin->listen.kind == config::Address::Kind::Unix)
    unix_paths_.push_back(admin->listen.unix_path);
  LOG_INFO("admin console listening on %s (database \"sqlmux\")", admin->listen.text.c_str());
  return true;
}

void Server::request_shutdown() {
  uv_async_send(&shutdown_async_);
}

void Server::set_backend_disabled(const std::string& address, bool disabled) {
  hosts_.get(address).set_disabled(disabled);
  LOG_INFO("server %s %s by the admin console", address.c_str(),
           disabled ? "disabled (draining)" : "enabled");
  hosts_changed();
}

void Server::kick_pools(const std::vector<Pool*>& pools) {
  for (Pool* p : pools) {
    workers_.post_all([p](Worker& w) {
      if (!w.shutting_down()) p->kick(w);
    });
  }
}

void Server::hosts_changed() {
  if (shutting_down()) return;
  std::vector<Pool*> pools;
  directory_->for_each_pool([&](Pool& p) { pools.push_back(&p); });
  kick_pools(pools);
}

void Server::set_paused(const std::string& pool, bool paused) {
  std::vector<Pool*> affected = directory_->set_paused(pool, paused);
  if (paused) return;
  // Waiting clients get backends again, on the worker they wait on.
  kick_pools(affected);
}

bool Server::reload(std::vector<std::string>* errors) {
  std::lock_guard<std::mutex> rl(reload_mu_);
  if (reload_hooks_.before) reload_hooks_.before();
  const config::Config& cur = config();
  auto finish = [&](bool ok) {
    if (reload_hooks_.after) reload_hooks_.after(ok);
    return ok;
  };
  if (shutting_down()) {
    LOG_WARN("reload: refused, the daemon is shutting down");
    if (errors) errors->push_back("the daemon is shutting down");
    return finish(false);
  }
  config::LoadResult r = config::load_file(cur.source);
  if (!r.errors.empty()) {
    LOG_ERROR("reload: %s is invalid; the running configuration is unchanged:", cur.source.c_str());
    for (const auto& e : r.errors) {
      LOG_ERROR("reload: %s", e.to_string().c_str());
      if (errors) errors->push_back(e.to_string());
    }
    return finish(false);
  }
  config::Config next = std::move(*r.config);
  const config::ConfigDiff d = config::diff(cur, next);

  // What needs a restart keeps its running value.
  next.server.workers = cur.server.workers;
  next.server.peer_id = cur.server.peer_id;
  next.server.upgrade_socket = cur.server.upgrade_socket;
  next.listeners = cur.listeners;
  next.tls = cur.tls;  // the TLS context is built once, at start
  if (cur.admin.has_value() != next.admin.has_value()) {
    next.admin = cur.admin;
  } else if (cur.admin && next.admin) {
    next.admin->listen = cur.admin->listen;
  }
  for (auto& p : next.pools) {
    if (const config::PoolConfig* before = cur.find_pool(p.name, p.protocol)) {
      p = config::live_pool_config(*before, p);
    }
  }
  directory_->install(std::move(next));
  std::vector<Pool*> pools;
  directory_->for_each_pool([&](Pool& p) { pools.push_back(&p); });
  log::configure(config().server);
  if (health_) health_->configure(config());
  // Each worker serves waiters from a larger size and closes idle backends
  // that a smaller size or a removed pool made obsolete.
  kick_pools(pools);
  LOG_INFO("reload: %s: %s", config().source.c_str(), d.summary().c_str());
  (void)fd_limit::ensure(config(), workers_.size(), "reload");
  for (const auto& key : d.restart) {
    LOG_WARN("reload: %s changed; it needs a restart (the running value is kept)", key.c_str());
  }
  for (const auto& c : d.pools_changed) {
    for (const auto& key : c.restart) {
      LOG_WARN("reload: pool %s: %s changed; it needs a restart (the running value is kept)",
               c.name.c_str(), key.c_str());
    }
  }
  return finish(true);
}

}  // namespace sqlmux
