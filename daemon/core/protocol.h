// What the core needs of a wire protocol. The composition root
// (daemon/compose.cpp) registers one driver per config::Protocol; nothing
// in core/ names a protocol, so a third one is one more folder and one
// more line there.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "config/config.h"

namespace sqlmux {

class Pool;
class PooledBackend;
class Worker;
struct PoolHost;

// A pool's state that only its protocol reads (PostgreSQL: the parameters
// a fresh server connection reports, statements gone stale after DDL).
class PoolState {
 public:
  virtual ~PoolState() = default;
};

// A user's secrets in the form one protocol's authentication needs
// (PostgreSQL: a SCRAM verifier and an md5 hash), derived once per
// configuration version.
class UserSecrets {
 public:
  virtual ~UserSecrets() = default;
  // A pool that logs in as this user, with no password of its own, can
  // log in to a server only with what a client's login gave (MySQL: a
  // stored native hash): it opens connections for clients only (no
  // min_idle).
  [[nodiscard]] virtual bool server_login_needs_client() const { return false; }
};

class ProtocolDriver {
 public:
  virtual ~ProtocolDriver() = default;

  // Opens a server connection of `pool` to `host` on worker `w`;
  // for_client = the waiting client it is opened for (0: none); tried =
  // the pool's hosts tried for that client so far (bit i = host i), this
  // one included. nullptr when it cannot even start (`error` set), or when
  // the failure was handled already (`error` empty).
  [[nodiscard]] virtual PooledBackend* open_backend(Worker& w, Pool& pool, PoolHost& host,
                                                    uint64_t for_client, uint64_t tried,
                                                    std::string& error) = 0;
  // State each pool of this protocol keeps for it (nullptr: none).
  [[nodiscard]] virtual std::unique_ptr<PoolState> make_pool_state() const { return nullptr; }
  // What this protocol's logins check a user's password against (nullptr: none).
  [[nodiscard]] virtual std::unique_ptr<const UserSecrets> derive_secrets(
      const config::UserConfig& u) const {
    return nullptr;
  }
};

inline constexpr size_t kProtocolCount = 2;  // config::Protocol's values

// One driver per protocol.
class Protocols {
 public:
  void add(config::Protocol p, std::unique_ptr<ProtocolDriver> d) {
    drivers_[static_cast<size_t>(p)] = std::move(d);
  }
  [[nodiscard]] ProtocolDriver& get(config::Protocol p) const {
    return *drivers_[static_cast<size_t>(p)];
  }
  template <typename F>
  void for_each(F&& f) const {
    for (size_t i = 0; i < drivers_.size(); ++i) {
      if (drivers_[i]) f(static_cast<config::Protocol>(i), *drivers_[i]);
    }
  }

 private:
  std::array<std::unique_ptr<ProtocolDriver>, kProtocolCount> drivers_;
};

}  // namespace sqlmux
