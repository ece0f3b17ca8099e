// Backend hosts, one entry per configured address, shared by every pool
// that lists it: health (from the health checker and from failed connects),
// the role the server reports, and the console's DISABLE switch. Workers
// read the atomics on the per-transaction path without a lock; writers are
// rare (a check result, a failed connect, an admin command).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "pool/host_policy.h"

namespace sqlmux {

class HostStatus {
 public:
  // `changes`: the registry's counter, bumped whenever usable() or
  // observed_role() may read differently.
  explicit HostStatus(std::string address, std::atomic<uint64_t>* changes = nullptr)
      : address_(std::move(address)), changes_(changes) {}

  [[nodiscard]] const std::string& address() const { return address_; }
  [[nodiscard]] pool::Health health() const {
    return static_cast<pool::Health>(health_.load(std::memory_order_relaxed));
  }
  // The role the server reported at its latest successful check.
  [[nodiscard]] std::optional<pool::Role> observed_role() const {
    const int r = observed_.load(std::memory_order_relaxed);
    return r < 0 ? std::nullopt : std::optional<pool::Role>(static_cast<pool::Role>(r));
  }
  [[nodiscard]] bool disabled() const { return disabled_.load(std::memory_order_relaxed); }
  void set_disabled(bool on) {
    disabled_.store(on, std::memory_order_relaxed);
    changed();
  }
  // Neither down nor disabled by hand.
  [[nodiscard]] bool usable() const { return !disabled() && health() != pool::Health::Down; }

  // One check's outcome (or a connect's). `role` when the check could tell.
  // Returns true when the health or the role changed.
  bool record(bool ok, std::optional<pool::Role> role, std::string_view error, uint32_t fall,
              uint32_t rise);
  // A failed connect without health checks: only its error is kept.
  void note_error(std::string_view error);
  // Forgets the checks (health checks turned off by a reload).
  void reset();

  [[nodiscard]] uint64_t checks_ok() const { return checks_ok_.load(std::memory_order_relaxed); }
  [[nodiscard]] uint64_t checks_failed() const {
    return checks_failed_.load(std::memory_order_relaxed);
  }
  [[nodiscard]] std::string last_error() const;

 private:
  void changed() {
    if (changes_ != nullptr) changes_->fetch_add(1, std::memory_order_release);
  }

  const std::string address_;
  std::atomic<uint64_t>* const changes_;
  std::atomic<uint8_t> health_{static_cast<uint8_t>(pool::Health::Unchecked)};
  std::atomic<int> observed_{-1};
  std::atomic<bool> disabled_{false};
  std::atomic<uint64_t> checks_ok_{0};
  std::atomic<uint64_t> checks_failed_{0};
  mutable std::mutex mu_;
  pool::HealthCounter counter_;  // under mu_
  std::string last_error_;       // under mu_
};

class HostRegistry {
 public:
  // The entry for `address` (created on first use; never removed, so the
  // reference stays valid for the daemon's life).
  [[nodiscard]] HostStatus& get(std::string_view address);
  [[nodiscard]] HostStatus* find(std::string_view address);
  void for_each(const std::function<void(HostStatus&)>& f);
  // Bumped by every change of any host's health, role or DISABLE: a pool
  // re-reads its hosts only when this moved (not on every transaction).
  [[nodiscard]] uint64_t changes() const { return changes_.load(std::memory_order_acquire); }

 private:
  std::mutex mu_;
  std::map<std::string, std::unique_ptr<HostStatus>, std::less<>> hosts_;
  std::atomic<uint64_t> changes_{0};
};

}  // namespace sqlmux
