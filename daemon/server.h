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
#include <string>
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

namespace sqlmux {

class HealthChecker;
class Metrics;
class Pool;
class Protocols;

class Server final : public Control {
 public:
  explicit Server(config::Config cfg);
  ~Server() override;

  // Opens listeners, runs workers until shutdown; returns the exit code.
  int run();

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
  void stop_workers();
  [[nodiscard]] bool open_listeners(std::vector<int>& fds);
  // At exit, after the workers: refuses what is queued, then closes.
  void close_listeners();
  [[nodiscard]] bool start_metrics();

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
  uv_signal_t sigterm_{}, sigint_{}, sighup_{};
  uv_timer_t shutdown_timer_{};
  uv_timer_t status_timer_{};  // refreshes systemd's STATUS= (only under systemd)
  std::string last_status_;
  uint64_t shutdown_started_ = 0;
  bool stop_sent_ = false;
  int signals_seen_ = 0;
  std::vector<int> listen_fds_;
  std::vector<std::string> unix_paths_;
  // Last: the HTTP endpoint (and its scrapes) end before anything they read.
  std::shared_ptr<Metrics> metrics_;
  std::unique_ptr<HttpEndpoint> http_;  // [metrics]: /metrics, /healthz, /readyz
  std::atomic<bool> started_{false};    // workers running, listeners open
  // /readyz: taking clients (started, not shutting down, every pool with a
  // backend host its health checks do not call down); else why not.
  [[nodiscard]] std::pair<bool, std::string> readiness();
};

}  // namespace sqlmux
