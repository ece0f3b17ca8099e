// The composition root: the one place that names every protocol. It makes
// each protocol's driver (what pools need of it) and the client factory of
// each listener; the rest of the daemon sees only core/ interfaces.
#pragma once

#include "config/config.h"
#include "daemon/core/protocol.h"
#include "daemon/core/worker.h"
#include "daemon/ops/health_check.h"
#include "daemon/ops/upgrade_wire.h"

namespace sqlmux {

// One driver per protocol.
[[nodiscard]] std::unique_ptr<Protocols> make_protocols();
// Clients accepted on a [[listener]] of `protocol`.
[[nodiscard]] ClientFactory listener_clients(const Protocols& protocols, config::Protocol protocol,
                                             config::ClientTls tls);
// The refusal written to a connection on a listener of `protocol` that is
// refused before it is read (no descriptor left; the listener closing at
// exit). The [admin] listener's is the postgres one.
[[nodiscard]] RefusalWriter listener_refusal(config::Protocol protocol);
// Clients accepted on the [admin] listener: PostgreSQL clients served by
// the admin console after login.
[[nodiscard]] ClientFactory console_clients(const Protocols& protocols, config::ClientTls tls);
// Online upgrade: serves a client the previous process handed over with
// `state` on `fd` (owned from here on) on worker `w` (on its thread); false
// with `why` when it cannot.
[[nodiscard]] bool adopt_client(const Protocols& protocols, Worker& w, int fd,
                                const upgrade::ClientState& state, std::string& why);
// The health check probe of each protocol.
[[nodiscard]] HealthProbes health_probes();

}  // namespace sqlmux
