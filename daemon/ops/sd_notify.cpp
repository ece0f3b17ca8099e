#include "daemon/ops/sd_notify.h"

#include <systemd/sd-daemon.h>
#include <time.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "daemon/core/log.h"

namespace sqlmux::sd {

namespace {

std::atomic<bool> warned{false};

// A STATUS= value is one line: newlines would start new assignments.
std::string one_line(const std::string& s) {
  std::string out = s;
  for (char& c : out) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return out;
}

void send(const std::string& state) {
  if (!notify_enabled()) return;
  int rc = sd_notify(0, state.c_str());
  if (rc < 0 && !warned.exchange(true)) {
    LOG_WARN("sd_notify to NOTIFY_SOCKET=%s failed: %s (further failures are not logged)",
             std::getenv("NOTIFY_SOCKET"), std::strerror(-rc));
  }
}

}  // namespace

bool notify_enabled() {
  static const bool enabled = [] {
    const char* e = std::getenv("NOTIFY_SOCKET");
    return e != nullptr && e[0] != '\0';
  }();
  return enabled;
}

void notify_ready(const std::string& status) {
  send("READY=1\nSTATUS=" + one_line(status));
}

void notify_main_pid_ready(int pid, const std::string& status) {
  send("MAINPID=" + std::to_string(pid) + "\nREADY=1\nSTATUS=" + one_line(status));
}

void notify_reloading(const std::string& status) {
  // MONOTONIC_USEC= is what Type=notify-reload (systemd 253+) expects with
  // RELOADING=1; older versions ignore it.
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  unsigned long long usec = static_cast<unsigned long long>(ts.tv_sec) * 1000000ULL +
                            static_cast<unsigned long long>(ts.tv_nsec) / 1000ULL;
  send("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(usec) + "\nSTATUS=" + one_line(status));
}

void notify_stopping(const std::string& status) {
  send("STOPPING=1\nSTATUS=" + one_line(status));
}

void notify_status(const std::string& status) {
  send("STATUS=" + one_line(status));
}

}  // namespace sqlmux::sd
