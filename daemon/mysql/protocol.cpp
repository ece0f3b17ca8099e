#include "daemon/mysql/protocol.h"

#include "daemon/mysql/backend.h"

namespace sqlmux {

PooledBackend* MyProtocol::open_backend(Worker& w, Pool& pool, PoolHost& host, uint64_t for_client,
                                        uint64_t tried, std::string& error) {
  return MyBackend::connect(w, pool, host, for_client, tried, error);
}

std::string MyProtocol::server_version() const {
  std::lock_guard<std::mutex> lk(mu_);
  return version_;
}

void MyProtocol::set_server_version(const std::string& v) {
  std::lock_guard<std::mutex> lk(mu_);
  version_ = v;
}

}  // namespace sqlmux
