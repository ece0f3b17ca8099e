#include "daemon/mysql/protocol.h"

#include <fstream>
#include <sstream>

#include "daemon/core/log.h"
#include "daemon/mysql/backend.h"
#include "protocol/mysql/auth.h"

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

std::unique_ptr<const UserSecrets> MyProtocol::derive_secrets(const config::UserConfig& u) const {
  auto s = std::make_unique<MySecrets>();
  s->native_hash = my::auth::parse_native_hash(u.password);
  return s;
}

std::shared_ptr<const MyRsaKeys> MyProtocol::rsa_keys(const std::string& path) const {
  std::lock_guard<std::mutex> lk(mu_);
  if (path == rsa_path_) return rsa_;
  rsa_path_ = path;
  rsa_.reset();
  if (path.empty()) return rsa_;
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  auto keys = std::make_shared<MyRsaKeys>();
  keys->private_pem = text.str();
  auto pub = my::auth::rsa_public_key_pem(keys->private_pem);
  if (!in || !pub) {
    LOG_ERROR(
        "caching_sha2_private_key %s: not a readable RSA private key (PEM); "
        "caching_sha2_password clients over plaintext are switched to "
        "mysql_native_password",
        path.c_str());
    return rsa_;
  }
  keys->public_pem = std::move(*pub);
  rsa_ = std::move(keys);
  return rsa_;
}

}  // namespace sqlmux
