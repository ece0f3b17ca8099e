// Background health checks of backend hosts ([health]): one thread that
// multiplexes non-blocking connections with poll(2): libpq's for
// PostgreSQL hosts, MariaDB Connector/C's (mysql_real_connect_start / _cont)
// for MySQL hosts. Each check connects, runs `SELECT pg_is_in_recovery()`
// (or `SELECT @@global.read_only`: ON means a replica) and records the
// outcome and the role in the host's HostStatus. Nothing here touches a worker's loop;
// a change of health or role is reported through a callback.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "config/config.h"

namespace sqlmux {

class HostRegistry;

class HealthChecker {
 public:
  using OnChange = std::function<void()>;
  HealthChecker(HostRegistry& hosts, OnChange on_change);
  ~HealthChecker();
  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;

  // Which hosts to check, how often and with which login (at start and on
  // every reload). Without [health] no checks run and hosts read as
  // unchecked. Starts the thread on first use.
  void configure(const config::Config& cfg);
  void stop();

  // What configure() derives for one host (exposed for tests).
  struct Target {
    std::string address;  // as configured ("host:port" or "unix:/dir")
    std::string host;     // for libpq: a host name, an address or a directory
    std::string port;
    std::string user;
    std::optional<std::string> password;
    std::string database;
    std::string sslmode = "disable";  // the pool's server_tls
    std::string sslrootcert;          // its server_tls_ca
    bool mysql = false;               // a MySQL pool's host
  };
  [[nodiscard]] static std::vector<Target> targets(const config::Config& cfg);

 private:
  struct Check;
  void run();
  void wake();

  HostRegistry& hosts_;
  OnChange on_change_;
  std::thread thread_;
  int wake_fd_ = -1;
  std::atomic<bool> stop_{false};
  std::mutex mu_;  // guards the two below (configure -> thread)
  std::optional<config::HealthConfig> next_settings_;
  std::vector<Target> next_targets_;
  bool changed_ = false;
};

}  // namespace sqlmux
