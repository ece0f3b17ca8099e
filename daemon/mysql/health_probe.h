// The health check of a MySQL / MariaDB host: MariaDB Connector/C's
// non-blocking calls (mysql_real_connect_start / _cont, then the query and
// its result), `SELECT @@global.read_only` (ON means a replica).
#pragma once

#include "daemon/ops/health_check.h"

namespace sqlmux {

// For HealthChecker: the default port (my::kDefaultPort) and the Connector/C probe.
[[nodiscard]] HealthProbeKind mysql_health_probe_kind();

}  // namespace sqlmux
