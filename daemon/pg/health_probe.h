// The health check of a PostgreSQL host: libpq's non-blocking connect
// (with the pool's sslmode and sslrootcert), then `SELECT pg_is_in_recovery()`
// ("t" means a replica).
#pragma once

#include "daemon/ops/health_check.h"

namespace sqlmux {

// For HealthChecker: the default port (pg::kDefaultPort) and the libpq probe.
[[nodiscard]] HealthProbeKind pg_health_probe_kind();

}  // namespace sqlmux
