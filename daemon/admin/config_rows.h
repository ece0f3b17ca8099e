// SHOW CONFIG's rows: every key of the running configuration with its
// value, its default and whether RELOAD applies a change to it (PgBouncer's
// columns key, value, default, changeable). Passwords are masked.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "config/config.h"

namespace sqlmux::admin {

struct ConfigRow {
  std::string key;  // dotted, as in reload errors: "pool[0].size"
  std::string value;
  std::optional<std::string> default_value;  // nullopt: required, no default
  bool changeable = true;                    // RELOAD applies it (else: restart)
};

[[nodiscard]] std::vector<ConfigRow> config_rows(const config::Config& cfg);

}  // namespace sqlmux::admin
