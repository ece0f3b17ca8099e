#include "daemon/ops/hosts.h"

#include "daemon/core/log.h"

namespace sqlmux {

bool HostStatus::record(bool ok, std::optional<pool::Role> role, std::string_view error,
                        uint32_t fall, uint32_t rise) {
  (ok ? checks_ok_ : checks_failed_).fetch_add(1, std::memory_order_relaxed);
  std::lock_guard<std::mutex> lk(mu_);
  const pool::Health before = counter_.health();
  const pool::Health after = counter_.record(ok, fall, rise);
  health_.store(static_cast<uint8_t>(after), std::memory_order_relaxed);
  if (!ok) {
    last_error_ = std::string(error);
  }
  bool changed = before != after;
  if (after != before && after == pool::Health::Down) {
    LOG_WARN("backend host %s is down after %u failed checks: %s", address_.c_str(),
             counter_.failures_in_row(), last_error_.c_str());
  } else if (after != before && after == pool::Health::Up && before == pool::Health::Down) {
    LOG_INFO("backend host %s is up again", address_.c_str());
  }
  if (ok && role) {
    const int r = static_cast<int>(*role);
    const int old = observed_.exchange(r, std::memory_order_relaxed);
    if (old != r) {
      changed = true;
      if (old >= 0) {
        LOG_WARN("backend host %s is now a %s (was a %s)", address_.c_str(),
                 std::string(pool::to_string(*role)).c_str(),
                 std::string(pool::to_string(static_cast<pool::Role>(old))).c_str());
      }
    }
  }
  if (changed) this->changed();
  return changed;
}

void HostStatus::note_error(std::string_view error) {
  std::lock_guard<std::mutex> lk(mu_);
  last_error_ = std::string(error);
}

void HostStatus::reset() {
  std::lock_guard<std::mutex> lk(mu_);
  counter_ = pool::HealthCounter();
  health_.store(static_cast<uint8_t>(pool::Health::Unchecked), std::memory_order_relaxed);
  observed_.store(-1, std::memory_order_relaxed);
  last_error_.clear();
  changed();
}

std::string HostStatus::last_error() const {
  std::lock_guard<std::mutex> lk(mu_);
  return last_error_;
}

HostStatus& HostRegistry::get(std::string_view address) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = hosts_.find(address);
  if (it == hosts_.end()) {
    it = hosts_
             .emplace(std::string(address),
                      std::make_unique<HostStatus>(std::string(address), &changes_))
             .first;
  }
  return *it->second;
}

HostStatus* HostRegistry::find(std::string_view address) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = hosts_.find(address);
  return it == hosts_.end() ? nullptr : it->second.get();
}

void HostRegistry::for_each(const std::function<void(HostStatus&)>& f) {
  std::lock_guard<std::mutex> lk(mu_);
  for (auto& [address, h] : hosts_) {
    f(*h);
  }
}

}  // namespace sqlmux
