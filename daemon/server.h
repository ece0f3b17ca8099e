// The daemon: configuration, users, pools, workers, signals and shutdown.
#pragma once

#include <uv.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "config/config.h"
#include "daemon/core/auth_limiter.h"
#include "daemon/ops/hosts.h"
#include "daemon/net/tls.h"
#include "protocol/pg/auth.h"

namespace prometheus {
class Exposer;
}

namespace sqlmux {

class HealthChecker;
class Metrics;

class Pool;
class Worker;

// A user as authentication needs it, derived once from the configuration.
struct UserAuth {
  config::UserConfig cfg;
  config::AuthMethod method = config::AuthMethod::ScramSha256;
  std::optional<pg::auth::ScramVerifier> scram;  // SCRAM and cleartext checks
  std::string md5;                               // "md5..." when derivable
  std::string plaintext;                         // when configured in clear
};

// Derives a user's verifiers and hashes from its configuration.
[[nodiscard]] UserAuth derive_user(const config::UserConfig& u);

class Server {
 public:
  explicit Server(config::Config cfg);
  ~Server();

  // Opens listeners, runs workers until shutdown; returns the exit code.
  int run();

  // The current configuration (a reload swaps in a new version; earlier
  // ones stay alive, so the reference is valid for the daemon's life).
  [[nodiscard]] const config::Config& config() const {
    return *cfg_.load(std::memory_order_acquire);
  }
  [[nodiscard]] int worker_count() const { return static_cast<int>(workers_.size()); }
  [[nodiscard]] Worker& worker(int i) { return *workers_[static_cast<size_t>(i)]; }

  [[nodiscard]] const UserAuth* find_user(std::string_view name) const;
  // A verifier for users that do not exist, so that they get the same
  // SCRAM exchange as a wrong password.
  [[nodiscard]] const pg::auth::ScramVerifier& mock_verifier() const { return mock_; }
  // Authentication failures per client address (any thread).
  [[nodiscard]] AuthLimiter& auth_limiter() { return auth_limiter_; }
  // The pool serving `database` for `user` (created on first use for pools
  // that log in as the client's own user); nullptr when there is none.
  [[nodiscard]] Pool* find_pool(std::string_view database, const UserAuth& user,
                                config::Protocol proto = config::Protocol::Postgres);
  // The key of a pool in pools_: its name, prefixed "mysql:" for MySQL pools.
  [[nodiscard]] static std::string pool_key(const config::PoolConfig& pc);
  // The version string MySQL clients are greeted with: the last one a MySQL
  // backend sent (any thread).
  [[nodiscard]] std::string mysql_version();
  void set_mysql_version(const std::string& v);
  void for_each_pool(const std::function<void(Pool&)>& f);

  // max_client_conn accounting.
  [[nodiscard]] bool try_add_client();
  void remove_client();
  [[nodiscard]] uint64_t next_client_id() { return next_client_id_.fetch_add(1) + 1; }

  // Cancel keys sqlmux gave its clients.
  void register_cancel(int32_t pid, int32_t key, int worker, uint64_t client_id);
  void unregister_cancel(int32_t pid);
  [[nodiscard]] bool lookup_cancel(int32_t pid, int32_t key, int& worker, uint64_t& client_id);

  [[nodiscard]] bool shutting_down() const { return shutting_down_.load(); }
  void worker_stopped();

  // The Prometheus collector; nullptr without a [metrics] section.
  [[nodiscard]] Metrics* metrics() const { return metrics_.get(); }
  // --- Runtime control (server_control.cpp); thread-safe ---
  // Re-reads the configuration file and applies what can change while
  // running (SIGHUP and the console's RELOAD). False, with nothing changed,
  // when the file is invalid; `errors` then holds file:line:col messages.
  bool reload(std::vector<std::string>* errors = nullptr);
  // Called around every reload (e.g. sd_notify RELOADING=1 / READY=1, a
  // metrics counter). Set before run(); `after` gets reload()'s result.
  struct ReloadHooks {
    std::function<void()> before;
    std::function<void(bool ok)> after;
  };
  void set_reload_hooks(ReloadHooks hooks) { reload_hooks_ = std::move(hooks); }
  // As SIGTERM (the console's SHUTDOWN).
  void request_shutdown();
  // DISABLE / ENABLE host: drains `address` (no new transactions; running
  // ones finish; idle connections close) or puts it back.
  void set_backend_disabled(const std::string& address, bool disabled);
  [[nodiscard]] bool backend_disabled(std::string_view address);
  // Backend hosts: health, observed roles, DISABLE (any thread).
  [[nodiscard]] HostRegistry& hosts() { return hosts_; }
  // The clients' TLS context ([tls]); nullptr without one.
  [[nodiscard]] SSL_CTX* tls_ctx() const { return tls_ctx_.get(); }
  // A host changed health or role: every worker re-examines every pool
  // (closes idle backends that no longer serve, serves waiters). Any thread.
  void hosts_changed();
  // PAUSE / RESUME: `pool` empty = every pool; applies to pools created later too.
  void set_paused(const std::string& pool, bool paused);
  [[nodiscard]] bool is_admin_user(std::string_view name) const;

 private:
  static void on_signal(uv_signal_t* h, int signum);
  [[nodiscard]] bool open_admin_listener();
  void apply_pools(const config::Config& next);  // with reload_mu_ held
  static void on_shutdown_tick(uv_timer_t* h);
  static void on_status_tick(uv_timer_t* h);
  // "ready: 12 clients, 3 server connections" (systemd STATUS=).
  [[nodiscard]] std::string status_line(const char* state);
  void begin_shutdown();
  void stop_workers();
  [[nodiscard]] bool open_listeners(std::vector<int>& fds);
  [[nodiscard]] bool start_metrics();

  using UserMap = std::map<std::string, UserAuth, std::less<>>;
  std::atomic<const config::Config*> cfg_{nullptr};
  std::atomic<const UserMap*> users_{nullptr};
  // Every version loaded (reloads are rare; readers may hold references).
  std::vector<std::unique_ptr<const config::Config>> cfg_versions_;
  std::vector<std::unique_ptr<const UserMap>> user_versions_;
  std::mutex reload_mu_;
  ReloadHooks reload_hooks_;
  HostRegistry hosts_;  // before the pools, which point into it
  tls::Ctx tls_ctx_;
  std::vector<config::ClientTls> listen_tls_;   // per entry of listen_fds_
  std::vector<config::Protocol> listen_proto_;  // per entry of listen_fds_
  std::mutex version_mu_;
  std::string mysql_version_;                        // under version_mu_
  std::set<std::string, std::less<>> paused_pools_;  // under pools_mu_
  bool all_paused_ = false;                          // under pools_mu_
  uv_async_t shutdown_async_{};
  int admin_fd_ = -1;
  pg::auth::ScramVerifier mock_;
  AuthLimiter auth_limiter_;
  std::vector<std::unique_ptr<Worker>> workers_;

  std::mutex pools_mu_;
  std::map<std::pair<std::string, std::string>, std::unique_ptr<Pool>> pools_;

  std::atomic<uint32_t> clients_{0};
  std::atomic<uint64_t> next_client_id_{0};

  struct CancelEntry {
    int32_t key;
    int worker;
    uint64_t client_id;
  };
  std::mutex cancel_mu_;
  std::unordered_map<int32_t, CancelEntry> cancels_;

  // Health checks ([health]); stopped before the workers.
  std::unique_ptr<HealthChecker> health_;
  std::atomic<bool> shutting_down_{false};
  std::atomic<int> workers_running_{0};
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
  // Last: the exposer (and its scrapes) end before anything they read.
  std::shared_ptr<Metrics> metrics_;
  std::unique_ptr<prometheus::Exposer> exposer_;
};

}  // namespace sqlmux
