// Background health checks of backend hosts ([health]): one thread that
// multiplexes the checks of every host with poll(2). Each check connects,
// asks the server whether it is a replica and records the outcome and the
// role in the host's HostStatus. Nothing here touches a worker's loop; a
// change of health or role is reported through a callback.
//
// What a check says on the wire is a HealthProbe's business, made by the
// factory registered for the pool's protocol (daemon/pg/health_probe.h,
// daemon/mysql/health_probe.h); this file knows neither protocol.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <poll.h>

#include "config/config.h"
#include "pool/host_policy.h"

namespace sqlmux {

class HostRegistry;
class HostStatus;

// What the checker derives from the configuration for one host.
struct HealthTarget {
  std::string address;  // as configured ("host:port" or "unix:/dir")
  std::string host;     // a host name, an address or a socket's directory
  std::string port;
  std::string user;
  std::optional<std::string> password;
  std::string database;
  std::string sslmode = "disable";                         // the pool's server_tls
  std::string sslrootcert;                                 // its server_tls_ca
  config::Protocol protocol = config::Protocol::Postgres;  // the pool's
};

// One check of one host, driven by the checker's thread: start(), then
// advance() whenever poll(2) reports something on fd() for events(), until
// one of them returns the outcome. Destroying a probe abandons its check.
class HealthProbe {
 public:
  struct Outcome {
    bool ok = false;
    std::optional<pool::Role> role;  // when the server told
    std::string error;               // why not ok
  };
  using Step = std::optional<Outcome>;  // nullopt: still running

  HealthProbe() = default;
  virtual ~HealthProbe();
  HealthProbe(const HealthProbe&) = delete;
  HealthProbe& operator=(const HealthProbe&) = delete;
  HealthProbe(HealthProbe&&) = delete;
  HealthProbe& operator=(HealthProbe&&) = delete;

  virtual Step start() = 0;
  [[nodiscard]] virtual int fd() const = 0;
  [[nodiscard]] virtual short events() const = 0;  // POLLIN, POLLOUT
  virtual Step advance(short revents) = 0;
};

// A protocol's checks: the port of an address without one, and the probe
// for one check of a target with the [health] settings.
struct HealthProbeKind {
  uint16_t default_port = 0;
  std::function<std::unique_ptr<HealthProbe>(const HealthTarget&, const config::HealthConfig&)>
      make;
};
using HealthProbes = std::map<config::Protocol, HealthProbeKind>;

class HealthChecker {
 public:
  using OnChange = std::function<void()>;
  using Target = HealthTarget;
  HealthChecker(HostRegistry& hosts, HealthProbes probes, OnChange on_change);
  ~HealthChecker();
  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;

  // Which hosts to check, how often and with which login (at start and on
  // every reload). Without [health] no checks run and hosts read as
  // unchecked. Starts the thread on first use.
  void configure(const config::Config& cfg);
  void stop();

  // What configure() derives (exposed for tests): one target per host of
  // a pool whose protocol has a probe.
  [[nodiscard]] static std::vector<Target> targets(const config::Config& cfg,
                                                   const HealthProbes& probes);

 private:
  struct Check;
  void run();
  void wake();
  // The thread's steps.
  void take_configuration();
  [[nodiscard]] uint64_t start_and_expire(uint64_t now);
  void start(Check& c, uint64_t now);
  void finish(Check& c, const HealthProbe::Outcome& outcome);
  void poll_once(int timeout_ms);

  HostRegistry& hosts_;
  const HealthProbes probes_;
  OnChange on_change_;
  std::thread thread_;
  int wake_fd_ = -1;
  std::atomic<bool> stop_{false};
  std::mutex mu_;  // guards the three below (configure -> thread)
  std::optional<config::HealthConfig> next_settings_;
  std::vector<Target> next_targets_;
  bool changed_ = false;
  // The thread's own.
  std::optional<config::HealthConfig> settings_;
  std::vector<Check> checks_;
  std::vector<pollfd> fds_;
  std::vector<Check*> polled_;
};

}  // namespace sqlmux
