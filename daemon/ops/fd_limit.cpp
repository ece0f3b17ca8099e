#include "daemon/ops/fd_limit.h"

#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>

#include "daemon/core/log.h"

namespace sqlmux::fd_limit {

namespace {
// stdio, the main loop and its signal pipe, the metrics endpoint's thread,
// a log file, libpq's and Connector/C's transient sockets (cancel requests).
constexpr uint64_t kFixedOverhead = 32;
// Per worker: its loop's epoll and wakeup descriptors, the spare descriptor
// that lets it refuse clients when the limit is reached.
constexpr uint64_t kPerWorker = 4;
}  // namespace

std::string Need::text() const {
  return "max_client_conn " + std::to_string(clients) + " + server connections " +
         std::to_string(servers) + " + listeners " + std::to_string(listeners) + " + overhead " +
         std::to_string(overhead);
}

Need estimate(const config::Config& c, int workers) {
  Need n;
  n.clients = c.server.max_client_conn;
  std::set<std::string> hosts;
  for (const auto& p : c.pools) {
    // A pool without its own login is one pool per user that logs in.
    const uint64_t logins = p.user ? 1 : std::max<uint64_t>(1, c.users.size());
    n.servers += (static_cast<uint64_t>(p.size) + p.reserve_pool_size) * logins;
    for (const auto& b : p.backends) hosts.insert(b.address.text);
  }
  n.listeners = c.listeners.size() + (c.admin ? 1 : 0) + (c.metrics ? 1 : 0);
  n.overhead = kFixedOverhead + kPerWorker * static_cast<uint64_t>(std::max(workers, 1)) +
               (c.health ? hosts.size() : 0);
  return n;
}

uint64_t ensure(const config::Config& c, int workers, const char* when) {
  const Need need = estimate(c, workers);
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) {
    LOG_WARN("%s: cannot read the open file limit: %s", when, strerror(errno));
    return 0;
  }
  const uint64_t want = need.total();
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want && rl.rlim_max > rl.rlim_cur) {
    // As far as the hard limit allows: sqlmux never uses select(2).
    const rlim_t from = rl.rlim_cur;
    rlimit raised = rl;
    raised.rlim_cur = rl.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) != 0) {
      // An infinite (or huge) hard limit is capped by fs.nr_open: ask for what is needed.
      raised.rlim_cur = static_cast<rlim_t>(want);
      if (::setrlimit(RLIMIT_NOFILE, &raised) != 0) {
        LOG_WARN("%s: cannot raise the open file limit from %llu: %s", when,
                 static_cast<unsigned long long>(from), strerror(errno));
      }
    }
    (void)::getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur != from) {
      LOG_INFO(
          "%s: raised the open file limit (RLIMIT_NOFILE) from %llu to %llu: the "
          "configuration needs ~%llu (%s)",
          when, static_cast<unsigned long long>(from), static_cast<unsigned long long>(rl.rlim_cur),
          static_cast<unsigned long long>(want), need.text().c_str());
    }
  }
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
    LOG_WARN(
        "%s: the open file limit (RLIMIT_NOFILE) is %llu (hard %llu), below the ~%llu "
        "descriptors the configuration needs (%s): clients beyond it are refused as "
        "fd_exhausted (FATAL 53300 / ERR 1040). Raise LimitNOFILE= (systemd) or ulimit -n, "
        "or lower server.max_client_conn",
        when, static_cast<unsigned long long>(rl.rlim_cur),
        static_cast<unsigned long long>(rl.rlim_max), static_cast<unsigned long long>(want),
        need.text().c_str());
  } else {
    LOG_DEBUG(
        "%s: open file limit %llu covers the ~%llu descriptors the configuration "
        "needs (%s)",
        when, static_cast<unsigned long long>(rl.rlim_cur), static_cast<unsigned long long>(want),
        need.text().c_str());
  }
  return rl.rlim_cur;
}

}  // namespace sqlmux::fd_limit
