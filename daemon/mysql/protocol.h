// MySQL / MariaDB as the core sees it (core/protocol.h): opens
// MyBackends, and remembers the version string the servers send, which
// MySQL clients are greeted with. One instance, made by the composition root.
#pragma once

#include <mutex>
#include <string>

#include "daemon/core/protocol.h"

namespace sqlmux {

class MyProtocol final : public ProtocolDriver {
 public:
  [[nodiscard]] PooledBackend* open_backend(Worker& w, Pool& pool, PoolHost& host,
                                            uint64_t for_client, uint64_t tried,
                                            std::string& error) override;

  // The version string of the last server greeting seen (any thread).
  [[nodiscard]] std::string server_version() const;
  void set_server_version(const std::string& v);

 private:
  mutable std::mutex mu_;
  std::string version_;  // under mu_
};

}  // namespace sqlmux
