// The process: its lifecycle (listeners, signals, workers, shutdown) and
// the switches the console flips (core/control.h). It owns the parts the
// workers share (core/directory.h, the hosts, metrics, health checks) and
// gets the protocols from the composition root (compose.h).
#pragma once

#include <uv.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "config/config.h"
#include "daemon/core/auth_limiter.h"
#include "daemon/core/control.h"
#include "daemon/core/directory.h"
#include "daemon/core/worker.h"
#include "daemon/net/tls.h"
#include "daemon/ops/hosts.h"
#include "daemon/ops/http_endpoint.h"
#include "daemon/ops/upgrade_wire.h"

namespace sqlmux {

class HealthChecker;
class Metrics;
class Pool;
class Protocols;
class UpgradeOffers;

class Server final : public Control {
 public:
  explicit Server(config::Config cfg);
  ~Server() override;

  // Opens listeners, runs workers until shutdown; returns the exit code.
  int run();

  // Online upgrade (README "Upgrade procedure", server_upgrade.cpp). Before
  // run(): take the listening sockets over from the process serving on
  // [server] upgrade_socket instead of opening them (`sqlmux --upgrade`).
  void set_upgrade_mode() { upgrade_mode_ = true; }
  // Before run(): the binary SIGUSR2 starts as `EXE --upgrade --config
  // FILE` (the path this process was started from, so that a package
  // upgrade's new binary is the one started).
  void set_exe_path(std::string path) { exe_path_ = std::move(path); }

  [[nodiscard]] const config::Config& config() const { return directory_->config(); }

  // Called around every reload (e.g. sd_notify RELOADING=1 / READY=1, a
  // metrics counter). Set before run(); `after` gets reload()'s result.
  struct ReloadHooks {
    std::function<void()> before;
    std::function<void(bool ok)> after;
  };
  void set_reload_hooks(ReloadHooks hooks) { reload_hooks_ = std::move(hooks); }

  // --- Control (server_control.cpp); thread-safe ---
  // SIGHUP and the console's RELOAD.
  bool reload(std::vector<std::string>* errors) override;
  void request_shutdown() override;
  [[nodiscard]] bool shutting_down() const override { return shutting_down_.load(); }
  void set_paused(const std::string& pool, bool paused) override;
  void set_backend_disabled(const std::string& address, bool disabled) override;
  void hosts_changed() override;

 private:
  static void on_signal(uv_signal_t* h, int signum);
  [[nodiscard]] bool open_admin_listener();
  // Every worker serves its waiters and closes obsolete idle backends of every pool.
  void kick_pools(const std::vector<Pool*>& pools);
  static void on_shutdown_tick(uv_timer_t* h);
  static void on_status_tick(uv_timer_t* h);
  // "ready: 12 clients, 3 server connections" (systemd STATUS=).
  [[nodiscard]] std::string status_line(const char* state);
  void begin_shutdown();
  // After an online upgrade: the clients stay until they leave; exit when
  // the last one has, or at shutdown_timeout.
  void wait_for_clients();
  void stop_workers();
  [[nodiscard]] bool open_listeners(std::vector<int>& fds);
  // At exit, after the workers: refuses what is queued, then closes.
  void close_listeners();
  [[nodiscard]] bool start_metrics();

  // --- Online upgrade (server_upgrade.cpp) ---
  struct Inherited {
    upgrade::SocketDesc desc;
    int fd;
  };
  // New process: connects to upgrade_socket and receives the sockets.
  [[nodiscard]] bool receive_handover();
  // New process: the received socket of `kind` (and listener `protocol`)
  // bound to `addr`, or -1; the caller owns it.
  [[nodiscard]] int take_inherited(upgrade::SocketKind kind, std::string_view protocol,
                                   const config::Address& addr);
  void close_unused_inherited();
  // New process, serving: tells the old one to hand over and waits for it.
  void finish_takeover();
  // Listens on upgrade_socket (or serves the inherited one).
  [[nodiscard]] bool open_upgrade_socket();
  static void on_upgrade_accept(uv_poll_t* h, int status, int events);
  static void on_upgrade_peer(uv_poll_t* h, int status, int events);
  static void on_upgrade_timeout(uv_timer_t* h);
  void end_upgrade_conn(const char* why);
  // Old process: the new one serves; stop accepting and drain.
  void hand_over(int new_pid);
  // Old process, after "done": the workers offer their idle clients to the
  // new process through upgrade_offers_ (those idle now, then each as it
  // becomes idle), until it takes no more or this process stops.
  void start_offering(int new_pid);
  // New process, after "done": serves the clients the old one hands over;
  // `later` false: until the first batch ends (true: it did), true: every
  // later batch, until the old process closes or this one stops.
  bool adopt_clients(int old_pid, bool later);
  // SIGUSR2: starts `exe_path_ --upgrade --config FILE`.
  void spawn_upgrade();

  // What the pools point into comes before the directory that owns them.
  std::unique_ptr<Protocols> protocols_;  // from the composition root
  HostRegistry hosts_;
  Workers workers_;
  std::unique_ptr<PoolEnv> pool_env_;
  std::unique_ptr<Directory> directory_;
  Services services_;
  std::mutex reload_mu_;
  ReloadHooks reload_hooks_;
  tls::Ctx tls_ctx_;
  std::vector<ClientFactory> listen_clients_;   // per entry of listen_fds_
  std::vector<RefusalWriter> listen_refusals_;  // per entry of listen_fds_
  uv_async_t shutdown_async_{};
  int admin_fd_ = -1;
  AuthLimiter auth_limiter_;

  // Health checks ([health]); stopped before the workers.
  std::unique_ptr<HealthChecker> health_;
  std::atomic<bool> shutting_down_{false};
  uv_loop_t loop_{};
  uv_signal_t sigterm_{}, sigint_{}, sighup_{}, sigusr2_{};
  uv_timer_t shutdown_timer_{};
  uv_timer_t status_timer_{};  // refreshes systemd's STATUS= (only under systemd)
  std::string last_status_;
  uint64_t shutdown_started_ = 0;
  bool stop_sent_ = false;
  int signals_seen_ = 0;
  std::vector<int> listen_fds_;
  std::vector<std::string> unix_paths_;
  // Online upgrade.
  bool upgrade_mode_ = false;  // started as `sqlmux --upgrade`
  std::string exe_path_;       // what SIGUSR2 starts
  std::vector<Inherited> inherited_;
  int takeover_fd_ = -1;      // new process: its connection to the old one
  std::thread adopt_thread_;  // new process: adopts the old one's later batches
  std::atomic<bool> adopt_stop_{false};
  // Old process: its offering thread, from the handover until exit.
  std::shared_ptr<UpgradeOffers> upgrade_offers_;
  int upgrade_fd_ = -1;  // the listening upgrade socket
  uv_poll_t upgrade_poll_{};
  bool upgrade_polling_ = false;  // upgrade_poll_ is open
  int upgrade_conn_ = -1;         // old process: the new one asking
  int upgrade_peer_pid_ = 0;
  uv_poll_t* upgrade_conn_poll_ = nullptr;
  uv_process_t* upgrade_child_ = nullptr;  // what SIGUSR2 started, until it exits
  uv_timer_t upgrade_timer_{};
  std::atomic<int> handed_to_{0};  // old process: the pid it handed its sockets to
  // Last: the HTTP endpoint (and its scrapes) end before anything they read.
  std::shared_ptr<Metrics> metrics_;
  std::unique_ptr<HttpEndpoint> http_;  // [metrics]: /metrics, /healthz, /readyz
  std::atomic<bool> started_{false};    // workers running, listeners open
  // /readyz: taking clients (started, not shutting down, every pool with a
  // backend host its health checks do not call down); else why not.
  [[nodiscard]] std::pair<bool, std::string> readiness();
};

}  // namespace sqlmux
