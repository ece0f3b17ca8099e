// MySQL / MariaDB as the core sees it (core/protocol.h): opens
// MyBackends, remembers the version string the servers send, which MySQL
// clients are greeted with, derives users' native password hashes and
// holds the caching_sha2_password RSA key. One instance, made by the
// composition root.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "daemon/core/auth_query_cache.h"
#include "daemon/core/protocol.h"

namespace sqlmux {

// A user's MySQL secret when [[user]] holds the native hash ("*" and 40
// hex digits) rather than the password.
struct MySecrets final : UserSecrets {
  std::optional<std::array<uint8_t, 20>> native_hash;  // SHA1(SHA1(password))
  [[nodiscard]] bool server_login_needs_client() const override { return native_hash.has_value(); }
};

// The caching_sha2_password RSA key pair (PEM).
struct MyRsaKeys {
  std::string private_pem;
  std::string public_pem;
};

class MyProtocol final : public ProtocolDriver {
 public:
  [[nodiscard]] PooledBackend* open_backend(Worker& w, Pool& pool, PoolHost& host,
                                            uint64_t for_client, uint64_t tried,
                                            std::string& error) override;

  // The version string of the last server greeting seen (any thread).
  [[nodiscard]] std::string server_version() const;
  void set_server_version(const std::string& v);

  [[nodiscard]] std::unique_ptr<const UserSecrets> derive_secrets(
      const config::UserConfig& u) const override;

  // The key pair of [server] caching_sha2_private_key `path` (read once per
  // path, any thread); nullptr for an empty path or an unreadable key
  // (logged once).
  [[nodiscard]] std::shared_ptr<const MyRsaKeys> rsa_keys(const std::string& path) const;

  // auth_query results, shared by the workers.
  [[nodiscard]] AuthQueryCache& auth_cache() const { return *auth_cache_; }

 private:
  std::unique_ptr<AuthQueryCache> auth_cache_ = std::make_unique<AuthQueryCache>();
  mutable std::mutex mu_;
  std::string version_;                           // under mu_
  mutable std::string rsa_path_;                  // under mu_
  mutable std::shared_ptr<const MyRsaKeys> rsa_;  // under mu_: of rsa_path_
};

}  // namespace sqlmux
