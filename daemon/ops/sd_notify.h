// systemd's readiness protocol (sd_notify(3)) for Type=notify units.
//
// Every function is a no-op when the daemon was not started by systemd
// (NOTIFY_SOCKET unset), and none of them logs in that case. When
// NOTIFY_SOCKET is set but a message cannot be sent, the first failure is
// logged as a warning.
#pragma once

#include <string>

namespace sqlmux::sd {

// Whether NOTIFY_SOCKET is set (checked once, at the first call).
[[nodiscard]] bool notify_enabled();

// Listeners are open and workers run: READY=1 with a STATUS= line.
void notify_ready(const std::string& status);
// An online upgrade: this process took over from the service's main
// process and is now its main process (MAINPID=, READY=1; the unit needs
// NotifyAccess=all, as the message comes from another pid than the main).
void notify_main_pid_ready(int pid, const std::string& status);
// A configuration reload begins (RELOADING=1). The reload code calls
// notify_ready() again when the new configuration is in force.
void notify_reloading(const std::string& status);
// Shutdown begins: STOPPING=1 with a STATUS= line.
void notify_stopping(const std::string& status);
// A free-form one-line status shown by `systemctl status`.
void notify_status(const std::string& status);

}  // namespace sqlmux::sd
