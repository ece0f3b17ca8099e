// Passwords kept out of the configuration file (README "Configuration"):
// `password_file` (systemd credentials, Kubernetes secret volumes) and
// `password_env`. Read when the configuration is loaded or reloaded.
#pragma once

#include <string>

namespace sqlmux::config {

// The file's contents without one trailing newline ("\n" or "\r\n"). False,
// with `err` saying why, when it cannot be read, is not a regular file, is
// larger than 64 KiB, or is readable by every user (mode & 0004): a secret
// must not be world-readable.
[[nodiscard]] bool read_secret_file(const std::string& file, std::string& out, std::string& err);

// The environment variable's value. False when it is not set.
[[nodiscard]] bool read_secret_env(const std::string& var, std::string& out, std::string& err);

}  // namespace sqlmux::config
