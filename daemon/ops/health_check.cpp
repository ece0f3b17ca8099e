#include "daemon/ops/health_check.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>

#include "daemon/core/log.h"
#include "daemon/ops/hosts.h"

namespace sqlmux {

namespace {

uint64_t mono_ms() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

}  // namespace

HealthProbe::~HealthProbe() = default;

// One host's checks: waiting for due_ms without a probe, or running one
// until deadline_ms.
struct HealthChecker::Check {
  Target target;
  HostStatus* status = nullptr;
  std::unique_ptr<HealthProbe> probe;  // the running check
  uint64_t due_ms = 0;                 // next start (waiting)
  uint64_t deadline_ms = 0;            // the running check's timeout
  uint64_t started_ms = 0;
};

HealthChecker::HealthChecker(HostRegistry& hosts, HealthProbes probes, OnChange on_change)
    : hosts_(hosts), probes_(std::move(probes)), on_change_(std::move(on_change)) {}

HealthChecker::~HealthChecker() {
  stop();
}

std::vector<HealthChecker::Target> HealthChecker::targets(const config::Config& cfg,
                                                          const HealthProbes& probes) {
  std::vector<Target> out;
  if (!cfg.health) {
    return out;
  }
  const config::HealthConfig& h = *cfg.health;
  for (const config::PoolConfig& p : cfg.pools) {
    const auto kind = probes.find(p.protocol);
    if (kind == probes.end()) {
      continue;  // no checks for this protocol
    }
    for (const config::BackendConfig& b : p.backends) {
      if (std::any_of(out.begin(), out.end(),
                      [&](const Target& t) { return t.address == b.address.text; })) {
        continue;  // the first pool that lists a host gives its login
      }
      const config::HealthConfig::Login login = h.login_for(p.protocol);
      if (!login.user && !p.user) {
        continue;  // validation rejects this
      }
      Target t;
      t.address = b.address.text;
      const bool unix_socket = b.address.kind == config::Address::Kind::Unix;
      t.host = unix_socket ? b.address.unix_path : b.address.host;
      t.port = std::to_string(b.address.port != 0 ? b.address.port : kind->second.default_port);
      t.protocol = p.protocol;
      t.user = login.user ? *login.user : *p.user;
      t.password = login.user ? login.password : p.password;
      t.database = login.database ? *login.database : p.database;
      t.sslmode = p.server_tls;
      t.sslrootcert = p.server_tls_ca;
      out.push_back(std::move(t));
    }
  }
  return out;
}

void HealthChecker::configure(const config::Config& cfg) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    next_settings_ = cfg.health;
    next_targets_ = targets(cfg, probes_);
    changed_ = true;
  }
  if (!cfg.health) {
    // Hosts read as unchecked again: up, with their configured roles.
    hosts_.for_each([](HostStatus& s) { s.reset(); });
  }
  if (!thread_.joinable() && cfg.health) {
    wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    stop_ = false;
    thread_ = std::thread([this] { run(); });
  } else {
    wake();
  }
}

void HealthChecker::wake() {
  if (wake_fd_ < 0) {
    return;
  }
  uint64_t one = 1;
  ssize_t n = write(wake_fd_, &one, sizeof one);
  (void)n;
}

void HealthChecker::stop() {
  if (!thread_.joinable()) {
    return;
  }
  stop_ = true;
  wake();
  thread_.join();
  close(wake_fd_);
  wake_fd_ = -1;
}

void HealthChecker::run() {
  while (!stop_) {
    take_configuration();
    const uint64_t now = mono_ms();
    const uint64_t next_event = start_and_expire(now);
    poll_once(next_event > now ? static_cast<int>(next_event - now) : 0);
  }
  checks_.clear();  // abandons the running checks
  settings_.reset();
}

// A new configuration from configure(): a host that stays keeps its
// schedule and its running check; a host that goes has its check abandoned.
void HealthChecker::take_configuration() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (changed_) {
      changed_ = false;
      settings_ = next_settings_;
      std::vector<Check> next;
      for (Target& t : next_targets_) {
        auto it = std::find_if(checks_.begin(), checks_.end(),
                               [&](const Check& c) { return c.target.address == t.address; });
        if (it != checks_.end()) {
          next.push_back(std::move(*it));
          next.back().target = std::move(t);
        } else {
          Check c;
          c.status = &hosts_.get(t.address);
          c.target = std::move(t);
          next.push_back(std::move(c));
        }
      }
      checks_ = std::move(next);
      next_targets_.clear();
    }
  }
  if (!settings_) {
    checks_.clear();
  }
}

// Starts the checks that are due and fails those past their timeout.
// Returns when the next of these is due (at the latest in a second).
uint64_t HealthChecker::start_and_expire(uint64_t now) {
  uint64_t next_event = now + 1000;
  for (Check& c : checks_) {
    if (!c.probe && now >= c.due_ms) {
      start(c, now);
    }
    if (c.probe && now >= c.deadline_ms) {
      finish(c, {false, std::nullopt,
                 "timeout after " + std::to_string(settings_->timeout.count()) + " ms"});
    }
    next_event = std::min(next_event, c.probe ? c.deadline_ms : c.due_ms);
  }
  return next_event;
}

void HealthChecker::start(Check& c, uint64_t now) {
  c.started_ms = now;
  c.deadline_ms = now + static_cast<uint64_t>(settings_->timeout.count());
  const auto kind = probes_.find(c.target.protocol);
  if (kind != probes_.end() && kind->second.make) {
    c.probe = kind->second.make(c.target, *settings_);
  }
  if (!c.probe) {
    finish(c, {false, std::nullopt,
               "no health check for " + std::string(config::to_string(c.target.protocol))});
    return;
  }
  if (HealthProbe::Step done = c.probe->start()) {
    finish(c, *done);
  }
}

void HealthChecker::finish(Check& c, const HealthProbe::Outcome& outcome) {
  c.probe.reset();
  c.due_ms = c.started_ms + static_cast<uint64_t>(settings_->interval.count());
  if (!outcome.ok) {
    LOG_DEBUG("health check of %s failed: %s", c.target.address.c_str(), outcome.error.c_str());
  }
  if (c.status->record(outcome.ok, outcome.role, outcome.error, settings_->fall, settings_->rise) &&
      on_change_) {
    on_change_();
  }
}

// One poll(2) over the wake eventfd and the running checks, and a step of
// every check whose connection has something.
void HealthChecker::poll_once(int timeout_ms) {
  fds_.clear();
  polled_.clear();
  fds_.push_back({wake_fd_, POLLIN, 0});
  for (Check& c : checks_) {
    if (c.probe) {
      fds_.push_back({c.probe->fd(), c.probe->events(), 0});
      polled_.push_back(&c);
    }
  }
  if (poll(fds_.data(), fds_.size(), timeout_ms) < 0) {
    return;  // EINTR
  }
  if (fds_[0].revents != 0) {
    uint64_t v = 0;
    ssize_t n = read(wake_fd_, &v, sizeof v);
    (void)n;
  }
  for (size_t i = 1; i < fds_.size(); ++i) {
    if (fds_[i].revents == 0) {
      continue;
    }
    Check& c = *polled_[i - 1];
    if (HealthProbe::Step done = c.probe->advance(fds_[i].revents)) {
      finish(c, *done);
    }
  }
}

}  // namespace sqlmux
