// Where a PostgreSQL CancelRequest goes: to this instance's client that
// holds the key, to the peer instance that issued it ([peers], README
// "Running several instances"), or nowhere (unknown keys are dropped
// silently, as PostgreSQL does). The key's layout: pool/pg/cancel_key.h.
#pragma once

#include <cstdint>

#include "daemon/core/log.h"

namespace sqlmux {

class Worker;

// Handles one CancelRequest that arrived on worker `w` (from `from`).
void route_cancel(Worker& w, int32_t pid, int32_t key, const log::ClientTag& from);

}  // namespace sqlmux
